//! `quorumsign zone …`: zones of a running cluster, through the admin API.

use clap::Subcommand;
use serde_json::Value;

use super::cluster_cmd::*;
use crate::admin::api::{self, body};
use crate::admin::client::{call, call_leader};

#[derive(Subcommand)]
pub enum ZoneCmd {
    /// Add a zone; the leader makes its keys and signs it.
    Add {
        name: String,
        /// Unsigned zone file (readable by every node at the same path).
        #[arg(long, conflicts_with = "primary", required_unless_present = "primary")]
        file: Option<std::path::PathBuf>,
        /// Or a hidden primary to transfer the unsigned zone from: `ADDR:PORT [key NAME]`.
        #[arg(long)]
        primary: Option<String>,
        /// SOA serial policy: keep, increment, unixtime or datecounter.
        #[arg(long, default_value = "increment")]
        serial: String,
        /// Signed zone file the leader writes after each version (absolute path).
        #[arg(long)]
        output: Option<std::path::PathBuf>,
        /// Secondary to NOTIFY: `ADDR:PORT [key NAME]` (repeat for several).
        #[arg(long)]
        notify: Vec<String>,
        /// Who may transfer the signed zone: `PREFIX key NAME` (repeat for several).
        #[arg(long)]
        transfer: Vec<String>,
        /// Largest input accepted, in records.
        #[arg(long)]
        max_records: Option<u64>,
        /// nsec, nsec3 or nsec3-optout (default: the policy's, nsec3).
        #[arg(long)]
        denial: Option<String>,
        /// Algorithm (default: the policy's, 13).
        #[arg(long)]
        algorithm: Option<u8>,
        /// One combined signing key instead of KSK + ZSK.
        #[arg(long)]
        csk: bool,
        /// Key and signing policy file (TOML; `quorumsign policy default` prints one).
        #[arg(long)]
        policy: Option<std::path::PathBuf>,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Change a zone's input or publication options; lists given replace the zone's lists.
    Set {
        name: String,
        #[arg(long, conflicts_with = "primary")]
        file: Option<std::path::PathBuf>,
        #[arg(long)]
        primary: Option<String>,
        #[arg(long)]
        serial: Option<String>,
        #[arg(long, conflicts_with = "no_output")]
        output: Option<std::path::PathBuf>,
        /// Stop writing the file output.
        #[arg(long)]
        no_output: bool,
        #[arg(long, conflicts_with = "no_notify")]
        notify: Vec<String>,
        /// Notify nobody.
        #[arg(long)]
        no_notify: bool,
        #[arg(long, conflicts_with = "no_transfer")]
        transfer: Vec<String>,
        /// Allow no transfers.
        #[arg(long)]
        no_transfer: bool,
        #[arg(long)]
        max_records: Option<u64>,
        /// A new key and signing policy file: a changed algorithm or key roles starts
        /// the rolls that get there.
        #[arg(long)]
        policy: Option<std::path::PathBuf>,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Remove a zone: it is no longer signed or served. Its keys are kept, retired, until
    /// a security officer runs `keys purge`.
    Remove {
        name: String,
        /// The zone's name again.
        #[arg(long)]
        confirm: String,
        #[command(flatten)]
        a: AdminArgs,
    },
    List {
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Re-read the zone's input now.
    Reload {
        name: String,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Print the signed zone as the node at --admin validated it.
    Show {
        name: String,
        #[command(flatten)]
        a: AdminArgs,
    },
}

pub fn zone(cmd: ZoneCmd) -> Result<(), String> {
    match cmd {
        ZoneCmd::Add {
            name,
            file,
            primary,
            serial,
            output,
            notify,
            transfer,
            max_records,
            denial,
            algorithm,
            csk,
            policy,
            a,
        } => {
            let policy = read_policy(policy.as_deref())?;
            let csk = csk.then_some(true);
            let file = file
                .map(|f| std::fs::canonicalize(&f).map_err(|e| format!("{}: {e}", f.display())))
                .transpose()?
                .map(|f| f.display().to_string());
            let output = output.map(|o| {
                if o.is_absolute() {
                    o
                } else {
                    std::env::current_dir().unwrap_or_default().join(o)
                }
            });
            let req = api::ZoneAdd {
                name: name.clone(),
                file,
                primary,
                denial,
                algorithm,
                csk,
                serial: Some(serial),
                output: output.map(|o| o.display().to_string()),
                notify,
                transfer,
                max_records,
                policy,
            };
            let body = body(&req);
            let ans = call_leader(&a.admin, "POST", "/zones", Some(&body), TIMEOUT)?;
            ok(ans, &a, |_| {
                format!("zone {name} added; the leader signs it now")
            })
        }
        ZoneCmd::Set {
            name,
            file,
            primary,
            serial,
            output,
            no_output,
            notify,
            no_notify,
            transfer,
            no_transfer,
            max_records,
            policy,
            a,
        } => {
            let policy = read_policy(policy.as_deref())?;
            let file = file
                .map(|f| std::fs::canonicalize(&f).map_err(|e| format!("{}: {e}", f.display())))
                .transpose()?
                .map(|f| f.display().to_string());
            let abs = |o: std::path::PathBuf| {
                if o.is_absolute() {
                    o
                } else {
                    std::env::current_dir().unwrap_or_default().join(o)
                }
            };
            let list = |v: Vec<String>, none: bool| {
                if none {
                    Some(Vec::new())
                } else if v.is_empty() {
                    None
                } else {
                    Some(v)
                }
            };
            let req = api::ZoneSet {
                file,
                primary,
                serial,
                output: output.map(|o| abs(o).display().to_string()),
                no_output,
                notify: list(notify, no_notify),
                transfer: list(transfer, no_transfer),
                max_records,
                policy,
            };
            let body = body(&req);
            let ans = call_leader(
                &a.admin,
                "PATCH",
                &format!("/zones/{name}"),
                Some(&body),
                TIMEOUT,
            )?;
            ok(ans, &a, |_| format!("zone {name} changed"))
        }
        ZoneCmd::Remove { name, confirm, a } => {
            let ans = call_leader(
                &a.admin,
                "DELETE",
                &format!("/zones/{name}"),
                Some(&body(&api::Confirm { confirm })),
                TIMEOUT,
            )?;
            ok(ans, &a, |_| {
                format!("zone {name} removed; its keys are kept retired (keys purge removes them)")
            })
        }
        ZoneCmd::Reload { name, a } => {
            let ans = call_leader(
                &a.admin,
                "POST",
                &format!("/zones/{name}/reload"),
                None,
                TIMEOUT,
            )?;
            ok(ans, &a, |_| format!("zone {name}: reload requested"))
        }
        ZoneCmd::List { a } => {
            let ans = call(&a.admin, "GET", "/zones", None, TIMEOUT)?;
            ok(ans, &a, |v| {
                let mut s = format!(
                    "{:<28} {:>12} {:<18} {:<12} input\n",
                    "zone", "serial", "hash", "denial"
                );
                for z in v.as_array().into_iter().flatten() {
                    s.push_str(&format!(
                        "{:<28} {:>12} {:<18} {:<12} {}\n",
                        z["name"].as_str().unwrap_or(""),
                        z["serial"].as_u64().map_or("-".into(), |x| x.to_string()),
                        z["hash"].as_str().map_or("-", |h| &h[..16]),
                        z["denial"].as_str().unwrap_or(""),
                        z["input"].as_str().unwrap_or("")
                    ));
                }
                s.trim_end().to_string()
            })
        }
        ZoneCmd::Show { name, a } => {
            let ans = call(
                &a.admin,
                "GET",
                &format!("/zones/{name}/signed"),
                None,
                TIMEOUT,
            )?;
            if ans.code != 200 {
                return Err(ans.message());
            }
            use std::io::Write;
            std::io::stdout()
                .write_all(&ans.body)
                .map_err(|e| e.to_string())
        }
    }
}

/// (zone, current serial) of every zone in one node's status.
pub fn zone_serials(status: &Value) -> Vec<(String, u64)> {
    status["zones"]
        .as_array()
        .map(|zs| {
            zs.iter()
                .filter_map(|z| Some((z["name"].as_str()?.to_string(), z["serial"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A policy file's text, checked here so that a bad file is explained with its path.
pub(crate) fn read_policy(path: Option<&std::path::Path>) -> Result<Option<String>, String> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::kasp::Policy::from_toml(&text, &path.display().to_string())?;
    Ok(Some(text))
}
