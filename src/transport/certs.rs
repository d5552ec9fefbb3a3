//! `quorumsign cluster certs`: a lab CA and one certificate per node.
//!
//! Each node certificate carries the DNS name `node-<id>.quorumsign`, which is how the
//! transport binds a TLS identity to a node id. For production, issue certificates with
//! the same names from your own CA.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use super::node_dns_name;
use crate::replica::NodeId;

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

fn io(p: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", p.display())
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "quorumsign lab CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// Makes `ca.pem`, `ca.key` (unless they exist) and `node-<id>.pem` / `node-<id>.key` for
/// each id in `dir`. Returns the files written.
pub fn make(dir: &Path, ids: &[NodeId]) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let e = |e: rcgen::Error| e.to_string();
    let (ca_pem, ca_key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    let mut written = Vec::new();
    let ca_key = if ca_key_path.exists() {
        let text = std::fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
        KeyPair::from_pem(&text).map_err(e)?
    } else {
        let key = KeyPair::generate().map_err(e)?;
        let cert = ca_params().map_err(e)?.self_signed(&key).map_err(e)?;
        std::fs::write(&ca_pem, cert.pem()).map_err(io(&ca_pem))?;
        write_private(&ca_key_path, &key.serialize_pem()).map_err(io(&ca_key_path))?;
        written.extend([
            ca_pem.display().to_string(),
            ca_key_path.display().to_string(),
        ]);
        key
    };
    // The issuer is the CA's subject and key; both are the same on every run.
    let issuer = Issuer::new(ca_params().map_err(e)?, &ca_key);
    for id in ids {
        let key = KeyPair::generate().map_err(e)?;
        let mut params = CertificateParams::new(vec![node_dns_name(*id)]).map_err(e)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("quorumsign node {id}"));
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer).map_err(e)?;
        let (cp, kp) = (
            dir.join(format!("node-{id}.pem")),
            dir.join(format!("node-{id}.key")),
        );
        std::fs::write(&cp, cert.pem()).map_err(io(&cp))?;
        write_private(&kp, &key.serialize_pem()).map_err(io(&kp))?;
        written.extend([cp.display().to_string(), kp.display().to_string()]);
    }
    Ok(written)
}
