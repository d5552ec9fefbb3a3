use std::path::PathBuf;

use clap::Args;

use crate::validate::{self, VerifyOptions};
use crate::zone::{Limits, ParseOptions, Zone, rtype};

#[derive(Args)]
pub struct VerifyArgs {
    /// Zone name.
    #[arg(long)]
    zone: String,
    /// Signed zone file.
    file: PathBuf,
    /// A file of DS or DNSKEY records the zone must chain to.
    #[arg(long)]
    trust_anchor: Option<PathBuf>,
    /// Check validity windows at this time (unix seconds or YYYYMMDDHHmmSS).
    #[arg(long)]
    now: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Exit codes: 0 valid, 1 invalid, 2 unusable input.
pub fn run(a: VerifyArgs) -> i32 {
    match run_inner(&a) {
        Ok(report) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("report serialises")
                );
            } else {
                for f in &report.failures {
                    println!("{} {}: {}", f.owner, f.rtype, f.message);
                }
                println!(
                    "{}: {} ({} RRsets, {} RRSIGs checked, {}, {} failure(s))",
                    report.zone,
                    if report.valid { "valid" } else { "INVALID" },
                    report.rrsets_checked,
                    report.rrsigs_checked,
                    report.denial,
                    report.failures.len()
                );
            }
            if report.valid { 0 } else { 1 }
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn run_inner(a: &VerifyArgs) -> Result<validate::Report, String> {
    let origin = super::parse_zone_name(&a.zone)?;
    let now = super::parse_now(a.now.as_deref())?;
    let popts = ParseOptions {
        origin: origin.clone(),
        limits: Limits::default(),
        keep_dnssec: true,
    };
    let (zone, _) = Zone::load(&a.file, &popts).map_err(|e| e.to_string())?;
    let mut trust_anchors = Vec::new();
    if let Some(p) = &a.trust_anchor {
        let parsed = crate::zone::parse::parse_file(
            p,
            &ParseOptions {
                keep_dnssec: true,
                ..popts.clone()
            },
        )
        .map_err(|e| e.to_string())?;
        for r in parsed.records {
            if matches!(r.rtype, rtype::DS | rtype::DNSKEY) && r.owner == origin {
                trust_anchors.push((r.rtype, r.rdata.to_vec()));
            }
        }
        if trust_anchors.is_empty() {
            return Err(format!(
                "{}: no DS or DNSKEY record for {origin}",
                p.display()
            ));
        }
    }
    let bar = super::progress_bar("verifying");
    let report = validate::verify_zone_with_progress(
        &zone,
        &VerifyOptions {
            now,
            trust_anchors,
            signatures_prechecked: false,
            private_keys: Vec::new(),
        },
        &|n, total| super::advance(&bar, n, total),
    );
    bar.finish_and_clear();
    // The process ends right after the report: skip freeing millions of records.
    std::mem::forget(zone);
    Ok(report)
}
