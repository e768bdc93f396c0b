//! The spool folder: `inbox/ → work/ → done/ | failed/`, plus `rejects/`.
//!
//! Mediation writes a hidden temp file and renames it into `inbox/`; dotfiles are
//! ignored. A file is claimed by renaming it into `work/`; after its commit it moves to
//! `done/`, or to `failed/` with a `<name>.error` file when it cannot be processed.
//! Every rename is followed by an fsync of the directories involved.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::fsutil::sync_dir;

/// The spool directories.
#[derive(Debug, Clone)]
pub struct Spool {
    pub root: PathBuf,
    pub inbox: PathBuf,
    pub work: PathBuf,
    pub done: PathBuf,
    pub failed: PathBuf,
    pub rejects: PathBuf,
}

/// A file waiting in a spool directory.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub name: String,
    pub size: u64,
    pub modified: SystemTime,
}

impl Spool {
    /// Creates the spool directories if needed.
    pub fn open(root: &Path) -> std::io::Result<Spool> {
        let s = Spool {
            root: root.to_owned(),
            inbox: root.join("inbox"),
            work: root.join("work"),
            done: root.join("done"),
            failed: root.join("failed"),
            rejects: root.join("rejects"),
        };
        for d in [&s.inbox, &s.work, &s.done, &s.failed, &s.rejects] {
            std::fs::create_dir_all(d)?;
        }
        Ok(s)
    }

    /// Regular, non-hidden files of a directory, oldest first (then by name).
    /// Files whose name is not UTF-8 are reported in `bad_names` instead.
    pub fn list(dir: &Path) -> std::io::Result<Vec<Waiting>> {
        Ok(Spool::list_all(dir)?.0)
    }

    /// Like [`Spool::list`], also returning the raw names that are not UTF-8.
    pub fn list_all(dir: &Path) -> std::io::Result<(Vec<Waiting>, Vec<std::ffi::OsString>)> {
        let mut out = Vec::new();
        let mut bad_names = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let raw = e.file_name();
            if raw.as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let Some(name) = raw.to_str().map(str::to_owned) else {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    bad_names.push(raw);
                }
                continue;
            };
            let Ok(md) = e.metadata() else { continue };
            if !md.is_file() {
                continue;
            }
            out.push(Waiting {
                name,
                size: md.len(),
                modified: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        out.sort_by(|a, b| {
            a.modified
                .cmp(&b.modified)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok((out, bad_names))
    }

    /// Moves an inbox file whose name is not UTF-8 to `failed/` under a readable name
    /// (invalid bytes as `%XX`), with an `.error` file. Returns the new path.
    pub fn fail_bad_name(&self, raw: &std::ffi::OsStr) -> std::io::Result<PathBuf> {
        let mut name = String::new();
        for chunk in raw.as_encoded_bytes().utf8_chunks() {
            name.push_str(chunk.valid());
            for b in chunk.invalid() {
                name.push_str(&format!("%{b:02X}"));
            }
        }
        let to = free_name(&self.failed, &name);
        let err_path = PathBuf::from(format!("{}.error", to.display()));
        crate::fsutil::write_atomic(
            &err_path,
            b"bad_file_name: the file name is not valid UTF-8; rename it and drop it again\n",
        )?;
        std::fs::rename(self.inbox.join(raw), &to)?;
        sync_dir(&self.failed)?;
        sync_dir(&self.inbox)?;
        Ok(to)
    }

    /// Claims an inbox file by renaming it into `work/`. `Ok(false)` when it is gone or
    /// a file of that name is still being worked on.
    pub fn claim(&self, name: &str) -> std::io::Result<bool> {
        let to = self.work.join(name);
        if to.exists() {
            return Ok(false);
        }
        match std::fs::rename(self.inbox.join(name), &to) {
            Ok(()) => {
                sync_dir(&self.work)?;
                sync_dir(&self.inbox)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Moves a committed file from `work/` to `done/`.
    pub fn finish(&self, name: &str) -> std::io::Result<PathBuf> {
        let to = free_name(&self.done, name);
        std::fs::rename(self.work.join(name), &to)?;
        sync_dir(&self.done)?;
        sync_dir(&self.work)?;
        Ok(to)
    }

    /// Keeps a committed file given to `ingest` (which leaves its input where it is) in
    /// `done/`, as the daemon does, so a close can re-derive its rated detail: a hard
    /// link when `done/` is on the same filesystem, else a copy (temp file + rename).
    pub fn keep_done(&self, src: &Path, name: &str) -> std::io::Result<PathBuf> {
        let to = self.done.join(name);
        if to.exists() {
            return Ok(to);
        }
        if std::fs::hard_link(src, &to).is_err() {
            let tmp = self
                .done
                .join(format!(".{name}.tmp-{}", std::process::id()));
            std::fs::copy(src, &tmp)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &to)?;
        }
        sync_dir(&self.done)?;
        Ok(to)
    }

    /// Moves a file from `work/` to `failed/` and writes `<name>.error` beside it.
    pub fn fail(&self, name: &str, reason: &str) -> std::io::Result<PathBuf> {
        let to = free_name(&self.failed, name);
        let err_path = PathBuf::from(format!("{}.error", to.display()));
        crate::fsutil::write_atomic(&err_path, format!("{reason}\n").as_bytes())?;
        std::fs::rename(self.work.join(name), &to)?;
        sync_dir(&self.failed)?;
        sync_dir(&self.work)?;
        Ok(to)
    }

    /// The rejects file of a CDR file.
    pub fn rejects_path(&self, name: &str) -> PathBuf {
        self.rejects.join(format!("{name}.rejects.csv"))
    }
}

/// `dir/name`, or `dir/name.1`, `dir/name.2` … when taken.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    if !p.exists() {
        return p;
    }
    (1..)
        .map(|i| dir.join(format!("{name}.{i}")))
        .find(|p| !p.exists())
        .expect("a free name exists")
}
