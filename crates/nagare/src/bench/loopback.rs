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
    /// Also write the JSON summary to this file (it always goes to stdout).
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// Measures loopback TCP bandwidth.
pub fn loopback(opts: LoopbackOpts) -> anyhow::Result<()> {
    anyhow::ensure!(opts.buffer > 0, "--buffer must be positive");
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let buffer = opts.buffer;
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
    let chunk = vec![0u8; opts.buffer];
    let start = Instant::now();
    let mut left = opts.bytes;
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
    anyhow::ensure!(
        got == opts.bytes,
        "sent {} bytes, received {got}",
        opts.bytes
    );
    let mbps = got as f64 / 1e6 / secs;
    eprintln!("loopback TCP, one stream: {mbps:.0} MB/s ({got} bytes in {secs:.2} s)");
    let summary = json!({
        "workload": "loopback",
        "date": super::common::utc_now(),
        "load_average": super::common::load_average(),
        "bytes": got,
        "buffer": opts.buffer,
        "elapsed_s": round3(secs),
        "mb_per_sec": round3(mbps),
    });
    let text = serde_json::to_string_pretty(&summary)?;
    println!("{text}");
    if let Some(path) = &opts.json {
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
