//! Node configuration: `node.toml`.
//!
//! ```toml
//! id = 1
//! data_dir = "node1"                 # relative paths are relative to this file
//! raft_listen = "127.0.0.1:7101"     # node-to-node RPC, mutual TLS
//! admin_listen = "127.0.0.1:7201"    # admin API (HTTP, bind it to loopback)
//! keystore = "embedded"              # or a pkcs11: URI shared by every node
//! passphrase_file = "cluster.pass"   # seals embedded keys in the replicated state
//! log_level = "info"
//!
//! [tls]
//! ca = "certs/ca.pem"
//! cert = "certs/node-1.pem"
//! key = "certs/node-1.key"
//!
//! [[peers]]                          # every other member, for bootstrap and admission
//! id = 2
//! raft = "127.0.0.1:7102"
//! admin = "127.0.0.1:7202"
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
    pub admin_listen: String,
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
    #[serde(default = "default_on_failure")]
    pub on_failure: String,
}

fn default_fence_timeout() -> u64 {
    30
}
fn default_fence_retries() -> u32 {
    2
}
fn default_on_failure() -> String {
    "block".into()
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
    pub admin: String,
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
        let mut c: NodeConfig =
            toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
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

    /// The TSIG keys of `[[tsig]]`, secrets read.
    pub fn tsig_keys(&self) -> Result<Vec<crate::serve::tsig::TsigKey>, String> {
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
            let k = crate::serve::tsig::TsigKey::new(&t.name, &t.algorithm, &secret)?;
            if out
                .iter()
                .any(|o: &crate::serve::tsig::TsigKey| o.name == k.name)
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
            if !matches!(f.on_failure.as_str(), "block" | "sign") {
                return Err(format!(
                    "fence.on_failure {:?}: expected \"block\" or \"sign\"",
                    f.on_failure
                ));
            }
        }
        for (what, a) in [
            ("raft_listen", &self.raft_listen),
            ("admin_listen", &self.admin_listen),
        ] {
            a.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("{what} {a:?}: {e} (expected IP:PORT)"))?;
        }
        for p in &self.peers {
            if p.id == self.id {
                return Err(format!("peer {} is this node's own id", p.id));
            }
            for a in [&p.raft, &p.admin] {
                a.parse::<std::net::SocketAddr>()
                    .map_err(|e| format!("peer {}: address {a:?}: {e}", p.id))?;
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
            admin: self.admin_listen.clone(),
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
                        admin: p.admin.clone(),
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
