//! The key and signing policy of a zone (TOML, `deny_unknown_fields`), and the timing
//! audit that compares it with the zone and the parent as they are.
//!
//! Defaults follow current practice: ECDSA P-256 (algorithm 13), KSK + ZSK with ZSK
//! pre-publication every 90 days and a KSK rolled by hand, NSEC3 with no extra iterations
//! and no salt (RFC 9276), CDS/CDNSKEY published.

use serde::{Deserialize, Serialize};

use super::{Facts, Role, Ttls};

/// Current policy format version.
pub const POLICY_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Format version of this file (1).
    pub version: u32,
    pub algorithm: u8,
    /// One combined signing key (CSK) instead of a KSK and a ZSK.
    pub csk: bool,
    /// Seconds a KSK (or CSK) is used before it is rolled; 0: only by hand (`keys rollover`).
    pub ksk_lifetime: u64,
    /// Seconds a ZSK is used before it is rolled; 0: only by hand.
    pub zsk_lifetime: u64,
    /// `double-ksk` (new DNSKEY first, then the DS is replaced: for parents that accept
    /// one DS) or `double-ds` (new DS added first, then the DNSKEY swapped).
    pub ksk_roll: String,
    /// `pre-publication` (DNSKEY first, then signatures) or `double-signature`.
    pub zsk_roll: String,
    pub dnskey_ttl: u32,
    /// The DS TTL the parent is expected to serve; the engine uses the larger of this and
    /// every TTL the parent was seen serving.
    pub ds_ttl: u32,
    /// Largest TTL in the zone, if known better than the zone shows (0: take the zone's).
    pub zone_max_ttl: u32,
    /// Time for a new version to reach every secondary.
    pub propagation_delay: u32,
    /// Time for the parent's change to reach all its servers.
    pub parent_propagation_delay: u32,
    /// Time the registry takes to act on a DS submission.
    pub parent_registration_delay: u32,
    pub publish_safety: u32,
    pub retire_safety: u32,
    /// A retired key is deleted this long after its last record became hidden.
    pub purge_after: u64,
    pub signature_validity: u32,
    pub signature_refresh: u32,
    pub signature_jitter: u32,
    pub signature_inception_offset: u32,
    /// `nsec`, `nsec3` or `nsec3-optout`.
    pub denial: String,
    /// No key is published or used before its backup is committed.
    pub require_backup: bool,
    /// Keys are generated this far ahead of the rolls that will need them.
    pub key_pool_lookahead: u64,
    /// Alarm when the backed-up keys cover fewer than this many days of rolls.
    pub backup_alarm_days: u32,
    /// Parent servers to ask for the DS (`ADDR:PORT`). Empty: the parent's NS set, found
    /// through `parent_resolver`.
    pub parent_servers: Vec<String>,
    /// A recursive resolver (`ADDR:PORT`, or `system` for /etc/resolv.conf's first) used to
    /// find the parent's NS set and their addresses; empty: no discovery (parent changes
    /// are then recorded by `keys ds-seen` / `keys ds-gone`).
    pub parent_resolver: String,
    /// Port of the discovered parent servers.
    pub parent_port: u16,
    pub parent_check_interval: u32,
    /// Publish CDS and CDNSKEY for the key(s) the parent should have.
    pub cds: bool,
    /// A forward clock jump larger than this holds all waits until `keys clock-ok`.
    pub max_clock_jump: u64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            version: POLICY_VERSION,
            algorithm: 13,
            csk: false,
            ksk_lifetime: 0,
            zsk_lifetime: 90 * 86_400,
            ksk_roll: "double-ksk".into(),
            zsk_roll: "pre-publication".into(),
            dnskey_ttl: 3600,
            ds_ttl: 86_400,
            zone_max_ttl: 0,
            propagation_delay: 300,
            parent_propagation_delay: 3600,
            parent_registration_delay: 0,
            publish_safety: 600,
            retire_safety: 600,
            purge_after: 14 * 86_400,
            signature_validity: 14 * 86_400,
            signature_refresh: 3 * 86_400,
            signature_jitter: 12 * 3600,
            signature_inception_offset: 3600,
            denial: "nsec3".into(),
            require_backup: false,
            key_pool_lookahead: 0,
            backup_alarm_days: 0,
            parent_servers: Vec::new(),
            parent_resolver: String::new(),
            parent_port: 53,
            parent_check_interval: 600,
            cds: true,
            max_clock_jump: 7 * 86_400,
        }
    }
}

impl Policy {
    /// Parses and checks a policy file's text; errors name the file and the field.
    pub fn from_toml(text: &str, origin: &str) -> Result<Policy, String> {
        let p: Policy = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        p.check().map_err(|e| format!("{origin}: {e}"))?;
        Ok(p)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Refuses values no roll can be safe with.
    pub fn check(&self) -> Result<(), String> {
        if self.version != POLICY_VERSION {
            return Err(format!(
                "version = {}: this quorumsign reads policy version {POLICY_VERSION}",
                self.version
            ));
        }
        if !matches!(self.algorithm, 8 | 13 | 14 | 15) {
            return Err(format!(
                "algorithm = {}: supported are 8, 13, 14, 15",
                self.algorithm
            ));
        }
        if !matches!(self.ksk_roll.as_str(), "double-ksk" | "double-ds") {
            return Err(format!(
                "ksk_roll = {:?}: expected \"double-ksk\" or \"double-ds\"",
                self.ksk_roll
            ));
        }
        if !matches!(
            self.zsk_roll.as_str(),
            "pre-publication" | "double-signature"
        ) {
            return Err(format!(
                "zsk_roll = {:?}: expected \"pre-publication\" or \"double-signature\"",
                self.zsk_roll
            ));
        }
        if !matches!(self.denial.as_str(), "nsec" | "nsec3" | "nsec3-optout") {
            return Err(format!(
                "denial = {:?}: expected \"nsec\", \"nsec3\" or \"nsec3-optout\"",
                self.denial
            ));
        }
        if self.signature_validity <= self.signature_jitter.saturating_add(self.signature_refresh) {
            return Err(format!(
                "signature_validity = {} must exceed signature_jitter + signature_refresh ({})",
                self.signature_validity,
                self.signature_jitter as u64 + self.signature_refresh as u64
            ));
        }
        if !self.parent_resolver.is_empty()
            && self.parent_resolver != "system"
            && self
                .parent_resolver
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return Err(format!(
                "parent_resolver = {:?}: expected ADDR:PORT or \"system\"",
                self.parent_resolver
            ));
        }
        for s in &self.parent_servers {
            if s.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!(
                    "parent_servers: {s:?} is not ADDR:PORT (e.g. 127.0.0.1:53 or [::1]:53)"
                ));
            }
        }
        Ok(())
    }

    pub fn lifetime(&self, role: Role) -> u64 {
        match role {
            Role::Zsk => self.zsk_lifetime,
            Role::Ksk | Role::Csk => self.ksk_lifetime,
        }
    }

    /// The roles a zone under this policy needs one active key of.
    pub fn roles(&self) -> &'static [Role] {
        if self.csk {
            &[Role::Csk]
        } else {
            &[Role::Ksk, Role::Zsk]
        }
    }

    pub fn double_ds(&self) -> bool {
        self.ksk_roll == "double-ds"
    }

    pub fn pre_publication(&self) -> bool {
        self.zsk_roll == "pre-publication"
    }

    /// The TTLs the engine waits on, from the policy and the zone.
    pub fn ttls(&self, f: &Facts) -> Ttls {
        let negative = f.soa_ttl.min(f.soa_minimum);
        Ttls {
            dnskey: self.dnskey_ttl,
            sig: negative.max(f.max_zone_ttl).max(self.zone_max_ttl),
            ds: self.ds_ttl,
            negative,
        }
    }
}

/// One finding of the timing audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Unsafe findings stop the engine; warnings are reported only.
    pub unsafe_: bool,
    pub text: String,
}

/// Compares the policy with the zone (`facts`, and the DNSKEY TTL the zone serves, if
/// known) and the parent (`served_ds_ttl`, the highest DS TTL any parent server serves).
pub fn audit(
    p: &Policy,
    f: &Facts,
    zone_dnskey_ttl: Option<u32>,
    served_ds_ttl: Option<u32>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut say = |unsafe_: bool, text: String| out.push(Finding { unsafe_, text });
    if p.zone_max_ttl != 0 && f.max_zone_ttl > p.zone_max_ttl {
        say(
            false,
            format!(
                "the zone has a TTL of {} s, above zone_max_ttl = {}: waits use the zone's {} s",
                f.max_zone_ttl, p.zone_max_ttl, f.max_zone_ttl
            ),
        );
    }
    if let Some(t) = zone_dnskey_ttl
        && t != p.dnskey_ttl
    {
        say(
            false,
            format!(
                "the zone serves its DNSKEY RRset with TTL {t} s, the policy says dnskey_ttl = {}: \
                 the next version uses the policy's, and waits cover the larger until caches expire",
                p.dnskey_ttl
            ),
        );
    }
    if let Some(served) = served_ds_ttl
        && served > p.ds_ttl
    {
        say(
            false,
            format!(
                "the parent serves the DS with TTL {served} s, above ds_ttl = {}: the engine \
                 waits {served} s (a signer trusting {} s would remove the old KSK while \
                 resolvers still hold its DS, as in the .nz incident of 2023)",
                p.ds_ttl, p.ds_ttl
            ),
        );
    }
    let sig_ttl = p.ttls(f).sig;
    let usable = (p.signature_validity as u64)
        .saturating_sub(p.signature_jitter as u64)
        .saturating_sub(p.signature_refresh as u64);
    if f.soa_ttl == 0 && f.max_zone_ttl == 0 {
        say(
            true,
            "the zone's TTLs are not known yet (no version measured): waits cannot be computed"
                .into(),
        );
    }
    if (p.signature_refresh as u64) < sig_ttl as u64 + p.propagation_delay as u64 {
        say(
            false,
            format!(
                "signature_refresh = {} s is shorter than the largest TTL {} s + propagation_delay \
                 {} s: validators cache RRsets for less than their TTL near re-signing",
                p.signature_refresh, sig_ttl, p.propagation_delay
            ),
        );
    }
    if usable == 0 {
        say(true, "signatures would be refreshed as soon as made".into());
    }
    if (p.signature_refresh as u64) < p.dnskey_ttl as u64 + p.propagation_delay as u64 {
        say(
            false,
            format!(
                "signature_refresh = {} s is shorter than dnskey_ttl {} s + propagation_delay {} s",
                p.signature_refresh, p.dnskey_ttl, p.propagation_delay
            ),
        );
    }
    for role in p.roles() {
        let life = p.lifetime(*role);
        let roll = match role {
            Role::Zsk => p.dnskey_ttl as u64 + 2 * sig_ttl as u64,
            _ => 2 * p.ds_ttl.max(served_ds_ttl.unwrap_or(0)) as u64 + p.dnskey_ttl as u64,
        };
        if life != 0 && life < roll {
            say(
                false,
                format!(
                    "{}_lifetime = {life} s is shorter than one roll takes (about {roll} s): \
                     rolls will follow each other without pause",
                    if *role == Role::Zsk { "zsk" } else { "ksk" }
                ),
            );
        }
    }
    if f.soa_minimum > 0 && f.soa_minimum.min(f.soa_ttl) > p.dnskey_ttl {
        say(
            false,
            format!(
                "negative answers are cached for {} s, longer than dnskey_ttl {} s: the first \
                 DNSKEY of the zone waits {} s before a DS may be submitted",
                f.soa_minimum.min(f.soa_ttl),
                p.dnskey_ttl,
                f.soa_minimum.min(f.soa_ttl)
            ),
        );
    }
    out
}
