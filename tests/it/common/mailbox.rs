//! A real SMTP server on loopback for the tests: Python `aiosmtpd` (in the venv of
//! tools/pyenv.sh) with its `Mailbox` handler, which stores every message it accepts in
//! a Maildir; messages are read back with Python's `email` package (MIME and transfer
//! encodings undone).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tools;

/// How the venv gets aiosmtpd (tools/test.sh runs it).
pub const AIOSMTPD: &str = "tools/pyenv.sh 'aiosmtpd==1.4.6'";

/// A running aiosmtpd; killed when dropped.
pub struct Mailbox {
    pub port: u16,
    pub dir: PathBuf,
    python: PathBuf,
    child: Child,
    _tmp: tempfile::TempDir,
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    /// The text body, decoded.
    pub body: String,
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Mailbox {
    /// Starts aiosmtpd on a free port, or `None` (skipped / failed by [`tools::missing`]).
    pub fn start() -> Option<Mailbox> {
        let python = tools::venv_python("aiosmtpd", AIOSMTPD)?;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("maildir");
        let port = free_port();
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "aiosmtpd did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Mailbox {
            port,
            dir,
            python,
            child,
            _tmp: tmp,
        })
    }

    /// Every message received so far, in arrival order.
    pub fn mails(&self) -> Vec<Mail> {
        if !self.dir.join("new").is_dir() {
            return Vec::new();
        }
        const READ: &str = r#"
import email, email.policy, json, mailbox, os, sys
box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
out = []
for key in box.keys():
    path = os.path.join(sys.argv[1], "new", key)
    if not os.path.exists(path):
        path = os.path.join(sys.argv[1], "cur", key + ":2,")
    with open(path, "rb") as f:
        m = email.message_from_binary_file(f, policy=email.policy.default)
    body = m.get_body(preferencelist=("plain",))
    out.append({"t": os.path.getmtime(path), "to": str(m["To"]), "subject": str(m["Subject"]),
                "body": body.get_content() if body else ""})
out.sort(key=lambda x: x["t"])
print(json.dumps(out))
"#;
        let o = Command::new(&self.python)
            .args(["-c", READ])
            .arg(&self.dir)
            .output()
            .expect("read the maildir");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| Mail {
                to: m["to"].as_str().unwrap().to_owned(),
                subject: m["subject"].as_str().unwrap().to_owned(),
                body: m["body"].as_str().unwrap().to_owned(),
            })
            .collect()
    }

    /// Waits until `n` messages arrived (20 s at most) and returns them all.
    pub fn wait_for(&self, n: usize) -> Vec<Mail> {
        let t0 = Instant::now();
        loop {
            let m = self.mails();
            if m.len() >= n {
                return m;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "waited for {n} mails, got {}: {m:?}",
                m.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
