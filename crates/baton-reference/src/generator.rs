//! The deterministic season generator: teams, players, schedule, box scores, injuries,
//! props and game lines, internally consistent (points from makes, made <= attempted,
//! a team's minutes sum to 240 plus 25 per overtime, no ties, team box = sum of players).

use crate::rows::obj;
use baton_core::model::{Partition, Row};
use baton_core::rng::SplitMix64;
use serde_json::json;
use std::collections::BTreeMap;

/// The 30 teams, by their real abbreviations.
pub const TEAMS: [&str; 30] = [
    "ATL", "BKN", "BOS", "CHA", "CHI", "CLE", "DAL", "DEN", "DET", "GSW", "HOU", "IND", "LAC",
    "LAL", "MEM", "MIA", "MIL", "MIN", "NOP", "NYK", "OKC", "ORL", "PHI", "PHX", "POR", "SAC",
    "SAS", "TOR", "UTA", "WAS",
];

const FIRST: [&str; 24] = [
    "Avery", "Blake", "Cam", "Dorian", "Eli", "Felix", "Gabe", "Hollis", "Isaiah", "Jalen", "Kai",
    "Luca", "Marcus", "Nico", "Omar", "Parker", "Quinn", "Rory", "Silas", "Tobias", "Ulysses",
    "Vince", "Wade", "Xavier",
];
const LAST: [&str; 24] = [
    "Abbott",
    "Brooks",
    "Carver",
    "Dalton",
    "Ellison",
    "Fairley",
    "Garrity",
    "Holloway",
    "Ingram",
    "Jessup",
    "Kendrick",
    "Lattimore",
    "Mercer",
    "Northcutt",
    "O'Malley",
    "Prescott",
    "Quarles",
    "Redding",
    "Sterling",
    "Talbot",
    "Upshaw",
    "Vance",
    "Whitfield",
    "Yarbrough",
];

/// 17 a team: about 34 gamebook rows a game, as in the original feed.
const PLAYERS_PER_TEAM: usize = 17;

/// Raw tables by name, rows in a stable order.
pub type RawData = BTreeMap<String, Vec<Row>>;

#[derive(Clone)]
struct Player {
    name: String,
    lookup: String,
    /// Expected points per game: drives shots, minutes and props.
    scoring: f64,
    /// Share of playing time (relative).
    minutes_weight: f64,
}

struct League {
    rosters: Vec<Vec<Player>>,
    strength: Vec<f64>,
}

fn lookup_of(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

fn league(seed: u64) -> League {
    let mut rng = SplitMix64::new(seed ^ 0x001E_A60E);
    let mut names: Vec<String> = FIRST
        .iter()
        .flat_map(|f| LAST.iter().map(move |l| format!("{f} {l}")))
        .collect();
    rng.shuffle(&mut names);
    let mut names = names.into_iter();
    let mut rosters = Vec::new();
    let mut strength = Vec::new();
    for _ in TEAMS {
        let mut roster = Vec::new();
        for slot in 0..PLAYERS_PER_TEAM {
            // 576 distinct names for 510 players: the iterator cannot run dry.
            let name = names.next().unwrap_or_else(|| format!("Player {slot}"));
            let star = if slot < 5 { 1.0 } else { 0.45 };
            roster.push(Player {
                lookup: lookup_of(&name),
                name,
                scoring: (6.0 + rng.unit() * 22.0) * star,
                minutes_weight: if slot < 5 {
                    30.0 + rng.unit() * 8.0
                } else {
                    8.0 + rng.unit() * 12.0
                },
            });
        }
        rosters.push(roster);
        strength.push(rng.unit() * 10.0 - 5.0);
    }
    League { rosters, strength }
}

fn date_rng(seed: u64, date: Partition, salt: u64) -> SplitMix64 {
    let days = date.days_since(Partition::parse("2000-01-01").unwrap_or(date)) as u64;
    SplitMix64::new(
        seed.wrapping_mul(0x9E37_79B9)
            .wrapping_add(days.wrapping_mul(0x85EB_CA6B))
            ^ salt,
    )
}

fn binomial(rng: &mut SplitMix64, n: i64, p: f64) -> i64 {
    (0..n.max(0)).filter(|_| rng.chance(p)).count() as i64
}

/// Splits `total` whole minutes by weights (largest remainder).
fn split_minutes(weights: &[f64], total: i64) -> Vec<i64> {
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| w / sum * total as f64).collect();
    let mut out: Vec<i64> = exact.iter().map(|e| e.floor() as i64).collect();
    let mut rest = total - out.iter().sum::<i64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    for i in order.into_iter().cycle() {
        if rest <= 0 {
            break;
        }
        out[i] += 1;
        rest -= 1;
    }
    out
}

/// Generates the raw tables for `dates`.
pub fn generate(seed: u64, dates: &[Partition]) -> RawData {
    let season = Season::new(seed);
    let mut data = empty_tables();
    for &date in dates {
        generate_date(seed, &season.league, date, &mut data);
    }
    data
}

/// The season of one seed, generating one date at a time: a caller that lands dates one
/// by one holds a day's rows, not the whole range's (each date's rows depend only on the
/// seed and the date, so a date is the same whatever range it is generated in).
pub struct Season {
    seed: u64,
    league: League,
}

impl Season {
    /// The teams and rosters of `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            league: league(seed),
        }
    }

    /// The raw tables of one date (every row of them has that date).
    pub fn date(&self, date: Partition) -> RawData {
        let mut data = empty_tables();
        generate_date(self.seed, &self.league, date, &mut data);
        data
    }
}

/// Every raw table, empty.
fn empty_tables() -> RawData {
    [
        "nbac_schedule",
        "nbac_gamebook_player_stats",
        "nbac_team_boxscore",
        "nbac_injury_report",
        "odds_api_player_points_props",
        "odds_api_game_lines",
    ]
    .into_iter()
    .map(|name| (name.to_owned(), Vec::new()))
    .collect()
}

fn push(data: &mut RawData, table: &str, row: Row) {
    data.entry(table.to_owned()).or_default().push(row);
}

fn generate_date(seed: u64, league: &League, date: Partition, data: &mut RawData) {
    let mut rng = date_rng(seed, date, 1);
    let day = date.to_string();
    let games = if rng.chance(0.08) {
        0
    } else {
        rng.range(3, 15) as usize
    };
    let mut order: Vec<usize> = (0..TEAMS.len()).collect();
    rng.shuffle(&mut order);

    // Injuries for teams playing today: out players sit, the rest play through.
    let mut out_today: Vec<String> = Vec::new();
    for g in 0..games {
        for &team in &order[2 * g..2 * g + 2] {
            for _ in 0..rng.range(0, 2) {
                let p = &league.rosters[team][rng.index(PLAYERS_PER_TEAM)];
                if out_today.contains(&p.lookup) {
                    continue;
                }
                let status = ["out", "doubtful", "questionable", "probable"][rng.index(4)];
                if status == "out" {
                    out_today.push(p.lookup.clone());
                }
                let reason = ["ankle", "knee", "illness", "rest", "hamstring"][rng.index(5)];
                push(
                    data,
                    "nbac_injury_report",
                    obj(json!({
                        "report_date": day, "player_lookup": p.lookup, "team_abbr": TEAMS[team],
                        "status": status, "reason": reason,
                    })),
                );
            }
        }
    }

    for g in 0..games {
        let (away, home) = (order[2 * g], order[2 * g + 1]);
        let game_id = format!("{}_{}_{}", date.compact(), TEAMS[away], TEAMS[home]);
        let overtime = if rng.chance(0.06) {
            1 + i64::from(rng.chance(0.2))
        } else {
            0
        };
        let start_time = ["19:00", "19:30", "20:00", "22:00"][rng.index(4)];
        push(
            data,
            "nbac_schedule",
            obj(json!({
                "game_id": game_id, "game_date": day, "home_team_abbr": TEAMS[home], "away_team_abbr": TEAMS[away],
                "game_status": 3, "start_time_et": start_time,
            })),
        );
        let spread = ((league.strength[away] - league.strength[home] - 2.5) * 2.0).round() / 2.0;
        let total = ((215.0 + rng.unit() * 20.0) * 2.0).round() / 2.0;
        push(
            data,
            "odds_api_game_lines",
            obj(json!({
                "game_date": day, "game_id": game_id, "spread": spread, "total": total,
            })),
        );

        let mut team_rows: Vec<(usize, Vec<Row>)> = Vec::new();
        for (team, opponent) in [(away, home), (home, away)] {
            let roster = &league.rosters[team];
            let available: Vec<usize> = (0..PLAYERS_PER_TEAM)
                .filter(|&i| !out_today.contains(&roster[i].lookup))
                .collect();
            // The lowest-weight available player does not play (coach's decision).
            let dnp = available.iter().copied().min_by(|&a, &b| {
                roster[a]
                    .minutes_weight
                    .total_cmp(&roster[b].minutes_weight)
            });
            let playing: Vec<usize> = available
                .iter()
                .copied()
                .filter(|i| Some(*i) != dnp)
                .collect();
            let weights: Vec<f64> = playing.iter().map(|&i| roster[i].minutes_weight).collect();
            let minutes = split_minutes(&weights, 240 + 25 * overtime);
            let boost = 1.0 + (league.strength[team] - league.strength[opponent]) / 60.0;
            let mut rows = Vec::new();
            for (slot, player) in roster.iter().enumerate() {
                let status = if out_today.contains(&player.lookup) {
                    "inactive"
                } else if Some(slot) == dnp {
                    "dnp"
                } else {
                    "active"
                };
                let mins = playing
                    .iter()
                    .position(|&i| i == slot)
                    .map_or(0, |k| minutes[k]);
                let share = mins as f64 / 36.0;
                let fga = ((player.scoring * 0.8 * share * boost) + rng.unit() * 4.0 - 2.0)
                    .round()
                    .max(0.0) as i64;
                let fga = if mins == 0 { 0 } else { fga };
                let three_attempted = binomial(&mut rng, fga, 0.38);
                let three_made = binomial(&mut rng, three_attempted, 0.36);
                let fg_made = three_made + binomial(&mut rng, fga - three_attempted, 0.52);
                let ft_attempted = if mins == 0 {
                    0
                } else {
                    binomial(
                        &mut rng,
                        (player.scoring * 0.35 * share).round() as i64 + 1,
                        0.7,
                    )
                };
                let ft_made = binomial(&mut rng, ft_attempted, 0.78);
                let points = 2 * (fg_made - three_made) + 3 * three_made + ft_made;
                let r = |rng: &mut SplitMix64, per36: f64| {
                    if mins == 0 {
                        0
                    } else {
                        binomial(rng, (per36 * share * 2.0).round() as i64, 0.5)
                    }
                };
                rows.push(obj(json!({
                    "game_id": game_id, "game_date": day, "player_lookup": player.lookup, "player_name": player.name,
                    "team_abbr": TEAMS[team], "opponent_team_abbr": TEAMS[opponent], "player_status": status,
                    "minutes": mins, "points": points, "fg_made": fg_made, "fg_attempted": fga,
                    "three_made": three_made, "three_attempted": three_attempted, "ft_made": ft_made,
                    "ft_attempted": ft_attempted, "offensive_rebounds": r(&mut rng, 1.8), "defensive_rebounds": r(&mut rng, 5.0),
                    "assists": r(&mut rng, 4.0), "steals": r(&mut rng, 1.1), "blocks": r(&mut rng, 0.8),
                    "turnovers": r(&mut rng, 2.0), "personal_fouls": r(&mut rng, 2.5), "plus_minus": 0,
                })));
            }
            team_rows.push((team, rows));
        }
        // No game ends tied: the home side's busiest player makes one more free throw.
        let total_points = |rows: &[Row]| {
            rows.iter()
                .map(|r| r["points"].as_i64().unwrap_or(0))
                .sum::<i64>()
        };
        if total_points(&team_rows[0].1) == total_points(&team_rows[1].1) {
            let busiest = team_rows[1]
                .1
                .iter_mut()
                .max_by_key(|r| r["minutes"].as_i64().unwrap_or(0));
            if let Some(row) = busiest {
                for key in ["ft_made", "ft_attempted", "points"] {
                    row[key] = json!(row[key].as_i64().unwrap_or(0) + 1);
                }
            }
        }
        let scores = [total_points(&team_rows[0].1), total_points(&team_rows[1].1)];
        for (side, (team, rows)) in team_rows.iter_mut().enumerate() {
            let margin = scores[side] - scores[1 - side];
            let game_minutes = (48 + 5 * overtime) as f64;
            for row in rows.iter_mut() {
                let mins = row["minutes"].as_i64().unwrap_or(0) as f64;
                row["plus_minus"] = json!((margin as f64 * mins / game_minutes).round() as i64);
            }
            let sum = |key: &str| {
                rows.iter()
                    .map(|r| r[key].as_i64().unwrap_or(0))
                    .sum::<i64>()
            };
            let opponent = if side == 0 { home } else { away };
            push(
                data,
                "nbac_team_boxscore",
                obj(json!({
                    "game_id": game_id, "game_date": day, "team_abbr": TEAMS[*team], "opponent_team_abbr": TEAMS[opponent],
                    "home_game": side == 1, "points": sum("points"), "fg_made": sum("fg_made"), "fg_attempted": sum("fg_attempted"),
                    "three_made": sum("three_made"), "three_attempted": sum("three_attempted"), "ft_made": sum("ft_made"),
                    "ft_attempted": sum("ft_attempted"), "offensive_rebounds": sum("offensive_rebounds"),
                    "defensive_rebounds": sum("defensive_rebounds"), "assists": sum("assists"), "steals": sum("steals"),
                    "blocks": sum("blocks"), "turnovers": sum("turnovers"), "personal_fouls": sum("personal_fouls"),
                    "overtime_periods": overtime,
                })),
            );
            // Props for the five main players who are not out.
            for player in league.rosters[*team]
                .iter()
                .take(5)
                .filter(|p| !out_today.contains(&p.lookup))
            {
                let line = (player.scoring * 2.0).round() / 2.0 + 0.5;
                for (book, shift, over, under) in [
                    ("draftkings", 0.0, -110, -110),
                    ("fanduel", 0.5, -115, -105),
                ] {
                    push(
                        data,
                        "odds_api_player_points_props",
                        obj(json!({
                            "game_date": day, "game_id": game_id, "player_lookup": player.lookup, "bookmaker": book,
                            "points_line": line + shift, "over_price": over, "under_price": under,
                            "snapshot_time": format!("{day}T10:00:00-05:00"),
                        })),
                    );
                }
            }
        }
        for (_, rows) in team_rows {
            for row in rows {
                push(data, "nbac_gamebook_player_stats", row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::RowExt;

    fn dates() -> Vec<Partition> {
        let start = Partition::parse("2024-01-01").unwrap();
        start.through(start.offset(20))
    }

    #[test]
    fn same_seed_same_data_and_a_date_does_not_depend_on_the_range() {
        let a = generate(7, &dates());
        let b = generate(7, &dates()[5..]);
        let day = dates()[10].to_string();
        let pick = |d: &RawData| {
            d["nbac_gamebook_player_stats"]
                .iter()
                .filter(|r| r.s("game_date") == day)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(&a), pick(&b));
        assert_ne!(
            generate(8, &dates())["nbac_team_boxscore"],
            a["nbac_team_boxscore"]
        );
    }

    #[test]
    fn a_season_date_is_that_date_of_the_range() {
        let all = generate(7, &dates());
        let season = Season::new(7);
        let mut compared = 0;
        for date in dates() {
            let day = date.to_string();
            let one = season.date(date);
            for (table, rows) in &all {
                let column = if table == "nbac_injury_report" {
                    "report_date"
                } else {
                    "game_date"
                };
                let expected: Vec<&Row> = rows.iter().filter(|r| r.s(column) == day).collect();
                let got: Vec<&Row> = one[table].iter().collect();
                assert_eq!(got, expected, "{table} on {day}");
                compared += got.len();
            }
        }
        assert_eq!(compared, all.values().map(Vec::len).sum::<usize>());
    }

    #[test]
    fn box_scores_are_internally_consistent() {
        let data = generate(42, &dates());
        let players = &data["nbac_gamebook_player_stats"];
        assert!(!players.is_empty());
        for r in players {
            assert_eq!(
                r.i("points"),
                2 * (r.i("fg_made") - r.i("three_made")) + 3 * r.i("three_made") + r.i("ft_made")
            );
            assert!(
                r.i("fg_made") <= r.i("fg_attempted")
                    && r.i("three_made") <= r.i("three_attempted")
            );
            assert!(r.i("three_made") <= r.i("fg_made") && r.i("ft_made") <= r.i("ft_attempted"));
            if r.s("player_status") != "active" {
                assert_eq!(r.i("minutes"), 0);
            }
        }
        for team in &data["nbac_team_boxscore"] {
            let mine: Vec<&Row> = players
                .iter()
                .filter(|p| {
                    p.s("game_id") == team.s("game_id") && p.s("team_abbr") == team.s("team_abbr")
                })
                .collect();
            assert_eq!(
                mine.iter().map(|p| p.i("minutes")).sum::<i64>(),
                240 + 25 * team.i("overtime_periods")
            );
            assert_eq!(
                mine.iter().map(|p| p.i("points")).sum::<i64>(),
                team.i("points")
            );
            let opp = data["nbac_team_boxscore"]
                .iter()
                .find(|o| {
                    o.s("game_id") == team.s("game_id") && o.s("team_abbr") != team.s("team_abbr")
                })
                .unwrap();
            assert_ne!(opp.i("points"), team.i("points"), "no game ends tied");
        }
        let games_per_day = data["nbac_schedule"].len() as f64 / dates().len() as f64;
        assert!((1.0..=15.0).contains(&games_per_day));
        let rows_per_game = players.len() as f64 / data["nbac_schedule"].len() as f64;
        assert!(
            (33.0..=35.0).contains(&rows_per_game),
            "{rows_per_game} rows per game"
        );
    }
}
