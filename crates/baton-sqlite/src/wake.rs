//! The embedded backend's wake signal ([`baton_ports::Wake`]). Work committed through this
//! backend in this process raises its [`Signal`] directly. Work committed by another
//! process (`baton publish`, a `baton run` worker) is seen through an inotify watch on the
//! database's directory (a commit appends to the `-wal` file), confirmed with `PRAGMA
//! data_version`, which changes only when another connection committed: this process's own
//! commits touch the file too, and must not wake it.
//!
//! Idle, nothing runs: the watch thread blocks in `read` and the waiter on a condition
//! variable. Where inotify is missing (not Linux, or no watch left), the wait checks
//! `PRAGMA data_version` every [`POLL_WITHOUT_WATCH`] instead, so another process's work is
//! still seen promptly (at the cost of a cheap read ten times a second).

use baton_ports::wake::{LOCAL, Signal, Source};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// How often a wait without a file watch checks `PRAGMA data_version` for another
/// process's commit.
pub(crate) const POLL_WITHOUT_WATCH: std::time::Duration = std::time::Duration::from_millis(100);

/// Raised by the watch thread: the database's files changed.
pub(crate) const FILE: Source = 2;

/// The backend's signal and its file watch, started at the first wait.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    pub(crate) signal: Arc<Signal>,
    /// The database file, when it is one (in-memory databases have no other writer).
    path: Option<PathBuf>,
    started: OnceLock<bool>,
    /// `PRAGMA data_version` at the last check.
    seen_version: Mutex<Option<i64>>,
}

impl Watch {
    /// The watch of the database at `path` (`None`: in memory).
    pub(crate) fn new(path: Option<&Path>) -> Self {
        Self {
            path: path.map(Path::to_path_buf),
            ..Self::default()
        }
    }

    /// Work was committed in this process.
    pub(crate) fn raise(&self) {
        self.signal.raise(LOCAL);
    }

    /// Starts the watch thread once; whether another process's commits can wake a wait.
    pub(crate) fn ensure_started(&self) -> bool {
        *self.started.get_or_init(|| match &self.path {
            Some(path) => start(path, Arc::downgrade(&self.signal)),
            None => false,
        })
    }

    /// Whether the database is a file another process may write (not in memory).
    pub(crate) fn is_file(&self) -> bool {
        self.path.is_some()
    }

    /// Whether a `PRAGMA data_version` was recorded to compare with.
    pub(crate) fn has_baseline(&self) -> bool {
        self.seen_version
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Whether `version` (the connection's `PRAGMA data_version`) differs from the last
    /// one seen: another connection committed in between. The first check only records it.
    pub(crate) fn changed(&self, version: i64) -> bool {
        let mut seen = self.seen_version.lock().unwrap_or_else(|e| e.into_inner());
        let changed = seen.is_some_and(|v| v != version);
        *seen = Some(version);
        changed
    }
}

/// Starts a thread that raises [`FILE`] whenever the database file or its `-wal` changes;
/// it ends when the signal is dropped (at its next event) or its directory goes away.
#[cfg(target_os = "linux")]
fn start(path: &Path, signal: std::sync::Weak<Signal>) -> bool {
    use rustix::fs::inotify;
    let Some(name) = path.file_name().map(|n| n.to_os_string()) else {
        return false;
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut wal = name.clone();
    wal.push("-wal");
    let watched = move |file: &std::ffi::CStr| {
        let file = std::ffi::OsStr::new(&*file.to_string_lossy()).to_os_string();
        file == name || file == wal
    };
    let fd = match inotify::init(inotify::CreateFlags::CLOEXEC) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "no inotify: other processes' commits are polled for");
            return false;
        }
    };
    let flags = inotify::WatchFlags::MODIFY | inotify::WatchFlags::MOVED_TO;
    if let Err(e) = inotify::add_watch(&fd, &dir, flags) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the database's directory: other processes' commits are polled for");
        return false;
    }
    let spawned = std::thread::Builder::new()
        .name("baton-sqlite-watch".into())
        .spawn(move || {
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
            let mut reader = inotify::Reader::new(&fd, &mut buf);
            loop {
                let Ok(event) = reader.next() else { return };
                let Some(signal) = signal.upgrade() else {
                    return;
                };
                if event.file_name().is_some_and(&watched) {
                    signal.raise(FILE);
                }
            }
        });
    spawned.is_ok()
}

#[cfg(not(target_os = "linux"))]
fn start(_path: &Path, _signal: std::sync::Weak<Signal>) -> bool {
    false
}
