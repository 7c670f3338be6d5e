//! SIGTERM and SIGINT for `baton run` and `baton serve`: the external commands their runs
//! started are killed with their process groups, so stopping `baton` never orphans one.
//!
//! `run`: a run with a command running fails as interrupted (recorded, lease released) and
//! the command exits 1 as for any failed run; with none running, or on a second signal, it
//! exits at once with 128 + the signal (its lease then expires and the run is marked
//! abandoned). `serve`: kills the groups and raises its stop flag, so it ends its round
//! and writes a last heartbeat saying it stopped (exit 0); `serve --until-idle`, and any
//! second signal, exit at once with 128 + the signal.

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a stop signal does once the commands' groups are killed.
#[derive(Debug, Clone)]
pub enum OnStop {
    /// Let the interrupted run fail and record itself (`baton run`).
    FinishTheRun,
    /// Raise the flag the service loop checks between rounds (`baton serve`).
    StopAfterRound(Arc<AtomicBool>),
    /// Exit at once (`baton serve --until-idle`).
    Exit,
}

/// Installs the handler (a thread waiting for the signals).
pub fn kill_commands_on_stop(on_stop: OnStop) -> anyhow::Result<()> {
    let mut signals =
        Signals::new([SIGTERM, SIGINT]).context("cannot install the SIGTERM/SIGINT handler")?;
    std::thread::spawn(move || {
        let mut seen = 0;
        for signal in signals.forever() {
            seen += 1;
            let running = baton_runner::kill_running_commands(signal);
            let exit_now = match &on_stop {
                OnStop::FinishTheRun => running == 0,
                OnStop::StopAfterRound(stop) => {
                    stop.store(true, Ordering::Relaxed);
                    false
                }
                OnStop::Exit => true,
            };
            if exit_now || seen > 1 {
                std::process::exit(128 + signal);
            }
            if running == 0 {
                continue;
            }
            tracing::warn!(
                signal,
                running,
                "stopping: killed the external command's process group; the run fails and releases its lease"
            );
        }
    });
    Ok(())
}
