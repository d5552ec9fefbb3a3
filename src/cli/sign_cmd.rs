use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::hsm;
use crate::signer::{self, Denial, Nsec3Params, SignOptions, SignatureCache};
use crate::zone::write::AtomicFile;
use crate::zone::{Limits, ParseOptions, Zone};

#[derive(Args)]
pub struct SignArgs {
    /// Zone name (the origin of the input file).
    #[arg(long)]
    zone: String,
    /// Unsigned zone file.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the signed zone (written to a temporary file, then renamed).
    #[arg(long)]
    output: PathBuf,
    /// Keystore URI: dir:PATH, pkcs11:…, fault:every=N:URI.
    #[arg(long)]
    keystore: String,
    /// Denial of existence: nsec or nsec3.
    #[arg(long, default_value = "nsec3")]
    denial: String,
    /// NSEC3 opt-out (RFC 5155 §6): insecure delegations get no NSEC3.
    #[arg(long)]
    opt_out: bool,
    /// NSEC3 extra iterations (RFC 9276: 0).
    #[arg(long, default_value_t = 0)]
    iterations: u16,
    /// NSEC3 salt in hex, or - for none (RFC 9276: none).
    #[arg(long, default_value = "-")]
    salt: String,
    /// Signature validity, e.g. 14d.
    #[arg(long, default_value = "14d")]
    validity: String,
    /// Spread of expirations, e.g. 12h.
    #[arg(long, default_value = "12h")]
    jitter: String,
    /// Inception this far before now, e.g. 1h.
    #[arg(long, default_value = "1h")]
    inception_offset: String,
    /// Re-sign cached signatures expiring within this, e.g. 3d.
    #[arg(long, default_value = "3d")]
    refresh: String,
    /// DNSKEY RRset TTL (default: the input's DNSKEY TTL or the SOA TTL).
    #[arg(long)]
    dnskey_ttl: Option<String>,
    /// Signature cache file: read to reuse signatures, rewritten after a successful run.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Treat this as the current time (unix seconds or YYYYMMDDHHmmSS).
    #[arg(long)]
    now: Option<String>,
    /// Signing threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Largest RRset accepted, in records.
    #[arg(long, default_value_t = Limits::default().rrset_records_max)]
    rrset_records_max: usize,
}

pub fn run(a: SignArgs) -> Result<()> {
    if let Some(t) = a.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .ok();
    }
    let origin = super::parse_zone_name(&a.zone).map_err(anyhow::Error::msg)?;
    let mut opts =
        SignOptions::new(super::parse_now(a.now.as_deref()).map_err(anyhow::Error::msg)?);
    let d = |s: &str| super::parse_duration(s).map_err(anyhow::Error::msg);
    opts.validity_s = d(&a.validity)?;
    opts.jitter_s = d(&a.jitter)?;
    opts.inception_offset_s = d(&a.inception_offset)?;
    opts.refresh_s = d(&a.refresh)?;
    opts.dnskey_ttl = a.dnskey_ttl.as_deref().map(d).transpose()?;
    opts.denial = match a.denial.as_str() {
        "nsec" => {
            if a.opt_out {
                bail!("--opt-out needs --denial nsec3");
            }
            Denial::Nsec
        }
        "nsec3" => {
            let salt = if a.salt == "-" {
                Vec::new()
            } else {
                data_encoding::HEXLOWER_PERMISSIVE
                    .decode(a.salt.as_bytes())
                    .map_err(|_| anyhow::anyhow!("bad --salt {:?}: hex or -", a.salt))?
            };
            Denial::Nsec3(Nsec3Params {
                iterations: a.iterations,
                salt,
                opt_out: a.opt_out,
            })
        }
        o => bail!("unknown --denial {o:?}: use nsec or nsec3"),
    };

    let t0 = Instant::now();
    let popts = ParseOptions {
        origin: origin.clone(),
        limits: Limits {
            rrset_records_max: a.rrset_records_max,
            ..Limits::default()
        },
        keep_dnssec: false,
    };
    let (zone, warnings) = Zone::load(&a.input, &popts)?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let t_parse = t0.elapsed();
    let store = hsm::open(&a.keystore)?;
    let keys = store.load(&origin)?;
    if keys.is_empty() {
        bail!(
            "no keys for {origin} in {}: create some with `quorumsign keys generate`",
            store.describe()
        );
    }
    let cache = match &a.cache {
        Some(p) => SignatureCache::load(p, &origin)?,
        None => SignatureCache::default(),
    };
    let bar = super::progress_bar("signing");
    let t1 = Instant::now();
    let signed = signer::sign_zone(zone, &keys, &opts, &cache, &|n, total| {
        super::advance(&bar, n, total)
    })
    .context("signing")?;
    bar.finish_and_clear();
    let t_sign = t1.elapsed();

    // The publish gate: nothing is written unless the whole signed zone validates.
    let tv = Instant::now();
    let report = signed.verify(opts.now);
    if !report.valid {
        for f in report.failures.iter().take(20) {
            tracing::error!("{} {}: {}", f.owner, f.rtype, f.message);
        }
        bail!(
            "the signed zone failed validation ({} failure(s)); nothing was written",
            report.failures.len()
        );
    }
    let t_validate = tv.elapsed();

    let t2 = Instant::now();
    let mut out = AtomicFile::create(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    signed
        .write_text(&mut |s| out.write_all(s.as_bytes()))
        .with_context(|| format!("writing {}", a.output.display()))?;
    out.commit()
        .with_context(|| format!("writing {}", a.output.display()))?;
    if let Some(p) = &a.cache {
        signed.cache.save(p)?;
    }
    let s = signed.stats;
    tracing::info!(
        zone = %origin,
        rrsets = s.rrsets,
        signed = s.signed,
        reused = s.reused,
        parse_ms = t_parse.as_millis() as u64,
        sign_ms = t_sign.as_millis() as u64,
        validate_ms = t_validate.as_millis() as u64,
        write_ms = t2.elapsed().as_millis() as u64,
        "signed {}",
        a.output.display()
    );
    // The process ends right after this: freeing millions of records one by one would
    // only delay the exit.
    std::mem::forget(signed);
    Ok(())
}
