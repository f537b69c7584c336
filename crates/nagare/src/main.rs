//! `nagare`: the Kafka-compatible broker and its command-line tools in one binary.

mod cli;
mod tools;

/// Keeps absurd array lengths in requests from aborting the process (see `nagare_broker::alloc`).
#[global_allocator]
static ALLOCATOR: nagare_broker::alloc::GuardedAlloc = nagare_broker::alloc::GuardedAlloc;

use clap::{Parser, Subcommand};

/// Nagare: Apache Kafka rebuilt in Rust.
#[derive(Parser)]
#[command(name = "nagare", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a node (single-node controller+broker by default).
    Server(cli::server::Args),
    /// Create, list, describe, alter and delete topics.
    Topic(cli::topic::Args),
    /// Produce lines from stdin to a topic.
    Produce(cli::produce::Args),
    /// Consume records from a topic and print them.
    Consume(cli::consume::Args),
    /// Measure produce, consume and end-to-end throughput and latency.
    Bench(cli::bench::Args),
    /// List, describe (with lag), delete consumer groups and reset their offsets.
    Group(cli::group::Args),
    /// Format log directories (`format`) and make cluster ids (`random-uuid`).
    Storage(cli::storage::Args),
    /// Describe the KRaft metadata quorum (leader, epoch, replicas' progress).
    Quorum(cli::quorum::Args),
    /// Client quotas: set, describe, delete (like kafka-configs for users, clients, ips).
    Quota(cli::quota::Args),
    /// Describe the cluster: brokers, their state and racks.
    Cluster(cli::cluster::Args),
    /// List and describe transactions, describe producers, find and abort hanging ones.
    Transactions(cli::transactions::Args),
    /// Add, list and remove ACLs (like kafka-acls).
    Acl(cli::acl::Args),
    /// Manage users' SCRAM credentials (set, describe, delete).
    User(cli::user::Args),
    /// Tiered storage (KIP-405): list a topic's remote segments.
    Tiered(cli::tiered::Args),
    /// Kafka's command-line tools (`kafka-topics.sh`, ...): `install DIR` links them here.
    Tools(tools::Args),
}

fn main() -> std::process::ExitCode {
    // Started as one of Kafka's tools (a link made by `nagare tools install`)?
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let tool = argv.first().and_then(|a| tools::tool_for(a));
    let tool_args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let cli = match tool {
        None => Cli::parse(),
        Some(tool) => match tools::nagare_argv(tool, &tool_args) {
            Some(Ok(nagare_args)) => match Cli::try_parse_from(nagare_args) {
                Ok(cli) => cli,
                // Kafka's tools exit 1 on a usage error (clap: 2); help exits 0.
                Err(e) => {
                    let _ = e.print();
                    return if e.use_stderr() {
                        std::process::ExitCode::FAILURE
                    } else {
                        std::process::ExitCode::SUCCESS
                    };
                }
            },
            Some(Err(e)) => {
                eprintln!("{e}");
                return std::process::ExitCode::FAILURE;
            }
            None => {
                return match tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(tools::run(tool, tool_args)),
                    Err(e) => {
                        eprintln!("error: cannot start the async runtime: {e}");
                        std::process::ExitCode::FAILURE
                    }
                };
            }
        },
    };
    if let Command::Tools(args) = cli.command {
        return match tools::run_install(args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => cli::server::run(args).await,
            Command::Topic(args) => cli::topic::run(args).await,
            Command::Produce(args) => cli::produce::run(args).await,
            Command::Consume(args) => cli::consume::run(args).await,
            Command::Bench(args) => cli::bench::run(args).await,
            Command::Group(args) => cli::group::run(args).await,
            Command::Storage(args) => cli::storage::run(args).await,
            Command::Quorum(args) => cli::quorum::run(args).await,
            Command::Quota(args) => cli::quota::run(args).await,
            Command::Cluster(args) => cli::cluster::run(args).await,
            Command::Transactions(args) => cli::transactions::run(args).await,
            Command::Acl(args) => cli::acl::run(args).await,
            Command::User(args) => cli::user::run(args).await,
            Command::Tiered(args) => cli::tiered::run(args).await,
            // Handled before the runtime starts.
            Command::Tools(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's consistency checks over every subcommand (e.g. two arguments with one name, as
    /// a shared option flattened next to a command's own would give), which otherwise only
    /// fail when that subcommand runs.
    #[test]
    fn every_subcommand_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
