//! The process metrics every Prometheus client library exports (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`), read from
//! `/proc/self` on Linux; elsewhere they are left out rather than reported as zero.

/// What `/proc/self` tells of this process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
    /// Open file descriptors (sockets and segment files included).
    pub open_fds: u64,
    /// The soft limit on open file descriptors, if known.
    pub max_fds: Option<u64>,
}

/// Parses `/proc/self/stat`'s user and system times (fields 14 and 15, in clock ticks),
/// skipping the command name, which may contain spaces and parentheses.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: field 3 (state) is f[0], so field n is f[n - 3].
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Parses `VmRSS:   1234 kB` from `/proc/self/status`, in bytes.
pub fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Parses the soft `Max open files` limit from `/proc/self/limits`.
pub fn max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Reads this process's stats, or `None` where `/proc/self` is missing.
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    // USER_HZ is 100 on every Linux architecture Nagare builds for (the kernel's ABI for
    // /proc times, independent of CONFIG_HZ).
    let cpu_seconds = cpu_ticks(&stat)? as f64 / 100.0;
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Some(ProcessStats {
        cpu_seconds,
        resident_bytes: resident_bytes(&status).unwrap_or(0),
        open_fds,
        max_fds: std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| max_fds(&l)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat =
            "4242 (na ge) re) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 12345 1 2";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(
            resident_bytes("Name:\tnagare\nVmRSS:\t   2048 kB\n"),
            Some(2048 * 1024)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_fds(limits), Some(1024));
        assert!(cpu_ticks("garbage").is_none());
    }

    #[test]
    fn reads_this_process() {
        if let Some(s) = read() {
            assert!(s.resident_bytes > 0);
            assert!(s.open_fds > 0);
        }
    }
}
