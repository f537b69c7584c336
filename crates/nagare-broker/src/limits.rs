//! Process limits: each partition keeps its active segment open, so a broker with many
//! partitions needs many file descriptors. Like Redpanda (and as Kafka's docs ask operators to
//! do with `ulimit -n`), the server raises its soft `RLIMIT_NOFILE` to the hard limit at start.
#![expect(
    unsafe_code,
    reason = "getrlimit/setrlimit(2) have no safe std wrapper"
)]

/// Raises the soft open-files limit to the hard limit; returns the limit now in force.
pub fn raise_open_files_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; the kernel only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(raised.rlim_cur);
        }
    }
    Some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    #[test]
    fn limit_is_at_least_what_it_was() {
        let n = super::raise_open_files_limit().expect("getrlimit");
        assert!(n >= 256, "{n}");
    }
}
