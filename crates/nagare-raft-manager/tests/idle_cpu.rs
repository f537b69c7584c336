//! An idle quorum costs (almost) no CPU: no busy loops in the driver or the peer tasks.
//! Alone in its own test binary, so that other tests' work does not count.

mod common;

use std::time::Duration;

use common::{Cluster, Timing};

fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 14th field
    // overall, stime the 15th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0);
    let stime: u64 = f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    utime + stime
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_single_voter_and_three_voters_use_little_cpu() {
    if !std::path::Path::new("/proc/self/stat").exists() {
        return;
    }
    let mut one = Cluster::new(1, 0, Timing::default()).await;
    one.start_all(&[1]);
    let mut three = Cluster::new(3, 0, Timing::default()).await;
    three.start_all(&[1, 2, 3]);
    three.wait_leader(Duration::from_secs(15)).await;
    one.wait_leader(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_ticks();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks() - before;
    // Clock ticks are 1/100 s: 4 nodes idling for 2 s should use well under 0.5 s.
    println!("4 idle nodes used {used} clock ticks of CPU in 2 s");
    assert!(used < 50, "{used} ticks");
}
