//! `quorumsign cluster certs`: a lab CA and one certificate per node.
//!
//! Each node certificate carries the DNS name `node-<id>.quorumsign`, which is how the
//! transport binds a TLS identity to a node id. For production, issue certificates with
//! the same names from your own CA.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use super::node_dns_name;
use crate::replica::NodeId;

/// Writes a secret file, created 0600 (and set to 0600 if it existed).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

fn io(p: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", p.display())
}

fn ca_params(name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// Creates `dir` (0700) if it is missing.
fn private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// The CA `<stem>.pem` / `<stem>.key` in `dir`: read, or made (key 0600) and listed in
/// `written`.
fn ca(dir: &Path, stem: &str, name: &str, written: &mut Vec<String>) -> Result<KeyPair, String> {
    let e = |e: rcgen::Error| e.to_string();
    let (ca_pem, ca_key_path) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    if ca_key_path.exists() {
        let text = std::fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
        return KeyPair::from_pem(&text).map_err(e);
    }
    let key = KeyPair::generate().map_err(e)?;
    let cert = ca_params(name).map_err(e)?.self_signed(&key).map_err(e)?;
    write_private(&ca_key_path, &key.serialize_pem()).map_err(io(&ca_key_path))?;
    std::fs::write(&ca_pem, cert.pem()).map_err(io(&ca_pem))?;
    written.extend([
        ca_pem.display().to_string(),
        ca_key_path.display().to_string(),
    ]);
    Ok(key)
}

/// Makes `ca.pem`, `ca.key` (unless they exist) and `node-<id>.pem` / `node-<id>.key` for
/// each id in `dir`; `hosts(id)` are further names (host names or IP addresses) of that
/// node's certificate, for its HTTPS admin listener. Returns the files written.
pub fn make(
    dir: &Path,
    ids: &[NodeId],
    hosts: &dyn Fn(NodeId) -> Vec<String>,
) -> Result<Vec<String>, String> {
    private_dir(dir)?;
    let e = |e: rcgen::Error| e.to_string();
    let mut written = Vec::new();
    let ca_key = ca(dir, "ca", "quorumsign lab CA", &mut written)?;
    // The issuer is the CA's subject and key; both are the same on every run.
    let issuer = Issuer::new(ca_params("quorumsign lab CA").map_err(e)?, &ca_key);
    for id in ids {
        let key = KeyPair::generate().map_err(e)?;
        let mut names = vec![node_dns_name(*id)];
        names.extend(hosts(*id));
        let mut params = CertificateParams::new(names).map_err(e)?;
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

/// Makes an operator's client certificate `operator-<name>.pem` / `.key` in `dir`, issued
/// by the operator CA (`operator-ca.pem`, made if missing): common name `name`, and the
/// URI SAN of `role` ([`crate::access::role_uri`]). Returns the files written.
pub fn operator(dir: &Path, name: &str, role: crate::access::Role) -> Result<Vec<String>, String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(format!(
            "operator name {name:?}: 1 to 64 of letters, digits, '.', '_' and '-'"
        ));
    }
    private_dir(dir)?;
    let e = |e: rcgen::Error| e.to_string();
    let mut written = Vec::new();
    let ca_key = ca(dir, "operator-ca", "quorumsign operator CA", &mut written)?;
    let issuer = Issuer::new(ca_params("quorumsign operator CA").map_err(e)?, &ca_key);
    let key = KeyPair::generate().map_err(e)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    params.distinguished_name.push(DnType::CommonName, name);
    let uri = rcgen::string::Ia5String::try_from(crate::access::role_uri(role)).map_err(e)?;
    params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
    params.use_authority_key_identifier_extension = true;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).map_err(e)?;
    let (cp, kp) = (
        dir.join(format!("operator-{name}.pem")),
        dir.join(format!("operator-{name}.key")),
    );
    write_private(&kp, &key.serialize_pem()).map_err(io(&kp))?;
    std::fs::write(&cp, cert.pem()).map_err(io(&cp))?;
    written.extend([cp.display().to_string(), kp.display().to_string()]);
    Ok(written)
}
