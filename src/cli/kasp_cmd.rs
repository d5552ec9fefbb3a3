//! Key-lifecycle commands: key states and manual steps (`keys show|rollover|ds-seen|
//! ds-gone|clock-ok`), backups (`backup prepare|commit`), the policy (`policy default|
//! check`) and the rollover plan and simulator (`plan`).

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::cluster_cmd::{AdminArgs, ok};
use super::zone_cmd::read_policy;
use crate::admin::api::KeyAction;
use crate::admin::client::{call, call_leader};
use crate::kasp::sim::{Run, World, check};
use crate::kasp::{Facts, KeySet, Policy};

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Subcommand)]
pub enum ClusterKeysCmd {
    /// The keys of a zone in the cluster: per record state, goal, parent, backup.
    Show {
        zone: String,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Start a roll of the zone's KSK, ZSK or CSK now (manual mode, or early).
    Rollover {
        zone: String,
        role: String,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Record that every parent server serves the DS of this key (manual parent checks).
    DsSeen {
        zone: String,
        tag: u16,
        /// The DS TTL the parent serves (default: the policy's ds_ttl; the larger counts).
        #[arg(long)]
        ttl: Option<u32>,
        /// Record it even when the parent's servers answer otherwise (audited).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Record that no parent server serves the DS of this (withdrawn) key any more.
    DsGone {
        zone: String,
        tag: u16,
        /// Record it even when the parent's servers answer otherwise (audited).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Confirm the clock after the engine held its waits on a clock jump.
    ClockOk {
        zone: String,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Destroy the retired keys of a removed zone (security officer; cannot be undone).
    Purge {
        zone: String,
        /// The zone's name again.
        #[arg(long)]
        confirm: String,
        #[command(flatten)]
        a: AdminArgs,
    },
}

#[derive(Subcommand)]
pub enum BackupCmd {
    /// List the keys of a zone that are not backed up yet.
    Prepare {
        zone: String,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Record (in the audit log) that these keys are in the backup.
    Commit {
        zone: String,
        /// Tags of the keys backed up.
        tags: Vec<u16>,
        /// Every key `backup prepare` lists.
        #[arg(long, conflicts_with = "tags")]
        all: bool,
        #[command(flatten)]
        a: AdminArgs,
    },
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Print the default policy as a file to start from.
    Default,
    /// Check a policy file without a cluster.
    Lint { file: std::path::PathBuf },
    /// Compare a zone's policy with the zone and its parent as they are; exits 1 when
    /// something would make a roll unsafe.
    Check {
        zone: String,
        #[command(flatten)]
        a: AdminArgs,
    },
}

#[derive(Args)]
pub struct PlanArgs {
    /// A zone of the cluster (its key states, policy and TTLs); without it, a new zone
    /// under `--policy`.
    zone: Option<String>,
    /// Policy file (offline plan; default: the shipped policy).
    #[arg(long)]
    policy: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 365)]
    days: u64,
    /// Replay the plan against modelled validator caches and report any bogus instant.
    #[arg(long)]
    simulate: bool,
    /// Offline: the zone's largest TTL, SOA TTL and SOA MINIMUM.
    #[arg(long, default_value_t = 86_400)]
    max_ttl: u32,
    #[arg(long, default_value_t = 3600)]
    soa_ttl: u32,
    #[arg(long, default_value_t = 3600)]
    soa_minimum: u32,
    /// The DS TTL the parent serves (default: the policy's, or what was observed).
    #[arg(long)]
    parent_ttl: Option<u32>,
    /// Start a roll of this role at the beginning of the plan.
    #[arg(long)]
    roll: Option<String>,
    #[command(flatten)]
    a: AdminArgs,
}

/// `keys ds-seen` / `keys ds-gone`: the operator's word on the parent's DS of key `tag`.
fn ds_event(
    a: &AdminArgs,
    zone: &str,
    tag: u16,
    ttl: Option<u32>,
    force: bool,
    action: &str,
    what: &str,
) -> Result<(), String> {
    let req = KeyAction {
        action: action.into(),
        tag: Some(tag),
        ttl,
        force,
        ..Default::default()
    };
    let ans = post(a, zone, &req)?;
    ok(ans, a, |_| {
        format!("zone {zone}: DS of key {tag} recorded as {what}")
    })
}

fn post(
    a: &AdminArgs,
    zone: &str,
    req: &KeyAction,
) -> Result<crate::admin::client::Answer, String> {
    call_leader(
        &a.admin,
        "POST",
        &format!("/zones/{zone}/keys"),
        Some(&crate::admin::api::body(req)),
        TIMEOUT,
    )
}

pub fn keys(cmd: ClusterKeysCmd) -> Result<(), String> {
    match cmd {
        ClusterKeysCmd::Show { zone, a } => {
            let ans = call(
                &a.admin,
                "GET",
                &format!("/zones/{zone}/keys"),
                None,
                TIMEOUT,
            )?;
            ok(ans, &a, show)
        }
        ClusterKeysCmd::Rollover { zone, role, a } => {
            let req = KeyAction {
                action: "rollover".into(),
                role: Some(role.clone()),
                ..Default::default()
            };
            let ans = post(&a, &zone, &req)?;
            ok(ans, &a, |_| {
                format!("zone {zone}: {role} rollover requested")
            })
        }
        ClusterKeysCmd::DsSeen {
            zone,
            tag,
            ttl,
            force,
            a,
        } => ds_event(&a, &zone, tag, ttl, force, "ds-seen", "seen"),
        ClusterKeysCmd::DsGone {
            zone,
            tag,
            force,
            a,
        } => ds_event(&a, &zone, tag, None, force, "ds-gone", "gone"),
        ClusterKeysCmd::ClockOk { zone, a } => {
            let req = KeyAction {
                action: "clock-ok".into(),
                ..Default::default()
            };
            let ans = post(&a, &zone, &req)?;
            ok(ans, &a, |_| format!("zone {zone}: clock confirmed"))
        }
        ClusterKeysCmd::Purge { zone, confirm, a } => {
            let ans = call_leader(
                &a.admin,
                "DELETE",
                &format!("/zones/{zone}/keys"),
                Some(&crate::admin::api::body(&crate::admin::api::Confirm {
                    confirm,
                })),
                TIMEOUT,
            )?;
            ok(ans, &a, |_| format!("zone {zone}: retired keys destroyed"))
        }
    }
}

fn show(v: &Value) -> String {
    let mut out = format!(
        "zone {}  (key clock {}, DS TTL seen {} s)\n{:<6} {:<4} {:>3} {:<7} {:<12} {:<12} {:<14} {:<12} {:<7} {}\n",
        v["zone"].as_str().unwrap_or("?"),
        crate::zone::civil::utc(v["now"].as_u64().unwrap_or(0)),
        v["ds_ttl_observed"],
        "TAG",
        "ROLE",
        "ALG",
        "GOAL",
        "DS",
        "DNSKEY",
        "RRSIG(DNSKEY)",
        "RRSIG(data)",
        "BACKUP",
        "PARENT"
    );
    for k in v["keys"].as_array().into_iter().flatten() {
        let r = &k["records"];
        let s = |n: &str| r[n].as_str().unwrap_or("?").to_string();
        out.push_str(&format!(
            "{:<6} {:<4} {:>3} {:<7} {:<12} {:<12} {:<14} {:<12} {:<7} {}\n",
            k["tag"].as_u64().unwrap_or(0),
            k["role"].as_str().unwrap_or("?"),
            k["algorithm"].as_u64().unwrap_or(0),
            k["goal"].as_str().unwrap_or("?"),
            s("DS"),
            s("DNSKEY"),
            s("RRSIG(DNSKEY)"),
            s("RRSIG(data)"),
            if k["backed_up"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            k["parent"].as_str().unwrap_or("?"),
        ));
    }
    for n in v["notes"].as_array().into_iter().flatten() {
        out.push_str(&format!("note: {}\n", n.as_str().unwrap_or("")));
    }
    out.trim_end().to_string()
}

pub fn backup(cmd: BackupCmd) -> Result<(), String> {
    match cmd {
        BackupCmd::Prepare { zone, a } => {
            let ans = call(
                &a.admin,
                "GET",
                &format!("/zones/{zone}/backup"),
                None,
                TIMEOUT,
            )?;
            ok(ans, &a, |v| {
                let keys = v["to_back_up"].as_array().cloned().unwrap_or_default();
                if keys.is_empty() {
                    return format!("zone {zone}: every key is backed up");
                }
                let mut s = format!("zone {zone}: {} key(s) to back up\n", keys.len());
                for k in keys {
                    s.push_str(&format!(
                        "  tag {} {} alg {} ({}) {}\n",
                        k["tag"],
                        k["role"].as_str().unwrap_or("?"),
                        k["algorithm"],
                        k["goal"].as_str().unwrap_or("?"),
                        if k["sealed_in_cluster_state"].as_bool() == Some(true) {
                            "sealed in the cluster state: back up a node's data dir and the passphrase"
                                .to_string()
                        } else {
                            k["handle"].as_str().unwrap_or("").to_string()
                        }
                    ));
                }
                s.push_str("then: quorumsign backup commit ZONE TAG… (or --all)");
                s
            })
        }
        BackupCmd::Commit { zone, tags, all, a } => {
            let ans = post(
                &a,
                &zone,
                &KeyAction {
                    action: "backup-commit".into(),
                    tags,
                    all,
                    ..Default::default()
                },
            )?;
            ok(ans, &a, |_| format!("zone {zone}: backup recorded"))
        }
    }
}

/// `policy check` exits 1 on an unsafe finding.
pub fn policy(cmd: PolicyCmd) -> Result<(), String> {
    match cmd {
        PolicyCmd::Default => {
            print!("{}", Policy::default().to_toml());
            Ok(())
        }
        PolicyCmd::Lint { file } => {
            read_policy(Some(&file))?;
            println!("{}: ok", file.display());
            Ok(())
        }
        PolicyCmd::Check { zone, a } => {
            let ans = call(
                &a.admin,
                "GET",
                &format!("/zones/{zone}/policy-check"),
                None,
                TIMEOUT,
            )?;
            let v = ans.json();
            let unsafe_ = v["unsafe"].as_bool() == Some(true);
            ok(ans, &a, |v| {
                let mut s = format!("zone {zone}:\n");
                if let Some(p) = v["parent"].as_object() {
                    s.push_str(&format!(
                        "  parent: {} server(s), agree: {}, DS TTL served: {}\n",
                        p["servers"].as_array().map_or(0, Vec::len),
                        p["agree"],
                        p["ttl"]
                    ));
                }
                let findings = v["findings"].as_array().cloned().unwrap_or_default();
                if findings.is_empty() {
                    s.push_str("  no mismatch between the policy, the zone and the parent");
                }
                for f in findings {
                    s.push_str(&format!(
                        "  {}: {}\n",
                        if f["unsafe_"].as_bool() == Some(true) {
                            "UNSAFE"
                        } else {
                            "warning"
                        },
                        f["text"].as_str().unwrap_or("")
                    ));
                }
                s.trim_end().to_string()
            })?;
            if unsafe_ {
                return Err(format!(
                    "zone {zone}: the policy check found an unsafe setting"
                ));
            }
            Ok(())
        }
    }
}

pub fn plan(a: PlanArgs) -> Result<(), String> {
    let (set, mut policy, facts, now, observed) = match &a.zone {
        Some(zone) => {
            let ans = call(
                &a.a.admin,
                "GET",
                &format!("/zones/{zone}/keys"),
                None,
                TIMEOUT,
            )?;
            if ans.code != 200 {
                return Err(ans.message());
            }
            let v = ans.json();
            let set: KeySet = serde_json::from_value(v["keyset"].clone())
                .map_err(|e| format!("key states from the cluster: {e}"))?;
            let policy: Policy = serde_json::from_value(v["policy"].clone())
                .map_err(|e| format!("policy from the cluster: {e}"))?;
            let facts: Facts = serde_json::from_value(v["facts"].clone()).unwrap_or_default();
            let observed = set.ds_ttl_observed;
            (set, policy, facts, v["now"].as_u64().unwrap_or(0), observed)
        }
        None => {
            let policy = match read_policy(a.policy.as_deref())? {
                Some(text) => Policy::from_toml(&text, "policy")?,
                None => Policy::default(),
            };
            let facts = Facts {
                max_zone_ttl: a.max_ttl,
                soa_ttl: a.soa_ttl,
                soa_minimum: a.soa_minimum,
            };
            (KeySet::default(), policy, facts, crate::runtime::wall(), 0)
        }
    };
    if a.zone.is_some()
        && let Some(p) = &a.policy
    {
        let text = read_policy(Some(p))?.unwrap_or_default();
        policy = Policy::from_toml(&text, &p.display().to_string())?;
    }
    let mut world = World::new(policy.clone(), facts);
    world.parent_ttl = a.parent_ttl.unwrap_or(policy.ds_ttl.max(observed));
    world.parent_delay = (policy.parent_registration_delay as u64).max(1);
    world.parent_spread = policy.parent_propagation_delay as u64;
    let mut run = Run::new(set, now, &world);
    if let Some(role) = &a.roll {
        let role =
            crate::kasp::Role::parse(role).ok_or(format!("role {role:?}: ksk, zsk or csk"))?;
        crate::kasp::observe(
            &mut run.set,
            &policy,
            &crate::kasp::Event::Rollover { role },
        )?;
    }
    let end = now.saturating_add(a.days.saturating_mul(86_400));
    run.run(&mut world, now, end);
    if a.a.json {
        let lines: Vec<Value> = run
            .timeline
            .iter()
            .map(|l| json!({ "at": l.at, "event": l.text }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "timeline": lines })).unwrap_or_default()
        );
    } else {
        println!(
            "plan for {} days from {} (parent modelled: registration {} s, spread {} s, DS TTL {} s)",
            a.days,
            crate::zone::civil::utc(now),
            world.parent_delay,
            world.parent_spread,
            world.parent_ttl
        );
        for l in &run.timeline {
            println!("{}  {}", crate::zone::civil::utc(l.at), l.text);
        }
    }
    if a.simulate {
        let bogus = check(&run.history);
        if bogus.is_empty() {
            println!(
                "simulate: no bogus instant for any validator cache ({} zone versions, {} parent DS sets, {} evaluations)",
                run.history.child.len(),
                run.history.parent.len(),
                run.evaluations
            );
        } else {
            for b in bogus.iter().take(20) {
                println!("BOGUS at {}: {}", crate::zone::civil::utc(b.at), b.what);
            }
            return Err(format!("{} bogus instant(s) in the plan", bogus.len()));
        }
    }
    Ok(())
}
