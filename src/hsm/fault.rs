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

/// What a [`Control`] makes every key it wraps do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Sign normally.
    Ok = 0,
    /// Return random bytes of the right length.
    Garbage = 1,
    /// Return a real signature by another key.
    WrongKey = 2,
    /// Fail with a device error.
    Error = 3,
    /// Block each signing call until the mode changes (at most [`STALL_LIMIT`]).
    Stall = 4,
}

/// The longest a stalled signing call waits.
pub const STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s.trim() {
            "" | "ok" => Mode::Ok,
            "garbage" => Mode::Garbage,
            "wrong-key" => Mode::WrongKey,
            "error" => Mode::Error,
            "stall" => Mode::Stall,
            _ => return None,
        })
    }

    fn of(n: u8) -> Mode {
        match n {
            1 => Mode::Garbage,
            2 => Mode::WrongKey,
            3 => Mode::Error,
            4 => Mode::Stall,
            _ => Mode::Ok,
        }
    }
}

/// A keystore fault switch read from a file (a node's `fault_control`, for chaos runs):
/// the file's `keystore = MODE` line is reread every 100 ms; a missing file means `ok`.
/// The file's other lines are handed to the [`Hooks`] the node wires in.
pub struct Control {
    mode: std::sync::atomic::AtomicU8,
    clock: std::sync::atomic::AtomicI64,
    other: aws_lc_rs::signature::EcdsaKeyPair,
}

/// What the other lines of a fault-control file switch, wired in by the node (this module
/// knows nothing of the clock, the store or the transport).
pub struct Hooks {
    /// `clock = ±SECONDS`: the node's wall-clock offset.
    pub clock: Box<dyn Fn(i64) + Send>,
    /// `disk = fsync-error`: every flush of the Raft log fails; returns the previous setting.
    pub fsync_errors: Box<dyn Fn(bool) -> bool + Send>,
    /// `control = drop` (or `drop:ID,…`): node-to-node control traffic (to those members)
    /// is dropped; returns whether that changed.
    pub drop_control: Box<dyn Fn(Option<Vec<u64>>) -> bool + Send>,
}

impl Control {
    /// Starts the thread that follows `path`.
    pub fn follow(path: std::path::PathBuf, hooks: Hooks) -> Arc<Control> {
        let other = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .expect("P-256 key generation");
        let c = Arc::new(Control {
            mode: std::sync::atomic::AtomicU8::new(0),
            clock: std::sync::atomic::AtomicI64::new(0),
            other,
        });
        let weak = Arc::downgrade(&c);
        std::thread::spawn(move || {
            while let Some(c) = weak.upgrade() {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let line = |key: &str| {
                    text.lines()
                        .filter_map(|l| l.split_once('='))
                        .find(|(k, _)| k.trim() == key)
                        .map(|(_, v)| v.trim().to_string())
                };
                let mode = line("keystore").map_or(Some(Mode::Ok), |v| Mode::parse(&v));
                let clock: i64 = line("clock")
                    .and_then(|v| v.trim_start_matches('+').parse().ok())
                    .unwrap_or(0);
                let fsync_errors = line("disk").is_some_and(|v| v == "fsync-error");
                let control = line("control").and_then(|v| {
                    let v = v.strip_prefix("drop")?;
                    Some(
                        v.trim_start_matches(':')
                            .split(',')
                            .filter_map(|id| id.trim().parse().ok())
                            .collect::<Vec<u64>>(),
                    )
                });
                if (hooks.drop_control)(control.clone()) {
                    tracing::warn!(dropped = ?control, "fault control: node-to-node control traffic");
                }
                if fsync_errors != (hooks.fsync_errors)(fsync_errors) {
                    tracing::warn!(fsync_errors, "fault control: Raft log flushes");
                }
                if clock != c.clock.swap(clock, Ordering::SeqCst) {
                    tracing::warn!(offset_s = clock, "fault control: wall clock offset");
                    (hooks.clock)(clock);
                }
                match mode {
                    Some(m) => {
                        let old = Mode::of(c.mode.swap(m as u8, Ordering::SeqCst));
                        if old != m {
                            tracing::warn!(from = ?old, to = ?m, "fault control: keystore mode");
                        }
                    }
                    None => {
                        tracing::error!(file = %path.display(), "fault control: unknown keystore mode")
                    }
                }
                drop(c);
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        c
    }

    pub fn mode(&self) -> Mode {
        Mode::of(self.mode.load(Ordering::SeqCst))
    }

    /// `k`, misbehaving as the control says.
    pub fn wrap(self: &Arc<Self>, k: Arc<dyn SigningKey>) -> Arc<dyn SigningKey> {
        Arc::new(ControlledKey {
            inner: k,
            control: self.clone(),
        })
    }
}

struct ControlledKey {
    inner: Arc<dyn SigningKey>,
    control: Arc<Control>,
}

impl SigningKey for ControlledKey {
    fn dnskey(&self) -> &DnsKey {
        self.inner.dnskey()
    }
    fn handle(&self) -> &str {
        self.inner.handle()
    }
    fn private_scalar(&self) -> Option<Vec<u8>> {
        self.inner.private_scalar()
    }
    fn sign_batch(&self, items: &[&[u8]]) -> Result<Vec<Vec<u8>>, HsmError> {
        // While all is well, the inner key's own batch path; otherwise each signature
        // misbehaves as the mode says.
        if self.control.mode() == Mode::Ok {
            return self.inner.sign_batch(items);
        }
        super::sign_each(self, items)
    }
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        let start = std::time::Instant::now();
        while self.control.mode() == Mode::Stall && start.elapsed() < STALL_LIMIT {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        match self.control.mode() {
            Mode::Ok | Mode::Stall => self.inner.sign(data),
            Mode::Error => Err(HsmError::Sign {
                key: self.inner.handle().to_string(),
                msg: "device error (injected)".into(),
            }),
            Mode::Garbage => {
                let mut sig = self.inner.sign(data)?;
                aws_lc_rs::rand::fill(&mut sig).map_err(|_| HsmError::Sign {
                    key: self.inner.handle().to_string(),
                    msg: "no randomness".into(),
                })?;
                Ok(sig)
            }
            Mode::WrongKey => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                self.control
                    .other
                    .sign(&rng, data)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| HsmError::Sign {
                        key: self.inner.handle().to_string(),
                        msg: "signing failed".into(),
                    })
            }
        }
    }
}
