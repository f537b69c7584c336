//! `nagare quorum describe`: the KRaft metadata quorum, like `kafka-metadata-quorum describe
//! --status` and `--replication`.

use nagare_client::QuorumDescription;

/// Arguments of `nagare quorum`.
#[derive(clap::Args)]
pub struct Args {
    /// Where the brokers are.
    #[command(flatten)]
    pub broker: super::Bootstrap,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Describe the quorum: leader, epoch, high watermark, voters and observers (`--status`,
    /// the default) or every replica's progress (`--replication`).
    Describe {
        /// Leader, epoch, high watermark, lag, voters and observers.
        #[arg(long, conflicts_with = "replication")]
        status: bool,
        /// One line per replica: log end offset, lag, last fetch and caught-up times.
        #[arg(long)]
        replication: bool,
    },
}

/// Runs `nagare quorum ...`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut client = args.broker.connect().await?;
    match args.command {
        Command::Describe { replication, .. } => {
            let q = client.describe_quorum().await?;
            let cluster_id = client.cluster_id().unwrap_or("").to_string();
            if replication {
                print!("{}", replication_table(&q));
            } else {
                print!("{}", status_text(&cluster_id, &q));
            }
            Ok(())
        }
    }
}

fn lag(q: &QuorumDescription, leo: i64) -> i64 {
    (q.high_watermark - leo).max(0)
}

/// The `--status` text, in `kafka-metadata-quorum`'s layout.
pub fn status_text(cluster_id: &str, q: &QuorumDescription) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let followers = q.voters.iter().filter(|v| v.id != q.leader_id);
    let max_lag = followers
        .clone()
        .map(|v| lag(q, v.log_end_offset))
        .max()
        .unwrap_or(0);
    let max_lag_time = followers
        .filter(|v| v.last_caught_up_timestamp >= 0)
        .map(|v| now - v.last_caught_up_timestamp)
        .max()
        .unwrap_or(-1);
    let ids = |v: &[nagare_client::QuorumReplica]| {
        v.iter()
            .map(|r| r.id.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "ClusterId:              {cluster_id}\nLeaderId:               {}\nLeaderEpoch:            {}\nHighWatermark:          {}\nMaxFollowerLag:         {max_lag}\nMaxFollowerLagTimeMs:   {max_lag_time}\nCurrentVoters:          [{}]\nCurrentObservers:       [{}]\n",
        q.leader_id,
        q.leader_epoch,
        q.high_watermark,
        ids(&q.voters),
        ids(&q.observers),
    )
}

/// The `--replication` table.
pub fn replication_table(q: &QuorumDescription) -> String {
    let mut out = format!(
        "{:<8}{:<16}{:<8}{:<24}{:<24}{}\n",
        "NodeId", "LogEndOffset", "Lag", "LastFetchTimestamp", "LastCaughtUpTimestamp", "Status"
    );
    let mut rows: Vec<(&nagare_client::QuorumReplica, &str)> = Vec::new();
    for v in &q.voters {
        rows.push((
            v,
            if v.id == q.leader_id {
                "Leader"
            } else {
                "Follower"
            },
        ));
    }
    rows.sort_by_key(|(r, s)| (*s != "Leader", r.id));
    let mut observers: Vec<_> = q.observers.iter().map(|o| (o, "Observer")).collect();
    observers.sort_by_key(|(r, _)| r.id);
    rows.extend(observers);
    for (r, status) in rows {
        out.push_str(&format!(
            "{:<8}{:<16}{:<8}{:<24}{:<24}{}\n",
            r.id,
            r.log_end_offset,
            lag(q, r.log_end_offset),
            r.last_fetch_timestamp,
            r.last_caught_up_timestamp,
            status
        ));
    }
    out
}
