//! P-256 signatures made many at a time, for keys whose private scalar the process holds.
//!
//! # Background
//! An ECDSA signature (FIPS 186-5 §6.4.1) is `r = x(k·G) mod n`, `s = k⁻¹·(e + r·d) mod n`
//! for a fresh secret nonce `k`. Made one at a time (aws-lc's `ECDSA_do_sign` behind the
//! EVP layer), each pays for a field inversion (the affine `x`), a scalar inversion (`k⁻¹`)
//! and the layers' allocations on top of the generator multiplication: about 16 µs here,
//! against 9 µs made by the batch. Here the batch's `k⁻¹` come from one inversion
//! (Montgomery's trick) and only `k·G` goes to aws-lc, through its constant-time
//! precomputed tables of the generator.
//!
//! The nonce is hedged: `k = SHA-512(label ‖ d ‖ SHA-256(data) ‖ 32 random octets)` reduced
//! modulo `n` (the 512-bit value leaves a bias below 2⁻²⁵⁶). With a working random source
//! `k` is uniform; should the source ever repeat its output, `k` still differs for every
//! (key, data) pair, the property RFC 6979 gives deterministic ECDSA. (A source that
//! reports failure stops the batch.)
//!
//! # Limitations
//! P-256 only. Nothing here checks the signatures: the signer checks every one it gets
//! before it uses it, as it does for any keystore ([`crate::keys::ecdsa_check`]).

use aws_lc_rs::digest;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::{Field, PrimeField};
use p256::{FieldBytes, Scalar, U256};

use crate::keys::ecdsa_check::{P256Base, p256_scalar};
use crate::keys::ecdsa_table::{invert_all, wipe};

const NONCE_LABEL: &[u8] = b"quorumsign ECDSA P-256 nonce\0";

/// Signs with one P-256 private scalar.
pub struct P256Signer {
    d: Scalar,
}

impl std::fmt::Debug for P256Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the scalar.
        f.write_str("P256Signer")
    }
}

impl Drop for P256Signer {
    fn drop(&mut self) {
        wipe(std::slice::from_mut(&mut self.d));
    }
}

impl P256Signer {
    /// `d`: the private scalar, big-endian; `None` unless in `1..n`.
    pub fn new(d: &[u8]) -> Option<P256Signer> {
        p256_scalar(d).map(|d| P256Signer { d })
    }

    /// One signature (`r‖s`, 64 octets) over each item, SHA-256 hashed. `None` for an item
    /// when its nonce or its `r` or `s` came out zero (probability about 2⁻²⁵⁶ each): the
    /// caller signs that item again by other means. `Err` when the random source or aws-lc
    /// fails.
    pub fn sign_batch(&self, items: &[&[u8]]) -> Result<Vec<Option<[u8; 64]>>, String> {
        let mut noise = vec![0u8; 32 * items.len()];
        aws_lc_rs::rand::fill(&mut noise).map_err(|_| "no randomness for ECDSA nonces")?;
        let mut base = P256Base::new().ok_or("aws-lc could not set up P-256")?;
        // 2²⁵⁶ mod n, to fold the high half of a 512-bit hash.
        let wrap = reduce(&[0xff; 32]) + Scalar::ONE;
        let mut d_bytes = self.d.to_repr();
        let mut es = Vec::with_capacity(items.len());
        let mut ks = Vec::with_capacity(items.len());
        for (data, noise) in items.iter().zip(noise.chunks_exact(32)) {
            let h = digest::digest(&digest::SHA256, data);
            let mut ctx = digest::Context::new(&digest::SHA512);
            for part in [NONCE_LABEL, &d_bytes[..], h.as_ref(), noise] {
                ctx.update(part);
            }
            let mut wide = [0u8; 64];
            wide.copy_from_slice(ctx.finish().as_ref());
            let (hi, lo) = wide.split_at(32);
            ks.push(reduce(hi) * wrap + reduce(lo));
            wipe(&mut wide[..]);
            es.push(reduce(h.as_ref()));
        }
        wipe(d_bytes.as_mut_slice());
        wipe(&mut noise[..]);
        let zero_k: Vec<bool> = ks.iter().map(|k| bool::from(k.is_zero())).collect();
        for (k, z) in ks.iter_mut().zip(&zero_k) {
            if *z {
                *k = Scalar::ONE; // keeps the batch inversion defined; the item is dropped
            }
        }
        let mut k_inv = ks.clone();
        invert_all(&mut k_inv);
        let mut out = Vec::with_capacity(items.len());
        for i in 0..items.len() {
            if zero_k[i] {
                out.push(None);
                continue;
            }
            let r = base
                .x_mod_n(&ks[i])
                .ok_or("aws-lc: generator multiplication failed")?;
            let s = k_inv[i] * (es[i] + r * self.d);
            if bool::from(r.is_zero() | s.is_zero()) {
                out.push(None);
                continue;
            }
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&r.to_repr());
            sig[32..].copy_from_slice(&s.to_repr());
            out.push(Some(sig));
        }
        wipe(&mut ks);
        wipe(&mut k_inv);
        Ok(out)
    }
}

/// `b` (32 octets, big-endian) modulo `n`.
fn reduce(b: &[u8]) -> Scalar {
    <Scalar as Reduce<U256>>::reduce_bytes(FieldBytes::from_slice(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hsm::SigningKey;
    use crate::hsm::soft::SoftKey;
    use crate::keys::Algorithm;

    #[test]
    fn signatures_verify_with_the_public_key_and_differ_each_time() {
        let (key, fields) = SoftKey::generate(Algorithm::EcdsaP256Sha256, false).unwrap();
        let signer = P256Signer::new(&fields[0].1).unwrap();
        let full = key.dnskey().verifier().unwrap();
        let msgs: Vec<Vec<u8>> = (0..300u32)
            .map(|i| i.to_be_bytes().repeat(i as usize % 40))
            .collect();
        let items: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let first = signer.sign_batch(&items).unwrap();
        let again = signer.sign_batch(&items).unwrap();
        for (i, (a, b)) in first.iter().zip(&again).enumerate() {
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!(full.verify(items[i], &a), "item {i}");
            assert!(!full.verify(b"other data", &a), "item {i}");
            // Fresh nonces: the same data signs differently each time.
            assert_ne!(a[..32], b[..32], "item {i}");
        }
        assert!(signer.sign_batch(&[]).unwrap().is_empty());
    }

    #[test]
    fn refuses_scalars_outside_the_group() {
        assert!(P256Signer::new(&[0u8; 32]).is_none());
        assert!(P256Signer::new(&[0xff; 32]).is_none());
        assert!(P256Signer::new(&[1u8; 33]).is_none());
        assert!(P256Signer::new(&[7]).is_some());
    }
}
