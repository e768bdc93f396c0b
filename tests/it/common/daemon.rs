//! The real `tollgate` binary: one-shot commands and the daemon (always killed on drop).

use std::cell::RefCell;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::http::http_get;
use super::metrics::Metrics;
use super::workspace::Ws;

/// How long any wait may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// How often waits poll.
pub const POLL: Duration = Duration::from_millis(20);

/// The binary under test: `$TOLLGATE_BIN`, else the one cargo built for this crate.
pub fn bin() -> PathBuf {
    match std::env::var_os("TOLLGATE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_tollgate")),
    }
}

/// A finished command.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    /// Panics with the whole output unless the exit code is 0.
    pub fn ok(self) -> Out {
        assert_eq!(self.code(), Some(0), "command failed: {self:#?}");
        self
    }
}

/// Runs `tollgate args…` to completion (killed after [`TIMEOUT`]).
pub fn run(args: &[&str]) -> Out {
    run_env(args, &[])
}

/// Like [`run`], with extra environment variables (`TOLLGATE_TOKEN` is removed unless given).
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    let mut cmd = Command::new(bin());
    cmd.env_remove("TOLLGATE_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin().display()));
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > TIMEOUT * 2 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tollgate {args:?} did not finish in {:?}", TIMEOUT * 2);
        }
        std::thread::sleep(POLL);
    };
    let read = |f: &mut fs::File| {
        let mut s = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut s).unwrap();
        String::from_utf8_lossy(&s).into_owned()
    };
    Out {
        status,
        stdout: read(&mut out),
        stderr: read(&mut err),
    }
}

/// A running `tollgate run`. Killed (SIGKILL) on drop unless stopped before.
pub struct Daemon {
    child: RefCell<Option<Child>>,
    pub pid: i32,
    pub addr: SocketAddr,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Daemon {
    /// Starts `tollgate run --config …` on a workspace and waits until `listen.addr`
    /// names its address. Logs go to `<root>/daemon-<n>.{out,err}`.
    pub fn start(ws: &Ws) -> Daemon {
        Daemon::start_with(ws, &[])
    }

    /// Like [`Daemon::start`], with extra arguments after `run --config …` (e.g. `--log-format json`).
    pub fn start_with(ws: &Ws, extra: &[&str]) -> Daemon {
        let addr_file = ws.data().join("listen.addr");
        // A daemon killed with SIGKILL leaves its address file behind.
        let _ = fs::remove_file(&addr_file);
        let n = (0..)
            .find(|i| !ws.root.join(format!("daemon-{i}.err")).exists())
            .unwrap();
        let stdout_path = ws.root.join(format!("daemon-{n}.out"));
        let stderr_path = ws.root.join(format!("daemon-{n}.err"));
        let child = Command::new(bin())
            .args(["run", "--config", ws.config_arg()])
            .args(extra)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).unwrap())
            .stderr(fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin().display()));
        let pid = child.id() as i32;
        let mut d = Daemon {
            child: RefCell::new(Some(child)),
            pid,
            addr: "0.0.0.0:0".parse().unwrap(),
            stdout_path,
            stderr_path,
        };
        let addr = d.wait_for("listen.addr", || {
            let s = fs::read_to_string(&addr_file).ok()?;
            let line = s.strip_suffix('\n')?;
            line.parse::<SocketAddr>().ok()
        });
        d.addr = addr;
        d
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Polls `f` until it returns `Some`, failing after [`TIMEOUT`] or when the daemon
    /// exits; the panic message carries the daemon's log.
    pub fn wait_for<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let t0 = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            let exited = match self.child.borrow_mut().as_mut() {
                Some(c) => c.try_wait().unwrap(),
                None => None,
            };
            if let Some(status) = exited {
                *self.child.borrow_mut() = None;
                panic!(
                    "daemon exited ({status}) while waiting for {what}; log:\n{}",
                    self.log()
                );
            }
            if t0.elapsed() > TIMEOUT {
                panic!(
                    "timed out after {TIMEOUT:?} waiting for {what}; daemon log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until `cond` holds.
    pub fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        self.wait_for(what, || cond().then_some(()))
    }

    /// Is the process still running?
    pub fn alive(&self) -> bool {
        match self.child.borrow_mut().as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// GET `path` on the daemon's HTTP endpoint: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }

    /// A scrape of `/metrics`, parsed.
    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        Metrics::parse(&body)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(self) -> ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `signal` and waits for the exit status.
    pub fn stop_with(self, signal: i32) -> ExitStatus {
        let mut child = self.child.borrow_mut().take().expect("daemon running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid, signal) };
        let t0 = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if t0.elapsed() > TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "daemon ignored SIGTERM for {TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL, as a crash would; waits until the process is gone.
    pub fn kill9(self) {
        let mut child = self.child.borrow_mut().take().expect("daemon running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.get_mut().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
