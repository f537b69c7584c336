//! A fault-injecting [`StorageIo`] for tests: ENOSPC and EIO on write, fsync and rename; short
//! writes (a prefix lands, then ENOSPC) and torn writes (a prefix lands with garbage after it,
//! then EIO); slow fsyncs; a "disk full" switch; one-shot faults queued by the test; and a
//! seeded random schedule (the seed is printed; `NAGARE_DISK_FAULT_SEED` replays it).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::{StdIo, StorageIo};

/// The operation a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    /// A positioned write (segment append, index, checkpoint, snapshot).
    Write,
    /// `fsync`/`fdatasync` of a file or a directory.
    Fsync,
    /// A rename (atomic checkpoint replacement, segment deletion, cleaner swap).
    Rename,
}

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// ENOSPC; for a write, nothing lands.
    NoSpace,
    /// EIO; for a write, nothing lands.
    Eio,
    /// A write of which only a prefix lands before ENOSPC (the disk filled mid-write).
    ShortWrite,
    /// A write of which a prefix lands followed by garbage, then EIO (the device failed
    /// mid-write).
    TornWrite,
    /// The fsync succeeds after this many milliseconds.
    SlowFsync(u64),
}

/// One fault that was injected, for the test's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFault {
    /// The operation.
    pub op: FaultOp,
    /// The fault.
    pub kind: FaultKind,
    /// The file (or directory) it hit.
    pub path: PathBuf,
}

/// A random schedule: each operation draws its fault with these odds (per mille).
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    /// Seed of the schedule (and of short/torn write lengths).
    pub seed: u64,
    /// Odds of a fault on a write: ENOSPC, a short write, EIO or a torn write.
    pub write_per_mille: u32,
    /// Odds of a fault on an fsync: EIO or ENOSPC.
    pub fsync_per_mille: u32,
    /// Odds of a fault on a rename: EIO or ENOSPC.
    pub rename_per_mille: u32,
    /// Odds of a slow (but successful) fsync.
    pub slow_fsync_per_mille: u32,
    /// Only ENOSPC-type faults (short writes, ENOSPC), never EIO: the schedule a log must
    /// survive without going offline.
    pub no_space_only: bool,
}

impl FaultPlan {
    /// No random faults: only the disk-full switch and queued faults apply.
    pub fn quiet(seed: u64) -> FaultPlan {
        FaultPlan {
            seed,
            write_per_mille: 0,
            fsync_per_mille: 0,
            rename_per_mille: 0,
            slow_fsync_per_mille: 0,
            no_space_only: false,
        }
    }
}

/// The seed for a seeded disk-fault test: `NAGARE_DISK_FAULT_SEED` when set (replay), else a
/// fresh one. Printed either way, with the line that replays it.
pub fn disk_fault_seed(test: &str) -> u64 {
    let seed = std::env::var("NAGARE_DISK_FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            splitmix(nanos ^ u64::from(std::process::id()))
        });
    eprintln!("{test}: disk fault seed {seed} (replay: NAGARE_DISK_FAULT_SEED={seed})");
    seed
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct State {
    rng: u64,
    /// Per file, the length an fsync made durable (files created while the injector was
    /// installed start at 0; others at their length when first seen): what survives a
    /// simulated power loss ([`FaultyIo::power_loss`]).
    durable: std::collections::HashMap<PathBuf, u64>,
    queued: VecDeque<(FaultOp, FaultKind)>,
    injected: Vec<InjectedFault>,
}

impl State {
    fn next(&mut self) -> u64 {
        self.rng = splitmix(self.rng);
        self.rng
    }

    fn roll(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && (self.next() % 1000) < u64::from(per_mille)
    }
}

/// The fault-injecting implementation. Install it for a directory with
/// [`install`](super::install).
pub struct FaultyIo {
    plan: FaultPlan,
    random: AtomicBool,
    disk_full: AtomicBool,
    /// While this file exists, every write, fsync and rename fails with EIO (a dead device;
    /// the `nagare` binary's `NAGARE_DISK_FAULTS=eio-when:<file>`).
    trigger: Option<PathBuf>,
    state: Mutex<State>,
}

impl std::fmt::Debug for FaultyIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyIo")
            .field("plan", &self.plan)
            .finish()
    }
}

fn no_space() -> io::Error {
    io::Error::from_raw_os_error(28) // ENOSPC
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5) // EIO
}

impl FaultyIo {
    /// An injector following `plan` (random faults enabled).
    pub fn new(plan: FaultPlan) -> FaultyIo {
        FaultyIo {
            plan,
            random: AtomicBool::new(true),
            disk_full: AtomicBool::new(false),
            trigger: None,
            state: Mutex::new(State {
                rng: splitmix(plan.seed),
                durable: std::collections::HashMap::new(),
                queued: VecDeque::new(),
                injected: Vec::new(),
            }),
        }
    }

    /// An injector that fails every write, fsync and rename with EIO while `trigger` exists.
    pub fn eio_when_exists(trigger: PathBuf) -> FaultyIo {
        let mut io = FaultyIo::new(FaultPlan::quiet(0));
        io.trigger = Some(trigger);
        io
    }

    /// Parses the `nagare` binary's `NAGARE_DISK_FAULTS` value: `eio-when:<file>` (a relative
    /// `<file>` is taken relative to `base`, the log directory, so one value can serve every
    /// node of a test cluster) or
    /// `seed=<n>,write=<per mille>,fsync=<per mille>,rename=<per mille>,slow=<per mille>`.
    pub fn from_spec(spec: &str, base: &Path) -> Result<FaultyIo, String> {
        if let Some(path) = spec.strip_prefix("eio-when:") {
            return Ok(FaultyIo::eio_when_exists(base.join(path)));
        }
        let mut plan = FaultPlan::quiet(0);
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("bad disk fault spec part {part:?}"))?;
            let n: u64 = v
                .parse()
                .map_err(|e| format!("bad disk fault spec value {part:?}: {e}"))?;
            let pm = u32::try_from(n.min(1000)).unwrap_or(1000);
            match k {
                "seed" => plan.seed = n,
                "write" => plan.write_per_mille = pm,
                "fsync" => plan.fsync_per_mille = pm,
                "rename" => plan.rename_per_mille = pm,
                "slow" => plan.slow_fsync_per_mille = pm,
                _ => return Err(format!("unknown disk fault spec key {k:?}")),
            }
        }
        Ok(FaultyIo::new(plan))
    }

    /// Turns the random schedule on or off (queued faults and the disk-full switch apply
    /// either way).
    pub fn set_random(&self, on: bool) {
        self.random.store(on, Ordering::Release);
    }

    /// Makes the disk full (every write that would grow a file fails after a random prefix
    /// lands, like ENOSPC mid-`write`) or frees it.
    pub fn set_disk_full(&self, full: bool) {
        self.disk_full.store(full, Ordering::Release);
    }

    /// Whether the disk-full switch is on.
    pub fn is_disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Acquire)
    }

    /// Queues a one-shot fault for the next operation of kind `op`.
    pub fn fail_next(&self, op: FaultOp, kind: FaultKind) {
        self.state.lock().queued.push_back((op, kind));
    }

    /// Every fault injected so far.
    pub fn injected(&self) -> Vec<InjectedFault> {
        self.state.lock().injected.clone()
    }

    /// Simulates a power loss: every file written through this injector loses what was
    /// written after its last successful fsync, except a random prefix of it (a torn tail:
    /// the page cache had written some of it back). Call it with the logs closed or
    /// dropped, then reopen them.
    pub fn power_loss(&self) -> io::Result<()> {
        let mut st = self.state.lock();
        // In path order, so that a seed replays the same losses.
        let mut files: Vec<(PathBuf, u64)> =
            st.durable.iter().map(|(p, l)| (p.clone(), *l)).collect();
        files.sort();
        for (path, durable) in files {
            let Ok(f) = OpenOptions::new().write(true).open(&path) else {
                continue;
            };
            let len = f.metadata()?.len();
            if len > durable {
                let keep = durable + st.next() % (len - durable + 1);
                f.set_len(keep)?;
            }
            st.durable.insert(path, len.min(durable));
        }
        Ok(())
    }

    fn note_synced(&self, path: &Path, file: &File) {
        if let Ok(m) = file.metadata() {
            self.state
                .lock()
                .durable
                .insert(path.to_path_buf(), m.len());
        }
    }

    fn note_seen(&self, path: &Path, file: &File) {
        let mut st = self.state.lock();
        if !st.durable.contains_key(path) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            st.durable.insert(path.to_path_buf(), len);
        }
    }

    fn triggered(&self) -> bool {
        self.trigger.as_ref().is_some_and(|t| t.exists())
    }

    /// Decides the fault for one operation, if any, and records it.
    fn decide(&self, op: FaultOp, path: &Path) -> Option<(FaultKind, u64)> {
        if self.triggered() {
            return Some((FaultKind::Eio, 0));
        }
        let mut st = self.state.lock();
        let mut kind = None;
        if let Some(i) = st.queued.iter().position(|(o, _)| *o == op) {
            kind = st.queued.remove(i).map(|(_, k)| k);
        } else if self.random.load(Ordering::Acquire) {
            let p = self.plan;
            let pick = st.next();
            kind = match op {
                FaultOp::Write if st.roll(p.write_per_mille) => Some(match pick % 4 {
                    0 => FaultKind::NoSpace,
                    1 => FaultKind::ShortWrite,
                    2 if !p.no_space_only => FaultKind::Eio,
                    3 if !p.no_space_only => FaultKind::TornWrite,
                    _ => FaultKind::ShortWrite,
                }),
                FaultOp::Fsync if st.roll(p.fsync_per_mille) => {
                    Some(if p.no_space_only || pick & 1 == 0 {
                        FaultKind::SlowFsync(1 + pick % 5)
                    } else {
                        FaultKind::Eio
                    })
                }
                FaultOp::Fsync if st.roll(p.slow_fsync_per_mille) => {
                    Some(FaultKind::SlowFsync(1 + pick % 20))
                }
                FaultOp::Rename if st.roll(p.rename_per_mille) => {
                    Some(if p.no_space_only || pick & 1 == 0 {
                        FaultKind::NoSpace
                    } else {
                        FaultKind::Eio
                    })
                }
                _ => None,
            };
        }
        let kind = kind?;
        let r = st.next();
        st.injected.push(InjectedFault {
            op,
            kind,
            path: path.to_path_buf(),
        });
        Some((kind, r))
    }

    fn sync(&self, path: &Path, f: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        match self.decide(FaultOp::Fsync, path) {
            Some((FaultKind::SlowFsync(ms), _)) => {
                std::thread::sleep(Duration::from_millis(ms));
                f()
            }
            Some((FaultKind::NoSpace, _)) => Err(no_space()),
            Some(_) => Err(eio()),
            None => f(),
        }
    }
}

impl StorageIo for FaultyIo {
    fn open(&self, path: &Path, opts: &OpenOptions) -> io::Result<File> {
        let existed = path.exists();
        let f = StdIo.open(path, opts)?;
        if existed {
            self.note_seen(path, &f);
        } else {
            self.state.lock().durable.insert(path.to_path_buf(), 0);
        }
        Ok(f)
    }

    fn write_at(&self, path: &Path, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        let grows = || {
            file.metadata()
                .map(|m| offset + buf.len() as u64 > m.len())
                .unwrap_or(true)
        };
        let fault = match self.decide(FaultOp::Write, path) {
            Some(f) => Some(f),
            None if self.disk_full.load(Ordering::Acquire) && !buf.is_empty() && grows() => {
                let mut st = self.state.lock();
                st.injected.push(InjectedFault {
                    op: FaultOp::Write,
                    kind: FaultKind::ShortWrite,
                    path: path.to_path_buf(),
                });
                Some((FaultKind::ShortWrite, st.next()))
            }
            None => None,
        };
        self.note_seen(path, file);
        let Some((kind, r)) = fault else {
            return StdIo.write_at(path, file, buf, offset);
        };
        let prefix = if buf.is_empty() {
            0
        } else {
            (r % buf.len() as u64) as usize
        };
        match kind {
            FaultKind::ShortWrite => {
                file.write_all_at(&buf[..prefix], offset)?;
                Err(no_space())
            }
            FaultKind::TornWrite => {
                file.write_all_at(&buf[..prefix], offset)?;
                let garbage = vec![0xa5u8; (buf.len() - prefix).min(512)];
                file.write_all_at(&garbage, offset + prefix as u64)?;
                Err(eio())
            }
            FaultKind::NoSpace => Err(no_space()),
            FaultKind::Eio | FaultKind::SlowFsync(_) => Err(eio()),
        }
    }

    fn set_len(&self, path: &Path, file: &File, len: u64) -> io::Result<()> {
        if self.triggered() {
            return Err(eio());
        }
        if self.disk_full.load(Ordering::Acquire)
            && file.metadata().map(|m| len > m.len()).unwrap_or(true)
        {
            return Err(no_space());
        }
        StdIo.set_len(path, file, len)
    }

    fn sync_data(&self, path: &Path, file: &File) -> io::Result<()> {
        self.sync(path, || StdIo.sync_data(path, file))?;
        self.note_synced(path, file);
        Ok(())
    }

    fn sync_all(&self, path: &Path, file: &File) -> io::Result<()> {
        self.sync(path, || StdIo.sync_all(path, file))?;
        self.note_synced(path, file);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self.decide(FaultOp::Rename, from) {
            Some((FaultKind::NoSpace | FaultKind::ShortWrite, _)) => Err(no_space()),
            Some(_) => Err(eio()),
            None => {
                StdIo.rename(from, to)?;
                let mut st = self.state.lock();
                if let Some(d) = st.durable.remove(from) {
                    st.durable.insert(to.to_path_buf(), d);
                }
                Ok(())
            }
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        if self.triggered() {
            return Err(eio());
        }
        StdIo.remove_file(path)?;
        self.state.lock().durable.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.sync(dir, || StdIo.sync_dir(dir))
    }
}
