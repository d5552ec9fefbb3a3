//! `quorumsign drill failover`: a planned failover that checks before it acts and reports
//! every step with its time.
//!
//! ```text
//!  pre-flight: leader known · target a voter, ready, caught up, every zone validated
//!  ─► (dry run stops here) ─► DNSKEY RRsets over DNS ─► leader transfer ─► target leads
//!  ─► zone reload ─► a new serial validated on every running node
//!  ─► DNSKEY RRsets identical · no unchanged RRset re-signed
//! ```

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::cluster_cmd::{AdminArgs, gather_status};
use super::zone_cmd::zone_serials;
use crate::admin::client::call;
use crate::dns::Remote;
use crate::zone::Name;

#[derive(Subcommand)]
pub enum DrillCmd {
    /// Hand leadership to a ready standby and check it publishes with the same keys.
    Failover(FailoverArgs),
    /// Take the leader's keystore away: it must step down, a ready standby publish; reports
    /// the gap in publication, then gives the keystore back.
    HsmLoss(HsmLossArgs),
}

#[derive(Args)]
pub struct HsmLossArgs {
    /// Run the checks and print the plan; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    a: AdminArgs,
}

#[derive(Args)]
pub struct FailoverArgs {
    /// The node to hand over to (default: the most caught-up ready follower).
    #[arg(long)]
    to: Option<u64>,
    /// Run the checks and print the plan; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    a: AdminArgs,
}

struct Report {
    t0: Instant,
    steps: Vec<Value>,
    json: bool,
    ok: bool,
}

impl Report {
    fn step(&mut self, ok: bool, what: &str, detail: String) {
        let ms = self.t0.elapsed().as_millis() as u64;
        if !self.json {
            println!(
                "[{:>7.3}s] {} {what}: {detail}",
                ms as f64 / 1000.0,
                if ok { "ok  " } else { "FAIL" }
            );
        }
        self.ok &= ok;
        self.steps
            .push(json!({ "at_ms": ms, "ok": ok, "step": what, "detail": detail }));
    }

    /// The end of the pre-flight checks: an error when one failed (nothing was changed);
    /// `Ok(false)` after reporting what a dry run `would` do; `Ok(true)` to go on.
    fn preflight_passed(&mut self, dry_run: bool, would: String) -> Result<bool, String> {
        if !self.ok {
            return Err("pre-flight checks failed; nothing changed".into());
        }
        if dry_run {
            self.step(true, "dry run", would);
            return Ok(false);
        }
        Ok(true)
    }
}

fn node_of(status: &Value, id: u64) -> Option<&Value> {
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"].as_u64() == Some(id))
}

/// Every member's status, the leader's id and the leader's own status.
fn leader_status(admin: &str) -> Result<(Value, u64, Value), String> {
    let st = gather_status(admin)?;
    let leader = st["nodes"]
        .as_array()
        .and_then(|ns| ns.iter().find_map(|n| n["leader"].as_u64()))
        .ok_or("no leader known")?;
    let lnode = node_of(&st, leader)
        .ok_or("the leader does not answer")?
        .clone();
    Ok((st, leader, lnode))
}

fn wait<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    crate::testkit::lab::wait_for(timeout, f)
}

fn dnskeys(rt: &tokio::runtime::Runtime, dns: &str, zone: &str) -> Result<Vec<Vec<u8>>, String> {
    let remote = Remote::parse(dns)?;
    let origin = Name::parse(zone.as_bytes(), None).map_err(|e| e.to_string())?;
    rt.block_on(crate::dns::client::apex_rdatas(
        &remote,
        &origin,
        crate::zone::rtype::DNSKEY,
    ))
}

pub fn run(cmd: DrillCmd) -> Result<(), String> {
    let (json_out, dry_run, name) = match &cmd {
        DrillCmd::Failover(a) => (a.a.json, a.dry_run, "failover"),
        DrillCmd::HsmLoss(a) => (a.a.json, a.dry_run, "hsm-loss"),
    };
    let mut r = Report {
        t0: Instant::now(),
        steps: Vec::new(),
        json: json_out,
        ok: true,
    };
    let res = match &cmd {
        DrillCmd::Failover(a) => failover(a, &mut r),
        DrillCmd::HsmLoss(a) => hsm_loss(a, &mut r),
    };
    if let Err(e) = &res {
        r.step(false, "drill", e.clone());
    }
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "ok": r.ok, "dry_run": dry_run, "steps": r.steps })
            )
            .unwrap_or_default()
        );
    } else {
        println!("drill {name} {}", if r.ok { "passed" } else { "FAILED" });
    }
    if r.ok {
        Ok(())
    } else {
        Err(format!("drill {name} failed"))
    }
}

fn failover(a: &FailoverArgs, r: &mut Report) -> Result<(), String> {
    let (st, leader, lnode) = leader_status(&a.a.admin)?;
    r.step(
        true,
        "leader",
        format!("node {leader}, term {}", lnode["term"]),
    );
    let applied = lnode["last_applied"].as_u64().unwrap_or(0);
    let zones = zone_serials(&lnode);
    let voters: Vec<u64> = lnode["voters"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    // The target: given, or the most caught-up ready follower.
    let ready = |n: &Value| n["readiness"]["ready"] == true && n["unreachable"].is_null();
    let target = match a.to {
        Some(t) => t,
        None => voters
            .iter()
            .filter(|id| **id != leader)
            .filter_map(|id| node_of(&st, *id).filter(|n| ready(n)).map(|n| (*id, n)))
            .max_by_key(|(_, n)| n["last_applied"].as_u64().unwrap_or(0))
            .map(|(id, _)| id)
            .ok_or("no ready follower to hand over to")?,
    };
    let t = node_of(&st, target)
        .ok_or(format!("node {target} is not a member"))?
        .clone();
    let checks = [
        (
            target != leader,
            "target",
            format!("node {target} (not the leader)"),
        ),
        (
            voters.contains(&target),
            "target is a voter",
            format!("voters {voters:?}"),
        ),
        (
            t["unreachable"].is_null(),
            "target answers",
            format!("{}", t["unreachable"]),
        ),
        (
            ready(&t),
            "target ready (keystore test-sign, versions validated, fence hook)",
            format!("{}", t["readiness"]),
        ),
        (
            t["last_applied"].as_u64().unwrap_or(0) >= applied,
            "target caught up",
            format!("applied {} of the leader's {applied}", t["last_applied"]),
        ),
        (
            zones.iter().all(|(z, s)| {
                t["zones"].as_array().is_some_and(|tz| {
                    tz.iter().any(|x| {
                        x["name"] == z.as_str() && x["validated_serial"].as_u64() == Some(*s)
                    })
                })
            }),
            "target validated every zone's current serial",
            format!("{} zone(s)", zones.len()),
        ),
        (
            t["dns"].is_string() && lnode["dns"].is_string(),
            "DNS on the leader and the target",
            format!("{} / {}", lnode["dns"], t["dns"]),
        ),
    ];
    for (ok, what, detail) in checks {
        r.step(ok, what, detail);
    }
    if !r.preflight_passed(
        a.dry_run,
        format!("would hand over from node {leader} to node {target}"),
    )? {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let ldns = lnode["dns"].as_str().unwrap_or_default().to_string();
    let tdns = t["dns"].as_str().unwrap_or_default().to_string();
    let mut before = Vec::new();
    for (z, _) in &zones {
        before.push(dnskeys(&rt, &ldns, z)?);
    }
    r.step(
        true,
        "DNSKEY RRsets read",
        format!("{} zone(s) from node {leader} over DNS", zones.len()),
    );
    let admin = a.a.admin.clone();
    let ans = call(
        &admin,
        "POST",
        "/leader/transfer",
        Some(&crate::admin::api::body(
            &crate::admin::api::LeaderTransfer { to: target },
        )),
        Duration::from_secs(30),
    )?;
    if ans.code != 200 {
        return Err(format!("leader transfer: {}", ans.message()));
    }
    r.step(
        true,
        "leader transfer requested",
        format!("node {leader} -> node {target}"),
    );
    wait(Duration::from_secs(30), || {
        let s = status_of(&admin, target)?;
        (s["role"] == "leader").then_some(())
    })
    .ok_or(format!("node {target} did not become leader in 30 s"))?;
    r.step(true, "new leader", format!("node {target}"));
    for (z, serial) in &zones {
        let ans = call(
            &admin,
            "POST",
            &format!("/zones/{z}/reload"),
            None,
            Duration::from_secs(30),
        )?;
        if ans.code != 200 {
            return Err(format!("zone reload {z}: {}", ans.message()));
        }
        let new = new_serial_everywhere(&admin, &st, z, *serial, Duration::from_secs(120)).ok_or(
            format!("zone {z}: no new serial validated on every node in 120 s"),
        )?;
        let answering = st["nodes"].as_array().map_or(0, |ns| {
            ns.iter().filter(|n| n["unreachable"].is_null()).count()
        });
        r.step(
            true,
            "published by the new leader",
            format!("{z} serial {serial} -> {new}, validated on {answering} node(s)"),
        );
        let s = status_of(&admin, target).ok_or(format!("node {target} does not answer"))?;
        let zz = s["zones"]
            .as_array()
            .and_then(|zs| zs.iter().find(|x| x["name"] == z.as_str()).cloned())
            .unwrap_or_default();
        let re = zz["resigned_unchanged"].as_u64().unwrap_or(u64::MAX);
        r.step(
            re == 0 && zz["published_by"].as_u64() == Some(target),
            "nothing re-signed that was not due",
            format!(
                "{z}: published by node {}, signed {}, reused {}, unchanged re-signed {re}",
                zz["published_by"], zz["signed"], zz["reused"]
            ),
        );
    }
    for ((z, _), b) in zones.iter().zip(&before) {
        let after = dnskeys(&rt, &tdns, z)?;
        r.step(
            &after == b,
            "DNSKEY RRset identical",
            format!(
                "{z}: {} key(s) before, {} after, from node {target} over DNS",
                b.len(),
                after.len()
            ),
        );
    }
    Ok(())
}

/// Waits until every answering member validated a serial of `zone` above `serial`.
fn new_serial_everywhere(
    admin: &str,
    st: &Value,
    zone: &str,
    serial: u64,
    timeout: Duration,
) -> Option<u64> {
    let members: Vec<u64> = st["nodes"]
        .as_array()?
        .iter()
        .filter(|n| n["unreachable"].is_null())
        .filter_map(|n| n["id"].as_u64())
        .collect();
    wait(timeout, || {
        let mut seen = None;
        for m in &members {
            let s = status_of(admin, *m)?;
            let zz = s["zones"]
                .as_array()?
                .iter()
                .find(|x| x["name"] == zone)?
                .clone();
            let v = zz["validated_serial"].as_u64()?;
            if v <= serial || seen.is_some_and(|x| x != v) {
                return None;
            }
            seen = Some(v);
        }
        seen
    })
}

fn hsm_loss(a: &HsmLossArgs, r: &mut Report) -> Result<(), String> {
    let (st, leader, lnode) = leader_status(&a.a.admin)?;
    r.step(
        true,
        "leader",
        format!("node {leader}, keystore {}", lnode["keystore"]),
    );
    let standbys: Vec<u64> = st["nodes"]
        .as_array()
        .map(|ns| {
            ns.iter()
                .filter(|n| n["id"].as_u64() != Some(leader))
                .filter(|n| n["readiness"]["ready"] == true && n["unreachable"].is_null())
                .filter_map(|n| n["id"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    r.step(
        !standbys.is_empty(),
        "a ready standby signer",
        format!("{standbys:?}"),
    );
    let zones = zone_serials(&lnode);
    r.step(
        !zones.is_empty(),
        "zones to publish",
        format!("{}", zones.len()),
    );
    if !r.preflight_passed(
        a.dry_run,
        format!("would take node {leader}'s keystore away"),
    )? {
        return Ok(());
    }
    let admin = a.a.admin.clone();
    let keystore = format!("/nodes/{leader}/keystore");
    let off = call(
        &admin,
        "POST",
        &keystore,
        Some(&crate::admin::api::body(&crate::admin::api::Keystore {
            available: false,
        })),
        Duration::from_secs(30),
    )?;
    if off.code != 200 {
        return Err(format!("keystore off: {}", off.message()));
    }
    let t_lost = Instant::now();
    r.step(true, "keystore taken away", format!("node {leader}"));
    let restore = || {
        let _ = call(
            &admin,
            "POST",
            &keystore,
            Some(&crate::admin::api::body(&crate::admin::api::Keystore {
                available: true,
            })),
            Duration::from_secs(30),
        );
    };
    let new = wait(Duration::from_secs(60), || {
        let s = status_of(&admin, leader)?;
        s["leader"].as_u64().filter(|l| *l != leader)
    });
    let Some(new) = new else {
        restore();
        return Err(format!("node {leader} did not step down in 60 s"));
    };
    r.step(true, "leader stepped down", format!("node {new} leads"));
    let mut worst = Duration::ZERO;
    for (z, serial) in &zones {
        let ans = call(
            &admin,
            "POST",
            &format!("/zones/{z}/reload"),
            None,
            Duration::from_secs(30),
        )?;
        if ans.code != 200 {
            restore();
            return Err(format!("zone reload {z}: {}", ans.message()));
        }
        let Some(v) = new_serial_everywhere(&admin, &st, z, *serial, Duration::from_secs(120))
        else {
            restore();
            return Err(format!(
                "zone {z}: no new serial validated everywhere in 120 s"
            ));
        };
        let gap = t_lost.elapsed();
        worst = worst.max(gap);
        r.step(
            true,
            "published by the standby",
            format!(
                "{z} serial {serial} -> {v}; {:.3} s after the keystore was lost",
                gap.as_secs_f64()
            ),
        );
    }
    r.step(true, "publication gap", format!("{} ms", worst.as_millis()));
    restore();
    let back = wait(Duration::from_secs(30), || {
        let s = status_of(&admin, leader)?;
        (s["readiness"]["ready"] == true).then_some(())
    });
    r.step(
        back.is_some(),
        "keystore given back",
        format!("node {leader} ready again: {}", back.is_some()),
    );
    Ok(())
}

/// Node `id`'s status, through the node at `admin` (which asks it over the node
/// transport).
fn status_of(admin: &str, id: u64) -> Option<Value> {
    let v = call(admin, "GET", "/cluster", None, Duration::from_secs(5))
        .ok()?
        .json();
    let s = v["members"][id.to_string()].clone();
    (!s.is_null()).then_some(s)
}
