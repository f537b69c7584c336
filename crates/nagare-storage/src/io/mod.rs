//! The storage layer's narrow file-I/O interface: every write-side file operation of the log
//! (open/create, positioned write, set_len, fsync/fdatasync, rename, remove, directory fsync)
//! goes through [`StorageIo`], so tests can make a disk fail or fill up underneath a real log.
//!
//! Dispatch: the crate calls the free functions of this module with the path it operates on.
//! Production has no injector installed and takes the [`StdIo`] path after one relaxed atomic
//! load (no allocation, no lock, no virtual call). A test installs a [`StorageIo`] for a
//! directory ([`install`]); operations on paths under it go to that implementation. Keying by
//! directory lets parallel tests (each in its own temp dir) and whole in-process brokers use
//! faults without threading a handle through every constructor.
//!
//! Reads are not routed: the fetch path hands the raw file to `sendfile`, and a failing read
//! surfaces as an ordinary I/O error to the reader without changing the log.

mod faulty;

pub use faulty::{disk_fault_seed, FaultKind, FaultOp, FaultPlan, FaultyIo, InjectedFault};

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// The file operations the log performs on its write side. Every method has the `std`
/// behaviour as its default, so an implementation overrides only what it changes. `path` is
/// the file's path (for routing and for fault schedules keyed by file kind).
pub trait StorageIo: Send + Sync {
    /// Opens `path` with `opts` (create/truncate as requested).
    fn open(&self, path: &Path, opts: &OpenOptions) -> io::Result<File> {
        opts.open(path)
    }
    /// Writes all of `buf` at `offset` (`pwrite`, retried on short writes).
    fn write_at(&self, path: &Path, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        let _ = path;
        file.write_all_at(buf, offset)
    }
    /// Sets the file's length (truncate or extend).
    fn set_len(&self, path: &Path, file: &File, len: u64) -> io::Result<()> {
        let _ = path;
        file.set_len(len)
    }
    /// `fdatasync`.
    fn sync_data(&self, path: &Path, file: &File) -> io::Result<()> {
        let _ = path;
        file.sync_data()
    }
    /// `fsync`.
    fn sync_all(&self, path: &Path, file: &File) -> io::Result<()> {
        let _ = path;
        file.sync_all()
    }
    /// Renames `from` to `to` (atomic replacement on POSIX).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    /// Fsyncs a directory so that creates, renames and deletes in it are durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// The real implementation: plain `std` calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdIo;

impl StorageIo for StdIo {}

/// Installed injectors, by directory. `INSTALLED` mirrors its length so that the production
/// path (nothing installed) never touches the lock.
static INSTALLED: AtomicUsize = AtomicUsize::new(0);
type Registry = Vec<(PathBuf, Arc<dyn StorageIo>)>;
static REGISTRY: RwLock<Registry> = RwLock::new(Vec::new());

/// Keeps an injector installed; dropping it uninstalls it.
#[must_use = "the injector is uninstalled when the guard is dropped"]
pub struct IoGuard {
    root: PathBuf,
}

impl Drop for IoGuard {
    fn drop(&mut self) {
        let mut reg = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = reg.iter().position(|(p, _)| *p == self.root) {
            reg.remove(i);
            INSTALLED.fetch_sub(1, Ordering::Release);
        }
    }
}

/// Routes every storage operation on a path under `root` to `io` until the guard is dropped
/// (tests: [`FaultyIo`]; the `nagare` binary installs one from `NAGARE_DISK_FAULTS`). An
/// injector already installed for the same root is replaced.
pub fn install(root: &Path, io: Arc<dyn StorageIo>) -> IoGuard {
    let mut reg = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = reg.iter().position(|(p, _)| p == root) {
        reg[i].1 = io;
    } else {
        reg.push((root.to_path_buf(), io));
        INSTALLED.fetch_add(1, Ordering::Release);
    }
    IoGuard {
        root: root.to_path_buf(),
    }
}

#[inline]
fn with<R>(path: &Path, f: impl FnOnce(&dyn StorageIo) -> R) -> R {
    if INSTALLED.load(Ordering::Acquire) == 0 {
        return f(&StdIo);
    }
    let found = {
        let reg = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
        reg.iter()
            .find(|(root, _)| path.starts_with(root))
            .map(|(_, io)| Arc::clone(io))
    };
    match found {
        Some(io) => f(&*io),
        None => f(&StdIo),
    }
}

/// True when `e` means the filesystem is full (ENOSPC, or EDQUOT for a quota): the condition
/// the log survives (appends stop, resume when space returns) instead of going offline.
pub fn is_no_space(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.kind() == io::ErrorKind::QuotaExceeded
}

pub(crate) fn open(path: &Path, opts: &OpenOptions) -> io::Result<File> {
    with(path, |io| io.open(path, opts))
}

/// Opens for read and write, creating (and truncating) when `create`.
pub(crate) fn open_rw(path: &Path, create: bool) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(create).truncate(create);
    open(path, &opts)
}

pub(crate) fn write_at(path: &Path, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    with(path, |io| io.write_at(path, file, buf, offset))
}

pub(crate) fn set_len(path: &Path, file: &File, len: u64) -> io::Result<()> {
    with(path, |io| io.set_len(path, file, len))
}

pub(crate) fn sync_data(path: &Path, file: &File) -> io::Result<()> {
    with(path, |io| io.sync_data(path, file))
}

pub(crate) fn sync_all(path: &Path, file: &File) -> io::Result<()> {
    with(path, |io| io.sync_all(path, file))
}

/// Opens `path` read-only and fsyncs it.
pub(crate) fn sync_path(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    sync_all(path, &f)
}

pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    with(from, |io| io.rename(from, to))
}

pub(crate) fn remove_file(path: &Path) -> io::Result<()> {
    with(path, |io| io.remove_file(path))
}

/// Removes a file, a missing one being fine.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    with(dir, |io| io.sync_dir(dir))
}
