//! The admin API's request bodies, defined once: the server (`admin`) parses them, the CLI
//! and the tests build them. Unknown fields are refused, so a misspelt option is an error,
//! not a silent default.

use serde::{Deserialize, Serialize};

use crate::replica::NodeId;

/// `POST /v1/zones`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneAdd {
    pub name: String,
    /// An absolute zone file path …
    pub file: Option<String>,
    /// … or a hidden primary: `ADDR:PORT [key NAME]`.
    pub primary: Option<String>,
    pub denial: Option<String>,
    pub algorithm: Option<u8>,
    pub csk: Option<bool>,
    pub serial: Option<String>,
    pub output: Option<String>,
    #[serde(default)]
    pub notify: Vec<String>,
    #[serde(default)]
    pub transfer: Vec<String>,
    pub max_records: Option<u64>,
    /// A key and signing policy (TOML text); needs the security-officer role.
    pub policy: Option<String>,
}

/// `PATCH /v1/zones/NAME`: what to change; lists replace the zone's lists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSet {
    pub file: Option<String>,
    pub primary: Option<String>,
    pub serial: Option<String>,
    pub output: Option<String>,
    #[serde(default)]
    pub no_output: bool,
    pub notify: Option<Vec<String>>,
    pub transfer: Option<Vec<String>>,
    pub max_records: Option<u64>,
    /// A new key and signing policy (TOML text): a changed algorithm or key roles starts
    /// the rolls that get there. Needs the security-officer role.
    pub policy: Option<String>,
}

/// `POST /v1/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAdd {
    pub id: NodeId,
    /// Its node-transport address, HOST:PORT.
    pub raft: String,
    /// Its HTTPS admin address, shown to operators.
    #[serde(default)]
    pub admin: Option<String>,
}

/// `POST /v1/leader/transfer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderTransfer {
    pub to: NodeId,
}

/// `POST /v1/nodes/ID/fence`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fence {
    /// The operator fenced the node by hand: no hook is run.
    #[serde(default)]
    pub manual: bool,
}

/// `POST /v1/nodes/ID/rejoin`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rejoin {
    /// Wipe the node's store even when it is not known to be restored from an old copy.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/keystore`, `POST /v1/nodes/ID/keystore`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keystore {
    pub available: bool,
}

/// `POST /v1/audit`: an operator note.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    pub command: String,
}

/// `DELETE /v1/zones/NAME`, `DELETE /v1/zones/NAME/keys`: the zone's name again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirm {
    pub confirm: String,
}

/// `POST /v1/zones/NAME/keys`: a key event.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAction {
    /// rollover, ds-seen, ds-gone, clock-ok or backup-commit.
    pub action: String,
    pub role: Option<String>,
    pub tag: Option<u16>,
    pub ttl: Option<u32>,
    #[serde(default)]
    pub tags: Vec<u16>,
    #[serde(default)]
    pub all: bool,
    /// ds-seen / ds-gone against what the parent's servers answer (audited as forced).
    #[serde(default)]
    pub force: bool,
}

/// A request body as JSON, for the client.
pub fn body<T: Serialize>(req: &T) -> serde_json::Value {
    serde_json::to_value(req).unwrap_or(serde_json::Value::Null)
}
