//! Nagare's fuzz targets ([`targets`]) and what they share: the server's allocator, an input
//! reader and scratch directories. `scripts/fuzz.sh` builds them all into one binary,
//! `nagare-fuzz`, choosing the target with `NAGARE_FUZZ_TARGET` (one link instead of six
//! keeps the CI step short); `fuzz_targets/<name>.rs` are the same targets as separate
//! binaries for `cargo fuzz run <name>`.

use std::path::PathBuf;
use std::sync::OnceLock;

pub mod targets;

/// The allocator every target installs: the server's own guard allocator
/// (`nagare_broker::alloc`), so a claimed length the server survives (a lazily committed
/// reservation) is not reported as a crash; libFuzzer's `-rss_limit_mb` still catches
/// memory that is really committed.
pub use nagare_broker::alloc::GuardedAlloc;

/// A reader over fuzz input that never fails: missing bytes read as zero.
pub struct Input<'a>(pub &'a [u8]);

impl<'a> Input<'a> {
    /// The next byte (0 when exhausted).
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    /// The next big-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    /// The next big-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.0.len())
    }
    /// True when nothing is left.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A fresh temporary directory for one input, on tmpfs (`/dev/shm`) when the machine has one:
/// the recovery targets write, fsync and reopen a few dozen small files per input, which on a
/// shared disk dominates their time (fsync on tmpfs returns at once). `NAGARE_FUZZ_TMPDIR`
/// chooses another place.
pub fn scratch_dir() -> tempfile::TempDir {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        if let Some(dir) = std::env::var_os("NAGARE_FUZZ_TMPDIR") {
            return PathBuf::from(dir);
        }
        let shm = PathBuf::from("/dev/shm");
        if tempfile::Builder::new().tempdir_in(&shm).is_ok() {
            shm
        } else {
            std::env::temp_dir()
        }
    });
    tempfile::Builder::new()
        .prefix("nagare-fuzz-")
        .tempdir_in(root)
        .expect("a scratch directory")
}
