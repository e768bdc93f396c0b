//! Small durable-file helpers shared by the spool, tariffs and invoices.

use std::io::Write;
use std::path::Path;

/// The content hash of a file (or of the accounts, or of a file rewritten by an
/// erasure): XXH3-128 of its bytes as 32 lowercase hex digits, as checkpoints store it.
/// Computed with twox-hash, whose AVX2 path is chosen at run time; the value is the one
/// xxhash-rust's `xxh3_128` gives (checkpoints written before compare alike: a test
/// holds the two equal).
pub fn content_hash(bytes: &[u8]) -> String {
    format!("{:032x}", twox_hash::XxHash3_128::oneshot(bytes))
}

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
    write_renamed_with(path, |f| f.write_all(bytes))
}

/// [`write_renamed`] with the content written by `write` into the temp file (for
/// content too big to build in memory first). The temp file is removed when `write`
/// fails.
pub fn write_renamed_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let (_, tmp) = temp_beside(path);
    let written = std::fs::File::create(&tmp).and_then(|mut f| write(&mut f));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
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
    /// The content hash equals xxhash-rust's XXH3-128 at every input length class
    /// (empty, 1-3, 4-8, 9-16, 17-128, 129-240, stripes, blocks and their tails), so
    /// content hashes committed before still find their files.
    #[test]
    fn content_hash_is_xxh3_128() {
        let bytes: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for n in [
            0, 1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1024, 1025, 4096, 65_537, 200_000,
        ] {
            assert_eq!(
                super::content_hash(&bytes[..n]),
                format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes[..n])),
                "{n} bytes"
            );
        }
        assert_eq!(super::content_hash(b""), "99aa06d3014798d86001c324468d497f");
    }

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
