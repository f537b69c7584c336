//! Kafka's command-line tools, argument-compatible (issue 17): `nagare tools install DIR`
//! links `kafka-topics.sh`, `kafka-configs.sh`, … to the `nagare` binary, which dispatches on
//! the program name it was started as (busybox-style) to an implementation taking Kafka 4.x's
//! own options and printing Kafka's output formats, so scripts and runbooks written for
//! Kafka run unchanged. Each tool builds on the `nagare` subcommands' client code
//! (`crate::cli`) and `nagare-client`; a Kafka option a tool does not implement is an error
//! naming it, exit code 1 as Kafka's tools.

use std::ffi::OsStr;
use std::path::Path;
use std::process::ExitCode;

pub mod acls;
pub mod configs;
pub mod console;
pub mod groups;
pub mod offsets;
pub mod opts;
pub mod simple;
pub mod topics;

use opts::{Kind, Parsed, Spec, UsageError};

/// Every tool `nagare tools install` links, by Kafka's script name.
pub const TOOLS: &[&str] = &[
    "kafka-topics.sh",
    "kafka-configs.sh",
    "kafka-consumer-groups.sh",
    "kafka-console-producer.sh",
    "kafka-console-consumer.sh",
    "kafka-acls.sh",
    "kafka-transactions.sh",
    "kafka-leader-election.sh",
    "kafka-metadata-quorum.sh",
    "kafka-storage.sh",
    "kafka-get-offsets.sh",
    "kafka-delete-records.sh",
    "kafka-log-dirs.sh",
];

/// The tool a program name (argv[0]) names: `kafka-topics.sh`, or `kafka-topics` as
/// Confluent's packages spell it; any directory in front is ignored.
pub fn tool_for(argv0: &OsStr) -> Option<&'static str> {
    let name = Path::new(argv0).file_name()?.to_str()?;
    let base = name.strip_suffix(".sh").unwrap_or(name);
    TOOLS
        .iter()
        .copied()
        .find(|t| t.strip_suffix(".sh") == Some(base))
}

/// Arguments of `nagare tools`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Link Kafka's tool scripts (`kafka-topics.sh`, …) in DIR to this binary.
    Install {
        /// Directory to put the links in (created if missing).
        dir: std::path::PathBuf,
        /// Replace existing files of the same names.
        #[arg(long)]
        force: bool,
    },
    /// List the tools and exit.
    List,
}

/// Runs `nagare tools`.
pub fn run_install(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::List => {
            for t in TOOLS {
                println!("{t}");
            }
            Ok(())
        }
        Command::Install { dir, force } => {
            let exe = std::env::current_exe()
                .and_then(|p| p.canonicalize())
                .map_err(|e| anyhow::anyhow!("cannot find the nagare binary: {e}"))?;
            let installed = install(&exe, &dir, force)?;
            for path in installed {
                println!("{} -> {}", path.display(), exe.display());
            }
            Ok(())
        }
    }
}

/// Links every tool in `dir` to `exe`; returns the links made.
pub fn install(exe: &Path, dir: &Path, force: bool) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut made = Vec::new();
    for tool in TOOLS {
        let link = dir.join(tool);
        if link.symlink_metadata().is_ok() {
            let same = std::fs::read_link(&link).is_ok_and(|t| t == exe);
            if same {
                made.push(link);
                continue;
            }
            if !force {
                anyhow::bail!("{} exists (give --force to replace it)", link.display());
            }
            std::fs::remove_file(&link)
                .map_err(|e| anyhow::anyhow!("cannot replace {}: {e}", link.display()))?;
        }
        symlink(exe, &link).map_err(|e| anyhow::anyhow!("cannot link {}: {e}", link.display()))?;
        made.push(link);
    }
    Ok(made)
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::fs::copy(target, link).map(|_| ())
}

/// For the tools whose `nagare` subcommand already takes Kafka's arguments
/// (`kafka-storage.sh`, `kafka-metadata-quorum.sh`, `kafka-transactions.sh`, whose Kafka
/// parser is argparse4j with subcommands): the `nagare` command line to run instead. `None`
/// for the other tools.
pub fn nagare_argv(tool: &str, args: &[String]) -> Option<anyhow::Result<Vec<String>>> {
    let sub = match tool {
        "kafka-storage.sh" => "storage",
        "kafka-metadata-quorum.sh" => "quorum",
        "kafka-transactions.sh" => "transactions",
        _ => return None,
    };
    let mut argv = vec!["nagare".to_owned(), sub.to_owned()];
    argv.extend(args.iter().cloned());
    Some(Ok(argv))
}

/// Runs one of the tools that have their own implementation; the exit code as Kafka's
/// (0 on success, 1 on any error, after printing it).
pub async fn run(tool: &str, args: Vec<String>) -> ExitCode {
    // Kafka's tools print their help (exit 0) when `--help` is anywhere on the line.
    if args.iter().any(|a| a == "--help") {
        println!(
            "{tool} (Nagare {}): Kafka 4.x's options; README \"Kafka's tools\" lists the ones supported.",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--version") {
        println!("{} (Nagare)", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let result = match tool {
        "kafka-topics.sh" => topics::run(&args).await,
        "kafka-configs.sh" => configs::run(&args).await,
        "kafka-consumer-groups.sh" => groups::run(&args).await,
        "kafka-console-producer.sh" => console::run_producer(&args).await,
        "kafka-console-consumer.sh" => console::run_consumer(&args).await,
        "kafka-acls.sh" => acls::run(&args).await,
        "kafka-leader-election.sh" => simple::run_leader_election(&args).await,
        "kafka-get-offsets.sh" => offsets::run_get_offsets(&args).await,
        "kafka-delete-records.sh" => offsets::run_delete_records(&args).await,
        "kafka-log-dirs.sh" => offsets::run_log_dirs(&args).await,
        other => Err(anyhow::anyhow!("{other} is not one of Nagare's tools")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<UsageError>().is_some() {
                eprintln!("{e}");
                eprintln!(
                    "(Nagare's {tool}: see README \"Kafka's tools\" for the options supported)"
                );
            } else if tool == "kafka-topics.sh" {
                // TopicCommand's own prefix, which scripts grep for.
                eprintln!("Error while executing topic command : {e:#}");
            } else {
                eprintln!("Error while executing {tool}: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The options every admin tool shares.
pub const CONNECTION: &[Spec] = &[
    ("bootstrap-server", Kind::Value),
    ("command-config", Kind::Value),
    ("bootstrap-controller", Kind::Unsupported(true)),
    ("help", Kind::Unsupported(false)),
    ("version", Kind::Unsupported(false)),
];

/// `CONNECTION` plus a tool's own options.
pub fn with_connection(own: &[Spec]) -> Vec<Spec> {
    CONNECTION.iter().chain(own).copied().collect()
}

/// Connects as `--bootstrap-server` (required, as in Kafka 4.x) with the security settings
/// of the properties file named by `config_option` (usually `--command-config`) and any
/// `extra` properties (e.g. `--producer-property`).
pub async fn connect(
    p: &Parsed,
    config_option: &str,
    extra: Vec<String>,
) -> anyhow::Result<nagare_client::Client> {
    bootstrap(p, config_option, extra)?.connect().await
}

/// The CLI's connection settings from the tool's options.
pub fn bootstrap(
    p: &Parsed,
    config_option: &str,
    extra: Vec<String>,
) -> anyhow::Result<crate::cli::Bootstrap> {
    let server = p.required("bootstrap-server")?;
    Ok(crate::cli::Bootstrap {
        bootstrap_server: server.to_owned(),
        properties: extra,
        command_config: p.value(config_option).map(std::path::PathBuf::from),
    })
}

/// Fails if there are arguments that are not options (Kafka: "Found non argument
/// parameters").
pub fn no_positional(p: &Parsed) -> anyhow::Result<()> {
    if p.positional.is_empty() {
        Ok(())
    } else {
        Err(opts::usage(format!(
            "Found non argument parameters: {}",
            p.positional.join(",")
        )))
    }
}

/// Kafka's `IncludeList`: a Java regex matched against the whole name, where `,` also
/// separates alternatives.
pub fn include_list(pattern: &str) -> anyhow::Result<regex::Regex> {
    let joined = pattern.trim().replace(',', "|");
    regex::Regex::new(&format!("^(?:{joined})$"))
        .map_err(|e| opts::usage(format!("invalid topic regular expression '{pattern}': {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_names() {
        assert_eq!(
            tool_for(OsStr::new("/opt/kafka/bin/kafka-topics.sh")),
            Some("kafka-topics.sh")
        );
        assert_eq!(
            tool_for(OsStr::new("kafka-consumer-groups")),
            Some("kafka-consumer-groups.sh")
        );
        assert_eq!(tool_for(OsStr::new("nagare")), None);
        assert_eq!(tool_for(OsStr::new("/usr/bin/kafka-nope.sh")), None);
    }

    #[test]
    fn install_links_every_tool_and_is_idempotent() {
        let dir = tempfile::tempdir().expect("dir");
        let exe = dir.path().join("nagare");
        std::fs::write(&exe, b"").expect("exe");
        let bin = dir.path().join("bin");
        let made = install(&exe, &bin, false).expect("install");
        assert_eq!(made.len(), TOOLS.len());
        for t in TOOLS {
            assert_eq!(std::fs::read_link(bin.join(t)).expect("link"), exe);
        }
        install(&exe, &bin, false).expect("again");
        let other = dir.path().join("other");
        std::fs::write(&other, b"").expect("other");
        assert!(install(&other, &bin, false).is_err());
        install(&other, &bin, true).expect("force");
        assert_eq!(
            std::fs::read_link(bin.join("kafka-topics.sh")).expect("link"),
            other
        );
    }

    #[test]
    fn include_lists_match_whole_names() {
        let r = include_list("orders.*,audit").expect("regex");
        assert!(r.is_match("orders-eu"));
        assert!(r.is_match("audit"));
        assert!(!r.is_match("audit-log"));
        assert!(!r.is_match("my-orders"));
    }

    #[test]
    fn argparse_tools_map_to_nagare_subcommands() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let argv = nagare_argv(
            "kafka-metadata-quorum.sh",
            &a(&["--bootstrap-server", "h:1", "describe", "--status"]),
        )
        .expect("mapped")
        .expect("ok");
        assert_eq!(
            argv,
            a(&[
                "nagare",
                "quorum",
                "--bootstrap-server",
                "h:1",
                "describe",
                "--status"
            ])
        );
        assert!(nagare_argv("kafka-topics.sh", &[]).is_none());
    }
}
