//! The `quorumsign` command line.

mod cluster_cmd;
mod demo_cmd;
mod drill_cmd;
mod kasp_cmd;
mod keys_cmd;
mod node_cmd;
mod sign_cmd;
mod verify_cmd;
mod zone_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "quorumsign",
    version,
    about = "DNSSEC signer that runs as a high-availability cluster"
)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace), also QUORUMSIGN_LOG.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    /// Client certificate for an https admin address (also QUORUMSIGN_ADMIN_CERT).
    #[arg(long, global = true, env = "QUORUMSIGN_ADMIN_CERT")]
    admin_cert: Option<std::path::PathBuf>,
    /// Its private key (also QUORUMSIGN_ADMIN_KEY).
    #[arg(long, global = true, env = "QUORUMSIGN_ADMIN_KEY")]
    admin_key: Option<std::path::PathBuf>,
    /// The CA of the nodes' certificates (also QUORUMSIGN_ADMIN_CA).
    #[arg(long, global = true, env = "QUORUMSIGN_ADMIN_CA")]
    admin_ca: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Key management.
    Keys {
        #[command(subcommand)]
        cmd: keys_cmd::KeysCmd,
    },
    /// Sign a zone file.
    Sign(sign_cmd::SignArgs),
    /// Validate a signed zone file (exit 0 valid, 1 invalid, 2 unusable input).
    Verify(verify_cmd::VerifyArgs),
    /// Print the DS records of a zone's key-signing keys.
    Ds(keys_cmd::DsArgs),
    /// Signer nodes: run one, add or remove one.
    Node {
        #[command(subcommand)]
        cmd: node_cmd::NodeCmd,
    },
    /// The cluster: certificates, bootstrap, status, audit log.
    Cluster {
        #[command(subcommand)]
        cmd: cluster_cmd::ClusterCmd,
    },
    /// Leadership.
    Leader {
        #[command(subcommand)]
        cmd: cluster_cmd::LeaderCmd,
    },
    /// Zones of the cluster.
    Zone {
        #[command(subcommand)]
        cmd: zone_cmd::ZoneCmd,
    },
    /// Failover drills: check, act, report every step with its time.
    Drill {
        #[command(subcommand)]
        cmd: drill_cmd::DrillCmd,
    },
    /// Start a local 3-node cluster with the example zone and show a failover.
    Demo(demo_cmd::DemoArgs),
    /// Key backups: list what to back up, record that it is.
    Backup {
        #[command(subcommand)]
        cmd: kasp_cmd::BackupCmd,
    },
    /// Key and signing policies.
    Policy {
        #[command(subcommand)]
        cmd: kasp_cmd::PolicyCmd,
    },
    /// The future key events of a zone as a timeline; `--simulate` checks it against
    /// modelled validator caches.
    Plan(kasp_cmd::PlanArgs),
    /// Write a deterministic synthetic zone (tests and benchmarks).
    #[command(hide = true)]
    GenerateZone {
        /// tld or flat.
        #[arg(long, default_value = "tld")]
        shape: String,
        #[arg(long)]
        zone: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    crate::runtime::mem::init();
    let cli = Cli::parse();
    if let (Some(cert), Some(key), Some(ca)) = (&cli.admin_cert, &cli.admin_key, &cli.admin_ca) {
        crate::admin::client::set_credentials(crate::admin::client::Credentials {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        });
    }
    if !matches!(
        cli.cmd,
        Cmd::Node {
            cmd: node_cmd::NodeCmd::Run { .. }
        }
    ) {
        init_tracing(&cli.log);
    }
    let r = match cli.cmd {
        Cmd::Keys { cmd } => keys_cmd::run(cmd),
        Cmd::Sign(a) => sign_cmd::run(a),
        Cmd::Verify(a) => return verify_cmd::run(a),
        Cmd::Ds(a) => keys_cmd::ds(a),
        Cmd::Node { cmd } => node_cmd::node(cmd).map_err(anyhow::Error::msg),
        Cmd::Cluster { cmd } => cluster_cmd::cluster(cmd).map_err(anyhow::Error::msg),
        Cmd::Leader { cmd } => cluster_cmd::leader(cmd).map_err(anyhow::Error::msg),
        Cmd::Zone { cmd } => zone_cmd::zone(cmd).map_err(anyhow::Error::msg),
        Cmd::Demo(a) => demo_cmd::run(a).map_err(anyhow::Error::msg),
        Cmd::Drill { cmd } => drill_cmd::run(cmd).map_err(anyhow::Error::msg),
        Cmd::Backup { cmd } => kasp_cmd::backup(cmd).map_err(anyhow::Error::msg),
        Cmd::Policy { cmd } => kasp_cmd::policy(cmd).map_err(anyhow::Error::msg),
        Cmd::Plan(a) => kasp_cmd::plan(a).map_err(anyhow::Error::msg),
        Cmd::GenerateZone {
            shape,
            zone,
            count,
            seed,
        } => generate_zone(&shape, &zone, count, seed),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Logs to stderr; QUORUMSIGN_LOG overrides `level`.
pub(crate) fn init_tracing(level: &str) {
    // hickory-server logs every request at info: keep it to warnings unless asked.
    let filter = std::env::var("QUORUMSIGN_LOG")
        .unwrap_or_else(|_| format!("{level},hickory_server=warn,hickory_net=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Parses a duration: seconds or `1w2d3h4m5s`.
pub(crate) fn parse_duration(s: &str) -> Result<u32, String> {
    crate::zone::rdata::parse_period(s.as_bytes())
        .ok_or_else(|| format!("bad duration {s:?}: use seconds or e.g. 14d, 12h, 1h30m"))
}

/// Parses `now`: unix seconds or `YYYYMMDDHHmmSS`; default the clock.
pub(crate) fn parse_now(s: Option<&str>) -> Result<u32, String> {
    match s {
        None => Ok(crate::hsm::soft::now_u32()),
        Some(s) => crate::zone::rdata::parse_rrsig_time(s.as_bytes())
            .ok_or_else(|| format!("bad time {s:?}: use unix seconds or YYYYMMDDHHmmSS")),
    }
}

pub(crate) fn parse_zone_name(s: &str) -> Result<crate::zone::Name, String> {
    let abs = if s.ends_with('.') {
        s.to_string()
    } else {
        format!("{s}.")
    };
    crate::zone::Name::parse(abs.as_bytes(), None).map_err(|e| format!("bad zone name {s:?}: {e}"))
}

fn generate_zone(shape: &str, zone: &str, count: usize, seed: u64) -> anyhow::Result<()> {
    use crate::zone::generate::{Shape, zone_text};
    use std::io::Write;
    let shape = match shape {
        "tld" => Shape::Tld,
        "flat" => Shape::Flat,
        s => anyhow::bail!("unknown shape {s:?}: tld or flat"),
    };
    let origin = parse_zone_name(zone).map_err(anyhow::Error::msg)?;
    std::io::stdout()
        .lock()
        .write_all(zone_text(shape, &origin.to_text(), count, seed).as_bytes())?;
    Ok(())
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
pub(crate) fn progress_bar(what: &str) -> indicatif::ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(0);
    let template = format!("{what} {{bar:40}} {{pos}}/{{len}} {{eta}}");
    b.set_style(indicatif::ProgressStyle::with_template(&template).expect("template"));
    b
}

/// Moves `bar` to `done` of `total`.
pub(crate) fn advance(bar: &indicatif::ProgressBar, done: usize, total: usize) {
    bar.set_length(total as u64);
    bar.set_position(done as u64);
}
