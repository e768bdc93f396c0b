//! Workspaces: a config file plus the directories it names, the hand-made tariff
//! (tests/fixtures/hand), and dropping files into the spool the way mediation does.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::daemon::{run, Out};

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

/// Tariff of the hand-made workspace (tests/fixtures/hand). Europe/Amsterdam, no bands, one plan `flat`
/// (10.00 a month) with round prices:
///
/// | prefix | destination    | service | connect | rate            | increments |
/// |--------|----------------|---------|---------|-----------------|------------|
/// | 31     | Netherlands    | voice   | 0.10    | 0.60 / 60 s     | 60 / 60    |
/// | 44     | United Kingdom | voice   | 0       | 1.20 / 60 s     | 1 / 1      |
/// | 49     | Germany        | voice   | 0       | 0.05 / 60 s     | 1 / 1      |
/// | (any)  | SMS            | sms     | 0       | 0.10 / message  | 1 / 1      |
/// | (any)  | Mobile data    | data    | 0       | 1.00 / 1 MiB    | 1024/1024  |
pub const HAND_PLANS: &str = include_str!("../../fixtures/hand/plans.toml");

/// The deck of [`HAND_PLANS`] (`tariffs/deck.csv`).
pub const HAND_DECK: &str = include_str!("../../fixtures/hand/deck.csv");

/// The accounts of the hand-made workspace: A1 with a full address, A2 with a name, A3 bare.
pub const HAND_ACCOUNTS: &str = include_str!("../../fixtures/hand/accounts.csv");

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

    /// The workspace at `root` (config `root/tollgate.toml`), e.g. one moved there;
    /// nothing is removed when it is dropped.
    pub fn at(root: &Path) -> Ws {
        Ws {
            root: root.to_path_buf(),
            config: root.join("tollgate.toml"),
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

    /// `tollgate token add NAME --role ROLE`: the token it printed.
    pub fn add_token(&self, name: &str, role: &str) -> String {
        crate::common::run(&[
            "token",
            "add",
            name,
            "--role",
            role,
            "--config",
            self.config_arg(),
        ])
        .ok()
        .stdout
        .trim()
        .to_owned()
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
