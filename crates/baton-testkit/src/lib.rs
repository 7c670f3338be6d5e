//! baton-testkit: real servers for tests, started from the installed binaries.
//!
//! [`Postgres`] runs `initdb` and `postgres` in a temp dir on a free loopback port (as the
//! `postgres` user when the test runs as root, since PostgreSQL refuses root); [`Nats`] runs
//! `nats-server -js` the same way. Both can be stopped and started again on the same port
//! and data (the fault tests restart them), and are killed when dropped.
//!
//! Invariant: nothing here is a fake; a test that uses the kit talks to the real server.
//!
//! Invariant: a server never outlives the test process that started it, however that process
//! ends. Drop stops it when the test unwinds; a [`Watchdog`] (a `sh` holding a pipe from
//! the test process) stops it and removes its directory when the process ends without
//! dropping it: a panic that aborts, SIGKILL, a timeout, or a server kept in a `static`.
#![deny(missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a server could not be started.
pub type Error = String;

/// A free TCP port on the loopback interface.
pub fn free_port() -> Result<u16, Error> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Waits until a TCP connection to `port` succeeds, or `timeout` passes: a readiness probe
/// of a real server process, with a deadline.
#[allow(clippy::disallowed_methods)] // a real process starts on real time; no Clock to inject
fn wait_for_port(port: u16, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "nothing listens on 127.0.0.1:{port} after {timeout:?}"
    ))
}

/// A shell that runs a cleanup command when the test process that spawned it ends: it
/// waits on a pipe whose only writer is this process (the pipe is close-on-exec, so the
/// processes a test starts do not hold it), and the kernel closes that on any exit.
struct Watchdog {
    shell: Child,
}

impl Watchdog {
    fn spawn(cleanup: &str) -> Option<Self> {
        let script = format!("read _ignored; {cleanup}");
        let shell = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Self { shell })
    }
}

impl Drop for Watchdog {
    /// The server was stopped in the ordinary way: the watchdog goes without cleaning up.
    fn drop(&mut self) {
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

/// Quotes a path for `sh`.
fn sh_quote(path: &std::path::Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// Whether a process is alive (`kill -0`).
fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Finds a PostgreSQL server binary: Debian keeps them under `/usr/lib/postgresql/<major>/bin`
/// (newest major first), other systems on the PATH.
fn pg_bin(name: &str) -> PathBuf {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    majors.sort_by_key(|m| std::cmp::Reverse(m.0));
    let dirs = majors
        .into_iter()
        .map(|(_, dir)| dir)
        .chain(["/usr/local/bin", "/usr/bin"].map(PathBuf::from));
    for dir in dirs {
        let p = dir.join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// Whether PostgreSQL's server binaries are installed.
pub fn postgres_available() -> bool {
    pg_bin("initdb").exists() && pg_bin("pg_ctl").exists()
}

/// Whether nats-server is installed.
pub fn nats_available() -> bool {
    Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A throwaway PostgreSQL server.
pub struct Postgres {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    running: bool,
    watchdog: Option<Watchdog>,
}

impl Postgres {
    /// initdb in a temp dir and start on a free port.
    pub fn start() -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("baton-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let root = is_root();
        if root {
            // The data directory must belong to the user the server runs as.
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status();
        }
        let data = dir.path().join("data");
        let out = Self::as_pg(root, pg_bin("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mut pg = Self {
            dir,
            port: free_port()?,
            running: false,
            watchdog: None,
        };
        pg.start_again()?;
        Ok(pg)
    }

    fn as_pg(root: bool, program: PathBuf) -> Command {
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// Starts the server again on the same port and data (after [`Postgres::stop`]).
    pub fn start_again(&mut self) -> Result<(), Error> {
        let data = self.dir.path().join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        // Guarded before it starts: a start that fails half-way is stopped too.
        self.running = true;
        self.watchdog = Watchdog::spawn(&self.cleanup());
        let out = Self::as_pg(is_root(), pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-w", "start"])
            .output()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
            return Err(format!(
                "pg_ctl start failed: {}{log}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        wait_for_port(self.port, Duration::from_secs(20))
    }

    /// What the watchdog runs when the test process ends without stopping the server:
    /// `pg_ctl stop`, SIGKILL to the postmaster if it is still there, and the directory
    /// removed.
    fn cleanup(&self) -> String {
        let data = self.dir.path().join("data");
        let runuser = if is_root() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "pid=$(head -n 1 {pidfile} 2>/dev/null); {runuser}{pg_ctl} -D {data} -m immediate -w stop >/dev/null 2>&1; [ -n \"$pid\" ] && kill -9 \"$pid\" 2>/dev/null; rm -rf {dir}",
            pidfile = sh_quote(&data.join("postmaster.pid")),
            pg_ctl = sh_quote(&pg_bin("pg_ctl")),
            data = sh_quote(&data),
            dir = sh_quote(self.dir.path()),
        )
    }

    /// The postmaster's pid, from its pid file.
    fn postmaster_pid(&self) -> Option<u32> {
        let text =
            std::fs::read_to_string(self.dir.path().join("data").join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Stops the server immediately (connections are cut, as in a crash of the host); a
    /// postmaster that outlives `pg_ctl stop` is killed.
    pub fn stop(&mut self) {
        if self.running {
            let pid = self.postmaster_pid();
            let _ = Self::as_pg(is_root(), pg_bin("pg_ctl"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-m", "immediate", "-w", "stop"])
                .output();
            if let Some(pid) = pid.filter(|p| alive(*p)) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            self.running = false;
        }
        self.watchdog = None;
    }

    /// Its temp directory (data, socket, log).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// A connection URL for a database (created if missing by [`Postgres::create_database`]).
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs one SQL statement in `database` with psql and returns its unaligned output.
    pub fn query(&self, database: &str, sql: &str) -> Result<String, Error> {
        let out = Command::new(pg_bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql])
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if !out.status.success() {
            return Err(format!("{sql}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Creates a database (one per test keeps tests independent).
    pub fn create_database(&self, name: &str) -> Result<String, Error> {
        let out = Command::new(pg_bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
            ])
            .arg(format!("CREATE DATABASE \"{name}\""))
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "CREATE DATABASE {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(self.url(name))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throwaway nats-server with JetStream.
pub struct Nats {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    watchdog: Option<Watchdog>,
}

impl Nats {
    /// Starts `nats-server -js` on a free port with a temp store dir.
    pub fn start() -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("baton-nats-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let mut n = Self {
            dir,
            port: free_port()?,
            child: None,
            watchdog: None,
        };
        n.start_again()?;
        Ok(n)
    }

    /// Starts the server again on the same port and store (after [`Nats::stop`]).
    pub fn start_again(&mut self) -> Result<(), Error> {
        let log = std::fs::File::create(self.dir.path().join("log")).map_err(|e| e.to_string())?;
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path().join("store"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start nats-server: {e}"))?;
        self.watchdog = Watchdog::spawn(&format!(
            "kill -9 {} 2>/dev/null; rm -rf {}",
            child.id(),
            sh_quote(self.dir.path())
        ));
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20))
    }

    /// Kills the server (SIGKILL: a crash).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.watchdog = None;
    }

    /// Its temp directory (store, log).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A local HTTP receiver (the far end of a webhook): records the path and body of every
/// POST it answers 200; answers 500 to the first `fail_first` requests.
pub struct Receiver {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// (path, body) of every request answered 200.
    pub got: Arc<Mutex<Vec<(String, String)>>>,
}

/// Starts a [`Receiver`] on a free loopback port; it serves until the process ends.
pub fn receiver(fail_first: usize) -> Result<Receiver, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let record = got.clone();
    std::thread::spawn(move || {
        let mut seen = 0;
        for stream in listener.incoming().flatten() {
            seen += 1;
            let ok = seen > fail_first;
            if let Some((path, body)) = read_request(&stream) {
                if ok {
                    record
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((path, body));
                }
                let status = if ok {
                    "200 OK"
                } else {
                    "500 Internal Server Error"
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            }
        }
    });
    Ok(Receiver { port, got })
}

fn read_request(stream: &std::net::TcpStream) -> Option<(String, String)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let path = request_line.split_whitespace().nth(1)?.to_owned();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, String::from_utf8_lossy(&body).into_owned()))
}
