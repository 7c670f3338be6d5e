//! What `--help` says beyond the flags: what baton does for the user, and an example for
//! every command (a test checks that each command's help has one).

/// The first lines of `baton --help`.
pub const ABOUT: &str = "baton makes phased batch data pipelines exact: the next phase starts \
exactly once, when every processor of a date is done, although completions arrive late, twice \
or never, processors run concurrently, and upstream data lands late or in batches. Where the \
world still goes wrong, `health` finds it and `reconcile --fix` repairs it.";

/// After the flags of `baton --help`.
pub const AFTER: &str = "Examples:
  baton demo                                  the reference pipeline end to end, judged per date
  baton serve --listen 127.0.0.1:8090         the service: orchestrator, relay, API, dashboard
  baton health && baton reconcile --fix       find and repair what went wrong

Exit codes: 0 success, 1 a check failed (demo not exact, run failed, findings), 2 bad \
usage/config/input, 3 backend error.";

pub const DEMO: &str = "Examples:
  baton demo
  baton demo --dates 30 --faults duplicate=0.3,drop=0.2,reorder=0.2,crash=0.05,pause=0.1
  baton demo --late nbac_gamebook_scraper=8h45m     the third incident: data late and in two batches";

pub const SERVE: &str = "Examples:
  baton serve --listen 127.0.0.1:8090         dashboard at http://127.0.0.1:8090/
  baton serve --until-idle                    drain what is pending, then exit (scripts, tests)
  baton --backend postgres --database-url postgres://baton@db/baton --nats-url nats://nats:4222 serve";

pub const RUN: &str = "Examples:
  baton run player_game_summary --date 2024-03-05
  baton run player_game_summary --date 2024-03-05 --wait-secs 60 --holder worker-2 --json";

pub const PUBLISH: &str = "Examples:
  baton publish completion --processor player_game_summary --date 2024-03-05 --run-id r1
  baton publish raw --job nbac_gamebook_scraper --date 2024-03-05";

pub const PUBLISH_COMPLETION: &str = "Examples:
  baton publish completion --processor player_game_summary --date 2024-03-05 --run-id r1
  baton publish completion --processor team_offense_game_summary --date 2024-03-05 --run-id r2 --status failed
  baton publish completion --payload '{\"processor_name\": \"player_game_summary\", \"game_date\": \"2024-03-05\", \"status\": \"success\", \"run_id\": \"r3\"}'";

pub const PUBLISH_RAW: &str = "Examples:
  baton publish raw --job nbac_gamebook_scraper --date 2024-03-05
  baton publish raw --job nbac_gamebook_scraper --date 2024-03-05 --at 2024-03-05T19:45:00Z";

pub const RECONCILE: &str = "Examples:
  baton reconcile                              the last 7 dates, findings only
  baton reconcile --from 2024-03-01 --to 2024-03-05 --fix
  baton reconcile --date 2024-03-05 --json";

pub const HEALTH: &str = "Examples:
  baton health                                 the last 7 dates
  baton health 2024-03-05 --verbose
  baton health --days 30 --json";

pub const STATUS: &str = "Examples:
  baton status
  baton status --date 2024-03-05               one date: entries, runs, leases, landings, owed runs
  baton status --from 2024-03-01 --to 2024-03-05 --json";

pub const INIT: &str = "Examples:
  baton init                                   writes baton.toml, the reference pipeline
  baton init --out /etc/baton/baton.toml --force";

pub const MIGRATE: &str = "Examples:
  baton migrate
  baton --backend postgres --database-url postgres://baton@db/baton migrate";

pub const GENERATE: &str = "Examples:
  baton generate --end 2024-03-05 --dates 5 --seed 7";

pub const ALERTS: &str = "Examples:
  baton alerts list
  baton alerts test --notifier slack";

pub const ALERTS_LIST: &str = "Examples:
  baton alerts list
  baton alerts list --json";

pub const ALERTS_TEST: &str = "Examples:
  baton alerts test
  baton alerts test --notifier slack";

pub const DRIFT: &str = "Examples:
  baton drift
  baton drift --expect 0.1.0 --json";

pub const BENCH: &str = "Examples:
  cargo build --release && ./target/release/baton bench --quick
  ./target/release/baton bench --backend postgres --database-url postgres://baton@db/bench --nats-url nats://127.0.0.1:4222";

pub const DEAD_LETTERS: &str = "Examples:
  baton dead-letters list
  baton dead-letters show 12
  baton dead-letters replay 12                 after fixing what made it fail
  baton dead-letters retire 13 --reason \"test message, nothing to replay\"";

pub const DEAD_LETTERS_LIST: &str = "Examples:
  baton dead-letters list
  baton dead-letters list --state all --topic phase3-completions --json
  baton dead-letters list --undated            letters whose payload names no date";

pub const DEAD_LETTERS_SHOW: &str = "Examples:
  baton dead-letters show 12
  baton dead-letters show 12 --json";

pub const DEAD_LETTERS_REPLAY: &str = "Examples:
  baton dead-letters replay 12";

pub const DEAD_LETTERS_RETIRE: &str = "Examples:
  baton dead-letters retire 13 --reason \"malformed test message\"";

pub const EXPLAIN: &str = "Examples:
  baton explain 2024-03-05                     why the date triggered, or what it waits for
  baton explain 2024-03-05 --gate phase3_to_phase4 --json";

pub const REPORT: &str = "Examples:
  baton report                                 the last 30 dates
  baton report --days 7 --json";

pub const PRUNE: &str = "Examples:
  baton prune --dry-run                        what the [retention] policy would remove
  baton prune --json
  baton prune --keep-runs 5 --older-than-days 14

Exit codes: 0 done (also when nothing was old enough), 2 bad usage or config, 3 backend error.";
