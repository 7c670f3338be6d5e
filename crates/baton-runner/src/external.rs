//! External processors: a command from config that prints the partition's rows as JSON
//! Lines on stdout. A non-zero exit or a line that is not a JSON object fails the run
//! (naming the line), and then nothing is written. The lease is renewed every third of its
//! lifetime while the command runs.

use baton_core::lease::Refusal;
use baton_core::model::{Partition, ProcessorName, Row};
use jiff::SignedDuration;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;

type Renew<'a> = dyn Fn() -> Result<Result<(), Refusal>, baton_ports::Error> + Sync + 'a;

/// Runs the command and parses its output; the error says what went wrong and where.
pub fn run(
    command: &[String],
    processor: &ProcessorName,
    partition: Partition,
    ttl: SignedDuration,
    renew: &Renew<'_>,
) -> Result<Vec<Row>, String> {
    let date = partition.to_string();
    let args: Vec<String> = command.iter().map(|a| a.replace("{date}", &date)).collect();
    let (program, rest) = args.split_first().ok_or("empty command")?;
    let mut child = Command::new(program)
        .args(rest)
        .env("BATON_DATE", &date)
        .env("BATON_PROCESSOR", processor.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let stdout = child.stdout.take().ok_or("invariant: stdout is piped")?;
    let mut stderr = child.stderr.take().ok_or("invariant: stderr is piped")?;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let interval =
        std::time::Duration::try_from(ttl / 3).unwrap_or(std::time::Duration::from_secs(60));
    std::thread::scope(|scope| {
        scope.spawn(move || {
            // Renew until the command is done; recv_timeout is the renewal timer.
            while let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(interval) {
                match renew() {
                    Ok(Ok(())) => {}
                    Ok(Err(refusal)) => {
                        tracing::warn!(%refusal, "lease lost while the external processor runs; its write will be fenced");
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
                }
            }
        });
        let stderr_reader = scope.spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let parsed = parse_lines(BufReader::new(stdout));
        let status = child.wait();
        let _ = done_tx.send(());
        let stderr_text = stderr_reader.join().unwrap_or_default();
        let status = status.map_err(|e| format!("waiting for `{program}`: {e}"))?;
        if !status.success() {
            let tail: String = stderr_text
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join(" | ");
            return Err(format!("`{program}` exited with {status}: {tail}"));
        }
        parsed
    })
}

/// Reads a command's JSON Lines output into rows; the error names the first bad line (public
/// for the fuzz target `fuzz/fuzz_targets/jsonl.rs`).
pub fn parse_lines(reader: impl BufRead) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let mut first_error = None;
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("reading stdout line {}: {e}", i + 1))?;
        if line.trim().is_empty() || first_error.is_some() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(row)) => rows.push(row),
            Ok(_) => first_error = Some(format!("stdout line {}: not a JSON object", i + 1)),
            Err(e) => first_error = Some(format!("stdout line {}: not JSON: {e}", i + 1)),
        }
    }
    // Drain the whole output before failing so the child never blocks on a full pipe.
    match first_error {
        Some(e) => Err(e),
        None => Ok(rows),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_is_named() {
        let out = parse_lines("{\"a\":1}\n\n[1]\n".as_bytes()).unwrap_err();
        assert_eq!(out, "stdout line 3: not a JSON object");
        let out = parse_lines("{\"a\":1}\n{oops\n".as_bytes()).unwrap_err();
        assert!(out.starts_with("stdout line 2: not JSON"), "{out}");
        assert_eq!(
            parse_lines("{\"a\":1}\n{\"a\":2}\n".as_bytes())
                .unwrap()
                .len(),
            2
        );
    }
}
