//! External processors: a command from config that prints the partition's rows as JSON
//! Lines on stdout. A non-zero exit or a line that is not a JSON object fails the run
//! (naming the line), and then nothing is written. The lease is renewed every third of its
//! lifetime while the command runs.
//!
//! The command runs bounded (`ExternalLimits`): in its own process group, which is killed
//! on timeout, on an output limit, on lease loss and when `baton` is told to stop
//! ([`kill_running_commands`]); on Linux the command also dies with the thread that started
//! it (`PR_SET_PDEATHSIG`), so a SIGKILLed `baton run` does not leave it running. Stdout is
//! parsed as it arrives (memory bounded by the byte and row limits) and only a bounded tail
//! of stderr is kept, its control characters escaped.
//!
//! Invariant: when `run` returns, no process of the command's group is left (the group is
//! killed on every path), and a failed run returns no rows.
//! What this module does not do: write, publish or judge rows; the runner does.

use baton_core::config::ExternalLimits;
use baton_core::lease::Refusal;
use baton_core::model::{Partition, ProcessorName, Row};
use jiff::SignedDuration;
use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Renew<'a> = dyn Fn() -> Result<Result<(), Refusal>, baton_ports::Error> + Sync + 'a;

/// How often the supervising loop looks at the child, the clock and the lease.
const TICK: Duration = Duration::from_millis(50);
/// How long stdout may stay open after the command exited (a process it started still
/// holds it) before the rest of its group is killed, and again before giving up on it.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Lines of the stderr tail repeated in the error.
const STDERR_LINES: usize = 5;

/// Process groups of the commands running now, so a signal can kill them all.
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// The signal `baton` was told to stop with (0: none).
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// Kills the process group of every external command running in this process and makes
/// each of their runs fail as interrupted by `signal`; returns how many were running. For
/// `baton`'s SIGTERM/SIGINT handling.
pub fn kill_running_commands(signal: i32) -> usize {
    INTERRUPTED.store(signal, Ordering::SeqCst);
    let groups = GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
    for &group in &groups {
        kill_group(group);
    }
    groups.len()
}

fn kill_group(group: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(group) {
        // ESRCH (the group is gone already) is the expected case after a clean exit.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Why the command's run ended early.
struct Stop(String);

/// How reading stdout ended.
enum StdoutEnd {
    /// End of file: the rows, or the first line that was not a JSON object.
    Done(Result<Vec<Row>, String>),
    /// A limit was passed; reading stopped there.
    OverLimit(String),
}

/// Runs the command and parses its output; the error says what went wrong and where.
pub fn run(
    command: &[String],
    processor: &ProcessorName,
    partition: Partition,
    ttl: SignedDuration,
    limits: &ExternalLimits,
    renew: &Renew<'_>,
) -> Result<Vec<Row>, String> {
    let date = partition.to_string();
    let args: Vec<String> = command.iter().map(|a| a.replace("{date}", &date)).collect();
    let (program, rest) = args.split_first().ok_or("empty command")?;
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .env("BATON_DATE", &date)
        .env("BATON_PROCESSOR", processor.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let group = child.id() as i32;
    if let Ok(mut g) = GROUPS.lock() {
        g.insert(group);
    }
    let job = Job {
        group,
        program,
        processor,
        ttl,
        limits,
        renew,
    };
    let supervised = job.supervise(&mut child);
    // Whatever happened, nothing of the command's group outlives the run.
    kill_group(group);
    let _ = child.wait();
    if let Ok(mut g) = GROUPS.lock() {
        g.remove(&group);
    }
    supervised
}

/// A running command and what bounds it: the context [`Job::supervise`] and
/// [`Job::watch`] share.
struct Job<'a> {
    group: i32,
    program: &'a str,
    processor: &'a ProcessorName,
    ttl: SignedDuration,
    limits: &'a ExternalLimits,
    renew: &'a Renew<'a>,
}

impl Job<'_> {
    /// Watches the running command until it exited and its stdout drained, or a limit, the
    /// lease or a signal stops it.
    fn supervise(&self, child: &mut Child) -> Result<Vec<Row>, String> {
        let stdout = child.stdout.take().ok_or("invariant: stdout is piped")?;
        let stderr = child.stderr.take().ok_or("invariant: stderr is piped")?;
        let (tx, rx) = mpsc::channel();
        let bounds = *self.limits;
        // Detached, not scoped: a process outside the group may hold a pipe open forever, and
        // the run must not wait for it.
        std::thread::spawn(move || {
            let _ = tx.send(read_stdout(stdout, &bounds));
        });
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let keep = (Arc::clone(&tail), self.limits.stderr_bytes_max as usize);
        std::thread::spawn(move || read_stderr_tail(stderr, keep.1, &keep.0));
        let ended = self.watch(child, &rx);
        let tail = stderr_tail(&tail);
        match ended {
            Err(Stop(why)) => Err(with_tail(why, &tail)),
            Ok((status, _)) if !status.success() => {
                Err(format!("`{}` exited with {status}: {tail}", self.program))
            }
            Ok((_, rows)) => rows,
        }
    }

    /// The supervising loop. Real time, not the runner's clock: the child is a real process,
    /// and a test's manual clock cannot make it finish.
    #[allow(clippy::disallowed_methods)] // see above: a child process runs in real time
    fn watch(
        &self,
        child: &mut Child,
        stdout: &mpsc::Receiver<StdoutEnd>,
    ) -> Result<(ExitStatus, Result<Vec<Row>, String>), Stop> {
        let Job {
            group,
            program,
            processor,
            ttl,
            limits,
            renew,
        } = *self;
        let started = Instant::now();
        let timeout = Duration::try_from(limits.timeout).unwrap_or(Duration::MAX);
        let renew_every = Duration::try_from(ttl / 3).unwrap_or(Duration::from_secs(60));
        let mut next_renew = started + renew_every;
        let mut exited: Option<(ExitStatus, Instant)> = None;
        let mut rows: Option<Result<Vec<Row>, String>> = None;
        let mut group_killed = false;
        loop {
            match stdout.recv_timeout(TICK) {
                Ok(StdoutEnd::OverLimit(why)) => {
                    return Err(Stop(format!(
                        "processor `{processor}`: {why}; killed `{program}` and its process group"
                    )));
                }
                Ok(StdoutEnd::Done(parsed)) => rows = Some(parsed),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Stdout is done (or its reader gone): wait a tick for the exit without a
                    // sleep call, on a channel nobody sends on.
                    rows.get_or_insert_with(|| Err("stdout reader stopped".into()));
                    let (_idle_tx, idle) = mpsc::channel::<()>();
                    let _ = idle.recv_timeout(TICK);
                }
            }
            let signal = INTERRUPTED.load(Ordering::SeqCst);
            if signal != 0 {
                return Err(Stop(format!(
                    "processor `{processor}`: interrupted (baton received signal {signal}); killed `{program}` and its process group"
                )));
            }
            if exited.is_none() {
                let status = child
                    .try_wait()
                    .map_err(|e| Stop(format!("waiting for `{program}`: {e}")))?;
                exited = status.map(|s| (s, Instant::now()));
            }
            let now = Instant::now();
            // Stdout closed before the exit: keep watching (timeout, lease, signal) until it.
            match (exited, rows.take()) {
                (Some((status, _)), Some(rows)) => return Ok((status, rows)),
                (None, done) => rows = done,
                (Some((_, at)), None) if now >= at + DRAIN_GRACE && !group_killed => {
                    tracing::warn!(%processor, program, "stdout still open after the command exited; killing the rest of its process group");
                    kill_group(group);
                    group_killed = true;
                }
                (Some((_, at)), None) if now >= at + 2 * DRAIN_GRACE => {
                    return Err(Stop(format!(
                        "processor `{processor}`: stdout stayed open {}s after `{program}` exited (held by a process outside its group); its output may be incomplete",
                        (2 * DRAIN_GRACE).as_secs()
                    )));
                }
                _ => {}
            }
            if now >= started + timeout {
                return Err(Stop(timed_out(processor, program, limits)));
            }
            if now >= next_renew {
                next_renew = now + renew_every;
                match renew() {
                    Ok(Ok(())) => {}
                    Ok(Err(refusal)) => {
                        return Err(Stop(format!(
                            "processor `{processor}`: lease lost while `{program}` ran ({refusal}); killed its process group"
                        )));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lease renewal failed; retrying");
                        next_renew = now + TICK * 20;
                    }
                }
            }
        }
    }
}

fn timed_out(processor: &ProcessorName, program: &str, limits: &ExternalLimits) -> String {
    format!(
        "processor `{processor}`: timed out after {}s (timeout_secs = {}); killed `{program}` and its process group",
        limits.timeout.as_secs(),
        limits.timeout.as_secs()
    )
}

/// On Linux, the command is killed when the thread that started it dies (`baton`
/// SIGKILLed, or out of memory): a signal handler cannot run then.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec; it makes one raw `prctl`
    // system call, which is async-signal-safe (no allocation, no lock).
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// Reads stdout line by line as it arrives, parsing each as a JSON object, and stops at
/// the byte or row limit (a line longer than what is left of the byte limit is never
/// buffered whole). After a bad line it keeps reading (so the child never blocks on a full
/// pipe) but keeps no more rows.
fn read_stdout(out: impl Read, limits: &ExternalLimits) -> StdoutEnd {
    let mut reader = BufReader::new(out);
    let (mut used, mut number) = (0u64, 0usize);
    let mut rows = Vec::new();
    let mut bad: Option<String> = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        let budget = limits.stdout_bytes_max.saturating_sub(used);
        let read = match (&mut reader)
            .take(budget.saturating_add(1))
            .read_until(b'\n', &mut line)
        {
            Ok(n) => n as u64,
            Err(e) => {
                return StdoutEnd::Done(Err(format!("reading stdout line {}: {e}", number + 1)));
            }
        };
        if read == 0 {
            return StdoutEnd::Done(bad.map_or(Ok(rows), Err));
        }
        used += read;
        if used > limits.stdout_bytes_max {
            return StdoutEnd::OverLimit(format!(
                "stdout passed stdout_bytes_max ({} bytes)",
                limits.stdout_bytes_max
            ));
        }
        number += 1;
        if bad.is_some() || line.trim_ascii().is_empty() {
            continue;
        }
        match serde_json::from_slice::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(row)) => {
                if rows.len() as u64 >= limits.rows_max {
                    return StdoutEnd::OverLimit(format!(
                        "stdout passed rows_max ({} rows) at line {number}",
                        limits.rows_max
                    ));
                }
                rows.push(row);
            }
            Ok(_) => bad = Some(format!("stdout line {number}: not a JSON object")),
            Err(e) => bad = Some(format!("stdout line {number}: not JSON: {e}")),
        }
    }
}

/// Reads a command's JSON Lines output into rows under the default limits; the error
/// names the first bad line or the limit passed (public for the fuzz target
/// `fuzz/fuzz_targets/jsonl.rs`, which runs the very reader `run` uses).
pub fn parse_lines(out: impl Read) -> Result<Vec<Row>, String> {
    match read_stdout(out, &ExternalLimits::default()) {
        StdoutEnd::Done(rows) => rows,
        StdoutEnd::OverLimit(why) => Err(why),
    }
}

/// Keeps the last `max` bytes of stderr; the rest is read and dropped.
fn read_stderr_tail(mut err: impl Read, max: usize, tail: &Mutex<VecDeque<u8>>) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = err.read(&mut buf) {
        if n == 0 {
            return;
        }
        let Ok(mut t) = tail.lock() else { return };
        t.extend(&buf[..n]);
        let excess = t.len().saturating_sub(max);
        t.drain(..excess);
    }
}

/// The last lines of the kept stderr, joined with ` | `, control characters escaped (a
/// command's stderr must not forge log lines or drive the operator's terminal).
fn stderr_tail(tail: &Mutex<VecDeque<u8>>) -> String {
    let bytes: Vec<u8> = tail
        .lock()
        .map(|t| t.iter().copied().collect())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(STDERR_LINES);
    lines[start..]
        .iter()
        .map(|l| escape_controls(l))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn escape_controls(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn with_tail(why: String, tail: &str) -> String {
    if tail.is_empty() {
        why
    } else {
        format!("{why}; stderr: {tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, limits: &ExternalLimits) -> Result<Vec<Row>, String> {
        match read_stdout(text.as_bytes(), limits) {
            StdoutEnd::Done(rows) => rows,
            StdoutEnd::OverLimit(why) => Err(why),
        }
    }

    #[test]
    fn a_bad_line_is_named() {
        let d = ExternalLimits::default();
        let out = parse("{\"a\":1}\n\n[1]\n", &d).unwrap_err();
        assert_eq!(out, "stdout line 3: not a JSON object");
        let out = parse("{\"a\":1}\n{oops\n", &d).unwrap_err();
        assert!(out.starts_with("stdout line 2: not JSON"), "{out}");
        assert_eq!(parse("{\"a\":1}\n{\"a\":2}", &d).unwrap().len(), 2);
    }

    #[test]
    fn output_past_a_limit_is_refused_at_the_limit() {
        let small = ExternalLimits {
            stdout_bytes_max: 16,
            ..Default::default()
        };
        assert_eq!(parse("{\"a\":1}\n{\"a\":2}\n", &small).unwrap().len(), 2);
        let out = parse("{\"a\":1}\n{\"a\":2}\n{", &small).unwrap_err();
        assert_eq!(out, "stdout passed stdout_bytes_max (16 bytes)");
        // One endless line is cut at the limit, never buffered whole.
        let endless = std::io::repeat(b'x');
        assert!(matches!(
            read_stdout(endless, &small),
            StdoutEnd::OverLimit(_)
        ));
        let few = ExternalLimits {
            rows_max: 1,
            ..Default::default()
        };
        let out = parse("{\"a\":1}\n{\"a\":2}\n", &few).unwrap_err();
        assert_eq!(out, "stdout passed rows_max (1 rows) at line 2");
    }

    #[test]
    fn the_stderr_tail_is_bounded_and_escaped() {
        let tail = Mutex::new(VecDeque::new());
        let noise = "x".repeat(10_000) + "\nboom\x1b[2J\nforged\rline\n";
        read_stderr_tail(noise.as_bytes(), 64, &tail);
        assert_eq!(tail.lock().unwrap().len(), 64);
        let text = stderr_tail(&tail);
        assert!(text.ends_with("boom\\u{1b}[2J | forged\\rline"), "{text}");
    }
}
