//! ECDSA signature checks for keys whose private scalar the process holds.
//!
//! # Background
//! ECDSA verification (FIPS 186-5 §6.4.2) computes `P = u1·G + u2·Q` with `u1 = e·s⁻¹`,
//! `u2 = r·s⁻¹` and accepts when `x(P) ≡ r (mod n)`. When the private scalar `d` is known and
//! `Q = d·G` has been checked once against the DNSKEY, the same point is
//! `P = s⁻¹·(e + r·d)·G`: one multiplication of the fixed generator (the cost of one
//! signature, with aws-lc's precomputed tables) instead of a double multiplication with the
//! variable point `Q` (about three signatures' cost). The test is the verification equation
//! itself, so a signature that this check accepts verifies with the public key, and a
//! corrupted one is rejected exactly as a verifier would reject it (given a correct `k·G`:
//! the batch signer of [`crate::keys::ecdsa_sign`] computes `r` with the same
//! [`P256Base`], so the soft keystore also verifies one signature of each batch with the
//! public key).
//!
//! # Limitations
//! Only for the soft keystore (PKCS#11 keys never reveal `d`; those signatures get the full
//! public-key verification). For P-256 the scalar arithmetic is constant-time; for P-384 it
//! goes through aws-lc's big numbers, which are not. The soft keystore already keeps `d` in
//! process memory and is meant for labs and demos.

use aws_lc_rs::digest;
use aws_lc_sys as sys;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::{Field, PrimeField};
use p256::{FieldBytes, Scalar, U256};

/// Checks signatures of one ECDSA key by its private scalar.
pub struct ScalarVerifier {
    nid: i32,
    digest: &'static digest::Algorithm,
    half: usize,
    d: Vec<u8>,
    alg: u8,
    public_key: Vec<u8>,
}

impl std::fmt::Debug for ScalarVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the scalar.
        write!(f, "ScalarVerifier(algorithm {})", self.alg)
    }
}

impl Drop for ScalarVerifier {
    fn drop(&mut self) {
        self.d.iter_mut().for_each(|b| *b = 0);
    }
}

impl ScalarVerifier {
    /// `alg` 13 or 14; `public_key` the DNSKEY public key field (x‖y); `d` the private scalar.
    /// Fails unless `d·G` is exactly the public key.
    pub fn new(alg: u8, public_key: &[u8], d: &[u8]) -> Result<ScalarVerifier, String> {
        let (nid, digest, half) = match alg {
            13 => (sys::NID_X9_62_prime256v1, &digest::SHA256, 32),
            14 => (sys::NID_secp384r1, &digest::SHA384, 48),
            _ => return Err(format!("algorithm {alg} is not ECDSA")),
        };
        if public_key.len() != 2 * half || d.len() > half {
            return Err("key sizes do not match the curve".into());
        }
        if alg == 13 && p256_scalar(d).is_none() {
            return Err("the private scalar is not in 1..n".into());
        }
        let v = ScalarVerifier {
            nid,
            digest,
            half,
            d: d.to_vec(),
            alg,
            public_key: public_key.to_vec(),
        };
        let (x, y) = v.mul_generator(d).ok_or("curve arithmetic failed")?;
        if x[..] != public_key[..half] || y[..] != public_key[half..] {
            return Err("private key does not match the DNSKEY public key".into());
        }
        Ok(v)
    }

    /// The key it checks: (algorithm, DNSKEY public key field).
    pub fn key(&self) -> (u8, &[u8]) {
        (self.alg, &self.public_key)
    }

    /// `k·G` in affine coordinates, each `half` bytes big-endian.
    fn mul_generator(&self, k: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        // SAFETY: the group is a static built-in curve; all objects are owned by `c`.
        unsafe {
            let group = sys::EC_GROUP_new_by_curve_name(self.nid);
            let mut c = Arena::new(group)?;
            let (kb, x, y) = (c.bn_from(k), c.bn(), c.bn());
            if !c.mul_generator(group, kb, x, y) {
                return None;
            }
            let (mut xo, mut yo) = (vec![0u8; self.half], vec![0u8; self.half]);
            if sys::BN_bn2bin_padded(xo.as_mut_ptr(), self.half, x) != 1
                || sys::BN_bn2bin_padded(yo.as_mut_ptr(), self.half, y) != 1
            {
                return None;
            }
            Some((xo, yo))
        }
    }

    /// True when `sig` (r‖s) is a valid signature over `data` by this key.
    pub fn verify(&self, data: &[u8], sig: &[u8]) -> bool {
        self.verify_batch(&[(data, sig)])[0]
    }

    /// Checks many signatures at once: the modular inverses of all `s` values come from one
    /// inversion (Montgomery's trick), which is most of the cost of a lone check.
    pub fn verify_batch(&self, items: &[(&[u8], &[u8])]) -> Vec<bool> {
        if self.alg == 13 {
            self.verify_batch_p256(items)
        } else {
            self.verify_batch_bn(items)
        }
    }

    /// P-256: the scalar arithmetic (`s⁻¹`, `e + r·d`) in fixed-size, constant-time scalars,
    /// with nothing allocated per signature; only `k·G` goes to aws-lc. The big-number path
    /// spent about a third of a check in allocation and division.
    fn verify_batch_p256(&self, items: &[(&[u8], &[u8])]) -> Vec<bool> {
        let mut ok = vec![false; items.len()];
        let (Some(d), Some(mut base)) = (p256_scalar(&self.d), P256Base::new()) else {
            return ok;
        };
        let parsed = crate::keys::ecdsa_table::parse_batch(items);
        for (i, (e, r, w)) in parsed
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, (*p)?)))
        {
            // P = s⁻¹·(e + r·d)·G; valid when x(P) ≡ r (mod n).
            ok[i] = base.x_mod_n(&(w * (e + r * d))) == Some(r);
        }
        ok
    }

    /// Other curves (P-384), through aws-lc's big numbers.
    fn verify_batch_bn(&self, items: &[(&[u8], &[u8])]) -> Vec<bool> {
        let mut ok = vec![false; items.len()];
        // SAFETY: every BIGNUM/point is owned by `a` and freed with it; the group is static.
        unsafe {
            let group = sys::EC_GROUP_new_by_curve_name(self.nid);
            let n = sys::EC_GROUP_get0_order(group);
            let Some(mut a) = Arena::new(group) else {
                return ok;
            };
            let d = a.bn_from(&self.d);
            // Parse, keeping those with 0 < r, s < n (FIPS 186-5 §6.4.2 step 1).
            let mut live: Vec<(usize, *mut sys::BIGNUM, *mut sys::BIGNUM, *mut sys::BIGNUM)> =
                Vec::with_capacity(items.len());
            for (i, (data, sig)) in items.iter().enumerate() {
                if sig.len() != 2 * self.half {
                    continue;
                }
                let (r, s) = (a.bn_from(&sig[..self.half]), a.bn_from(&sig[self.half..]));
                if [r, s]
                    .iter()
                    .any(|v| sys::BN_is_zero(*v) == 1 || sys::BN_cmp(*v, n) >= 0)
                {
                    continue;
                }
                let e = a.bn_from(digest::digest(self.digest, data).as_ref());
                if sys::BN_nnmod(e, e, n, a.ctx) != 1 {
                    return ok;
                }
                live.push((i, e, r, s));
            }
            if live.is_empty() {
                return ok;
            }
            // prefix[k] = s_0 · … · s_k mod n; one inversion; then walk back for each s_k⁻¹.
            let mut prefix = Vec::with_capacity(live.len());
            for (k, (_, _, _, s)) in live.iter().enumerate() {
                let p = a.bn();
                let good = if k == 0 {
                    !sys::BN_copy(p, *s).is_null()
                } else {
                    sys::BN_mod_mul(p, prefix[k - 1], *s, n, a.ctx) == 1
                };
                if !good {
                    return ok;
                }
                prefix.push(p);
            }
            let inv = a.bn();
            if sys::BN_mod_inverse(inv, prefix[live.len() - 1], n, a.ctx).is_null() {
                return ok;
            }
            let (w, t, x, y) = (a.bn(), a.bn(), a.bn(), a.bn());
            for k in (0..live.len()).rev() {
                let (i, e, r, s) = live[k];
                let step = if k == 0 {
                    !sys::BN_copy(w, inv).is_null()
                } else {
                    sys::BN_mod_mul(w, inv, prefix[k - 1], n, a.ctx) == 1
                };
                // P = s⁻¹·(e + r·d)·G; valid when x(P) ≡ r (mod n).
                let good = step
                    && sys::BN_mod_mul(inv, inv, s, n, a.ctx) == 1
                    && sys::BN_mod_mul(t, r, d, n, a.ctx) == 1
                    && sys::BN_mod_add(t, t, e, n, a.ctx) == 1
                    && sys::BN_mod_mul(t, t, w, n, a.ctx) == 1
                    && a.mul_generator(group, t, x, y)
                    && sys::BN_nnmod(x, x, n, a.ctx) == 1;
                ok[i] = good && sys::BN_cmp(x, r) == 0;
            }
        }
        ok
    }
}

/// `d` (big-endian) as a P-256 scalar, when it is in `1..n` (and so at most 32 octets).
pub(crate) fn p256_scalar(d: &[u8]) -> Option<Scalar> {
    if d.len() > 32 {
        return None;
    }
    let mut padded = FieldBytes::default();
    padded[32 - d.len()..].copy_from_slice(d);
    let s = Option::<Scalar>::from(Scalar::from_repr(padded));
    padded.iter_mut().for_each(|b| *b = 0);
    s.filter(|s| !bool::from(s.is_zero()))
}

/// `x(k·G) mod n` on P-256 through aws-lc's precomputed tables of the generator
/// (constant-time), for many `k` with one set of aws-lc objects.
pub(crate) struct P256Base {
    group: *const sys::EC_GROUP,
    arena: Arena,
    k: *mut sys::BIGNUM,
    x: *mut sys::BIGNUM,
}

impl P256Base {
    pub(crate) fn new() -> Option<P256Base> {
        // SAFETY: the group is a static built-in curve; the arena owns what it allocates.
        unsafe {
            let group = sys::EC_GROUP_new_by_curve_name(sys::NID_X9_62_prime256v1);
            let mut arena = Arena::new(group)?;
            let (k, x) = (arena.bn(), arena.bn());
            Some(P256Base { group, arena, k, x })
        }
    }

    /// `None` when `k·G` is the point at infinity (`k = 0`) or aws-lc fails.
    pub(crate) fn x_mod_n(&mut self, k: &Scalar) -> Option<Scalar> {
        let mut kb = k.to_repr();
        let mut xb = FieldBytes::default();
        // SAFETY: `k` and `x` are the arena's live BIGNUMs, `group` its group.
        let done = unsafe {
            !sys::BN_bin2bn(kb.as_ptr(), kb.len(), self.k).is_null()
                && self
                    .arena
                    .mul_generator(self.group, self.k, self.x, std::ptr::null_mut())
                && sys::BN_bn2bin_padded(xb.as_mut_ptr(), xb.len(), self.x) == 1
        };
        crate::keys::ecdsa_table::wipe(kb.as_mut_slice());
        done.then(|| <Scalar as Reduce<U256>>::reduce_bytes(&xb))
    }
}

/// BIGNUMs, one point and a BN_CTX, all freed together.
struct Arena {
    ctx: *mut sys::BN_CTX,
    point: *mut sys::EC_POINT,
    bns: Vec<*mut sys::BIGNUM>,
}

impl Arena {
    unsafe fn new(group: *const sys::EC_GROUP) -> Option<Arena> {
        // SAFETY: plain allocations, checked; freed in Drop.
        let a = unsafe {
            Arena {
                ctx: sys::BN_CTX_new(),
                point: sys::EC_POINT_new(group),
                bns: Vec::new(),
            }
        };
        (!a.ctx.is_null() && !a.point.is_null()).then_some(a)
    }

    /// `k·G` into `x` and `y` (affine; `y` may be null); false when that fails (`k·G` is
    /// the point at infinity).
    ///
    /// # Safety
    /// `group` is the arena's group; `k`, `x` and a non-null `y` are live BIGNUMs.
    unsafe fn mul_generator(
        &mut self,
        group: *const sys::EC_GROUP,
        k: *const sys::BIGNUM,
        x: *mut sys::BIGNUM,
        y: *mut sys::BIGNUM,
    ) -> bool {
        let (no_point, no_scalar) = (std::ptr::null(), std::ptr::null());
        // SAFETY: as the caller promises; the point and context are the arena's own.
        unsafe {
            sys::EC_POINT_mul(group, self.point, k, no_point, no_scalar, self.ctx) == 1
                && sys::EC_POINT_get_affine_coordinates_GFp(group, self.point, x, y, self.ctx) == 1
        }
    }

    fn bn(&mut self) -> *mut sys::BIGNUM {
        // SAFETY: allocation; a null result makes every later BN call fail and return 0.
        let b = unsafe { sys::BN_new() };
        assert!(!b.is_null(), "out of memory");
        self.bns.push(b);
        b
    }

    fn bn_from(&mut self, bytes: &[u8]) -> *mut sys::BIGNUM {
        let b = self.bn();
        // SAFETY: `bytes` is a valid slice; `b` is a live BIGNUM.
        unsafe { sys::BN_bin2bn(bytes.as_ptr(), bytes.len(), b) };
        b
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: each pointer came from its *_new and is freed once.
        unsafe {
            for b in &self.bns {
                sys::BN_clear_free(*b);
            }
            sys::EC_POINT_free(self.point);
            sys::BN_CTX_free(self.ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hsm::SigningKey;
    use crate::hsm::soft::SoftKey;
    use crate::keys::Algorithm;

    #[test]
    fn agrees_with_public_key_verification() {
        for alg in [Algorithm::EcdsaP256Sha256, Algorithm::EcdsaP384Sha384] {
            let (key, fields) = SoftKey::generate(alg, false).unwrap();
            let d = &fields[0].1;
            let dk = key.dnskey();
            let fast = ScalarVerifier::new(dk.algorithm, &dk.public_key, d).unwrap();
            let full = dk.verifier().unwrap();
            for i in 0..50u32 {
                let msg = i.to_be_bytes();
                let mut sig = key.sign(&msg).unwrap();
                assert!(fast.verify(&msg, &sig) && full.verify(&msg, &sig));
                let at = (i as usize * 7) % sig.len();
                sig[at] ^= 1 << (i % 8);
                assert_eq!(fast.verify(&msg, &sig), full.verify(&msg, &sig));
                assert!(!fast.verify(&msg, &sig));
                assert!(!fast.verify(b"other", &key.sign(&msg).unwrap()));
            }
            // A batch gives the same answers as one by one.
            let msgs: Vec<[u8; 4]> = (0..40u32).map(|i| i.to_be_bytes()).collect();
            let mut sigs: Vec<Vec<u8>> = msgs.iter().map(|m| key.sign(m).unwrap()).collect();
            for i in (0..40).step_by(3) {
                sigs[i][5] ^= 0x10;
            }
            sigs[7] = vec![0u8; 2 * fast.half]; // r = s = 0
            let items: Vec<(&[u8], &[u8])> = msgs
                .iter()
                .zip(&sigs)
                .map(|(m, s)| (&m[..], &s[..]))
                .collect();
            let batch = fast.verify_batch(&items);
            for (i, (m, s)) in items.iter().enumerate() {
                assert_eq!(batch[i], full.verify(m, s), "item {i}");
                assert_eq!(batch[i], i % 3 != 0 && i != 7, "item {i}");
            }
            // A scalar that is not the key's is refused up front.
            let (other, of) = SoftKey::generate(alg, false).unwrap();
            assert!(ScalarVerifier::new(dk.algorithm, &dk.public_key, &of[0].1).is_err());
            drop(other);
        }
    }
}
