use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::hsm;
use crate::keys::Algorithm;
use crate::zone::rtype;

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Generate a key in a keystore and print its basename or URI.
    Generate(GenerateArgs),
    /// List the keys of a zone in a keystore.
    List(ListArgs),
    #[command(flatten)]
    Cluster(super::kasp_cmd::ClusterKeysCmd),
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Zone the key is for.
    #[arg(long)]
    zone: String,
    /// Keystore URI: dir:PATH or pkcs11:…
    #[arg(long)]
    keystore: String,
    /// Algorithm number or mnemonic: 8, 13, 14, 15.
    #[arg(long, default_value = "13")]
    algorithm: String,
    /// Role: ksk, zsk or csk (a CSK is a KSK that also signs the zone).
    #[arg(long, default_value = "zsk")]
    role: String,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    zone: String,
    #[arg(long)]
    keystore: String,
}

#[derive(Args)]
pub struct DsArgs {
    #[arg(long)]
    zone: String,
    #[arg(long)]
    keystore: String,
    /// Digest type: 2 (SHA-256) or 4 (SHA-384).
    #[arg(long, default_value_t = 2)]
    digest: u8,
}

pub fn run(cmd: KeysCmd) -> Result<()> {
    match cmd {
        KeysCmd::Generate(a) => {
            let zone = super::parse_zone_name(&a.zone).map_err(anyhow::Error::msg)?;
            let alg = Algorithm::parse(&a.algorithm).map_err(|_| {
                anyhow::anyhow!(
                    "unsupported algorithm {:?}: use 8, 13, 14 or 15",
                    a.algorithm
                )
            })?;
            let ksk = match a.role.to_ascii_lowercase().as_str() {
                "ksk" | "csk" => true,
                "zsk" => false,
                r => bail!("unknown role {r:?}: use ksk, zsk or csk"),
            };
            let store = hsm::open(&a.keystore)?;
            let key = store.generate(&zone, alg, ksk)?;
            let d = key.dnskey();
            println!("{}", key.handle());
            tracing::info!(zone = %zone, tag = d.key_tag(), algorithm = d.algorithm, role = d.role(), "generated key");
            Ok(())
        }
        KeysCmd::Cluster(c) => super::kasp_cmd::keys(c).map_err(anyhow::Error::msg),
        KeysCmd::List(a) => {
            let zone = super::parse_zone_name(&a.zone).map_err(anyhow::Error::msg)?;
            let store = hsm::open(&a.keystore)?;
            for k in store.load(&zone)? {
                let d = k.dnskey();
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    d.key_tag(),
                    d.algorithm,
                    d.role(),
                    d.id(),
                    k.handle()
                );
            }
            Ok(())
        }
    }
}

pub fn ds(a: DsArgs) -> Result<()> {
    let zone = super::parse_zone_name(&a.zone).map_err(anyhow::Error::msg)?;
    let store = hsm::open(&a.keystore)?;
    let keys = store.load(&zone).context("loading keys")?;
    let mut n = 0;
    for k in keys.iter().filter(|k| k.dnskey().is_sep()) {
        let rd = k
            .dnskey()
            .ds_rdata(&zone, a.digest)
            .ok_or_else(|| anyhow::anyhow!("unsupported digest type {}", a.digest))?;
        let mut s = String::new();
        crate::zone::write::push_record(&mut s, &zone, rtype::DS, 3600, &rd);
        print!("{s}");
        n += 1;
    }
    if n == 0 {
        bail!("no key-signing keys for {zone} in {}", store.describe());
    }
    Ok(())
}
