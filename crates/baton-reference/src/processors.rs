//! The five Phase 3 processors and the Phase 4 processor of the reference pipeline, as pure
//! functions from input rows to output rows.

use crate::rows::{RowExt, obj};
use baton_core::model::{Partition, Row};
use jiff::Timestamp;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Input rows by table name, as the runner loaded them (the partition and its history).
pub type Inputs = BTreeMap<String, Vec<Row>>;

/// Whether `processor` is one of the built-in reference processors.
pub fn is_builtin(processor: &str) -> bool {
    matches!(
        processor,
        "player_game_summary"
            | "team_offense_game_summary"
            | "team_defense_game_summary"
            | "upcoming_player_game_context"
            | "upcoming_team_game_context"
            | "player_daily_cache"
    )
}

/// Runs a built-in processor; `None` when `processor` is not one.
pub fn compute(
    processor: &str,
    date: Partition,
    inputs: &Inputs,
    processed_at: Timestamp,
) -> Option<Result<Vec<Row>, String>> {
    let ctx = Ctx {
        date,
        day: date.to_string(),
        inputs,
        processed_at: processed_at.to_string(),
    };
    Some(match processor {
        "team_offense_game_summary" => Ok(team_offense(&ctx)),
        "team_defense_game_summary" => Ok(team_defense(&ctx)),
        "player_game_summary" => player_game_summary(&ctx),
        "upcoming_player_game_context" => Ok(upcoming_player(&ctx)),
        "upcoming_team_game_context" => Ok(upcoming_team(&ctx)),
        "player_daily_cache" => Ok(player_daily_cache(&ctx)),
        _ => return None,
    })
}

struct Ctx<'a> {
    date: Partition,
    day: String,
    inputs: &'a Inputs,
    processed_at: String,
}

impl Ctx<'_> {
    fn table(&self, name: &str) -> &[Row] {
        self.inputs.get(name).map_or(&[], Vec::as_slice)
    }
    /// Rows of `table` whose `column` is the partition's date.
    fn today<'a>(&'a self, table: &str, column: &'a str) -> impl Iterator<Item = &'a Row> + 'a {
        let day = self.day.clone();
        self.table(table).iter().filter(move |r| r.s(column) == day)
    }
    /// Rows of `table` strictly before the partition's date (history, "before tip-off").
    fn before<'a>(&'a self, table: &str, column: &'a str) -> impl Iterator<Item = &'a Row> + 'a {
        let day = self.day.clone();
        self.table(table)
            .iter()
            .filter(move |r| r.s(column) < day.as_str())
    }
    fn days_ago(&self, day: &str) -> Option<i64> {
        Partition::parse(day).ok().map(|d| self.date.days_since(d))
    }
}

fn ratio(num: f64, den: f64) -> Value {
    if den > 0.0 {
        json!(round4(num / den))
    } else {
        Value::Null
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Possessions: FGA + 0.44 * FTA - OREB + TOV.
pub fn possessions(box_row: &Row) -> f64 {
    box_row.f("fg_attempted") + 0.44 * box_row.f("ft_attempted") - box_row.f("offensive_rebounds")
        + box_row.f("turnovers")
}

fn opponent_row<'a>(rows: &'a [Row], game_id: &str, team: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.s("game_id") == game_id && r.s("team_abbr") != team)
}

fn team_offense(ctx: &Ctx<'_>) -> Vec<Row> {
    let boxes: Vec<Row> = ctx
        .today("nbac_team_boxscore", "game_date")
        .cloned()
        .collect();
    boxes
        .iter()
        .map(|t| {
            let opp = opponent_row(&boxes, t.s("game_id"), t.s("team_abbr"));
            let poss = possessions(t);
            let opp_poss = opp.map_or(poss, possessions);
            let periods = 48.0 + 5.0 * t.f("overtime_periods");
            let opp_points = opp.map_or(0, |o| o.i("points"));
            obj(json!({
                "game_date": ctx.day, "game_id": t.s("game_id"), "team_abbr": t.s("team_abbr"),
                "opponent_team_abbr": t.s("opponent_team_abbr"), "home_game": t.b("home_game"),
                "points": t.i("points"), "possessions": round4(poss),
                "offensive_rating": ratio(100.0 * t.f("points"), poss),
                "pace": round4(48.0 * ((poss + opp_poss) / 2.0) / periods),
                "true_shooting_pct": ratio(t.f("points"), 2.0 * (t.f("fg_attempted") + 0.44 * t.f("ft_attempted"))),
                "assists": t.i("assists"), "turnovers": t.i("turnovers"),
                "fg_attempted": t.i("fg_attempted"), "ft_attempted": t.i("ft_attempted"),
                "team_minutes": 240 + 25 * t.i("overtime_periods"),
                "win_flag": t.i("points") > opp_points, "margin": t.i("points") - opp_points,
                "processed_at": ctx.processed_at,
            }))
        })
        .collect()
}

fn team_defense(ctx: &Ctx<'_>) -> Vec<Row> {
    let boxes: Vec<Row> = ctx
        .today("nbac_team_boxscore", "game_date")
        .cloned()
        .collect();
    let players: Vec<&Row> = ctx
        .today("nbac_gamebook_player_stats", "game_date")
        .collect();
    boxes
        .iter()
        .filter_map(|t| {
            let opp = opponent_row(&boxes, t.s("game_id"), t.s("team_abbr"))?;
            let mine = players.iter().filter(|p| p.s("game_id") == t.s("game_id") && p.s("team_abbr") == t.s("team_abbr"));
            let (steals, blocks) = mine.fold((0, 0), |(s, b), p| (s + p.i("steals"), b + p.i("blocks")));
            let opp_poss = possessions(opp);
            Some(obj(json!({
                "game_date": ctx.day, "game_id": t.s("game_id"), "defending_team_abbr": t.s("team_abbr"),
                "opponent_team_abbr": opp.s("team_abbr"), "points_allowed": opp.i("points"),
                "opponent_possessions": round4(opp_poss), "defensive_rating": ratio(100.0 * opp.f("points"), opp_poss),
                "opponent_fg_pct": ratio(opp.f("fg_made"), opp.f("fg_attempted")),
                "opponent_three_pct": ratio(opp.f("three_made"), opp.f("three_attempted")),
                "steals": steals, "blocks": blocks, "forced_turnovers": opp.i("turnovers"),
                "processed_at": ctx.processed_at,
            })))
        })
        .collect()
}

/// Each player's points line on the date: the first bookmaker's by name.
fn points_lines<'a>(ctx: &'a Ctx<'_>) -> BTreeMap<&'a str, f64> {
    let mut best: BTreeMap<&str, (&str, f64)> = BTreeMap::new();
    for p in ctx.today("odds_api_player_points_props", "game_date") {
        let entry = best
            .entry(p.s("player_lookup"))
            .or_insert((p.s("bookmaker"), p.f("points_line")));
        if p.s("bookmaker") < entry.0 {
            *entry = (p.s("bookmaker"), p.f("points_line"));
        }
    }
    best.into_iter().map(|(k, (_, line))| (k, line)).collect()
}

fn player_game_summary(ctx: &Ctx<'_>) -> Result<Vec<Row>, String> {
    let offense: Vec<&Row> = ctx
        .today("team_offense_game_summary", "game_date")
        .collect();
    let lines = points_lines(ctx);
    let mut out = Vec::new();
    for p in ctx
        .today("nbac_gamebook_player_stats", "game_date")
        .filter(|p| p.s("player_status") == "active")
    {
        let team = offense
            .iter()
            .find(|t| t.s("game_id") == p.s("game_id") && t.s("team_abbr") == p.s("team_abbr"))
            .ok_or_else(|| {
                format!(
                    "team_offense_game_summary has no row for {} in game {} (run it first)",
                    p.s("team_abbr"),
                    p.s("game_id")
                )
            })?;
        let minutes = p.f("minutes");
        let usage = if minutes > 0.0 {
            let own = p.f("fg_attempted") + 0.44 * p.f("ft_attempted") + p.f("turnovers");
            let team_plays =
                team.f("fg_attempted") + 0.44 * team.f("ft_attempted") + team.f("turnovers");
            ratio(
                100.0 * own * (team.f("team_minutes") / 5.0),
                minutes * team_plays,
            )
        } else {
            Value::Null
        };
        let line = lines.get(p.s("player_lookup")).copied();
        let result = line.map(|l| {
            let pts = p.f("points");
            if pts > l {
                "over"
            } else if pts < l {
                "under"
            } else {
                "push"
            }
        });
        out.push(obj(json!({
            "game_date": ctx.day, "game_id": p.s("game_id"), "player_lookup": p.s("player_lookup"),
            "player_name": p.s("player_name"), "team_abbr": p.s("team_abbr"), "opponent_team_abbr": p.s("opponent_team_abbr"),
            "minutes": p.i("minutes"), "points": p.i("points"),
            "rebounds": p.i("offensive_rebounds") + p.i("defensive_rebounds"), "assists": p.i("assists"),
            "steals": p.i("steals"), "blocks": p.i("blocks"), "turnovers": p.i("turnovers"),
            "fg_pct": ratio(p.f("fg_made"), p.f("fg_attempted")),
            "three_pct": ratio(p.f("three_made"), p.f("three_attempted")),
            "true_shooting_pct": ratio(p.f("points"), 2.0 * (p.f("fg_attempted") + 0.44 * p.f("ft_attempted"))),
            "usage_rate": usage, "points_line": line, "over_under_result": result,
            "processed_at": ctx.processed_at,
        })));
    }
    Ok(out)
}

/// Each team's defensive rating over its games before the date: 100 * points allowed /
/// opponent possessions.
fn defensive_ratings_to_date<'a>(ctx: &'a Ctx<'_>) -> BTreeMap<&'a str, Value> {
    let mut by_game: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in ctx.before("nbac_team_boxscore", "game_date") {
        by_game.entry(r.s("game_id")).or_default().push(r);
    }
    let mut sums: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for rows in by_game.values() {
        if let [a, b] = rows.as_slice() {
            for (own, opp) in [(a, b), (b, a)] {
                let e = sums.entry(own.s("team_abbr")).or_default();
                e.0 += opp.f("points");
                e.1 += possessions(opp);
            }
        }
    }
    sums.into_iter()
        .map(|(team, (allowed, poss))| (team, ratio(100.0 * allowed, poss)))
        .collect()
}

struct GameToday<'a> {
    game_id: &'a str,
    team: &'a str,
    opponent: &'a str,
    home: bool,
    spread: Value,
    total: Value,
}

fn games_today<'a>(ctx: &'a Ctx<'a>) -> Vec<GameToday<'a>> {
    let lines: Vec<&Row> = ctx.today("odds_api_game_lines", "game_date").collect();
    let mut out = Vec::new();
    for g in ctx.today("nbac_schedule", "game_date") {
        let line = lines.iter().find(|l| l.s("game_id") == g.s("game_id"));
        for (team, opponent, home) in [
            (g.s("home_team_abbr"), g.s("away_team_abbr"), true),
            (g.s("away_team_abbr"), g.s("home_team_abbr"), false),
        ] {
            // The spread is quoted for the home side; the away side's is its negation.
            let spread = line.map_or(Value::Null, |l| {
                json!(if home { l.f("spread") } else { -l.f("spread") })
            });
            out.push(GameToday {
                game_id: g.s("game_id"),
                team,
                opponent,
                home,
                spread,
                total: line.map_or(Value::Null, |l| json!(l.f("total"))),
            });
        }
    }
    out
}

fn mean(values: &[f64]) -> Value {
    if values.is_empty() {
        Value::Null
    } else {
        json!(round4(values.iter().sum::<f64>() / values.len() as f64))
    }
}

fn upcoming_player(ctx: &Ctx<'_>) -> Vec<Row> {
    let mut by_team: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut played: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in ctx.before("nbac_gamebook_player_stats", "game_date") {
        by_team
            .entry(r.s("team_abbr"))
            .or_default()
            .insert(r.s("player_lookup"));
        if r.s("player_status") == "active" && r.i("minutes") > 0 {
            played.entry(r.s("player_lookup")).or_default().push(r);
        }
    }
    for games in played.values_mut() {
        games.sort_by(|a, b| b.s("game_date").cmp(a.s("game_date")));
    }
    let injuries: BTreeMap<&str, &str> = ctx
        .today("nbac_injury_report", "report_date")
        .map(|i| (i.s("player_lookup"), i.s("status")))
        .collect();
    let lines = points_lines(ctx);
    let defense = defensive_ratings_to_date(ctx);
    let none = Vec::new();
    let mut out = Vec::new();
    for game in games_today(ctx) {
        let opp_def = defense.get(game.opponent).cloned().unwrap_or(Value::Null);
        for &player in by_team.get(game.team).into_iter().flatten() {
            let played = played.get(player).unwrap_or(&none);
            let rest = played.first().and_then(|r| ctx.days_ago(r.s("game_date")));
            let window = |days: i64| {
                played
                    .iter()
                    .filter(move |r| ctx.days_ago(r.s("game_date")).is_some_and(|d| d <= days))
            };
            let pts = |n: usize| {
                played
                    .iter()
                    .take(n)
                    .map(|r| r.f("points"))
                    .collect::<Vec<_>>()
            };
            out.push(obj(json!({
                "game_date": ctx.day, "game_id": game.game_id, "player_lookup": player, "team_abbr": game.team,
                "opponent_team_abbr": game.opponent, "home_game": game.home,
                "days_rest": rest, "back_to_back": rest == Some(1),
                "games_last_7": window(7).count(), "minutes_last_7": window(7).map(|r| r.i("minutes")).sum::<i64>(),
                "games_last_14": window(14).count(), "minutes_last_14": window(14).map(|r| r.i("minutes")).sum::<i64>(),
                "points_avg_last_5": mean(&pts(5)), "points_avg_last_10": mean(&pts(10)),
                "opponent_def_rating": opp_def, "points_line": lines.get(player).copied(),
                "spread": game.spread, "total": game.total,
                "injury_status": injuries.get(player).copied().unwrap_or("available"),
                "processed_at": ctx.processed_at,
            })));
        }
    }
    out
}

fn upcoming_team(ctx: &Ctx<'_>) -> Vec<Row> {
    let history: Vec<&Row> = ctx.before("nbac_team_boxscore", "game_date").collect();
    let injuries: Vec<&Row> = ctx.today("nbac_injury_report", "report_date").collect();
    let mut out = Vec::new();
    for game in games_today(ctx) {
        let mut games: Vec<&&Row> = history
            .iter()
            .filter(|r| r.s("team_abbr") == game.team)
            .collect();
        games.sort_by(|a, b| b.s("game_date").cmp(a.s("game_date")));
        let rest = games.first().and_then(|r| ctx.days_ago(r.s("game_date")));
        let within = |days: i64| {
            games
                .iter()
                .filter(|r| ctx.days_ago(r.s("game_date")).is_some_and(|d| d <= days))
                .count()
        };
        let last10: Vec<&&&Row> = games.iter().take(10).collect();
        let off: Vec<f64> = last10
            .iter()
            .filter(|r| possessions(r) > 0.0)
            .map(|r| 100.0 * r.f("points") / possessions(r))
            .collect();
        let def: Vec<f64> = last10
            .iter()
            .filter_map(|r| opponent_row_ref(&history, r.s("game_id"), game.team))
            .filter(|o| possessions(o) > 0.0)
            .map(|o| 100.0 * o.f("points") / possessions(o))
            .collect();
        let out_count = injuries
            .iter()
            .filter(|i| i.s("team_abbr") == game.team && i.s("status") == "out")
            .count();
        out.push(obj(json!({
            "game_date": ctx.day, "game_id": game.game_id, "team_abbr": game.team, "opponent_team_abbr": game.opponent,
            "home_game": game.home, "days_rest": rest, "back_to_back": rest == Some(1),
            "games_last_7": within(7), "games_last_14": within(14),
            "offensive_rating_last_10": mean(&off), "defensive_rating_last_10": mean(&def),
            "spread": game.spread, "total": game.total, "players_out": out_count,
            "processed_at": ctx.processed_at,
        })));
    }
    out
}

fn opponent_row_ref<'a>(rows: &[&'a Row], game_id: &str, team: &str) -> Option<&'a Row> {
    rows.iter()
        .copied()
        .find(|r| r.s("game_id") == game_id && r.s("team_abbr") != team)
}

fn player_daily_cache(ctx: &Ctx<'_>) -> Vec<Row> {
    let mut by_player: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in ctx
        .table("player_game_summary")
        .iter()
        .filter(|r| r.s("game_date") <= ctx.day.as_str())
    {
        by_player.entry(r.s("player_lookup")).or_default().push(r);
    }
    by_player
        .into_iter()
        .map(|(player, mut games)| {
            games.sort_by(|a, b| b.s("game_date").cmp(a.s("game_date")));
            let take = |n: usize, key: &str| games.iter().take(n).map(|r| r.f(key)).collect::<Vec<_>>();
            let avg = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
            let (p5, p10) = (avg(&take(5, "points")), avg(&take(10, "points")));
            let last = games.first().map_or("", |r| r.s("game_date"));
            obj(json!({
                "cache_date": ctx.day, "player_lookup": player, "games_in_window": games.len(),
                "points_avg_last_5": round4(p5), "points_avg_last_10": round4(p10), "points_trend": round4(p5 - p10),
                "minutes_avg_last_10": round4(avg(&take(10, "minutes"))),
                "usage_rate_avg_last_10": round4(avg(&take(10, "usage_rate"))),
                "last_game_date": last, "days_since_last_game": ctx.days_ago(last),
                "processed_at": ctx.processed_at,
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::generate;

    fn run(processor: &str, inputs: &Inputs, date: Partition) -> Vec<Row> {
        compute(
            processor,
            date,
            inputs,
            "2024-01-20T12:00:00Z".parse().unwrap(),
        )
        .unwrap()
        .unwrap()
    }

    fn setup() -> (Inputs, Partition) {
        let start = Partition::parse("2024-01-01").unwrap();
        let dates = start.through(start.offset(20));
        let mut date = dates[20];
        let data = generate(3, &dates);
        // Pick the last date that has games.
        while !data["nbac_schedule"]
            .iter()
            .any(|g| g.s("game_date") == date.to_string())
        {
            date = date.offset(-1);
        }
        (data, date)
    }

    #[test]
    fn team_offense_points_are_the_sum_of_player_points() {
        let (inputs, date) = setup();
        let offense = run("team_offense_game_summary", &inputs, date);
        assert!(!offense.is_empty());
        for t in &offense {
            let players: i64 = inputs["nbac_gamebook_player_stats"]
                .iter()
                .filter(|p| {
                    p.s("game_id") == t.s("game_id") && p.s("team_abbr") == t.s("team_abbr")
                })
                .map(|p| p.i("points"))
                .sum();
            assert_eq!(t.i("points"), players);
            let b = inputs["nbac_team_boxscore"]
                .iter()
                .find(|b| b.s("game_id") == t.s("game_id") && b.s("team_abbr") == t.s("team_abbr"))
                .unwrap();
            let poss = b.f("fg_attempted") + 0.44 * b.f("ft_attempted") - b.f("offensive_rebounds")
                + b.f("turnovers");
            assert!((t.f("possessions") - poss).abs() < 1e-3);
            assert!((t.f("offensive_rating") - 100.0 * b.f("points") / poss).abs() < 1e-3);
        }
        let wins = offense.iter().filter(|t| t.b("win_flag")).count();
        assert_eq!(wins * 2, offense.len(), "one winner per game");
    }

    #[test]
    fn points_allowed_equal_the_opponents_offense_points() {
        let (inputs, date) = setup();
        let offense = run("team_offense_game_summary", &inputs, date);
        let defense = run("team_defense_game_summary", &inputs, date);
        assert_eq!(offense.len(), defense.len());
        for d in &defense {
            let opp = offense
                .iter()
                .find(|o| {
                    o.s("game_id") == d.s("game_id")
                        && o.s("team_abbr") == d.s("opponent_team_abbr")
                })
                .unwrap();
            assert_eq!(d.i("points_allowed"), opp.i("points"));
        }
    }

    #[test]
    fn player_summary_computes_true_shooting_and_needs_team_offense() {
        let (mut inputs, date) = setup();
        let err = compute("player_game_summary", date, &inputs, Timestamp::UNIX_EPOCH)
            .unwrap()
            .unwrap_err();
        assert!(err.contains("team_offense_game_summary"), "{err}");
        let offense = run("team_offense_game_summary", &inputs, date);
        inputs.insert("team_offense_game_summary".into(), offense);
        let players = run("player_game_summary", &inputs, date);
        let active = inputs["nbac_gamebook_player_stats"]
            .iter()
            .filter(|p| p.s("game_date") == date.to_string() && p.s("player_status") == "active")
            .count();
        assert_eq!(players.len(), active);
        for p in &players {
            let raw = inputs["nbac_gamebook_player_stats"]
                .iter()
                .find(|r| {
                    r.s("game_id") == p.s("game_id") && r.s("player_lookup") == p.s("player_lookup")
                })
                .unwrap();
            let den = 2.0 * (raw.f("fg_attempted") + 0.44 * raw.f("ft_attempted"));
            if den > 0.0 {
                assert!((p.f("true_shooting_pct") - raw.f("points") / den).abs() < 1e-3);
            }
            if let Some(line) = p.get("points_line").and_then(Value::as_f64) {
                let expect = if raw.f("points") > line {
                    "over"
                } else if raw.f("points") < line {
                    "under"
                } else {
                    "push"
                };
                assert_eq!(p.s("over_under_result"), expect);
            }
        }
        // Team usage adds up to about 100% per team (5 players on the floor * 20%).
        let team = players[0].s("team_abbr").to_owned();
        let game = players[0].s("game_id").to_owned();
        let weighted: f64 = players
            .iter()
            .filter(|p| p.s("team_abbr") == team && p.s("game_id") == game)
            .map(|p| p.f("usage_rate") * p.f("minutes"))
            .sum();
        let minutes: f64 = players
            .iter()
            .filter(|p| p.s("team_abbr") == team && p.s("game_id") == game)
            .map(|p| p.f("minutes"))
            .sum();
        assert!(
            (weighted / minutes * 5.0 - 100.0).abs() < 1.0,
            "usage sums to 100: {}",
            weighted / minutes * 5.0
        );
    }

    #[test]
    fn upcoming_contexts_use_history_only() {
        let (inputs, date) = setup();
        let players = run("upcoming_player_game_context", &inputs, date);
        let teams = run("upcoming_team_game_context", &inputs, date);
        let games = inputs["nbac_schedule"]
            .iter()
            .filter(|g| g.s("game_date") == date.to_string())
            .count();
        assert_eq!(teams.len(), games * 2);
        assert!(!players.is_empty());
        for p in &players {
            if let Some(rest) = p.get("days_rest").and_then(Value::as_i64) {
                assert!(rest >= 1, "history is strictly before the date");
            }
        }
    }

    #[test]
    fn a_date_without_games_produces_no_rows() {
        let (inputs, _) = setup();
        let empty = Partition::parse("2030-01-01").unwrap();
        assert!(run("team_offense_game_summary", &inputs, empty).is_empty());
        assert!(run("upcoming_team_game_context", &inputs, empty).is_empty());
    }
}
