//! Fencing: the hook a new leader runs against a predecessor that did not hand over cleanly,
//! before it signs anything.
//!
//! ```text
//!  leader of term T, first tick ─► last leader (replicated) = me, or handed over to me, or
//!                                  fenced since its term began? ── yes ─► LeaderStart{T}
//!                               └► no ─► run fence.command (argv, timeout, retries)
//!                                        ─► Fenced{ok, outcome} committed to the audit log
//!                                        ─► ok, or on_failure = "sign" ─► LeaderStart{T}
//!                                        ─► failed ─► no signing; retried; an operator may
//!                                           confirm by hand: `node fence N --manual`
//! ```
//! The hook contract (arguments, environment, exit codes) is in `fencing/README.md`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::FenceConfig;
use crate::replica::NodeId;

/// What one fence attempt (with its retries) gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceOutcome {
    pub ok: bool,
    /// `ok`, `failed (exit 3)`, `timed out after 30 s`, … with an excerpt of the output.
    pub summary: String,
}

/// Longest excerpt of the hook's output kept in the audit log.
const EXCERPT: usize = 400;

/// Runs the hook against `target` (up to 1 + retries times). Blocking.
pub fn run_hook(
    cfg: &FenceConfig,
    by: NodeId,
    target: NodeId,
    address: &str,
    term: u64,
    reason: &str,
) -> FenceOutcome {
    let mut last = FenceOutcome {
        ok: false,
        summary: "not run".into(),
    };
    for attempt in 0..=cfg.retries {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        last = once(cfg, by, target, address, term, reason);
        if last.ok {
            break;
        }
        tracing::warn!(target, attempt, "fence hook: {}", last.summary);
    }
    if cfg.retries > 0 && !last.ok {
        last.summary = format!("{} (after {} tries)", last.summary, cfg.retries + 1);
    }
    last
}

fn once(
    cfg: &FenceConfig,
    by: NodeId,
    target: NodeId,
    address: &str,
    term: u64,
    reason: &str,
) -> FenceOutcome {
    let fail = |s: String| FenceOutcome {
        ok: false,
        summary: s,
    };
    let Some(program) = cfg.command.first() else {
        return fail("no fence.command".into());
    };
    let out = match tempfile_in_tmp() {
        Ok(f) => f,
        Err(e) => return fail(format!("cannot make an output file: {e}")),
    };
    let spawned = Command::new(program)
        .args(&cfg.command[1..])
        .args([
            target.to_string(),
            address.to_string(),
            term.to_string(),
            reason.to_string(),
        ])
        .env("QS_FENCE_NODE", target.to_string())
        .env("QS_FENCE_ADDRESS", address)
        .env("QS_FENCE_TERM", term.to_string())
        .env("QS_FENCE_REASON", reason)
        .env("QS_FENCE_BY", by.to_string())
        .stdin(Stdio::null())
        .stdout(out.0.try_clone().map(Stdio::from).unwrap_or(Stdio::null()))
        .stderr(out.0.try_clone().map(Stdio::from).unwrap_or(Stdio::null()))
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot run {program}: {e}")),
    };
    let deadline = Instant::now() + Duration::from_secs(cfg.timeout_s.max(1));
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return fail(format!("waiting for {program}: {e}")),
        }
    };
    let mut text = String::new();
    let _ = std::fs::File::open(&out.1).and_then(|mut f| f.read_to_string(&mut text));
    let _ = std::fs::remove_file(&out.1);
    let text = text.trim();
    let excerpt: String = if text.len() > EXCERPT {
        let cut = text
            .char_indices()
            .nth(EXCERPT)
            .map_or(text.len(), |(i, _)| i);
        format!("{}…", &text[..cut])
    } else {
        text.to_string()
    };
    let with = |s: String| {
        if excerpt.is_empty() {
            s
        } else {
            format!("{s}: {excerpt}")
        }
    };
    match status {
        None => fail(with(format!("timed out after {} s", cfg.timeout_s))),
        Some(s) if s.success() => FenceOutcome {
            ok: true,
            summary: with("ok".into()),
        },
        Some(s) => fail(with(match s.code() {
            Some(c) => format!("failed (exit {c})"),
            None => "failed (killed by a signal)".into(),
        })),
    }
}

fn tempfile_in_tmp() -> std::io::Result<(std::fs::File, std::path::PathBuf)> {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| std::io::Error::other("no randomness"))?;
    let p = std::env::temp_dir().join(format!(
        "quorumsign-fence-{}.out",
        data_encoding::HEXLOWER.encode(&b)
    ));
    let f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&p)?;
    Ok((f, p))
}

/// Is the hook's program there and executable (readiness)?
pub fn check_hook(cfg: &FenceConfig) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let p = cfg.command.first().ok_or("fence.command is empty")?;
    let m = std::fs::metadata(p).map_err(|e| format!("fence hook {p}: {e}"))?;
    if !m.is_file() || m.permissions().mode() & 0o111 == 0 {
        return Err(format!("fence hook {p} is not an executable file"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(script: &str, timeout_s: u64, retries: u32) -> (tempfile::TempDir, FenceConfig) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hook.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let c = FenceConfig {
            command: vec![p.display().to_string(), "--lab".into()],
            timeout_s,
            retries,
            on_failure: crate::config::OnFailure::Block,
        };
        (d, c)
    }

    #[test]
    fn hook_gets_arguments_and_environment_and_its_outcome_is_reported() {
        let (_d, c) = cfg(
            "echo \"args=$* node=$QS_FENCE_NODE by=$QS_FENCE_BY reason=$QS_FENCE_REASON\"",
            5,
            0,
        );
        let o = run_hook(&c, 2, 1, "127.0.0.1:7101", 7, "leader lost");
        assert!(o.ok, "{o:?}");
        assert_eq!(
            o.summary,
            "ok: args=--lab 1 127.0.0.1:7101 7 leader lost node=1 by=2 reason=leader lost"
        );
        assert!(check_hook(&c).is_ok());
    }

    #[test]
    fn failures_timeouts_and_missing_programs_are_not_ok() {
        let (_d, c) = cfg("echo no power switch >&2; exit 3", 5, 1);
        let o = run_hook(&c, 2, 1, "a", 1, "r");
        assert!(!o.ok);
        assert_eq!(
            o.summary,
            "failed (exit 3): no power switch (after 2 tries)"
        );
        let (_d, c) = cfg("sleep 5", 1, 0);
        let t = Instant::now();
        let o = run_hook(&c, 2, 1, "a", 1, "r");
        assert!(
            !o.ok && o.summary.starts_with("timed out after 1 s"),
            "{o:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(4));
        let mut c = c;
        c.command = vec!["/nonexistent/fence".into()];
        assert!(!run_hook(&c, 2, 1, "a", 1, "r").ok);
        assert!(check_hook(&c).is_err());
    }
}
