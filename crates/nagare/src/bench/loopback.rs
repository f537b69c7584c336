//! `nagare bench loopback`: the machine's loopback TCP bandwidth, one stream, blocking
//! `write`/`read` of 1 MiB buffers (the limit a consumer on the same machine can reach).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;

use super::common::round3;

/// Options of `nagare bench loopback`.
#[derive(clap::Args, Clone, Debug)]
pub struct LoopbackOpts {
    /// Bytes to send (default 4 GiB).
    #[arg(long, default_value_t = 4 << 30)]
    pub bytes: u64,
    /// Bytes per write and read call.
    #[arg(long, default_value_t = 1 << 20)]
    pub buffer: usize,
    /// Measure this many times and report the best (the limit), with every run listed.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Also write the JSON summary to this file (it always goes to stdout).
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// Measures loopback TCP bandwidth `repeat` times; reports the best.
pub fn loopback(opts: LoopbackOpts) -> anyhow::Result<()> {
    anyhow::ensure!(opts.buffer > 0, "--buffer must be positive");
    let mut runs = Vec::new();
    for _ in 0..opts.repeat.max(1) {
        let secs = one_stream(opts.bytes, opts.buffer)?;
        let mbps = opts.bytes as f64 / 1e6 / secs;
        eprintln!(
            "loopback TCP, one stream: {mbps:.0} MB/s ({} bytes in {secs:.2} s)",
            opts.bytes
        );
        runs.push(round3(mbps));
    }
    let best = runs.iter().copied().fold(0.0, f64::max);
    let summary = json!({
        "workload": "loopback",
        "date": super::common::utc_now(),
        "load_average": super::common::load_average(),
        "bytes": opts.bytes,
        "buffer": opts.buffer,
        "runs_mb_per_sec": runs,
        "mb_per_sec": best,
    });
    let text = serde_json::to_string_pretty(&summary)?;
    println!("{text}");
    if let Some(path) = &opts.json {
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Sends `bytes` over one loopback connection; returns the seconds it took.
fn one_stream(bytes: u64, buffer: usize) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sink = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut conn, _) = listener.accept()?;
        let mut buf = vec![0u8; buffer];
        let mut got = 0u64;
        loop {
            match conn.read(&mut buf)? {
                0 => return Ok(got),
                n => got += n as u64,
            }
        }
    });
    let mut stream = TcpStream::connect(addr).context("connecting over loopback")?;
    let chunk = vec![0u8; buffer];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    drop(stream);
    let got = sink
        .join()
        .map_err(|_| anyhow::anyhow!("the receiving thread panicked"))??;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(got == bytes, "sent {bytes} bytes, received {got}");
    Ok(secs)
}
