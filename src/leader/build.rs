//! Building a version: the whole zone signed (reusing every cached signature that is not
//! due), or only what changed (see [`super::quick`]); the serial, the publish gate, the
//! RRset changes against the current version.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::time::Instant;

use super::input::{FileRead, Input, input_path, parse_options};
use super::quick::{quick_sign, shape_sign};
use crate::ingest::held::made_by_signer;
use crate::ingest::index::FileIndex;
use crate::ingest::scan::Sums;
use crate::keys::{KeyId, RrsigHeader};
use crate::node::Node;
use crate::replica::state::{Owner, ZoneState, hex};
use crate::replica::{KeyRecord, RrsetChange, RrsetVal, Version, ZoneConfig};
use crate::signer::cache::{CacheEntry, CachedRrsig};
use crate::signer::{Denial, SignOptions, SignatureCache, sign_zone};
use crate::zone::{Name, ParseOptions, Parsed, Zone, rtype};

/// Why no version was built.
pub(super) enum BuildError {
    /// The input or the result is wrong: wait until the input changes.
    Input(String),
    /// Something that may pass (the keystore failed, the current version moved): retry.
    Transient(String),
    /// The changes alone cannot make the version (a zone cut moved over existing names,
    /// the keys changed…): the next run builds from the whole zone, at once.
    Whole(&'static str),
}

impl From<String> for BuildError {
    fn from(e: String) -> BuildError {
        BuildError::Input(e)
    }
}

impl From<&str> for BuildError {
    fn from(e: &str) -> BuildError {
        BuildError::Input(e.into())
    }
}

/// Sets the SOA serial (the SOA rdata ends with serial, refresh, retry, expire, minimum).
pub(super) fn set_serial(zone: &mut Zone, serial: u32) {
    let soa = zone
        .apex_mut()
        .rrsets
        .iter_mut()
        .find(|r| r.rtype == rtype::SOA)
        .expect("zone has a SOA");
    let mut d = soa
        .rdatas
        .first()
        .expect("a SOA RRset has its record")
        .to_vec();
    crate::zone::set_soa_serial(&mut d, serial);
    soa.rdatas = crate::zone::Rdatas::one(&d);
}

/// The signature cache a new run reuses: every RRSIG of the current version.
pub fn cache_from(z: &ZoneState, origin: &Name, keys: &[KeyRecord]) -> SignatureCache {
    cache_of(z.content.iter(), z.content.len(), origin, keys)
}

/// The signature cache of the RRsets at `owners` only.
pub(super) fn cache_at(
    z: &ZoneState,
    owners: &HashSet<&Name>,
    origin: &Name,
    keys: &[KeyRecord],
) -> SignatureCache {
    let sets = owners.iter().flat_map(|o| {
        z.content
            .range((Owner((*o).clone()), 0)..=(Owner((*o).clone()), u16::MAX))
    });
    cache_of(sets, owners.len() * 4, origin, keys)
}

pub(super) fn cache_of<'a>(
    sets: impl Iterator<Item = (&'a (Owner, u16), &'a RrsetVal)>,
    n: usize,
    origin: &Name,
    keys: &[KeyRecord],
) -> SignatureCache {
    let by_tag: HashMap<(u16, u8), KeyId> =
        keys.iter().map(|k| ((k.tag, k.algorithm), k.id)).collect();
    let mut cache = SignatureCache {
        origin: Some(origin.clone()),
        entries: HashMap::with_capacity(n),
    };
    for ((owner, t), v) in sets {
        if v.sigs.is_empty() {
            continue;
        }
        let rrsigs = v
            .sigs
            .iter()
            .filter_map(|s| {
                let (h, _) = RrsigHeader::parse(s)?;
                Some(CachedRrsig {
                    key: *by_tag.get(&(h.key_tag, h.algorithm))?,
                    inception: h.inception,
                    expiration: h.expiration,
                    rdata: s.clone(),
                })
            })
            .collect();
        cache.entries.insert(
            (owner.0.clone(), *t),
            CacheEntry {
                digest: SignatureCache::digest(&owner.0, *t, v.ttl, &v.rdatas),
                rrsigs,
            },
        );
    }
    cache
}

/// What one build of a zone starts from.
pub(super) struct Build {
    pub(super) zone: String,
    pub(super) cfg: ZoneConfig,
    pub(super) current: Option<Version>,
    pub(super) reload_seq: u64,
    /// The keys that sign, and their ids (sorted).
    pub(super) keys: Vec<KeyRecord>,
    pub(super) key_ids: Vec<KeyId>,
    pub(super) input: Input,
    /// The primary's serial, when the input is a primary's zone.
    pub(super) input_serial: Option<u32>,
    /// Whether a build from the changes alone may be tried (no refresh due, same keys).
    pub(super) quick_ok: bool,
    pub(super) kasp: KaspUse,
}

/// What a build made: the RRset changes against the current version and their figures.
struct Diff {
    changes: Vec<RrsetChange>,
    hash: [u8; 32],
    rrsets: u64,
    /// RRsets signed, signatures reused, unchanged RRsets re-signed.
    counts: (u64, u64, u64),
    min_expiration: u32,
}

/// Builds the next version of a zone, in three steps: the input made into an unsigned zone
/// ([`load`]), signed from its changes alone when it can be ([`from_changes`]), else signed
/// whole ([`whole`]); the version gathers what they made.
pub(super) fn build_version(
    node: &Node,
    b: Build,
) -> Result<(Vec<RrsetChange>, Version), BuildError> {
    let Build {
        zone,
        cfg,
        current,
        reload_seq,
        keys,
        key_ids,
        input,
        input_serial,
        quick_ok,
        kasp,
    } = b;
    let (zone, cfg, keys) = (zone.as_str(), &cfg, &keys[..]);
    let origin = Name::parse(zone.as_bytes(), None).map_err(|e| e.to_string())?;
    let popts = parse_options(origin.clone(), cfg);
    let t_start = Instant::now();
    let Loaded {
        mut unsigned,
        input_digest,
        delta,
    } = load(node, zone, cfg, current.as_ref(), input, &origin, &popts)?;
    let (file_serial, _, _) = unsigned.soa();
    let input_serial = input_serial.unwrap_or(file_serial);
    // A zone removed and added again starts after the serial it was last published with:
    // a serial once published never carries another content.
    let last = current
        .as_ref()
        .map(|v| v.serial)
        .or_else(|| node.sm.with(|st| st.last_published(zone)));
    let serial = crate::zone::serial::next(&cfg.serial, last, file_serial, node.now())
        .map_err(|e| format!("zone {zone}: {e}"))?;
    set_serial(&mut unsigned, serial);
    let mut facts = facts_of(&unsigned);
    if let (Some(_), Some(cur)) = (&delta, &current) {
        // Only the changed RRsets are at hand: the largest TTL never shrinks on this path.
        facts.max_zone_ttl = facts.max_zone_ttl.max(cur.facts.max_zone_ttl);
    }
    let made = Made {
        keyset_seq: kasp.keyset_seq,
        facts,
        serial,
        input_serial,
        leader: node.id,
        input_digest,
        reload_seq,
        keys: key_ids,
    };
    let signing: Vec<Arc<dyn crate::hsm::SigningKey>> = keys
        .iter()
        .map(|k| node.keys.resolve(k))
        .collect::<Result<_, _>>()
        .map_err(BuildError::Transient)?;
    let t = node.now() as u32;
    let opts = SignOptions {
        now: t,
        inception_offset_s: cfg.inception_offset_s,
        validity_s: cfg.validity_s,
        jitter_s: cfg.jitter_s,
        refresh_s: cfg.refresh_s,
        denial: Denial::parse(&cfg.denial)?,
        dnskey_ttl: Some(kasp.dnskey_ttl),
        usage: kasp.usage,
        cds: kasp.cds,
    };
    let from_delta = delta.is_some();
    let how = delta.as_ref().map(|(_, how)| *how);
    let version = |m: Diff| {
        let v = made.version(
            node.now(),
            m.hash,
            m.rrsets,
            m.changes.len() as u64,
            m.counts,
            m.min_expiration,
        );
        (m.changes, v)
    };
    if (quick_ok || from_delta)
        && let Some(cur) = &current
    {
        let (signing, opts) = (&signing[..], &opts);
        let quick = Quick {
            zone,
            origin: &origin,
            cur,
            keys,
            signing,
            opts,
            quick_ok,
        };
        if let Some(m) = from_changes(node, &quick, &unsigned, delta, serial, t_start, how)? {
            return Ok(version(m));
        }
    }
    if from_delta {
        // The delta holds a few owners, not the zone: never the full path.
        return Err(BuildError::Whole(how.unwrap_or("changes")));
    }
    let m = whole(
        node, zone, cfg, &origin, unsigned, &signing, &opts, keys, serial, t_start,
    )?;
    Ok(version(m))
}

/// What every version built in one run shares.
pub(super) struct Made {
    pub(super) keyset_seq: u64,
    pub(super) facts: crate::kasp::Facts,
    pub(super) serial: u32,
    pub(super) input_serial: u32,
    pub(super) leader: u64,
    pub(super) input_digest: [u8; 32],
    pub(super) reload_seq: u64,
    pub(super) keys: Vec<KeyId>,
}

impl Made {
    /// `counts`: RRsets signed, signatures reused, unchanged RRsets re-signed.
    pub(super) fn version(
        self,
        at: u64,
        hash: [u8; 32],
        rrsets: u64,
        changes: u64,
        counts: (u64, u64, u64),
        min_expiration: u32,
    ) -> Version {
        Version {
            serial: self.serial,
            hash,
            token: crate::replica::Token::default(),
            published_at: at,
            leader: self.leader,
            rrsets,
            changes,
            signed: counts.0,
            reused: counts.1,
            resigned_unchanged: counts.2,
            input_digest: self.input_digest,
            reload_seq: self.reload_seq,
            keys: self.keys,
            min_expiration,
            input_serial: self.input_serial,
            keyset_seq: self.keyset_seq,
            facts: self.facts,
        }
    }
}

/// When `unsigned` has exactly the names and types of the current version and only the
/// content of some RRsets differs, those RRsets (owner, type); otherwise `None` and the
/// full path runs. Same shape means the NSEC/NSEC3 chain and every type bitmap stay.
pub(super) fn same_shape_changes(z: &ZoneState, unsigned: &Zone) -> Option<Vec<(Name, u16)>> {
    let mut current = z.content.iter().filter(|((_, t), _)| !made_by_signer(*t));
    let mut changed = Vec::new();
    for node in &unsigned.nodes {
        for set in node.rrsets.iter().filter(|s| !made_by_signer(s.rtype)) {
            let ((owner, t), v) = current.next()?;
            if owner.0 != node.name || *t != set.rtype {
                return None;
            }
            if v.ttl != set.ttl || v.rdatas != set.rdatas {
                changed.push((node.name.clone(), set.rtype));
            }
        }
    }
    if current.next().is_some() {
        return None;
    }
    Some(changed)
}

/// Of the RRsets an IXFR touched (`mini` holds every record at their owners and the
/// apex), those whose content differs from the current version, and the SOA; `None` when
/// one appears or disappears (the shape changed).
pub(super) fn delta_changes(
    z: &ZoneState,
    origin: &Name,
    mini: &Zone,
    touched: Vec<(Name, u16)>,
) -> Option<Vec<(Name, u16)>> {
    let mut changed = vec![(origin.clone(), rtype::SOA)];
    for (owner, t) in touched {
        if (t == rtype::SOA && owner == *origin) || made_by_signer(t) {
            continue;
        }
        let new = mini.node(&owner).and_then(|n| n.rrset(t));
        let old = z.content.get(&(Owner(owner.clone()), t));
        match (old, new) {
            (Some(o), Some(n)) if o.ttl == n.ttl && o.rdatas == n.rdatas => {}
            (Some(_), Some(_)) => changed.push((owner, t)),
            _ => return None,
        }
    }
    Some(changed)
}

/// What the key-lifecycle engine decided for one version.
pub(super) struct KaspUse {
    pub(super) usage: std::collections::BTreeMap<KeyId, crate::kasp::KeyUse>,
    pub(super) cds: Vec<KeyId>,
    pub(super) dnskey_ttl: u32,
    pub(super) keyset_seq: u64,
}

/// The TTLs the key-lifecycle waits depend on, measured on the unsigned zone.
pub(super) fn facts_of(z: &Zone) -> crate::kasp::Facts {
    let (_, minimum, soa_ttl) = z.soa();
    let max_zone_ttl = z
        .nodes
        .iter()
        .flat_map(|n| &n.rrsets)
        .filter(|r| !made_by_signer(r.rtype))
        .map(|r| r.ttl)
        .max()
        .unwrap_or(0);
    crate::kasp::Facts {
        max_zone_ttl,
        soa_ttl,
        soa_minimum: minimum,
    }
}

/// CDS/CDNSKEY while the parent has something to do: the DS set it should hold.
pub(super) fn cds_keys(set: &crate::kasp::KeySet, p: &crate::kasp::Policy) -> Vec<KeyId> {
    use crate::kasp::DS;
    if !p.cds || !crate::kasp::parent::waiting(set) {
        return Vec::new();
    }
    set.keys
        .values()
        .filter(|k| k.rec[DS].shown())
        .map(|k| k.id)
        .collect()
}

/// A build's input made into an unsigned zone.
struct Loaded {
    unsigned: Zone,
    input_digest: [u8; 32],
    /// The RRsets that differ from the current version's input, and what found them
    /// (`None`: the whole zone is at hand).
    delta: Option<(Vec<(Name, u16)>, &'static str)>,
}

/// Reads the input: an IXFR's changes, a file compared with the current version by its
/// pieces or by bucket sums, or the whole text parsed; indexes a file's pieces for its next
/// change.
fn load(
    node: &Node,
    zone: &str,
    cfg: &ZoneConfig,
    current: Option<&Version>,
    input: Input,
    origin: &Name,
    popts: &ParseOptions,
) -> Result<Loaded, BuildError> {
    let path = cfg.input.strip_prefix("file:").unwrap_or(&cfg.input);
    let read_whole = || -> Result<(Vec<u8>, Sums), BuildError> {
        let b = std::fs::read(input_path(cfg)?)
            .map_err(|e| format!("zone {zone}: input {path}: {e}"))?;
        let sums = Sums::of(&b);
        Ok((b, sums))
    };
    let mut edit = None;
    let mut around_change = false;
    let (input, input_digest, mut delta, what, compare, files, sums) = match input {
        Input::Reread => {
            let (b, sums) = read_whole()?;
            (b, sums.digest, None, path, false, None, Some(sums))
        }
        Input::Text(b, d) => (b, d, None, path, false, None, None),
        Input::File {
            sums,
            read,
            compare,
            files,
        } => {
            let b = match read {
                FileRead::Whole(b) => b,
                FileRead::Edit(e) => {
                    edit = Some(e);
                    around_change = true;
                    Vec::new()
                }
            };
            (b, sums.digest, None, path, compare, Some(files), Some(sums))
        }
        Input::Delta {
            text,
            changed,
            digest,
            how,
        } => (text, digest, Some((changed, how)), how, false, None, None),
    };
    // The pieces of the file against those of the file the current version was built
    // from: only new pieces are parsed; the state is read (locked) at the end only.
    let pieces = files.as_ref().filter(|_| compare).and_then(|f| {
        let base = current?.input_digest;
        let index = f.lock().ok()?.current.clone();
        let index = index.filter(|i| i.sums.digest == base)?;
        let sums = sums.clone()?;
        let path = std::path::Path::new(what);
        let (prepared, how) = match edit.take() {
            Some(e) => (
                index.prepare_edit(e, sums, path, popts)?,
                "file edit compared",
            ),
            None => (
                index.prepare(&input, sums, path, popts)?,
                "file pieces compared",
            ),
        };
        let (mini, touched, index) = node.sm.with(|st| {
            let z = st
                .zones
                .get(zone)
                .filter(|z| z.current.as_ref().is_some_and(|v| v.input_digest == base))?;
            prepared.finish(&z.content)
        })?;
        f.lock().ok()?.pending = Some(index);
        Some((mini, touched, how))
    });
    // Read around its change but not told apart that way: the whole file, which must be
    // what was read.
    let input = match (&pieces, &sums) {
        (None, Some(read)) if around_change => {
            let (b, again) = read_whole()?;
            if again.digest != read.digest {
                return Err(BuildError::Transient(format!(
                    "zone {zone}: input {path} changed while it was read"
                )));
            }
            b
        }
        _ => input,
    };
    let by_pieces = pieces.is_some();
    // Else the text is read twice without the state; the state is read (locked) only for
    // the version's sums and for the final comparison, on the same version.
    let compared = pieces.or_else(|| {
        compare
            .then(|| {
                use crate::ingest::delta::{compare, content_sums, differing};
                let token_of = |z: &ZoneState| z.current.as_ref().map(|v| v.token);
                let (token, want) = node.sm.with(|st| {
                    let z = st.zones.get(zone)?;
                    Some((token_of(z), content_sums(z, origin)))
                })?;
                let path = std::path::Path::new(what);
                let (mini, differ) = differing(&input, path, popts, &want)?;
                let changed = node.sm.with(|st| {
                    let z = st.zones.get(zone).filter(|z| token_of(z) == token)?;
                    compare(z, origin, &mini, &differ)
                })?;
                Some((mini, changed, "file compared"))
            })
            .flatten()
    });
    // Not compared by its pieces: the file's pieces, for its next change (~2.5 s at 1M
    // delegations, once per file that is not). A file read whole is parsed by those
    // pieces, once for both.
    let index_files = |input: &[u8], keep: bool| -> Option<Parsed> {
        let f = files.as_ref().filter(|_| !by_pieces)?;
        let t = Instant::now();
        let (sums, path) = (
            sums.clone().expect("a file's sums"),
            std::path::Path::new(what),
        );
        let (index, parsed) = if keep {
            let (i, p) = FileIndex::build_parsed(input, sums, path, popts)?;
            (i, Some(p))
        } else {
            (FileIndex::build(input, sums, path, popts)?, None)
        };
        tracing::info!(
            zone,
            pieces = index.len(),
            ms = t.elapsed().as_millis() as u64,
            "input file indexed by its pieces"
        );
        if let Ok(mut g) = f.lock() {
            g.pending = Some(index);
        }
        parsed
    };
    let (unsigned, warnings) = match compared {
        Some((mini, changed, how)) => {
            index_files(&input, false);
            drop(input);
            delta = Some((changed, how));
            (mini, Vec::new())
        }
        None => {
            // The text is let go once parsed, before the records are built into the zone
            // (at 1M delegations 110 MiB, on top of the content the leader holds).
            let parsed = match index_files(&input, true) {
                Some(p) => p,
                None => {
                    crate::zone::parse::parse_file_bytes(&input, std::path::Path::new(what), popts)
                        .map_err(|e| format!("zone {zone}: {e}"))?
                }
            };
            drop(input);
            Zone::build(parsed, origin, what, &popts.limits)
                .map_err(|e| format!("zone {zone}: {e}"))?
        }
    };
    for w in warnings.iter().take(20) {
        tracing::warn!(zone, "{w}");
    }
    Ok(Loaded {
        unsigned,
        input_digest,
        delta,
    })
}

/// The borrowed context of a build from the changes alone.
struct Quick<'a> {
    zone: &'a str,
    origin: &'a Name,
    cur: &'a Version,
    keys: &'a [KeyRecord],
    signing: &'a [Arc<dyn crate::hsm::SigningKey>],
    opts: &'a SignOptions,
    quick_ok: bool,
}

/// The version from the changes alone: the changed RRsets signed, and the denial records
/// around names or types that came or went, over the current content. `None`: the whole
/// zone is needed.
fn from_changes(
    node: &Node,
    q: &Quick,
    unsigned: &Zone,
    delta: Option<(Vec<(Name, u16)>, &'static str)>,
    serial: u32,
    t_start: Instant,
    how: Option<&'static str>,
) -> Result<Option<Diff>, BuildError> {
    let Quick {
        zone,
        origin,
        cur,
        keys,
        signing,
        opts,
        quick_ok,
    } = *q;
    let t_parsed = Instant::now();
    let st = node.sm.read();
    let z = st.zones.get(zone).ok_or("zone removed")?;
    let (found, touched) = match delta {
        Some((changed, _)) => (
            delta_changes(z, origin, unsigned, changed.clone()),
            Some(changed),
        ),
        None => (same_shape_changes(z, unsigned), None),
    };
    let mut quick = match found {
        Some(found) => quick_sign(z, origin, unsigned, found, signing, opts, keys)
            .map_err(BuildError::Transient)?
            .map(|(c, n)| (c, n, "same shape: only changed RRsets signed")),
        None => None,
    };
    if quick.is_none()
        && quick_ok
        && let Some(touched) = touched
    {
        quick = shape_sign(z, origin, unsigned, touched, signing, opts)
            .map_err(BuildError::Transient)?
            .map(|(c, n)| {
                let what = "names or types came or went: the changed RRsets and the \
                            denial records around them signed";
                (c, n, what)
            });
    }
    if let Some((changes, signed, what)) = quick {
        let hash = z.hash_after(changes.iter());
        let min_expiration = changes
            .iter()
            .flat_map(|c| c.val.iter().flat_map(|v| v.sigs.iter()))
            .filter_map(|s| RrsigHeader::parse(s).map(|(h, _)| h.expiration))
            .fold(cur.min_expiration, u32::min);
        tracing::info!(
            zone,
            serial,
            changes = changes.len(),
            signed,
            load_ms = (t_parsed - t_start).as_millis() as u64,
            quick_ms = t_parsed.elapsed().as_millis() as u64,
            input = how.unwrap_or("whole zone"),
            "version built ({what})"
        );
        let rrsets = changes.iter().fold(z.content.len() as i64, |n, c| {
            let had = z.content.contains_key(&(Owner(c.owner.clone()), c.rtype));
            n + c.val.is_some() as i64 - had as i64
        }) as u64;
        let reused = rrsets.saturating_sub(signed);
        return Ok(Some(Diff {
            changes,
            hash,
            rrsets,
            counts: (signed, reused, 0),
            min_expiration,
        }));
    }
    Ok(None)
}

/// The version signed whole, reusing every cached signature that is not due; the publish
/// gate; the RRset changes against the current content (which must not have moved).
#[allow(clippy::too_many_arguments)]
fn whole(
    node: &Node,
    zone: &str,
    cfg: &ZoneConfig,
    origin: &Name,
    unsigned: Zone,
    signing: &[Arc<dyn crate::hsm::SigningKey>],
    opts: &SignOptions,
    keys: &[KeyRecord],
    serial: u32,
    t_start: Instant,
) -> Result<Diff, BuildError> {
    let t = opts.now;
    let (cache, base_hash) = {
        let st = node.sm.read();
        let z = st.zones.get(zone).ok_or("zone removed")?;
        (cache_from(z, origin, keys), z.hash)
    };
    let t_cache = Instant::now();
    let signed = sign_zone(unsigned, signing, opts, &cache, &|_, _| {})
        .map_err(|e| BuildError::Transient(e.to_string()))?;
    drop(cache);
    let t_signed = Instant::now();
    let report = signed.verify(t);
    if !report.valid {
        let f = &report.failures[0];
        return Err(BuildError::Input(format!(
            "publish gate: {} failure(s), first: {} {}: {}",
            report.failures.len(),
            f.owner,
            f.rtype,
            f.message
        )));
    }
    let stats = signed.stats;
    let t_gate = Instant::now();
    let entries = signed.into_entries();
    let st = node.sm.read();
    let z = st.zones.get(zone).ok_or("zone removed")?;
    if z.hash != base_hash {
        return Err(BuildError::Transient(
            "the current version changed while signing".into(),
        ));
    }
    // Merge-join in canonical order: the zone's nodes and the NSEC3 chain are two sorted
    // runs, which a stable sort merges in linear time.
    let mut entries = entries;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut changes = Vec::new();
    let mut resigned_unchanged = 0u64;
    let mut min_expiration = u32::MAX;
    let due_by = t.saturating_add(cfg.refresh_s);
    let expirations = |v: &RrsetVal| {
        v.sigs
            .iter()
            .filter_map(|s| RrsigHeader::parse(s).map(|(h, _)| h.expiration))
            .min()
    };
    let rrsets = entries.len() as u64;
    let mut old = z.content.iter().peekable();
    let gone = |k: &(Owner, u16)| RrsetChange {
        owner: k.0.0.clone(),
        rtype: k.1,
        val: None,
    };
    for (key, val) in entries {
        if let Some(e) = expirations(&val) {
            min_expiration = min_expiration.min(e);
        }
        while let Some((ok, _)) = old.next_if(|(ok, _)| **ok < key) {
            changes.push(gone(ok));
        }
        match old.next_if(|(ok, _)| **ok == key) {
            Some((_, o)) if *o == val => {}
            Some((_, o)) => {
                if o.ttl == val.ttl
                    && o.rdatas == val.rdatas
                    && key.1 != rtype::SOA
                    && expirations(o).is_some_and(|e| e >= due_by)
                {
                    resigned_unchanged += 1;
                }
                changes.push(RrsetChange {
                    owner: key.0.0,
                    rtype: key.1,
                    val: Some(val),
                });
            }
            None => changes.push(RrsetChange {
                owner: key.0.0,
                rtype: key.1,
                val: Some(val),
            }),
        }
    }
    for (ok, _) in old {
        changes.push(gone(ok));
    }
    let hash = z.hash_after_all(&changes);
    let ms = |a: Instant, b: Instant| (b - a).as_millis() as u64;
    let t_end = Instant::now();
    let rss_mib = crate::runtime::mem::rss_for(rrsets as usize);
    tracing::info!(
        zone,
        serial,
        changes = changes.len(),
        hash = hex(&hash[..8]),
        load_and_cache_ms = ms(t_start, t_cache),
        sign_ms = ms(t_cache, t_signed),
        gate_ms = ms(t_signed, t_gate),
        diff_ms = ms(t_gate, t_end),
        rss_mib,
        "version built"
    );
    Ok(Diff {
        changes,
        hash,
        rrsets,
        counts: (stats.signed as u64, stats.reused as u64, resigned_unchanged),
        min_expiration,
    })
}
