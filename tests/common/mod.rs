//! Helpers shared by the end-to-end tests: workspaces, the real `tollgate` binary as a
//! daemon (always killed on drop) or a one-shot command, a raw HTTP/1.1 GET, a
//! Prometheus text parser and a byte-level CSV reader for rejects files.
#![allow(dead_code)]

use std::cell::RefCell;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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

// ---------------------------------------------------------------------------
// Workspaces
// ---------------------------------------------------------------------------

/// A workspace: a config file plus the directories it names (all relative to `root`).
pub struct Ws {
    pub root: PathBuf,
    pub config: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// Seller block of every hand-made config: the generator's.
pub use tollgate::demo::synth::SELLER_TOML;

/// The config of the hand-made workspace (small chunks, fast polling, any free port).
pub fn hand_config(extra_top_level: &str) -> String {
    format!(
        r#"data_dir = "data"
spool_dir = "spool"
tariff_plans = "tariffs/plans.toml"
accounts_file = "accounts.csv"
invoice_dir = "invoices"
listen = "127.0.0.1:0"
workers = 2
poll_interval_ms = 50
chunk_bytes = 4096
{extra_top_level}
[billing]
vat_rate = "21"
payment_terms_days = 14

{SELLER_TOML}"#
    )
}

/// Tariff of the hand-made workspace. Europe/Amsterdam, no bands, one plan `flat`
/// (10.00 a month) with round prices:
///
/// | prefix | destination    | service | connect | rate            | increments |
/// |--------|----------------|---------|---------|-----------------|------------|
/// | 31     | Netherlands    | voice   | 0.10    | 0.60 / 60 s     | 60 / 60    |
/// | 44     | United Kingdom | voice   | 0       | 1.20 / 60 s     | 1 / 1      |
/// | 49     | Germany        | voice   | 0       | 0.05 / 60 s     | 1 / 1      |
/// | (any)  | SMS            | sms     | 0       | 0.10 / message  | 1 / 1      |
/// | (any)  | Mobile data    | data    | 0       | 1.00 / 1 MiB    | 1024/1024  |
pub const HAND_PLANS: &str = r#"timezone = "Europe/Amsterdam"
national_prefix = "31"
currency = "EUR"

[[plan]]
id = "flat"
monthly_fee = "10.00"
deck = "deck.csv"
"#;

pub const HAND_DECK: &str = "\
prefix,destination,service,band,connect_fee,rate,per,first_increment,next_increment,valid_from
31,Netherlands,voice,any,0.10,0.60,60,60,60,
44,United Kingdom,voice,any,0,1.20,60,1,1,
49,Germany,voice,any,0,0.05,60,1,1,
,SMS,sms,any,0,0.10,1,1,1,
,Mobile data,data,any,0,1.00,1048576,1024,1024,
";

pub const HAND_ACCOUNTS: &str = "\
account_id,plan,name,street,postcode,city,country,email
A1,flat,Alice Jansen,Damrak 1,1012 LG,Amsterdam,NL,alice@example.com
A2,flat,Bob de Vries,,,,,
A3,flat,,,,,,
";

/// Header of native CDR files.
pub const CDR_HEADER: &str =
    "record_id,account_id,service,calling_number,called_number,start_time,duration_s,volume_bytes";

impl Ws {
    /// A fresh temp dir with the hand-made tariff, accounts and config.
    pub fn hand() -> Ws {
        Ws::hand_with("")
    }

    /// Like [`Ws::hand`], with extra top-level config keys.
    pub fn hand_with(extra_top_level: &str) -> Ws {
        let tmp = tempfile::Builder::new()
            .prefix("tollgate-e2e-")
            .tempdir()
            .expect("temp dir");
        let root = tmp.path().to_path_buf();
        fs::create_dir_all(root.join("tariffs")).unwrap();
        fs::write(root.join("tariffs/plans.toml"), HAND_PLANS).unwrap();
        fs::write(root.join("tariffs/deck.csv"), HAND_DECK).unwrap();
        fs::write(root.join("accounts.csv"), HAND_ACCOUNTS).unwrap();
        let config = root.join("tollgate.toml");
        fs::write(&config, hand_config(extra_top_level)).unwrap();
        Ws {
            root,
            config,
            _tmp: Some(tmp),
        }
    }

    /// A `tollgate::demo::synth` workspace in `dir` with the given extra top-level keys.
    pub fn synth(dir: &Path, spec: &tollgate::demo::synth::Spec, extra_top_level: &str) -> Ws {
        let w = tollgate::demo::synth::write_workspace(dir, spec).expect("synth workspace");
        let text = fs::read_to_string(&w.config).unwrap();
        let (top, rest) = text.split_at(text.find("[billing]").expect("config has [billing]"));
        fs::write(&w.config, format!("{top}{extra_top_level}\n{rest}")).unwrap();
        Ws {
            root: dir.to_path_buf(),
            config: w.config,
            _tmp: None,
        }
    }

    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn spool(&self, sub: &str) -> PathBuf {
        self.root.join("spool").join(sub)
    }
    pub fn inbox(&self) -> PathBuf {
        self.spool("inbox")
    }
    pub fn work(&self) -> PathBuf {
        self.spool("work")
    }
    pub fn done(&self) -> PathBuf {
        self.spool("done")
    }
    pub fn failed(&self) -> PathBuf {
        self.spool("failed")
    }
    pub fn rejects(&self, name: &str) -> PathBuf {
        self.spool("rejects").join(format!("{name}.rejects.csv"))
    }
    pub fn invoices(&self, period: &str) -> PathBuf {
        self.root.join("invoices").join(period)
    }
    pub fn config_arg(&self) -> &str {
        self.config.to_str().expect("utf-8 path")
    }

    /// Drops a file into the inbox the way mediation does: write a hidden temp file,
    /// fsync, rename it to its final name.
    pub fn drop_file(&self, name: &str, bytes: &[u8]) {
        let inbox = self.inbox();
        fs::create_dir_all(&inbox).unwrap();
        let tmp = inbox.join(format!(".{name}.tmp"));
        {
            let mut f = fs::File::create(&tmp).unwrap();
            f.write_all(bytes).unwrap();
            f.sync_all().unwrap();
        }
        fs::rename(&tmp, inbox.join(name)).unwrap();
    }

    /// Drops a copy of an existing file (same protocol as [`Ws::drop_file`]).
    pub fn drop_copy(&self, name: &str, src: &Path) {
        let inbox = self.inbox();
        fs::create_dir_all(&inbox).unwrap();
        let tmp = inbox.join(format!(".{name}.tmp"));
        fs::copy(src, &tmp).unwrap();
        fs::File::open(&tmp).unwrap().sync_all().unwrap();
        fs::rename(&tmp, inbox.join(name)).unwrap();
    }

    /// Sorted non-hidden names in a spool subdirectory (empty if it does not exist).
    pub fn names(&self, sub: &str) -> Vec<String> {
        list_names(&self.spool(sub))
    }

    /// `tollgate cycle close` for a period and issue date.
    pub fn close(&self, period: &str, issue: &str) -> Out {
        run(&[
            "cycle",
            "close",
            "--config",
            self.config_arg(),
            "--period",
            period,
            "--issue-date",
            issue,
        ])
    }

    /// `tollgate ingest` of the given files.
    pub fn ingest(&self, files: &[&Path]) -> Out {
        let mut args: Vec<String> =
            vec!["ingest".into(), "--config".into(), self.config_arg().into()];
        args.extend(files.iter().map(|p| p.to_str().unwrap().to_owned()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&refs)
    }

    /// The invoices of a period, parsed, in file-name (= number) order. Fails on any
    /// file in the directory that is not `<number>.json`, its EPC QR code `<number>.qr.svg`,
    /// its UBL `<number>.xml`, PDF `<number>.pdf` or itemised annex `<number>.annex.json`.
    pub fn read_invoices(&self, period: &str) -> Vec<serde_json::Value> {
        let dir = self.invoices(period);
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".qr.svg"))
            .filter(|n| {
                !n.strip_suffix(".xml")
                    .or_else(|| n.strip_suffix(".pdf"))
                    .or_else(|| n.strip_suffix(".annex.json"))
                    .is_some_and(|b| dir.join(format!("{b}.json")).exists())
            })
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                assert!(
                    n.ends_with(".json") && !n.starts_with('.'),
                    "unexpected file {n} in {}",
                    dir.display()
                );
                let bytes = fs::read(dir.join(n)).unwrap();
                let v: serde_json::Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{n} is not JSON: {e}"));
                assert_eq!(
                    format!("{}.json", v["number"].as_str().unwrap_or("?")),
                    *n,
                    "file name and invoice number differ"
                );
                v
            })
            .collect()
    }

    /// Raw bytes of every invoice JSON file of a period, by name (EPC QR codes
    /// `<number>.qr.svg` are derived from the JSON and left out).
    pub fn invoice_bytes(&self, period: &str) -> Vec<(String, Vec<u8>)> {
        let dir = self.invoices(period);
        let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".qr.svg"))
            })
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

pub fn list_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Builds a CDR file: the header, then each row, LF line endings.
pub fn cdr_file(rows: &[&str]) -> Vec<u8> {
    let mut s = String::from(CDR_HEADER);
    s.push('\n');
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s.into_bytes()
}

// ---------------------------------------------------------------------------
// One-shot commands
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// A raw HTTP/1.1 GET with `Connection: close`: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get_auth(addr, path, None)
}

/// GET with an optional `Authorization: Bearer` token: (status, body).
pub fn http_get_auth(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let sep = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..sep]).into_owned();
    let mut body = raw[sep + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    (status, String::from_utf8(body).expect("UTF-8 body"))
}

/// A response of [`http_request`].
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A raw HTTP/1.1 request with `Connection: close`; `headers` are sent as given.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "PUT" || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before reading the whole body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let sep = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..sep]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[sep + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_str = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_str.split(';').next().unwrap().trim(), 16)
            .expect("chunk size");
        b = &b[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

// ---------------------------------------------------------------------------
// Prometheus text
// ---------------------------------------------------------------------------

/// Label pairs of a sample, sorted.
pub type Labels = Vec<(String, String)>;

/// Samples of a Prometheus text exposition.
#[derive(Debug, Default)]
pub struct Metrics {
    pub samples: Vec<(String, Labels, f64)>,
    pub text: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name_end = line
                .find(['{', ' '])
                .unwrap_or_else(|| panic!("bad sample {line:?}"));
            let name = line[..name_end].to_owned();
            let mut rest = &line[name_end..];
            let mut labels = Vec::new();
            if rest.starts_with('{') {
                let mut chars = rest[1..].char_indices().peekable();
                let mut key = String::new();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '}' => {
                            end = Some(i + 2);
                            break;
                        }
                        ',' | ' ' => {}
                        '=' => {
                            assert_eq!(
                                chars.next().map(|x| x.1),
                                Some('"'),
                                "bad labels in {line:?}"
                            );
                            let mut val = String::new();
                            while let Some((_, c)) = chars.next() {
                                match c {
                                    '\\' => match chars.next().map(|x| x.1) {
                                        Some('n') => val.push('\n'),
                                        Some(o) => val.push(o),
                                        None => {}
                                    },
                                    '"' => break,
                                    o => val.push(o),
                                }
                            }
                            labels.push((std::mem::take(&mut key), val));
                        }
                        o => key.push(o),
                    }
                }
                rest = &rest[end.unwrap_or_else(|| panic!("unclosed labels in {line:?}"))..];
            }
            let value_str = rest
                .split_whitespace()
                .next()
                .unwrap_or_else(|| panic!("no value in {line:?}"));
            let value: f64 = match value_str {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            labels.sort();
            samples.push((name, labels, value));
        }
        Metrics {
            samples,
            text: text.to_owned(),
        }
    }

    /// The value of the sample with exactly this name and label set.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| n == name && *l == want)
            .map(|s| s.2)
            .collect();
        assert!(
            found.len() <= 1,
            "{name}{labels:?} appears {} times",
            found.len()
        );
        found.first().copied()
    }

    /// Like [`Metrics::get`], 0 when the sample is absent (a counter never incremented).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// `(value of label key, sample value)` of the non-zero samples of a metric with
    /// one label, sorted by label value (series pre-registered at 0 are left out).
    pub fn nonzero_by(&self, name: &str, key: &str) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = self
            .all(name)
            .into_iter()
            .filter(|(_, v)| *v != 0.0)
            .map(|(l, v)| {
                assert_eq!(l.len(), 1, "{name}: labels {l:?}");
                assert_eq!(l[0].0, key, "{name}: labels {l:?}");
                (l[0].1.clone(), v)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Records rated (`tollgate_records_total{outcome="rated"}`).
    pub fn rated(&self) -> Option<f64> {
        self.get("tollgate_records_total", &[("outcome", "rated")])
    }

    /// `(reason, count)` of the non-zero `tollgate_records_total{outcome="rejected"}`
    /// samples, sorted by reason.
    pub fn rejected_by_reason(&self) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = self
            .all("tollgate_records_total")
            .into_iter()
            .filter(|(l, v)| *v != 0.0 && l.iter().any(|(k, x)| k == "outcome" && x == "rejected"))
            .map(|(l, v)| {
                assert_eq!(l.len(), 2, "labels {l:?}");
                let r = l.iter().find(|(k, _)| k == "reason").expect("reason label");
                (r.1.clone(), v)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// All samples of a metric name, as (labels, value).
    pub fn all(&self, name: &str) -> Vec<(Labels, f64)> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l.clone(), *v))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Rejects files
// ---------------------------------------------------------------------------

/// Parses RFC 4180 CSV bytes into records of raw byte fields.
pub fn parse_csv(b: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let mut records = Vec::new();
    let mut rec: Vec<Vec<u8>> = Vec::new();
    let mut field = Vec::new();
    let mut i = 0;
    let mut in_quotes = false;
    let mut any = false;
    while i < b.len() {
        let c = b[i];
        any = true;
        if in_quotes {
            if c == b'"' {
                if b.get(i + 1) == Some(&b'"') {
                    field.push(b'"');
                    i += 1;
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
        } else {
            match c {
                b'"' => in_quotes = true,
                b',' => rec.push(std::mem::take(&mut field)),
                b'\r' if b.get(i + 1) == Some(&b'\n') => {}
                b'\n' => {
                    rec.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut rec));
                    any = false;
                }
                o => field.push(o),
            }
        }
        i += 1;
    }
    assert!(!in_quotes, "unterminated quoted field");
    if any {
        rec.push(field);
        records.push(rec);
    }
    records
}

/// A rejects file as (line, reason, raw record) rows; checks the header.
pub fn read_rejects(path: &Path) -> Vec<(u64, String, Vec<u8>)> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut recs = parse_csv(&bytes).into_iter();
    assert_eq!(
        recs.next().expect("rejects header"),
        vec![b"line".to_vec(), b"reason".to_vec(), b"record".to_vec()],
        "{}: header",
        path.display()
    );
    recs.map(|r| {
        assert_eq!(r.len(), 3, "{}: row {r:?}", path.display());
        (
            String::from_utf8(r[0].clone())
                .unwrap()
                .parse()
                .expect("line number"),
            String::from_utf8(r[1].clone()).expect("reason"),
            r[2].clone(),
        )
    })
    .collect()
}

/// Sums of an invoice's usage lines: (quantity, usage, amount in cents).
pub fn usage_sums(inv: &serde_json::Value) -> (u64, u64, i64) {
    let mut q = 0;
    let mut u = 0;
    let mut cents = 0;
    for l in inv["lines"].as_array().expect("lines") {
        if l["kind"] == "usage" {
            q += l["quantity"].as_u64().unwrap();
            u += l["usage"].as_u64().unwrap();
            cents += cents_of(l["amount"].as_str().unwrap());
        }
    }
    (q, u, cents)
}

/// `"12.34"` → 1234; panics unless the string has exactly two decimals.
pub fn cents_of(s: &str) -> i64 {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (i, f) = body
        .split_once('.')
        .unwrap_or_else(|| panic!("amount {s:?} has no decimals"));
    assert!(
        f.len() == 2
            && f.bytes().all(|b| b.is_ascii_digit())
            && !i.is_empty()
            && i.bytes().all(|b| b.is_ascii_digit()),
        "amount {s:?} is not D.DD"
    );
    let v = i.parse::<i64>().unwrap() * 100 + f.parse::<i64>().unwrap();
    if neg {
        -v
    } else {
        v
    }
}
