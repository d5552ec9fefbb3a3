//! The zone model: RRsets grouped by owner, in canonical order, with each name's role.
//!
//! # Background
//! ```text
//!  apex (SOA, NS, ...)            authoritative, signed
//!  ├── www                        authoritative, signed
//!  ├── sub  (NS [+ DS])           delegation: only DS (and NSEC) signed
//!  │   └── ns.sub (A)             below the cut: glue or occluded, kept, never signed
//!  └── d    (DNAME)               authoritative; names below it are occluded (RFC 6672 §2.3)
//! ```
//! Names are kept lower-cased in wire form; nodes are in RFC 4034 §6.1 order and the
//! records of an RRset in §6.3 order, so signing and NSEC chains need no further sorting.

pub mod civil;
pub mod generate;
pub mod name;
pub mod nsec3;
pub mod parse;
pub mod rdata;
pub mod rdatas;
pub mod rtype;
pub mod serial;
pub mod write;

use rayon::prelude::*;

pub use name::Name;
pub use parse::{Limits, ParseOptions, Parsed, Record, Warning, ZoneError};
pub use rdatas::Rdatas;

/// All records of one owner and type, sharing one TTL, rdata in canonical order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rrset {
    pub rtype: u16,
    pub ttl: u32,
    pub rdatas: Rdatas,
}

/// What a name is to the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Apex,
    /// Authoritative data, signed.
    Auth,
    /// A zone cut (NS below the apex): only DS and NSEC are authoritative here.
    Delegation,
    /// At or below a cut or below a DNAME: glue or occluded data, never signed.
    BelowCut,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: Name,
    pub kind: NodeKind,
    /// Sorted by type. Never holds RRSIGs: those are in `sigs`.
    pub rrsets: Vec<Rrset>,
    /// RRSIG records at this name: (TTL, rdata).
    pub sigs: Vec<(u32, std::sync::Arc<[u8]>)>,
}

impl Node {
    pub fn rrset(&self, t: u16) -> Option<&Rrset> {
        self.rrsets.iter().find(|r| r.rtype == t)
    }
    pub fn has(&self, t: u16) -> bool {
        self.rrset(t).is_some()
    }
    /// Gives back what pushing left unused: a vector grown by pushes holds at least four
    /// elements, and most names have one or two RRsets and signatures.
    pub fn shrink_to_fit(&mut self) {
        self.rrsets.shrink_to_fit();
        self.sigs.shrink_to_fit();
    }

    /// True when this delegation has a DS RRset (a secure delegation).
    pub fn is_secure_delegation(&self) -> bool {
        self.kind == NodeKind::Delegation && self.has(rtype::DS)
    }
}

/// A zone: its origin and its nodes in canonical order (the apex first).
#[derive(Debug, Clone)]
pub struct Zone {
    pub origin: Name,
    pub nodes: Vec<Node>,
}

impl Zone {
    /// Reads and builds a zone from a master file.
    pub fn load(
        path: &std::path::Path,
        opts: &ParseOptions,
    ) -> Result<(Zone, Vec<Warning>), ZoneError> {
        let input = std::fs::read(path).map_err(|e| ZoneError {
            file: path.display().to_string(),
            line: 0,
            msg: format!("cannot read: {e}"),
        })?;
        let t0 = std::time::Instant::now();
        let parsed = parse::parse_file_bytes(&input, path, opts)?;
        // The records own their data: the text (440 MB for a signed 1M-delegation zone)
        // is not kept while they are grouped.
        drop(input);
        Zone::build_parsed(parsed, t0, path, opts)
    }

    /// Builds a zone from the bytes of the master file at `path`, already read.
    pub fn load_bytes(
        input: &[u8],
        path: &std::path::Path,
        opts: &ParseOptions,
    ) -> Result<(Zone, Vec<Warning>), ZoneError> {
        let t0 = std::time::Instant::now();
        let parsed = parse::parse_file_bytes(input, path, opts)?;
        Zone::build_parsed(parsed, t0, path, opts)
    }

    fn build_parsed(
        parsed: Parsed,
        t0: std::time::Instant,
        path: &std::path::Path,
        opts: &ParseOptions,
    ) -> Result<(Zone, Vec<Warning>), ZoneError> {
        let t1 = std::time::Instant::now();
        let built = Zone::build(
            parsed,
            &opts.origin,
            &path.display().to_string(),
            &opts.limits,
        )?;
        tracing::debug!(
            parse_ms = (t1 - t0).as_millis() as u64,
            build_ms = t1.elapsed().as_millis() as u64,
            "loaded {}",
            path.display()
        );
        Ok(built)
    }

    /// Groups records into RRsets and nodes and checks the zone-level rules.
    pub fn build(
        parsed: Parsed,
        origin: &Name,
        file: &str,
        limits: &Limits,
    ) -> Result<(Zone, Vec<Warning>), ZoneError> {
        let Parsed {
            records,
            mut warnings,
        } = parsed;
        let fail = |line: u32, msg: String| ZoneError {
            file: file.into(),
            line,
            msg,
        };
        // Sort by (canonical name, type, rdata): a 16-byte key prefix first, the full
        // canonical comparison only on ties. The keys are sorted with the records' places,
        // and each record is taken from its place as the nodes are built: sorting copies
        // of the records had held them twice (at 1M delegations, ~160 MB more).
        let mut records = records;
        let mut order: Vec<(u128, u32)> = records
            .par_iter()
            .enumerate()
            .map(|(i, r)| (r.owner.canonical_prefix(), i as u32))
            .collect();
        {
            let recs = &records;
            order.par_sort_unstable_by(|(ka, a), (kb, b)| {
                ka.cmp(kb).then_with(|| {
                    let (ra, rb) = (&recs[*a as usize], &recs[*b as usize]);
                    ra.owner
                        .cmp_canonical(&rb.owner)
                        .then(ra.rtype.cmp(&rb.rtype))
                        .then_with(|| ra.rdata.cmp(&rb.rdata))
                })
            });
        }
        let taken = Record {
            owner: origin.clone(),
            rtype: 0,
            ttl: 0,
            rdata: Box::default(),
            line: 0,
        };
        let sorted = order.into_iter().map(|(_, i)| {
            let rec = std::mem::replace(&mut records[i as usize], taken.clone());
            ((), rec)
        });
        let mut nodes: Vec<Node> = Vec::new();
        // The records of the RRset being read; the node's last RRset gets them once it is
        // complete (its rdatas are one allocation, not grown record by record).
        let mut pending: Vec<Box<[u8]>> = Vec::new();
        let seal = |nodes: &mut Vec<Node>, pending: &mut Vec<Box<[u8]>>| {
            if !pending.is_empty()
                && let Some(set) = nodes.last_mut().and_then(|n| n.rrsets.last_mut())
            {
                set.rdatas = Rdatas::from(std::mem::take(pending));
            }
        };
        for (_, rec) in sorted {
            if nodes.last().is_none_or(|n| n.name != rec.owner) {
                seal(&mut nodes, &mut pending);
                push_node(&mut nodes, rec.owner.clone());
            }
            let last_type = nodes.last().unwrap().rrsets.last().map(|s| s.rtype);
            if rec.rtype != rtype::RRSIG && last_type != Some(rec.rtype) {
                seal(&mut nodes, &mut pending);
            }
            let node = nodes.last_mut().unwrap();
            if rec.rtype == rtype::RRSIG {
                node.sigs.push((rec.ttl, rec.rdata.into()));
                continue;
            }
            match node.rrsets.last_mut() {
                Some(set) if set.rtype == rec.rtype => {
                    if pending.last().map(|d| **d == *rec.rdata) == Some(true) {
                        continue; // RFC 2181 §5: duplicate records are one record
                    }
                    if set.ttl != rec.ttl {
                        let ttl = set.ttl.min(rec.ttl);
                        warnings.push(Warning {
                            file: file.into(),
                            line: rec.line,
                            msg: format!(
                                "{} {} has records with TTLs {} and {}; using {ttl} for the RRset (RFC 2181 §5.2)",
                                rec.owner, rtype::to_text(rec.rtype), set.ttl, rec.ttl
                            ),
                        });
                        set.ttl = ttl;
                    }
                    if pending.len() >= limits.rrset_records_max {
                        return Err(fail(
                            rec.line,
                            format!(
                                "{} {} has more than rrset_records_max = {} records",
                                rec.owner,
                                rtype::to_text(rec.rtype),
                                limits.rrset_records_max
                            ),
                        ));
                    }
                    pending.push(rec.rdata);
                }
                _ => {
                    node.rrsets.push(Rrset {
                        rtype: rec.rtype,
                        ttl: rec.ttl,
                        rdatas: Rdatas::default(),
                    });
                    pending.push(rec.rdata);
                }
            }
            if rec.rtype == rtype::CNAME
                && node
                    .rrsets
                    .iter()
                    .any(|s| !matches!(s.rtype, rtype::CNAME | rtype::RRSIG | rtype::NSEC))
            {
                return Err(fail(
                    rec.line,
                    format!(
                        "{} has a CNAME beside other data (RFC 1034 §3.6.2)",
                        rec.owner
                    ),
                ));
            }
            if rec.rtype != rtype::CNAME
                && !rtype::is_dnssec_output(rec.rtype)
                && node.has(rtype::CNAME)
            {
                return Err(fail(
                    rec.line,
                    format!(
                        "{} has {} beside a CNAME (RFC 1034 §3.6.2)",
                        rec.owner,
                        rtype::to_text(rec.rtype)
                    ),
                ));
            }
            if rec.rtype == rtype::CNAME && pending.len() > 1 {
                return Err(fail(
                    rec.line,
                    format!("{} has more than one CNAME (RFC 2181 §10.1)", rec.owner),
                ));
            }
        }
        seal(&mut nodes, &mut pending);
        Ok((Zone::from_nodes(nodes, origin, file)?, warnings))
    }

    /// A zone from nodes already in canonical order (made with [`push_node`]), each with
    /// its RRsets sorted by type and their records in canonical order: checks the apex and
    /// marks each node's kind, with no copy and no sort.
    pub fn from_nodes(mut nodes: Vec<Node>, origin: &Name, file: &str) -> Result<Zone, ZoneError> {
        if let Some(n) = nodes.last_mut() {
            n.shrink_to_fit();
        }
        nodes.shrink_to_fit();
        let fail = |msg: String| ZoneError {
            file: file.into(),
            line: 1,
            msg,
        };
        let apex = nodes
            .first()
            .filter(|n| &n.name == origin && n.has(rtype::SOA));
        let Some(apex) = apex else {
            return Err(fail(format!("no SOA record at the zone apex {origin}")));
        };
        if apex.rrset(rtype::SOA).unwrap().rdatas.len() != 1 {
            return Err(fail(format!("{origin} has more than one SOA record")));
        }
        classify(&mut nodes);
        Ok(Zone {
            origin: origin.clone(),
            nodes,
        })
    }

    /// The node at `name` (the nodes are in canonical order).
    pub fn node(&self, name: &Name) -> Option<&Node> {
        let i = self
            .nodes
            .binary_search_by(|n| n.name.cmp_canonical(name))
            .ok()?;
        Some(&self.nodes[i])
    }

    pub fn apex(&self) -> &Node {
        &self.nodes[0]
    }

    pub fn apex_mut(&mut self) -> &mut Node {
        &mut self.nodes[0]
    }

    /// SOA rdata fields: (serial, minimum) and the SOA TTL.
    pub fn soa(&self) -> (u32, u32, u32) {
        let set = self.apex().rrset(rtype::SOA).expect("zone has a SOA");
        let d = set.rdatas.first().expect("a SOA RRset has its record");
        let serial = soa_serial(d).expect("a parsed SOA has its five numbers");
        let minimum = u32::from_be_bytes(d[d.len() - 4..].try_into().unwrap());
        (serial, minimum, set.ttl)
    }

    /// TTL for NSEC/NSEC3 records: min(SOA MINIMUM, SOA TTL) (RFC 9077).
    pub fn denial_ttl(&self) -> u32 {
        let (_, minimum, ttl) = self.soa();
        minimum.min(ttl)
    }

    /// Replaces (or removes, when `rdatas` is empty) one RRset at the apex.
    pub fn set_apex_rrset(&mut self, rtype: u16, ttl: u32, mut rdatas: Vec<Box<[u8]>>) {
        rdatas.sort();
        rdatas.dedup();
        let apex = self.apex_mut();
        apex.rrsets.retain(|r| r.rtype != rtype);
        if !rdatas.is_empty() {
            let rdatas = Rdatas::from(rdatas);
            apex.rrsets.push(Rrset { rtype, ttl, rdatas });
            apex.rrsets.sort_by_key(|r| r.rtype);
        }
    }

    pub fn record_count(&self) -> usize {
        self.nodes
            .iter()
            .flat_map(|n| &n.rrsets)
            .map(|r| r.rdatas.len())
            .sum()
    }
}

/// Starts the node for `name` after the last of `nodes`, giving back what pushes left
/// unused in that one (see [`Node::shrink_to_fit`]).
pub fn push_node(nodes: &mut Vec<Node>, name: Name) {
    if let Some(n) = nodes.last_mut() {
        n.shrink_to_fit();
    }
    nodes.push(Node {
        name,
        kind: NodeKind::Auth,
        rrsets: Vec::new(),
        sigs: Vec::new(),
    });
}

/// A CNAME beside other data (but its NSEC and DNSSEC records), or more than one CNAME:
/// what [`Zone::build`] refuses record by record (RFC 1034 §3.6.2, RFC 2181 §10.1).
pub fn cname_conflict(n: &Node) -> bool {
    n.rrset(rtype::CNAME).is_some_and(|c| c.rdatas.len() > 1)
        || n.has(rtype::CNAME)
            && n.rrsets.iter().any(|s| {
                !matches!(s.rtype, rtype::CNAME | rtype::NSEC) && !rtype::is_dnssec_output(s.rtype)
            })
}

/// Marks the apex, delegations and everything below cuts and DNAMEs.
/// Relies on canonical order: a name's descendants directly follow it.
fn classify(nodes: &mut [Node]) {
    let mut c = Classifier::default();
    for node in nodes {
        c.mark(node);
    }
}

/// Marks the kind of each node of a zone, given in canonical order from the apex: one at a
/// time, so a zone can be classified as it is walked.
#[derive(Default)]
pub struct Classifier {
    /// The zone cut (or DNAME) the names now read are below.
    cut: Option<Name>,
    seen_apex: bool,
}

impl Classifier {
    pub fn mark(&mut self, node: &mut Node) {
        if let Some(c) = &self.cut {
            if node.name.is_subdomain_of(c) {
                node.kind = NodeKind::BelowCut;
                return;
            }
            self.cut = None;
        }
        if !self.seen_apex {
            self.seen_apex = true;
            node.kind = NodeKind::Apex;
        } else if node.has(rtype::NS) {
            node.kind = NodeKind::Delegation;
            self.cut = Some(node.name.clone());
            return;
        } else {
            node.kind = NodeKind::Auth;
        }
        // Names below a DNAME are occluded (the apex's too).
        if node.has(rtype::DNAME) {
            self.cut = Some(node.name.clone());
        }
    }
}

/// The serial of SOA rdata (it ends with serial, refresh, retry, expire, minimum).
pub fn soa_serial(d: &[u8]) -> Option<u32> {
    let n = d.len();
    (n >= 20).then(|| u32::from_be_bytes(d[n - 20..n - 16].try_into().unwrap()))
}

/// Sets the serial of SOA rdata; `false` when it is too short to hold one.
pub fn set_soa_serial(d: &mut [u8], serial: u32) -> bool {
    let n = d.len();
    if n < 20 {
        return false;
    }
    d[n - 20..n - 16].copy_from_slice(&serial.to_be_bytes());
    true
}
