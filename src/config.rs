//! Node configuration: `node.toml`.
//!
//! ```toml
//! id = 1
//! data_dir = "node1"                 # relative paths are relative to this file
//! raft_listen = "127.0.0.1:7101"     # node-to-node RPC, mutual TLS
//! admin_listen = "127.0.0.1:7201"    # optional: admin API over HTTPS (client certificates)
//! keystore = "embedded"              # or a pkcs11: URI shared by every node
//! passphrase_file = "cluster.pass"   # seals embedded keys in the replicated state
//! log_level = "info"
//!
//! [tls]
//! ca = "certs/ca.pem"
//! cert = "certs/node-1.pem"
//! key = "certs/node-1.key"
//!
//! [admin]                            # optional; see `access` for the roles
//! socket = "/run/quorumsign/admin.sock"   # the default; mode 0660
//! socket_group = "quorumsign"        # group of the socket (default: the node's)
//! operator_ca = "certs/operator-ca.pem"   # CA of operator certificates (admin_listen)
//! names = ["signer1.example.net"]    # Host names admin_listen answers for
//! [admin.users]                      # Unix user (name or uid) on the socket -> role
//! root = "security-officer"
//! dnsops = "operator"
//! [admin.certs]                      # certificate common name -> role (beats the SAN)
//! nagios = "monitor"
//!
//! [[peers]]                          # every other member, for bootstrap and admission
//! id = 2
//! raft = "127.0.0.1:7102"
//! admin = "127.0.0.1:7202"           # optional: its HTTPS admin address, for operators
//!
//! [raft]                             # optional; these are the defaults (one site)
//! heartbeat_ms = 100
//! election_min_ms = 500
//! election_max_ms = 1000
//! snapshot_every = 500
//! keep_logs = 64
//!
//! [signer]                           # optional; these are the defaults
//! tick_ms = 500
//! revalidate_s = 3600
//! readiness_s = 30
//! max_clock_skew_s = 300             # the leader signs only while its clock agrees with the others'
//! transfer_timeout_s = 600           # a transfer in from a hidden primary must be whole by then
//! zone_tasks = 4                     # zones the leader runs at once
//!
//! [dns]                              # optional: serve the zones (UDP and TCP)
//! listen = "127.0.0.1:5301"
//!
//! [[tsig]]                           # keys for transfers, NOTIFY and the hidden primary
//! name = "xfr-key"
//! algorithm = "hmac-sha256"          # the default
//! secret = "base64…"                 # or secret_file = "xfr-key.secret"
//! ```
//! Unknown keys are errors, with the line that holds them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::replica::{NodeAddr, NodeId};
use crate::transport::TlsFiles;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: NodeId,
    pub data_dir: PathBuf,
    pub raft_listen: String,
    /// The admin API over HTTPS with client certificates of `admin.operator_ca`.
    pub admin_listen: Option<String>,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default = "default_keystore")]
    pub keystore: String,
    pub passphrase_file: Option<PathBuf>,
    #[serde(default = "default_log")]
    pub log_level: String,
    pub tls: TlsConfig,
    #[serde(default)]
    pub peers: Vec<Peer>,
    #[serde(default)]
    pub raft: RaftTiming,
    #[serde(default)]
    pub signer: SignerConfig,
    pub dns: Option<DnsConfig>,
    #[serde(default)]
    pub tsig: Vec<TsigConfig>,
    pub fence: Option<FenceConfig>,
    /// A voter that never signs (the tie-breaking site of a two-DC deployment): if it is
    /// elected it hands leadership to a ready signer at once. May use `keystore = "none"`.
    #[serde(default)]
    pub witness: bool,
    /// Fault injection, for chaos runs only: a file the node rereads every 100 ms whose
    /// `keystore = ok|garbage|wrong-key|error|stall` line makes every signing key misbehave,
    /// `clock = ±SECONDS` offsets the wall clock and `disk = fsync-error` fails every flush
    /// of the Raft log.
    pub fault_control: Option<PathBuf>,
}

/// The fence hook: run by a new leader against a predecessor that did not hand over
/// cleanly, before it signs anything (see `fencing/README.md` for the contract).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FenceConfig {
    /// Program and its first arguments (no shell); node id, address, term and reason follow.
    pub command: Vec<String>,
    #[serde(default = "default_fence_timeout")]
    pub timeout_s: u64,
    /// Further tries after a failure.
    #[serde(default = "default_fence_retries")]
    pub retries: u32,
    /// `block` (default): do not sign until a fence succeeds or an operator confirms one
    /// (`node fence N --manual`); `sign`: record the failure and sign anyway.
    #[serde(default)]
    pub on_failure: OnFailure,
}

/// What a new leader does when fencing its predecessor fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Sign nothing until a fence succeeds or an operator confirms one.
    #[default]
    Block,
    /// Record the failure and sign anyway.
    Sign,
}

fn default_fence_timeout() -> u64 {
    30
}
fn default_fence_retries() -> u32 {
    2
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Address for UDP and TCP.
    pub listen: String,
    /// While this node is a self-fenced leader, refuse zone transfers too (queries are
    /// still answered).
    #[serde(default)]
    pub stop_transfers_when_fenced: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsigConfig {
    pub name: String,
    #[serde(default = "default_tsig_alg")]
    pub algorithm: String,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
}

fn default_tsig_alg() -> String {
    "hmac-sha256".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub id: NodeId,
    pub raft: String,
    /// Its HTTPS admin address, shown to operators (nodes never use it).
    pub admin: Option<String>,
}

/// The admin API's ways in, who may use them, and their limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The Unix socket (mode 0660): callers are known by their uid.
    pub socket: PathBuf,
    /// The group that owns the socket; by default the node's.
    pub socket_group: Option<String>,
    /// The CA whose client certificates `admin_listen` accepts (operators, not nodes).
    pub operator_ca: Option<PathBuf>,
    /// Host names `admin_listen` answers for besides its own address (the Host header).
    pub names: Vec<String>,
    /// Unix user name or numeric uid -> role, for the socket.
    pub users: std::collections::BTreeMap<String, String>,
    /// Certificate subject common name -> role; beats the role the certificate names.
    pub certs: std::collections::BTreeMap<String, String>,
    /// Connections served at once, both listeners together; more are closed at once.
    pub max_connections: usize,
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// TLS handshake deadline, milliseconds.
    pub handshake_timeout_ms: u64,
    /// From a connection's start to the end of its request head, milliseconds. A
    /// connection carries one request, so this is also its idle timeout.
    pub header_timeout_ms: u64,
    /// Reading the request body, milliseconds.
    pub body_timeout_ms: u64,
    /// Carrying out a request and writing the answer, seconds.
    pub request_timeout_s: u64,
    /// Largest operator note (`POST /v1/audit`), bytes.
    pub note_max_bytes: usize,
    /// Operator notes accepted per minute on this node.
    pub notes_per_minute: u32,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            socket: PathBuf::from("/run/quorumsign/admin.sock"),
            socket_group: None,
            operator_ca: None,
            names: Vec::new(),
            users: Default::default(),
            certs: Default::default(),
            max_connections: 64,
            max_header_bytes: 16 << 10,
            max_body_bytes: 1 << 20,
            handshake_timeout_ms: 5_000,
            header_timeout_ms: 5_000,
            body_timeout_ms: 10_000,
            request_timeout_s: 300,
            note_max_bytes: 4 << 10,
            notes_per_minute: 10,
        }
    }
}

impl AdminConfig {
    fn check(&self, https: bool) -> Result<(), String> {
        for (who, role) in self.users.iter().chain(&self.certs) {
            crate::access::Role::parse(role).map_err(|e| format!("admin: {who}: {e}"))?;
        }
        if https && self.operator_ca.is_none() {
            return Err(
                "admin_listen needs admin.operator_ca (the CA of operator certificates)".into(),
            );
        }
        if let Some(ca) = &self.operator_ca
            && !ca.exists()
        {
            return Err(format!("admin.operator_ca {} does not exist", ca.display()));
        }
        for (what, v) in [
            ("max_connections", self.max_connections as u64),
            ("max_header_bytes", self.max_header_bytes as u64),
            ("max_body_bytes", self.max_body_bytes as u64),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("header_timeout_ms", self.header_timeout_ms),
            ("body_timeout_ms", self.body_timeout_ms),
            ("request_timeout_s", self.request_timeout_s),
            ("note_max_bytes", self.note_max_bytes as u64),
            ("notes_per_minute", self.notes_per_minute as u64),
        ] {
            if v == 0 {
                return Err(format!("admin.{what} must be 1 or more"));
            }
        }
        if self.max_header_bytes < 8192 {
            return Err("admin.max_header_bytes must be 8192 or more".into());
        }
        Ok(())
    }

    /// The role mapped to a Unix user (by name, then by uid).
    pub fn user_role(&self, name: Option<&str>, uid: u32) -> Option<crate::access::Role> {
        name.and_then(|n| self.users.get(n))
            .or_else(|| self.users.get(&uid.to_string()))
            .and_then(|r| crate::access::Role::parse(r).ok())
    }

    /// The role mapped to a certificate's common name.
    pub fn cert_role(&self, cn: &str) -> Option<crate::access::Role> {
        self.certs
            .get(cn)
            .and_then(|r| crate::access::Role::parse(r).ok())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTiming {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot after this many log entries.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot (a lagging node further behind gets the snapshot).
    pub keep_logs: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_ms: 100,
            election_min_ms: 500,
            election_max_ms: 1000,
            snapshot_every: 500,
            keep_logs: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignerConfig {
    /// How often the leader looks at its zones' inputs and signature expirations.
    pub tick_ms: u64,
    /// Full re-validation of every zone's current version, on every node.
    pub revalidate_s: u64,
    /// Standby readiness checks (keystore reachable, test-sign with every active key).
    pub readiness_s: u64,
    /// Key-lifecycle clock: runs this many times faster than real time from `kasp_epoch`
    /// (Unix seconds). For rollover drills and tests only; 1 in production. Signatures
    /// always use real time.
    pub kasp_time_scale: u64,
    pub kasp_epoch: u64,
    /// Largest difference between the leader's wall clock and the other voters' it signs
    /// with; beyond it the leader raises a clock alarm and hands leadership over.
    pub max_clock_skew_s: u64,
    /// Longest a transfer from a hidden primary may take, whole (each message also has its
    /// own 30 s timeout); beyond it the transfer is dropped and retried later.
    pub transfer_timeout_s: u64,
    /// How many zones the leader runs at once (each in a task of its own): a slow zone
    /// holds one place, the others go on.
    pub zone_tasks: usize,
}

impl Default for SignerConfig {
    fn default() -> Self {
        SignerConfig {
            tick_ms: 500,
            revalidate_s: 3600,
            readiness_s: 30,
            kasp_time_scale: 1,
            kasp_epoch: 0,
            max_clock_skew_s: 300,
            transfer_timeout_s: 600,
            zone_tasks: 4,
        }
    }
}

fn default_keystore() -> String {
    "embedded".into()
}

fn default_log() -> String {
    "info".into()
}

impl NodeConfig {
    /// Reads and checks `path`; errors name the file and, for syntax, the line.
    pub fn load(path: &Path) -> Result<NodeConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        NodeConfig::from_text(&text, path)
    }

    /// Parses and checks `text`, read from `path` (relative paths are taken from there).
    pub fn from_text(text: &str, path: &Path) -> Result<NodeConfig, String> {
        // The error names the line and column, never the text there: it may be a secret.
        let mut c: NodeConfig = toml::from_str(text).map_err(|e: toml::de::Error| {
            let at = e.span().map(|s| {
                let before = &text.as_bytes()[..s.start.min(text.len())];
                let line = before.iter().filter(|b| **b == b'\n').count() + 1;
                let col = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
                format!("line {line}, column {col}: ")
            });
            format!(
                "{}: {}{}",
                path.display(),
                at.unwrap_or_default(),
                e.message()
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut c.data_dir);
        abs(&mut c.tls.ca);
        abs(&mut c.tls.cert);
        abs(&mut c.tls.key);
        if let Some(p) = c.passphrase_file.as_mut() {
            abs(p);
        }
        if let Some(p) = c.fault_control.as_mut() {
            abs(p);
        }
        abs(&mut c.admin.socket);
        if let Some(p) = c.admin.operator_ca.as_mut() {
            abs(p);
        }
        if let Some(f) = c.fence.as_mut()
            && let Some(p) = f.command.first_mut()
        {
            let mut pb = PathBuf::from(&*p);
            abs(&mut pb);
            *p = pb.display().to_string();
        }
        for t in &mut c.tsig {
            if let Some(p) = t.secret_file.as_mut() {
                abs(p);
            }
        }
        c.check().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(c)
    }

    /// Secret files this node reads that group or others may read: one warning each.
    pub fn exposed_secrets(&self) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let mut files: Vec<(&str, &Path)> = vec![("tls.key", &self.tls.key)];
        if let Some(p) = &self.passphrase_file {
            files.push(("passphrase_file", p));
        }
        for t in &self.tsig {
            if let Some(p) = &t.secret_file {
                files.push(("tsig secret_file", p));
            }
        }
        files
            .into_iter()
            .filter_map(|(what, p)| {
                let mode = std::fs::metadata(p).ok()?.permissions().mode();
                (mode & 0o077 != 0).then(|| {
                    format!(
                        "{what} {} is readable by group or others (mode {:o}); chmod 600 it",
                        p.display(),
                        mode & 0o777
                    )
                })
            })
            .collect()
    }

    /// The TSIG keys of `[[tsig]]`, secrets read.
    pub fn tsig_keys(&self) -> Result<Vec<crate::dns::tsig::TsigKey>, String> {
        let mut out = Vec::new();
        for t in &self.tsig {
            let secret = match (&t.secret, &t.secret_file) {
                (Some(s), None) => s.clone(),
                (None, Some(f)) => std::fs::read_to_string(f)
                    .map_err(|e| format!("tsig {}: secret_file {}: {e}", t.name, f.display()))?,
                _ => {
                    return Err(format!(
                        "tsig {}: give exactly one of secret and secret_file",
                        t.name
                    ));
                }
            };
            let k = crate::dns::tsig::TsigKey::new(&t.name, &t.algorithm, &secret)?;
            if out
                .iter()
                .any(|o: &crate::dns::tsig::TsigKey| o.name == k.name)
            {
                return Err(format!("tsig {}: defined twice", t.name));
            }
            out.push(k);
        }
        Ok(out)
    }

    fn check(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("id must be 1 or more".into());
        }
        if let Some(d) = &self.dns {
            d.listen
                .parse::<std::net::SocketAddr>()
                .map_err(|e| format!("dns.listen {:?}: {e} (expected IP:PORT)", d.listen))?;
        }
        self.tsig_keys()?;
        if let Some(f) = &self.fence {
            if f.command.is_empty() {
                return Err(
                    "fence.command: give the program to run (an argv list, no shell)".into(),
                );
            }
        }
        for (what, a) in [
            ("raft_listen", Some(&self.raft_listen)),
            ("admin_listen", self.admin_listen.as_ref()),
        ] {
            if let Some(a) = a {
                a.parse::<std::net::SocketAddr>()
                    .map_err(|e| format!("{what} {a:?}: {e} (expected IP:PORT)"))?;
            }
        }
        self.admin.check(self.admin_listen.is_some())?;
        for p in &self.peers {
            if p.id == self.id {
                return Err(format!("peer {} is this node's own id", p.id));
            }
            p.raft
                .parse::<std::net::SocketAddr>()
                .map_err(|e| format!("peer {}: raft address {:?}: {e}", p.id, p.raft))?;
            if let Some(a) = &p.admin {
                crate::access::Target::parse(a)
                    .map_err(|e| format!("peer {}: admin address {a:?}: {e}", p.id))?;
            }
        }
        let mut ids: Vec<_> = self.peers.iter().map(|p| p.id).collect();
        ids.sort();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err("two peers with one id".into());
        }
        if self.keystore == "none" && !self.witness {
            return Err("keystore \"none\" is only for a witness (witness = true)".into());
        }
        if self.keystore == "embedded" && self.passphrase_file.is_none() {
            return Err("keystore \"embedded\" needs passphrase_file (the cluster passphrase that seals keys)".into());
        }
        if self.keystore != "embedded"
            && self.keystore != "none"
            && !self.keystore.starts_with("pkcs11:")
        {
            return Err(format!(
                "keystore {:?}: expected \"embedded\" or a pkcs11: URI",
                self.keystore
            ));
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0
            || r.election_min_ms <= r.heartbeat_ms
            || r.election_max_ms <= r.election_min_ms
        {
            return Err(
                "raft timing: need 0 < heartbeat_ms < election_min_ms < election_max_ms".into(),
            );
        }
        let sg = &self.signer;
        for (what, v) in [
            ("signer.tick_ms", sg.tick_ms),
            ("signer.transfer_timeout_s", sg.transfer_timeout_s),
            ("signer.zone_tasks", sg.zone_tasks as u64),
        ] {
            if v == 0 {
                return Err(format!("{what}: must be at least 1"));
            }
        }
        if let Some(p) = &self.passphrase_file
            && !p.exists()
        {
            return Err(format!("passphrase_file {} does not exist", p.display()));
        }
        for (what, p) in [
            ("tls.ca", &self.tls.ca),
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
        ] {
            if !p.exists() {
                return Err(format!("{what} {} does not exist", p.display()));
            }
        }
        Ok(())
    }

    pub fn me(&self) -> NodeAddr {
        NodeAddr {
            raft: self.raft_listen.clone(),
            admin: self
                .admin_listen
                .as_ref()
                .map(|a| format!("https://{a}"))
                .unwrap_or_default(),
        }
    }

    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            ca: self.tls.ca.clone(),
            cert: self.tls.cert.clone(),
            key: self.tls.key.clone(),
        }
    }

    /// This node and its peers, for `cluster init`.
    pub fn members(&self) -> std::collections::BTreeMap<NodeId, NodeAddr> {
        let mut m: std::collections::BTreeMap<_, _> = self
            .peers
            .iter()
            .map(|p| {
                (
                    p.id,
                    NodeAddr {
                        raft: p.raft.clone(),
                        admin: p.admin.clone().unwrap_or_default(),
                    },
                )
            })
            .collect();
        m.insert(self.id, self.me());
        m
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// Every example config under cluster/ parses (unknown keys would be errors); their
    /// paths are for real hosts, so only the structure is checked here.
    #[test]
    fn example_configs_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster");
        let mut files = vec![root.join("node.toml.example")];
        for d in ["three-dc", "two-dc-witness"] {
            for e in std::fs::read_dir(root.join(d)).unwrap() {
                files.push(e.unwrap().path());
            }
        }
        assert!(files.len() >= 9);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let c: NodeConfig =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if c.witness {
                assert_eq!(c.keystore, "none", "{}", f.display());
            }
        }
    }
}
