//! Record type numbers and mnemonics (IANA DNS parameters).

pub const A: u16 = 1;
pub const NS: u16 = 2;
pub const CNAME: u16 = 5;
pub const SOA: u16 = 6;
pub const PTR: u16 = 12;
pub const HINFO: u16 = 13;
pub const MX: u16 = 15;
pub const TXT: u16 = 16;
pub const RP: u16 = 17;
pub const AFSDB: u16 = 18;
pub const AAAA: u16 = 28;
pub const SRV: u16 = 33;
pub const NAPTR: u16 = 35;
pub const KX: u16 = 36;
pub const DNAME: u16 = 39;
pub const OPT: u16 = 41;
pub const DS: u16 = 43;
pub const SSHFP: u16 = 44;
pub const RRSIG: u16 = 46;
pub const NSEC: u16 = 47;
pub const DNSKEY: u16 = 48;
pub const DHCID: u16 = 49;
pub const NSEC3: u16 = 50;
pub const NSEC3PARAM: u16 = 51;
pub const TLSA: u16 = 52;
pub const SMIMEA: u16 = 53;
pub const CDS: u16 = 59;
pub const CDNSKEY: u16 = 60;
pub const OPENPGPKEY: u16 = 61;
pub const ZONEMD: u16 = 63;
pub const SPF: u16 = 99;
pub const URI: u16 = 256;
pub const CAA: u16 = 257;

const TABLE: &[(u16, &str)] = &[
    (A, "A"),
    (NS, "NS"),
    (CNAME, "CNAME"),
    (SOA, "SOA"),
    (PTR, "PTR"),
    (HINFO, "HINFO"),
    (MX, "MX"),
    (TXT, "TXT"),
    (RP, "RP"),
    (AFSDB, "AFSDB"),
    (AAAA, "AAAA"),
    (SRV, "SRV"),
    (NAPTR, "NAPTR"),
    (KX, "KX"),
    (DNAME, "DNAME"),
    (OPT, "OPT"),
    (DS, "DS"),
    (SSHFP, "SSHFP"),
    (RRSIG, "RRSIG"),
    (NSEC, "NSEC"),
    (DNSKEY, "DNSKEY"),
    (DHCID, "DHCID"),
    (NSEC3, "NSEC3"),
    (NSEC3PARAM, "NSEC3PARAM"),
    (TLSA, "TLSA"),
    (SMIMEA, "SMIMEA"),
    (CDS, "CDS"),
    (CDNSKEY, "CDNSKEY"),
    (OPENPGPKEY, "OPENPGPKEY"),
    (ZONEMD, "ZONEMD"),
    (SPF, "SPF"),
    (URI, "URI"),
    (CAA, "CAA"),
    (29, "LOC"),
    (37, "CERT"),
    (45, "IPSECKEY"),
    (55, "HIP"),
    (62, "CSYNC"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (108, "EUI48"),
    (109, "EUI64"),
];

/// Parses a type mnemonic or RFC 3597 `TYPEnnn`, case-insensitively.
pub fn from_text(s: &[u8]) -> Option<u16> {
    if s.len() > 4 && s[..4].eq_ignore_ascii_case(b"TYPE") {
        return std::str::from_utf8(&s[4..]).ok()?.parse().ok();
    }
    TABLE
        .iter()
        .find(|(_, m)| m.as_bytes().eq_ignore_ascii_case(s))
        .map(|(t, _)| *t)
}

/// The mnemonic of a type, or `TYPEnnn`.
pub fn to_text(t: u16) -> String {
    match TABLE.iter().find(|(c, _)| *c == t) {
        Some((_, m)) => (*m).to_string(),
        None => format!("TYPE{t}"),
    }
}

/// Types that are DNSSEC output: dropped from signer input, produced by the signer.
pub fn is_dnssec_output(t: u16) -> bool {
    matches!(t, RRSIG | NSEC | NSEC3 | NSEC3PARAM)
}

/// Types the signer makes (DNSSEC output and the DNSKEY RRset): not part of the unsigned
/// input.
pub fn made_by_signer(t: u16) -> bool {
    matches!(t, DNSKEY | RRSIG | NSEC | NSEC3 | NSEC3PARAM)
}
