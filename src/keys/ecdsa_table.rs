//! Checks of many P-256 signatures by one public key, through a table of the key's multiples.
//!
//! # Background
//! ECDSA verification (FIPS 186-5 §6.4.2) computes `P = u1·G + u2·Q` with `u1 = e·s⁻¹`,
//! `u2 = r·s⁻¹` and accepts when `x(P) ≡ r (mod n)`. aws-lc multiplies the fixed generator
//! `G` from a precomputed table, but the key `Q` with a window method each time: about 50
//! doublings and 50 additions, two thirds of a check. A zone's ZSK checks one signature per
//! RRset, a million of them for a TLD, so here `Q` gets a table too: `d·256^i·Q` for every
//! byte value `d` and byte position `i`. Then `u2·Q` is at most 32 additions of table points
//! and no doublings, and so is `u1·G` from the same kind of table of `G`. The inversions
//! (`s⁻¹`) are batched across the signatures of a batch (Montgomery's trick), and `x(P)` is
//! compared in Jacobian coordinates (`X = r·Z²`), so no field inversion is needed at all.
//!
//! Only public data is involved, so the arithmetic is variable-time (it branches on the
//! scalars' bytes and on special cases of the addition formulas).
//!
//! # Limitations
//! P-256 only. A table holds 8,160 affine points (510 KiB) and takes a few milliseconds to
//! build: worth it for a key that checks thousands of signatures, not for one.

use std::sync::LazyLock;

use aws_lc_rs::digest;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::{Field, PrimeField};
use p256::{FieldBytes, FieldElement as Fe, Scalar, U256};

/// Bits of a scalar per table row.
const WINDOW: usize = 8;
const ROWS: usize = 256 / WINDOW;
/// Nonzero multiples per row.
const COLS: usize = (1 << WINDOW) - 1;

/// The group order `n`, big-endian.
const ORDER: [u8; 32] = hex32("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
/// `p − n`: an `r` below this may stand for the x-coordinate `r + n` as well.
const P_MINUS_N: [u8; 32] =
    hex32("000000000000000000000000000000004319055358E8617B0C46353D039CDAAE");
/// The generator, uncompressed coordinates (SEC 2 §2.4.2).
const GX: [u8; 32] = hex32("6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296");
const GY: [u8; 32] = hex32("4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5");

const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            _ => c - b'A' + 10,
        }
    }
    let s = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 64 {
        out[i / 2] = nibble(s[i]) << 4 | nibble(s[i + 1]);
        i += 2;
    }
    out
}

static GENERATOR: LazyLock<Table> = LazyLock::new(|| {
    let g = Affine::from_bytes(&GX, &GY).expect("the generator is on the curve");
    Table::new(g)
});

#[derive(Clone, Copy)]
struct Affine {
    x: Fe,
    y: Fe,
}

impl Affine {
    /// A point from its coordinates, if they are field elements on the curve
    /// `y² = x³ − 3x + b`.
    fn from_bytes(x: &[u8; 32], y: &[u8; 32]) -> Option<Affine> {
        let x = Option::<Fe>::from(Fe::from_bytes(FieldBytes::from_slice(x)))?;
        let y = Option::<Fe>::from(Fe::from_bytes(FieldBytes::from_slice(y)))?;
        let b = Fe::from_bytes(FieldBytes::from_slice(&hex32(
            "5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B",
        )))
        .unwrap();
        let rhs = x.square().multiply(&x) - x.double() - x + b;
        (y.square() == rhs).then_some(Affine { x, y })
    }
}

/// `(X/Z², Y/Z³)`; `Z = 0` is the point at infinity.
#[derive(Clone, Copy)]
struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
}

impl Jacobian {
    const INFINITY: Jacobian = Jacobian {
        x: Fe::ONE,
        y: Fe::ONE,
        z: Fe::ZERO,
    };

    fn from_affine(a: &Affine) -> Jacobian {
        Jacobian {
            x: a.x,
            y: a.y,
            z: Fe::ONE,
        }
    }

    fn is_infinity(&self) -> bool {
        self.z.is_zero().into()
    }

    /// dbl-2001-b (a = −3), from the Explicit-Formulas Database.
    fn double(&self) -> Jacobian {
        if self.is_infinity() || bool::from(self.y.is_zero()) {
            return Jacobian::INFINITY;
        }
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.multiply(&gamma);
        let t = (self.x - delta).multiply(&(self.x + delta));
        let alpha = t.double() + t;
        let beta4 = beta.double().double();
        let x = alpha.square() - beta4.double();
        let z = (self.y + self.z).square() - gamma - delta;
        let gamma2 = gamma.square();
        let y = alpha.multiply(&(beta4 - x)) - gamma2.double().double().double();
        Jacobian { x, y, z }
    }

    /// `self + b`: madd-2007-bl, from the Explicit-Formulas Database, with its special
    /// cases (either point at infinity, `self = b`, `self = −b`) handled.
    fn add_affine(&self, b: &Affine) -> Jacobian {
        if self.is_infinity() {
            return Jacobian::from_affine(b);
        }
        let z1z1 = self.z.square();
        let u2 = b.x.multiply(&z1z1);
        let s2 = b.y.multiply(&self.z).multiply(&z1z1);
        let h = u2 - self.x;
        let r = s2 - self.y;
        if bool::from(h.is_zero()) {
            return if bool::from(r.is_zero()) {
                Jacobian::from_affine(b).double()
            } else {
                Jacobian::INFINITY
            };
        }
        let hh = h.square();
        let i = hh.double().double();
        let j = h.multiply(&i);
        let r = r.double();
        let v = self.x.multiply(&i);
        let x = r.square() - j - v.double();
        let y = r.multiply(&(v - x)) - self.y.multiply(&j).double();
        let z = (self.z + h).square() - z1z1 - hh;
        Jacobian { x, y, z }
    }
}

/// Affine forms of points none of which is at infinity, with one field inversion.
fn normalize(points: &[Jacobian]) -> Vec<Affine> {
    let mut prefix = Vec::with_capacity(points.len());
    let mut acc = Fe::ONE;
    for p in points {
        debug_assert!(!p.is_infinity());
        prefix.push(acc);
        acc = acc.multiply(&p.z);
    }
    let mut inv = acc.invert().expect("no point at infinity");
    let mut out = vec![
        Affine {
            x: Fe::ZERO,
            y: Fe::ZERO
        };
        points.len()
    ];
    for i in (0..points.len()).rev() {
        let zinv = inv.multiply(&prefix[i]);
        inv = inv.multiply(&points[i].z);
        let zinv2 = zinv.square();
        out[i] = Affine {
            x: points[i].x.multiply(&zinv2),
            y: points[i].y.multiply(&zinv2.multiply(&zinv)),
        };
    }
    out
}

/// `d·256^i·P` for `d` in 1..=255 and `i` in 0..32.
struct Table {
    points: Box<[Affine]>,
}

impl Table {
    fn new(p: Affine) -> Table {
        let mut points = Vec::with_capacity(ROWS * COLS);
        let mut base = p;
        let mut row = Vec::with_capacity(COLS + 1);
        for _ in 0..ROWS {
            // d·base for d in 1..=256. None is at infinity: d·256^i < n for d < 256, i < 32,
            // and 256^32 is not a multiple of the prime n.
            row.clear();
            let mut acc = Jacobian::from_affine(&base);
            row.push(acc);
            for _ in 0..COLS {
                acc = acc.add_affine(&base);
                row.push(acc);
            }
            let affine = normalize(&row);
            points.extend_from_slice(&affine[..COLS]);
            base = affine[COLS];
        }
        Table {
            points: points.into_boxed_slice(),
        }
    }

    /// `acc + k·P`, `k` big-endian.
    fn add_mul(&self, mut acc: Jacobian, k: &FieldBytes) -> Jacobian {
        for (i, &d) in k.iter().rev().enumerate() {
            if d != 0 {
                acc = acc.add_affine(&self.points[i * COLS + d as usize - 1]);
            }
        }
        acc
    }
}

/// Checks ECDSA P-256 / SHA-256 signatures (DNSSEC algorithm 13) by one public key.
pub struct TableVerifier {
    table: Table,
    public_key: Vec<u8>,
}

impl std::fmt::Debug for TableVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TableVerifier(algorithm 13)")
    }
}

impl TableVerifier {
    /// `public_key` is the DNSKEY public key field (x‖y). Fails unless it is a point on the
    /// curve.
    pub fn new(public_key: &[u8]) -> Result<TableVerifier, String> {
        let (x, y) = public_key
            .split_at_checked(32)
            .filter(|(_, y)| y.len() == 32)
            .ok_or("a P-256 public key is 64 octets")?;
        let q = Affine::from_bytes(x.try_into().unwrap(), y.try_into().unwrap())
            .ok_or("the public key is not a point on P-256")?;
        LazyLock::force(&GENERATOR);
        Ok(TableVerifier {
            table: Table::new(q),
            public_key: public_key.to_vec(),
        })
    }

    /// The DNSKEY public key field this verifier checks with.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// Whether `sig` (r‖s) is a signature of `data`.
    pub fn verify(&self, data: &[u8], sig: &[u8]) -> bool {
        self.verify_batch(&[(data, sig)])[0]
    }

    /// Checks each (signed data, signature) pair; one scalar inversion for the whole batch.
    pub fn verify_batch(&self, items: &[(&[u8], &[u8])]) -> Vec<bool> {
        parse_batch(items)
            .iter()
            .map(|p| p.is_some_and(|(e, r, w)| self.check(&e, &r, &w)))
            .collect()
    }

    fn check(&self, e: &Scalar, r: &Scalar, w: &Scalar) -> bool {
        let u1 = (*e * w).to_repr();
        let u2 = (*r * w).to_repr();
        let p = GENERATOR.add_mul(Jacobian::INFINITY, &u1);
        let p = self.table.add_mul(p, &u2);
        if p.is_infinity() {
            return false;
        }
        // x(P) = X/Z² ≡ r (mod n): X = r·Z², or X = (r + n)·Z² when r + n < p.
        let r_bytes = r.to_repr();
        let rf = Fe::from_bytes(&r_bytes).unwrap();
        let z2 = p.z.square();
        if p.x == rf.multiply(&z2) {
            return true;
        }
        if r_bytes.as_slice() < P_MINUS_N.as_slice() {
            let n = Fe::from_bytes(FieldBytes::from_slice(&ORDER)).unwrap();
            return p.x == (rf + n).multiply(&z2);
        }
        false
    }
}

/// `(e, r, s⁻¹)` of each (signed data, P-256 signature) pair that is well formed (see
/// [`parse`]), with one scalar inversion for the whole batch (Montgomery's trick).
pub(crate) fn parse_batch(items: &[(&[u8], &[u8])]) -> Vec<Option<(Scalar, Scalar, Scalar)>> {
    let mut parsed: Vec<Option<(Scalar, Scalar, Scalar)>> =
        items.iter().map(|(d, s)| parse(d, s)).collect();
    let mut ss: Vec<Scalar> = parsed.iter().flatten().map(|(_, _, s)| *s).collect();
    invert_all(&mut ss);
    for ((_, _, s), w) in parsed.iter_mut().flatten().zip(ss) {
        *s = w;
    }
    parsed
}

/// Replaces each scalar by its inverse, with one inversion for all of them (Montgomery's
/// trick: three multiplications per scalar instead of an inversion each). Constant-time in
/// the values. Callers pass nonzero scalars only: one zero turns every output into zero.
pub(crate) fn invert_all(values: &mut [Scalar]) {
    let mut prefix = Vec::with_capacity(values.len());
    let mut acc = Scalar::ONE;
    for v in values.iter() {
        prefix.push(acc);
        acc *= v;
    }
    let mut inv = Option::<Scalar>::from(acc.invert()).unwrap_or(Scalar::ZERO);
    for (v, p) in values.iter_mut().zip(prefix.iter()).rev() {
        let w = inv * p;
        inv *= *v;
        *v = w;
    }
    // The partial products of secret scalars (nonces) are secret too.
    wipe(&mut prefix);
    wipe(std::slice::from_mut(&mut inv));
    wipe(std::slice::from_mut(&mut acc));
}

/// Overwrites secrets (scalars, octets) with zeros through volatile writes, so the stores
/// are not optimised away as dead.
pub(crate) fn wipe<T: Default>(values: &mut [T]) {
    for v in values {
        // SAFETY: `v` is a valid, aligned, exclusive reference; the old value is plain data.
        unsafe { std::ptr::write_volatile(v, T::default()) };
    }
}

/// `(e, r, s)` when `sig` is 64 octets with `r` and `s` in `1..n`.
fn parse(data: &[u8], sig: &[u8]) -> Option<(Scalar, Scalar, Scalar)> {
    if sig.len() != 64 {
        return None;
    }
    let scalar = |b: &[u8]| {
        Option::<Scalar>::from(Scalar::from_repr(*FieldBytes::from_slice(b)))
            .filter(|s| !bool::from(s.is_zero()))
    };
    let r = scalar(&sig[..32])?;
    let s = scalar(&sig[32..])?;
    let h = digest::digest(&digest::SHA256, data);
    let e = <Scalar as Reduce<U256>>::reduce_bytes(FieldBytes::from_slice(h.as_ref()));
    Some((e, r, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};

    fn key() -> (EcdsaKeyPair, Vec<u8>) {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
        let public = kp.public_key().as_ref()[1..].to_vec();
        (kp, public)
    }

    /// Agrees with aws-lc's verification on good signatures, on every single-bit flip of
    /// one, on a signature by another key, and on malformed ones.
    #[test]
    fn agrees_with_aws_lc() {
        let rng = SystemRandom::new();
        let (kp, public) = key();
        let (other, _) = key();
        let v = TableVerifier::new(&public).unwrap();
        let mut pk = vec![4];
        pk.extend_from_slice(&public);
        let reference =
            signature::ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, pk).unwrap();
        let mut datas = Vec::new();
        let mut sigs = Vec::new();
        for i in 0..200u32 {
            let data = format!("rrset {i}").into_bytes();
            let sig = kp.sign(&rng, &data).unwrap().as_ref().to_vec();
            let mut bad = sig.clone();
            bad[(i as usize * 7) % 64] ^= 1 << (i % 8);
            let foreign = other.sign(&rng, &data).unwrap().as_ref().to_vec();
            for s in [sig, bad, foreign] {
                datas.push(data.clone());
                sigs.push(s);
            }
        }
        for s in [
            vec![0u8; 64],
            vec![0xff; 64],
            vec![1u8; 63],
            ORDER.repeat(2),
        ] {
            datas.push(b"x".to_vec());
            sigs.push(s);
        }
        let items: Vec<(&[u8], &[u8])> = datas
            .iter()
            .zip(&sigs)
            .map(|(d, s)| (d.as_slice(), s.as_slice()))
            .collect();
        let got = v.verify_batch(&items);
        let mut good = 0;
        for ((d, s), ok) in items.iter().zip(got) {
            let want = reference.verify_sig(d, s).is_ok();
            assert_eq!(ok, want, "sig {}", data_encoding::HEXLOWER.encode(s));
            good += want as usize;
        }
        assert_eq!(good, 200);
        assert!(v.verify(&datas[0], &sigs[0]));
        assert!(!v.verify(&datas[1], &sigs[1]));
    }

    /// The table's rows hold what repeated additions give, and the addition's special cases
    /// (doubling, a point plus its negation) come out right.
    #[test]
    fn table_and_special_cases() {
        let g = GENERATOR.points[0];
        let mut acc = Jacobian::INFINITY;
        let mut expect = Vec::new();
        for _ in 0..300 {
            acc = acc.add_affine(&g);
            expect.push(acc);
        }
        let expect = normalize(&expect);
        for d in 1..=255usize {
            assert!(GENERATOR.points[d - 1].x == expect[d - 1].x);
        }
        assert!(GENERATOR.points[COLS].x == expect[255].x);
        let g2 = Jacobian::from_affine(&g).add_affine(&g);
        assert!(normalize(&[g2])[0].x == GENERATOR.points[1].x);
        let neg = Affine { x: g.x, y: -g.y };
        assert!(Jacobian::from_affine(&g).add_affine(&neg).is_infinity());
        assert!(TableVerifier::new(&[0u8; 64]).is_err());
        assert!(TableVerifier::new(&[0u8; 63]).is_err());
    }
}
