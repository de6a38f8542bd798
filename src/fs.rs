//! Reading the small files the crate trusts (credential files, `SSL_CERT_FILE`, signing-key PEM
//! files, PostgreSQL's `sslrootcert`) without ever hanging the caller.
//!
//! [`read_regular_file`] is the one way in:
//!
//! - **Opened without blocking.** On Unix the file is opened with `O_NONBLOCK` (and
//!   `O_NOCTTY`): opening a FIFO with no writer returns at once instead of waiting for one.
//! - **Checked by its handle, before a byte is read.** `fstat` on the opened descriptor (not on
//!   the path, which could be swapped in between) must say "regular file": a FIFO, a socket, a
//!   device (`/dev/zero` never ends, a terminal waits for input) or a directory is refused.
//! - **Bounded in size.** A file longer than `max_len` is refused, whether `fstat` says so or it
//!   grows while read; at most `max_len + 1` bytes are read.
//! - **Bounded in time.** The open and the read run on a helper thread; the caller waits at
//!   most [`READ_TIMEOUT`] (a regular file on a hung network mount blocks in the kernel, where
//!   nothing can interrupt it). A thread stuck so is left behind, and at most
//!   [`MAX_STUCK_READS`] are: past that, reads fail at once until one returns.
//! - **Zeroed.** The bytes (secrets, for credential and key files) are held in a `Zeroizing`
//!   buffer; a buffer outgrown while reading is zeroed too.
//!
//! A [`FileError`] names the path and what was wrong with the file, never its content.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use zeroize::Zeroizing;

/// The longest a caller waits for one file. These files are at most a few hundred KiB on a
/// local or mounted volume, read in milliseconds; a read that takes seconds is a hung mount, and
/// failing it keeps start-up and the credential watcher moving (a watcher read runs on tokio's
/// blocking pool, so this also bounds how long dropping the runtime can wait for one).
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How many reads may be stuck past [`READ_TIMEOUT`] at once (each holds a thread blocked in the
/// kernel): past that, reads fail at once until one returns. A watcher polling a hung mount
/// would otherwise leave a thread behind at every poll.
pub(crate) const MAX_STUCK_READS: usize = 8;

/// Reads abandoned past [`READ_TIMEOUT`] whose threads have not returned yet.
static STUCK_READS: AtomicUsize = AtomicUsize::new(0);

/// A read's helper thread is still reading, and its caller waits.
const RUNNING: u8 = 0;
/// The caller stopped waiting: the read counts in [`STUCK_READS`] until it returns.
const ABANDONED: u8 = 1;
/// The read returned.
const DONE: u8 = 2;

/// Why a file could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileProblem {
    /// Opening, `fstat` or reading failed, as the operating system said.
    Io(std::io::ErrorKind),
    /// Not a regular file: a FIFO, a socket, a device or a directory.
    NotRegular,
    /// Longer than allowed.
    TooLarge {
        /// Its length in bytes (at least: reading stops one byte past the bound).
        len: u64,
    },
    /// Not read within [`READ_TIMEOUT`], or too many earlier reads are still stuck.
    TimedOut,
}

/// A file that could not be read: its path and why. Never holds any of its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileError {
    path: PathBuf,
    problem: FileProblem,
}

impl FileError {
    /// Why the file could not be read.
    pub(crate) fn problem(&self) -> FileProblem {
        self.problem
    }

    /// The nearest [`std::io::ErrorKind`], for the public errors that carry one: `InvalidInput`
    /// for a file that is not regular or too large (what those errors said before this helper),
    /// `TimedOut` for a read not finished in time.
    pub(crate) fn io_kind(&self) -> std::io::ErrorKind {
        match self.problem {
            FileProblem::Io(kind) => kind,
            FileProblem::NotRegular => std::io::ErrorKind::InvalidInput,
            FileProblem::TooLarge { .. } => std::io::ErrorKind::InvalidInput,
            FileProblem::TimedOut => std::io::ErrorKind::TimedOut,
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match self.problem {
            FileProblem::Io(kind) => write!(f, "the file {path} could not be read: {kind}"),
            FileProblem::NotRegular => write!(
                f,
                "the file {path} is not a regular file (a FIFO, socket, device or directory)"
            ),
            FileProblem::TooLarge { len } => {
                write!(f, "the file {path} is too large ({len} bytes or more)")
            }
            FileProblem::TimedOut => write!(
                f,
                "the file {path} could not be read within {} s (a hung file system?)",
                READ_TIMEOUT.as_secs()
            ),
        }
    }
}

impl std::error::Error for FileError {}

/// Reads the regular file at `path`, of at most `max_len` bytes, waiting at most
/// [`READ_TIMEOUT`] (see the [module docs](self)).
pub(crate) fn read_regular_file(
    path: &Path,
    max_len: u64,
) -> Result<Zeroizing<Vec<u8>>, FileError> {
    let error = |problem| FileError {
        path: path.to_owned(),
        problem,
    };
    if STUCK_READS.load(Ordering::Acquire) >= MAX_STUCK_READS {
        return Err(error(FileProblem::TimedOut));
    }
    let state = Arc::new(AtomicU8::new(RUNNING));
    let (tx, rx) = mpsc::sync_channel(1);
    let (owned, reader_state) = (path.to_owned(), Arc::clone(&state));
    let spawned = std::thread::Builder::new()
        .name("axra-auth-read".into())
        .spawn(move || {
            let read = read_now(&owned, max_len);
            if reader_state.swap(DONE, Ordering::AcqRel) == ABANDONED {
                STUCK_READS.fetch_sub(1, Ordering::AcqRel);
            }
            // The caller may have stopped waiting; the buffer then drops (zeroed) here.
            let _ = tx.send(read);
        })
        .map_err(|spawn| error(FileProblem::Io(spawn.kind())))?;
    drop(spawned);
    let read = match rx.recv_timeout(READ_TIMEOUT) {
        Ok(read) => read,
        Err(_) => {
            match state.compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    STUCK_READS.fetch_add(1, Ordering::AcqRel);
                    return Err(error(FileProblem::TimedOut));
                }
                // It returned just now: its answer is (or is about to be) in the channel.
                Err(_) => rx.recv().unwrap_or(Err(FileProblem::TimedOut)),
            }
        }
    };
    read.map_err(error)
}

/// The read itself, on the calling thread: open without blocking, `fstat` the handle, read at
/// most `max_len + 1` bytes.
fn read_now(path: &Path, max_len: u64) -> Result<Zeroizing<Vec<u8>>, FileProblem> {
    let io = |error: std::io::Error| FileProblem::Io(error.kind());
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // O_NONBLOCK: opening a FIFO does not wait for a writer (and has no effect on reading
        // a regular file). O_NOCTTY: a terminal named here never becomes the controlling one.
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let mut file = options.open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if !metadata.is_file() {
        return Err(FileProblem::NotRegular);
    }
    if metadata.len() > max_len {
        return Err(FileProblem::TooLarge {
            len: metadata.len(),
        });
    }
    // One byte past the size `fstat` gave, to see the end without growing the buffer.
    let limit = usize::try_from(max_len.saturating_add(1)).unwrap_or(usize::MAX);
    let first = usize::try_from(metadata.len().saturating_add(1)).unwrap_or(limit);
    let mut buffer = Zeroizing::new(vec![0u8; first.min(limit)]);
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            if filled >= limit {
                return Err(FileProblem::TooLarge { len: filled as u64 });
            }
            // The file grew while read: move to a larger zeroed buffer (the old one is
            // zeroed as it drops).
            let mut larger = Zeroizing::new(vec![0u8; filled.saturating_mul(2).max(64).min(limit)]);
            larger[..filled].copy_from_slice(&buffer[..filled]);
            buffer = larger;
        }
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(io(error)),
        }
    }
    // Truncating keeps the capacity; `Zeroizing<Vec<u8>>` zeroes all of it on drop.
    buffer.truncate(filled);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("axra-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_regular_file_within_the_bound_is_read_whole() {
        let dir = scratch("whole");
        let path = dir.join("f");
        for len in [0, 1, 63, 64, 65, 1000] {
            let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(&path, &content).unwrap();
            assert_eq!(*read_regular_file(&path, 1000).unwrap(), content, "{len}");
        }
        std::fs::write(&path, vec![b'a'; 1001]).unwrap();
        let err = read_regular_file(&path, 1000).unwrap_err();
        assert_eq!(err.problem(), FileProblem::TooLarge { len: 1001 });
        assert_eq!(err.io_kind(), std::io::ErrorKind::InvalidInput);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn special_files_are_refused_by_their_handle_and_errors_name_the_path_only() {
        let dir = scratch("special");
        let missing = dir.join("missing");
        let err = read_regular_file(&missing, 10).unwrap_err();
        assert_eq!(err.problem(), FileProblem::Io(std::io::ErrorKind::NotFound));
        assert!(
            err.to_string().contains(&*missing.to_string_lossy()),
            "{err}"
        );
        for path in [
            dir.as_path(),
            Path::new("/dev/zero"),
            Path::new("/dev/null"),
        ] {
            let err = read_regular_file(path, 10).unwrap_err();
            assert_eq!(err.problem(), FileProblem::NotRegular, "{}", path.display());
            assert_eq!(err.io_kind(), std::io::ErrorKind::InvalidInput);
        }
        #[cfg(unix)]
        {
            let fifo = dir.join("fifo");
            let status = std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap();
            assert!(status.success());
            let err = read_regular_file(&fifo, 10).unwrap_err();
            assert_eq!(err.problem(), FileProblem::NotRegular);
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        let secret = dir.join("secret");
        std::fs::write(&secret, "bs_live_zebra".repeat(10)).unwrap();
        let err = read_regular_file(&secret, 10).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("zebra"), "{err:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
