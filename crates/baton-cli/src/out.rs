//! Standard output for every command. `outln!` replaces `println!`, which panics when the
//! reader has gone: a reader that closes the pipe early (`baton health | head -1`) ends
//! the command quietly, as other Unix tools end, with the exit code of the verdict the
//! command had reached before printing (`verdict`), or 0 when it has none. Any other
//! failure to write stdout (a full disk behind a redirect) is a runtime error: exit 3.
//!
//! Standard error is best effort: `errln!` replaces `eprintln!`, and logs go through
//! [`Stderr`], so a stderr whose reader has gone (or that was closed) loses the message
//! instead of panicking the command.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

/// The exit code the command has decided on, used when its reader goes away.
static VERDICT: AtomicU8 = AtomicU8::new(0);

/// Records the command's verdict before it prints it, so a closed pipe keeps the code.
pub fn verdict(code: u8) -> u8 {
    VERDICT.store(code, Ordering::Relaxed);
    code
}

/// The verdict recorded so far (0 when none).
pub fn recorded_verdict() -> u8 {
    VERDICT.load(Ordering::Relaxed)
}

/// Writes one formatted piece of output; on a closed pipe ends the process quietly with
/// the recorded verdict, on another write error with exit 3.
pub fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                stdout.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| stdout.flush());
    if let Err(e) = written {
        end_on_write_error(&e);
    }
}

/// Ends the process for an error writing stdout (see the module doc).
pub fn end_on_write_error(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(i32::from(recorded_verdict()));
    }
    // Best effort: stderr may be gone too.
    let _ = writeln!(std::io::stderr(), "error: cannot write output: {e}");
    std::process::exit(i32::from(crate::EXIT_BACKEND));
}

/// `println!` for commands: see the module doc.
#[macro_export]
macro_rules! outln {
    () => { $crate::out::write(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*), true) };
}

/// `print!` for commands: see the module doc.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*), false) };
}

/// Standard error, best effort: a write that fails (the reader gone, the descriptor closed)
/// is dropped, so neither a message nor a log line can panic the command. The logger's
/// writer too (`tracing-subscriber` reports its own write errors with `eprintln!`, which
/// would panic on the same stderr).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Writes one line to stderr, best effort (see [`Stderr`]).
pub fn write_err(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// `eprintln!` for commands: a stderr that is gone loses the line instead of panicking.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::out::write_err(format_args!($($arg)*)) };
}
