//! Small durable-file helpers shared by the spool, tariffs and invoices.

use std::io::Write;
use std::path::Path;

/// Fsyncs a directory so that renames and creations inside it are durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The directory of `path` and a hidden temp file name beside it (a dotfile, so the
/// spool watcher never picks it up).
fn temp_beside(path: &Path) -> (&Path, std::path::PathBuf) {
    // A bare file name has the parent "", which cannot be opened for the directory fsync.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (dir, dir.join(format!(".{name}.tmp-{}", std::process::id())))
}

/// Writes `bytes` to `path` atomically: a hidden temp file in the same directory,
/// fsync, rename over `path`, fsync the directory. Readers see the old or the new file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (dir, tmp) = temp_beside(path);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Writes `bytes` to `path` through a hidden temp file and a rename, without fsync:
/// readers see the old or the new file. Call [`sync_fs`] once after a batch.
pub fn write_renamed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (_, tmp) = temp_beside(path);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Flushes the whole filesystem holding `dir` (data and metadata) to stable storage.
pub fn sync_fs(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir)?;
    // SAFETY: syncfs only takes an open file descriptor, which `f` keeps alive.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Regression: `write_atomic("accounts.csv")` (a config given as a bare relative
    /// name) renamed the file, then failed to fsync the directory "".
    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        let (dir, tmp) = super::temp_beside(Path::new("accounts.csv"));
        assert_eq!(dir, Path::new("."));
        assert!(tmp.starts_with("."), "{}", tmp.display());
        let (dir, _) = super::temp_beside(Path::new("/a/b.csv"));
        assert_eq!(dir, Path::new("/a"));
    }
}
