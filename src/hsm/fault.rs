//! A fault-injecting keystore: wraps another and corrupts every N-th signature.
//! It exists to prove that the signer's sign ↔ verify check catches a keystore that
//! silently returns bad signatures (shared/seeds/002).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{HsmError, Keystore, SigningKey};
use crate::keys::{Algorithm, DnsKey};
use crate::zone::Name;

pub struct FaultKeystore {
    inner: Box<dyn Keystore>,
    every: u64,
    counter: Arc<AtomicU64>,
}

impl FaultKeystore {
    pub fn new(inner: Box<dyn Keystore>, every: u64) -> FaultKeystore {
        FaultKeystore {
            inner,
            every,
            counter: Arc::new(AtomicU64::new(0)),
        }
    }

    fn wrap(&self, k: Arc<dyn SigningKey>) -> Arc<dyn SigningKey> {
        Arc::new(FaultKey {
            inner: k,
            every: self.every,
            counter: self.counter.clone(),
        })
    }
}

impl Keystore for FaultKeystore {
    fn describe(&self) -> String {
        format!("fault:every={}:{}", self.every, self.inner.describe())
    }
    fn load(&self, zone: &Name) -> Result<Vec<Arc<dyn SigningKey>>, HsmError> {
        Ok(self
            .inner
            .load(zone)?
            .into_iter()
            .map(|k| self.wrap(k))
            .collect())
    }
    fn generate(
        &self,
        zone: &Name,
        alg: Algorithm,
        ksk: bool,
    ) -> Result<Arc<dyn SigningKey>, HsmError> {
        Ok(self.wrap(self.inner.generate(zone, alg, ksk)?))
    }
}

pub struct FaultKey {
    inner: Arc<dyn SigningKey>,
    every: u64,
    counter: Arc<AtomicU64>,
}

impl SigningKey for FaultKey {
    fn dnskey(&self) -> &DnsKey {
        self.inner.dnskey()
    }
    fn handle(&self) -> &str {
        self.inner.handle()
    }
    fn private_scalar(&self) -> Option<Vec<u8>> {
        self.inner.private_scalar()
    }
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        let mut sig = self.inner.sign(data)?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(self.every) {
            let i = (n as usize) % sig.len();
            sig[i] ^= 0x5a;
        }
        Ok(sig)
    }
}
