//! `nagare bench`: load generation and measurement (issue 6).
//!
//! `produce`, `consume` and `e2e` drive a broker with librdkafka (the stronger client) or, for
//! `consume --client raw`, with raw Fetch requests; `loopback` measures the machine's loopback
//! TCP bandwidth, one of the limits the figures are compared with. Each prints a progress line
//! on stderr while running and a JSON summary on stdout at the end. Latencies (produce
//! acknowledgement and end-to-end) come from HDR histograms. See `scripts/bench.sh` and
//! `BENCHMARKS.md`.

#[path = "../bench/common.rs"]
mod common;
#[path = "../bench/consume.rs"]
mod consume;
#[path = "../bench/e2e.rs"]
mod e2e;
#[path = "../bench/group.rs"]
mod group;
#[path = "../bench/loopback.rs"]
mod loopback;
#[path = "../bench/produce.rs"]
mod produce;
#[path = "../bench/raw_fetch.rs"]
mod raw_fetch;

/// Arguments of `nagare bench`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(clap::Subcommand)]
enum Workload {
    /// Produce records as fast as acknowledged (or at a target rate); reports throughput and
    /// acknowledgement latency.
    Produce {
        #[command(flatten)]
        common: common::Common,
        #[command(flatten)]
        produce: produce::ProduceOpts,
    },
    /// Read the topic from the beginning (catch-up); reports throughput.
    Consume {
        #[command(flatten)]
        common: common::Common,
        #[command(flatten)]
        consume: consume::ConsumeOpts,
    },
    /// Produce at a steady rate (default 20 MB/s for 30 s) while consuming the same records;
    /// reports acknowledgement and end-to-end latency.
    E2e {
        #[command(flatten)]
        common: common::Common,
        #[command(flatten)]
        produce: produce::ProduceOpts,
        #[command(flatten)]
        e2e: e2e::E2eOpts,
    },
    /// Measure loopback TCP bandwidth (no broker needed).
    Loopback(loopback::LoopbackOpts),
    /// Time for a group of `--members` to give every member its partitions after the last
    /// one joins, classic vs KIP-848 (`--protocol`).
    Group {
        #[command(flatten)]
        common: common::Common,
        #[command(flatten)]
        group: group::GroupOpts,
    },
}

/// Runs a benchmark.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.workload {
        Workload::Produce { common, produce } => produce::produce(common, produce).await,
        Workload::Consume { common, consume } => consume::consume(common, consume).await,
        Workload::E2e {
            common,
            produce,
            e2e,
        } => e2e::e2e(common, produce, e2e).await,
        Workload::Group { common, group } => group::group(common, group).await,
        Workload::Loopback(opts) => tokio::task::spawn_blocking(move || loopback::loopback(opts))
            .await
            .map_err(|e| anyhow::anyhow!("loopback task: {e}"))?,
    }
}
