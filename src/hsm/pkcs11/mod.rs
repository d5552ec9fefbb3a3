//! The PKCS#11 keystore: private keys inside a token (an HSM, or SoftHSM for tests).
//!
//! # Background
//! A PKCS#11 module is a C library loaded at run time; a *token* inside it holds objects
//! (private keys, public keys) found by attributes such as `CKA_LABEL` and `CKA_ID`. Signing
//! happens in a *session*. Sessions may be used by one thread at a time, while the login state
//! belongs to the whole application: once the user has logged in on one session, every other
//! session of that token is logged in too (and `C_Login` on them answers
//! `CKR_USER_ALREADY_LOGGED_IN`). So the keystore keeps a pool of sessions: a signing call
//! takes one (opening and logging in a new one if the pool is empty), signs and puts it back,
//! and concurrent workers each work on their own session.
//!
//! Keys are named like BIND key files so that one zone's keys are easy to find and to tell
//! apart: `CKA_LABEL` = `K<zone>+<alg>+<tag>` (for example `Kexample.+013+28768`) on both
//! halves, and `CKA_ID` = the first 16 bytes of the SHA-256 of the DNSKEY public key field.
//! A token stores no DNSKEY flags, so the role is recovered from the key tag in the label: the
//! public key is encoded with flags 257 (KSK) and 256 (ZSK), and the one whose key tag matches
//! the label wins (the two tags always differ).
//!
//! # Usage
//! The keystore URI follows RFC 7512:
//! `pkcs11:token=LABEL[;object=KEYLABEL][;id=%01%02][;slot-id=N]?module-path=PATH&pin-source=SRC`.
//! - `token` (required) is the token label; `slot-id` picks one of several tokens with that label;
//! - `object` / `id` restrict [`Keystore::load`] to keys with that `CKA_LABEL` / `CKA_ID`;
//! - `module-path` defaults to SoftHSM2's `/usr/lib/softhsm/libsofthsm2.so`;
//! - the PIN comes from `pin-source=file:PATH` (or a bare `PATH`; the file's trailing newline
//!   is dropped), `pin-source=env:VAR`, `pin-value=PIN` (discouraged: it shows in process
//!   listings and shell history), else the `QUORUMSIGN_PKCS11_PIN` environment variable.
//!
//! The PIN is held as a `cryptoki::types::AuthPin` (a zeroizing secret) and never printed:
//! [`Keystore::describe`] and every message use the URI without `pin-value`, and key handles are
//! `pkcs11:token=…;object=…;id=…?module-path=…` URIs without any PIN.
//!
//! # Limitations
//! - ECDSA keys sign with `CKM_ECDSA` over a digest made on the host (SHA-256 for algorithm 13,
//!   SHA-384 for 14), because SoftHSM2 2.6 has no `CKM_ECDSA_SHA256`; the token still never
//!   sees anything but the digest, which is all any ECDSA implementation signs.
//! - RSA keys are 2048 bits with exponent 65537 and sign with `CKM_SHA256_RSA_PKCS` only
//!   (algorithm 8); Ed448 and the other curves are refused.
//! - PKCS#11 login state belongs to the process: once one keystore of this process has logged
//!   in to a token, opening another keystore of the same token succeeds whatever its PIN.
//! - SoftHSM2 never locks a PIN, so the `CKR_PIN_LOCKED` message is untested against it.
//! - The module is initialized once per process and never finalized (other keystores of the
//!   same module may share it).

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::{HsmError, Keystore, SigningKey};
use crate::keys::algorithm::join_rsa_public_key;
use crate::keys::{Algorithm, DnsKey, FLAG_SEP, FLAG_ZONE, keyfile};
use crate::zone::Name;

mod uri;

use uri::{
    KeystoreUri, PATH_SAFE, PinSpec, QUERY_SAFE, parse_uri, pct_encode, public_uri, resolve_pin,
};

/// SoftHSM2's module on Debian and Ubuntu, used when the URI has no `module-path`.
pub const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Environment variable holding the PIN when the URI names no PIN.
pub const PIN_ENV: &str = "QUORUMSIGN_PKCS11_PIN";

/// DER `CKA_EC_PARAMS` values: the named-curve OIDs, and PKCS#11 3.0's curve-name string.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const ED25519_OID_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
const ED25519_NAME_PARAMS: &[u8] = b"\x13\x0cedwards25519";

// ---------------------------------------------------------------------------------------------
// The token: module, slot, login and the session pool
// ---------------------------------------------------------------------------------------------

/// One token of a loaded module, shared by the keystore and its keys.
struct Token {
    ctx: Pkcs11,
    slot: Slot,
    label: String,
    pin: Option<AuthPin>,
    login_required: bool,
    pool: Mutex<Vec<Session>>,
}

/// A session taken from the pool; it goes back on drop unless discarded.
struct Lease<'a> {
    token: &'a Token,
    session: Option<Session>,
}

impl Deref for Lease<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session
            .as_ref()
            .expect("a lease holds its session until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.token
                .pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(s);
        }
    }
}

impl Lease<'_> {
    /// Closes the session instead of pooling it (after an error it may be unusable).
    fn discard(mut self) {
        self.session.take();
    }
}

impl Token {
    /// Loads the module, finds the token and logs in on a first pooled session.
    fn open(uri: &KeystoreUri, pin: Option<AuthPin>) -> Result<Token, String> {
        let ctx = Pkcs11::new(&uri.module_path)
            .map_err(|e| format!("cannot load PKCS#11 module {}: {}", uri.module_path, ck(&e)))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                let hint = if uri.module_path.contains("softhsm") {
                    " (SoftHSM: check SOFTHSM2_CONF and its tokendir)"
                } else {
                    ""
                };
                return Err(format!(
                    "cannot initialize PKCS#11 module {}: {}{hint}",
                    uri.module_path,
                    ck(&e)
                ));
            }
        }
        let slot = find_slot(&ctx, uri)?;
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| format!("cannot read token {:?}: {}", uri.token, ck(&e)))?;
        if info.user_pin_locked() {
            return Err(pin_locked_msg(&uri.token));
        }
        let login_required = info.login_required();
        if login_required && pin.is_none() && !info.protected_authentication_path() {
            return Err(format!(
                "token {:?} needs a PIN: add pin-source=file:PATH to the keystore URI or set {PIN_ENV}",
                uri.token
            ));
        }
        let token = Token {
            ctx,
            slot,
            label: uri.token.clone(),
            pin,
            login_required,
            pool: Mutex::new(Vec::new()),
        };
        let first = token.new_session(false)?;
        token
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(first);
        Ok(token)
    }

    fn lease(&self) -> Result<Lease<'_>, String> {
        let pooled = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let session = match pooled {
            Some(s) => s,
            None => self.new_session(false)?,
        };
        Ok(Lease {
            token: self,
            session: Some(session),
        })
    }

    /// Opens a session and logs in (tolerating an existing login of this application).
    fn new_session(&self, read_write: bool) -> Result<Session, String> {
        let s = if read_write {
            self.ctx.open_rw_session(self.slot)
        } else {
            self.ctx.open_ro_session(self.slot)
        };
        let s = s.map_err(|e| {
            format!(
                "cannot open a session on token {:?}: {}",
                self.label,
                ck(&e)
            )
        })?;
        if self.login_required {
            self.login(&s)?;
        }
        Ok(s)
    }

    fn login(&self, s: &Session) -> Result<(), String> {
        let label = &self.label;
        match s.login(UserType::User, self.pin.as_ref()) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                let last_try = self
                    .ctx
                    .get_token_info(self.slot)
                    .is_ok_and(|i| i.user_pin_final_try());
                let hint = if last_try {
                    "; one more wrong PIN locks the token"
                } else {
                    ""
                };
                Err(format!(
                    "wrong PIN for token {label:?} (CKR_PIN_INCORRECT): check pin-source, pin-value or {PIN_ENV}{hint}"
                ))
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(pin_locked_msg(label)),
            Err(CkError::Pkcs11(RvError::PinLenRange | RvError::PinInvalid, _)) => Err(format!(
                "wrong PIN for token {label:?}: the token refuses its length or characters"
            )),
            Err(CkError::Pkcs11(RvError::UserPinNotInitialized, _)) => Err(format!(
                "token {label:?} has no user PIN yet: set one (softhsm2-util --init-token, or the vendor's tool)"
            )),
            Err(e) => Err(format!("login to token {label:?} failed: {}", ck(&e))),
        }
    }
}

fn pin_locked_msg(label: &str) -> String {
    format!(
        "the user PIN of token {label:?} is locked (CKR_PIN_LOCKED) after too many wrong PINs; the security officer must reset it"
    )
}

/// The slot holding the token labelled `uri.token` (and in slot `uri.slot_id`, if given).
fn find_slot(ctx: &Pkcs11, uri: &KeystoreUri) -> Result<Slot, String> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(|e| format!("cannot list slots: {}", ck(&e)))?;
    let mut seen = Vec::new();
    let mut found = Vec::new();
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| format!("cannot read token in slot {slot}: {}", ck(&e)))?;
        let label = info.label().trim_end();
        seen.push(format!("{label:?} (slot-id={})", slot.id()));
        if label == uri.token && uri.slot_id.is_none_or(|id| id == slot.id()) {
            found.push(slot);
        }
    }
    match found.as_slice() {
        [slot] => Ok(*slot),
        [] if seen.is_empty() => Err(format!(
            "no initialised token in module {} (SoftHSM: check SOFTHSM2_CONF, then softhsm2-util --init-token)",
            uri.module_path
        )),
        [] => Err(format!(
            "no token labelled {:?}; tokens found: {}",
            uri.token,
            seen.join(", ")
        )),
        _ => Err(format!(
            "several tokens are labelled {:?} ({}): add slot-id=N to the URI",
            uri.token,
            seen.join(", ")
        )),
    }
}

/// A cryptoki error in a line: `C_Login: CKR_PIN_INCORRECT` rather than the crate's paragraph.
fn ck(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, func) => {
            let mut name = String::from("CKR");
            for c in format!("{rv:?}").chars() {
                if c.is_ascii_uppercase() {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            format!("C_{func:?}: {name}")
        }
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Public keys: from token attributes to DNSKEY public key fields
// ---------------------------------------------------------------------------------------------

/// Reads a public key object: its DNSSEC algorithm and DNSKEY public key field.
fn read_public(s: &Session, h: ObjectHandle) -> Result<(Algorithm, Vec<u8>), String> {
    let cant = |e: CkError| format!("cannot read public key: {}", ck(&e));
    let kt = s
        .get_attributes(h, &[AttributeType::KeyType])
        .map_err(cant)?;
    let key_type = match kt.first() {
        Some(Attribute::KeyType(t)) => *t,
        _ => return Err("public key has no CKA_KEY_TYPE".into()),
    };
    if key_type == KeyType::RSA {
        let a = s
            .get_attributes(h, &[AttributeType::Modulus, AttributeType::PublicExponent])
            .map_err(cant)?;
        let (mut n, mut e) = (None, None);
        for attr in &a {
            match attr {
                Attribute::Modulus(v) => n = Some(v.as_slice()),
                Attribute::PublicExponent(v) => e = Some(v.as_slice()),
                _ => {}
            }
        }
        let (n, e) = n
            .zip(e)
            .ok_or("RSA public key lacks CKA_MODULUS or CKA_PUBLIC_EXPONENT")?;
        return Ok((Algorithm::RsaSha256, join_rsa_public_key(e, n)));
    }
    if key_type != KeyType::EC && key_type != KeyType::EC_EDWARDS {
        return Err(format!(
            "unsupported key type {key_type:?} (supported: RSA, EC, EC_EDWARDS)"
        ));
    }
    let a = s
        .get_attributes(h, &[AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(cant)?;
    let (mut params, mut point) = (None, None);
    for attr in &a {
        match attr {
            Attribute::EcParams(v) => params = Some(v.as_slice()),
            Attribute::EcPoint(v) => point = Some(v.as_slice()),
            _ => {}
        }
    }
    let (params, point) = params
        .zip(point)
        .ok_or("EC public key lacks CKA_EC_PARAMS or CKA_EC_POINT")?;
    let (alg, len) = match params {
        P256_PARAMS => (Algorithm::EcdsaP256Sha256, 64),
        P384_PARAMS => (Algorithm::EcdsaP384Sha384, 96),
        ED25519_OID_PARAMS | ED25519_NAME_PARAMS => (Algorithm::Ed25519, 32),
        _ => return Err("unsupported curve (supported: P-256, P-384, Ed25519)".into()),
    };
    let raw = ec_point(point, len, alg != Algorithm::Ed25519).ok_or("malformed CKA_EC_POINT")?;
    Ok((alg, raw.to_vec()))
}

/// The DNSKEY form of a `CKA_EC_POINT`: `len` bytes of x‖y (after the 0x04 uncompressed-point
/// marker) for ECDSA, or the 32-byte key for Ed25519; raw or wrapped in a DER OCTET STRING.
fn ec_point(v: &[u8], len: usize, uncompressed: bool) -> Option<&[u8]> {
    fn unmark(p: &[u8], len: usize, uncompressed: bool) -> Option<&[u8]> {
        if !uncompressed {
            return (p.len() == len).then_some(p);
        }
        (p.len() == len + 1 && p[0] == 0x04).then(|| &p[1..])
    }
    // A raw uncompressed point also starts with 0x04, so try the raw reading first.
    unmark(v, len, uncompressed).or_else(|| unmark(der_octet_string(v)?, len, uncompressed))
}

/// The contents of a DER OCTET STRING that spans all of `v`.
fn der_octet_string(v: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = v.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if tag != 0x04 {
        return None;
    }
    let (len, body) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 2 || rest.len() < n {
            return None;
        }
        (
            rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize),
            &rest[n..],
        )
    };
    (body.len() == len).then_some(body)
}

/// `CKA_ID` of a key: the first 16 bytes of the SHA-256 of its DNSKEY public key field.
fn key_id(public_key: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, public_key).as_ref()[..16].to_vec()
}

/// Splits `K<zone>+AAA+TTTTT` into algorithm and key tag, for labels of `zone` only.
fn parse_label(label: &str, zone: &Name) -> Option<(u8, u16)> {
    let prefix = format!("K{}+", zone.to_text());
    let head = label.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(&prefix) {
        return None;
    }
    let (alg, tag) = label[prefix.len()..].split_once('+')?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(alg, 3) || !digits(tag, 5) {
        return None;
    }
    Some((alg.parse().ok()?, tag.parse().ok()?))
}

/// The DNSKEY (KSK or ZSK) whose key tag is `tag`.
fn dnskey_for_tag(alg: Algorithm, public_key: Vec<u8>, tag: u16) -> Option<DnsKey> {
    let ksk = DnsKey {
        flags: FLAG_ZONE | FLAG_SEP,
        algorithm: alg.number(),
        public_key,
    };
    if ksk.key_tag() == tag {
        return Some(ksk);
    }
    let zsk = DnsKey {
        flags: FLAG_ZONE,
        ..ksk
    };
    (zsk.key_tag() == tag).then_some(zsk)
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// A private key in a token.
pub struct Pkcs11Key {
    token: Arc<Token>,
    dnskey: DnsKey,
    alg: Algorithm,
    handle: String,
    label: String,
    id: Vec<u8>,
    /// Object handles may change when every session of the token has closed; refreshed then.
    object: Mutex<ObjectHandle>,
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("handle", &self.handle)
            .field("dnskey", &self.dnskey)
            .finish()
    }
}

impl Pkcs11Key {
    fn fail(&self, msg: impl Into<String>) -> HsmError {
        HsmError::Sign {
            key: self.handle.clone(),
            msg: msg.into(),
        }
    }

    /// Finds the private key object again by label and id.
    fn refind(&self, s: &Session) -> Result<ObjectHandle, String> {
        let template = [
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(self.label.as_bytes().to_vec()),
            Attribute::Id(self.id.clone()),
        ];
        match s.find_objects(&template).map_err(|e| ck(&e))?.as_slice() {
            [h] => Ok(*h),
            [] => Err("the private key is no longer in the token".into()),
            _ => Err("several private keys now have this label and id".into()),
        }
    }

    /// One signing attempt on a pooled session.
    fn try_sign(&self, mech: &Mechanism, input: &[u8]) -> Result<Vec<u8>, String> {
        let session = self.token.lease()?;
        let object = *self.object.lock().unwrap_or_else(PoisonError::into_inner);
        match session.sign(mech, object, input) {
            Ok(sig) => Ok(sig),
            Err(
                e @ CkError::Pkcs11(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid, _),
            ) => {
                if let Ok(h) = self.refind(&session) {
                    *self.object.lock().unwrap_or_else(PoisonError::into_inner) = h;
                }
                Err(ck(&e))
            }
            Err(e) => {
                session.discard();
                Err(ck(&e))
            }
        }
    }
}

impl SigningKey for Pkcs11Key {
    fn dnskey(&self) -> &DnsKey {
        &self.dnskey
    }

    fn handle(&self) -> &str {
        &self.handle
    }

    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        let hashed;
        let eddsa = EddsaParams::new(EddsaSignatureScheme::Pure);
        let (mech, input, sig_len): (Mechanism, &[u8], Option<usize>) = match self.alg {
            Algorithm::EcdsaP256Sha256 => {
                hashed = digest::digest(&digest::SHA256, data);
                (Mechanism::Ecdsa, hashed.as_ref(), Some(64))
            }
            Algorithm::EcdsaP384Sha384 => {
                hashed = digest::digest(&digest::SHA384, data);
                (Mechanism::Ecdsa, hashed.as_ref(), Some(96))
            }
            Algorithm::Ed25519 => (Mechanism::Eddsa(eddsa), data, Some(64)),
            Algorithm::RsaSha256 => (Mechanism::Sha256RsaPkcs, data, None),
        };
        // A second try on a fresh session rides out a session the token has dropped.
        let sig = self
            .try_sign(&mech, input)
            .or_else(|_| self.try_sign(&mech, input))
            .map_err(|e| self.fail(e))?;
        if let Some(n) = sig_len.filter(|n| *n != sig.len()) {
            return Err(self.fail(format!(
                "token returned a {}-byte signature, expected {n}",
                sig.len()
            )));
        }
        Ok(sig)
    }
}

// ---------------------------------------------------------------------------------------------
// The keystore
// ---------------------------------------------------------------------------------------------

/// Keys in one PKCS#11 token.
pub struct Pkcs11Keystore {
    token: Arc<Token>,
    uri: KeystoreUri,
}

impl fmt::Debug for Pkcs11Keystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pkcs11Keystore")
            .field(&self.uri.public)
            .finish()
    }
}

impl Pkcs11Keystore {
    /// Opens the token named by an RFC 7512 URI and logs in.
    pub fn open(uri: &str) -> Result<Pkcs11Keystore, HsmError> {
        let store_err = |msg: String| HsmError::Store {
            store: public_uri(uri),
            msg,
        };
        let mut parsed = parse_uri(uri).map_err(store_err)?;
        let pin =
            resolve_pin(std::mem::replace(&mut parsed.pin, PinSpec::Default)).map_err(store_err)?;
        let token = Token::open(&parsed, pin).map_err(store_err)?;
        Ok(Pkcs11Keystore {
            token: Arc::new(token),
            uri: parsed,
        })
    }

    fn err(&self, msg: impl Into<String>) -> HsmError {
        HsmError::Store {
            store: self.describe(),
            msg: msg.into(),
        }
    }

    /// The URI of one key object, without PIN.
    fn key_uri(&self, label: &str, id: &[u8]) -> String {
        format!(
            "pkcs11:token={};object={};id={}?module-path={}",
            pct_encode(self.uri.token.as_bytes(), PATH_SAFE),
            pct_encode(label.as_bytes(), PATH_SAFE),
            id.iter().map(|b| format!("%{b:02X}")).collect::<String>(),
            pct_encode(self.uri.module_path.as_bytes(), QUERY_SAFE),
        )
    }

    fn new_key(
        &self,
        dnskey: DnsKey,
        alg: Algorithm,
        label: String,
        id: Vec<u8>,
        object: ObjectHandle,
    ) -> Pkcs11Key {
        let handle = self.key_uri(&label, &id);
        Pkcs11Key {
            token: self.token.clone(),
            dnskey,
            alg,
            handle,
            label,
            id,
            object: Mutex::new(object),
        }
    }

    /// The key of one private key object, or `None` if its label is not one of `zone`'s.
    fn load_one(
        &self,
        s: &Session,
        zone: &Name,
        private: ObjectHandle,
    ) -> Result<Option<Pkcs11Key>, String> {
        let attrs = s
            .get_attributes(private, &[AttributeType::Label, AttributeType::Id])
            .map_err(|e| ck(&e))?;
        let (mut label, mut id) = (None, Vec::new());
        for a in attrs {
            match a {
                Attribute::Label(v) => label = String::from_utf8(v).ok(),
                Attribute::Id(v) => id = v,
                _ => {}
            }
        }
        let Some(label) = label else { return Ok(None) };
        let Some((alg_number, tag)) = parse_label(&label, zone) else {
            return Ok(None);
        };
        let alg = Algorithm::from_number(alg_number).map_err(|e| format!("key {label}: {e}"))?;
        let template = [
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(id.clone()),
        ];
        let publics = s.find_objects(&template).map_err(|e| ck(&e))?;
        let public = match publics.as_slice() {
            [h] => *h,
            [] => {
                return Err(format!(
                    "key {label}: no public key object with the same CKA_ID"
                ));
            }
            _ => {
                return Err(format!(
                    "key {label}: several public key objects share its CKA_ID"
                ));
            }
        };
        let (found, public_key) =
            read_public(s, public).map_err(|e| format!("key {label}: {e}"))?;
        if found != alg {
            return Err(format!(
                "key {label}: the label says algorithm {alg_number} but the key is for {}",
                found.number()
            ));
        }
        let dnskey = dnskey_for_tag(alg, public_key, tag)
            .ok_or_else(|| format!("key {label}: the key tag in the label matches neither the KSK nor the ZSK form of the key"))?;
        Ok(Some(self.new_key(dnskey, alg, label, id, private)))
    }

    /// Makes a key pair with a temporary label and id; returns (public, private).
    fn generate_pair(
        &self,
        s: &Session,
        alg: Algorithm,
        temp: &[u8],
    ) -> Result<(ObjectHandle, ObjectHandle), String> {
        let temp_label =
            format!("quorumsign-tmp-{}", data_encoding::HEXLOWER.encode(temp)).into_bytes();
        let common = || {
            vec![
                Attribute::Token(true),
                Attribute::Id(temp.to_vec()),
                Attribute::Label(temp_label.clone()),
            ]
        };
        let mut public = common();
        // Signing only: no encryption, wrapping or derivation (several tokens default them on).
        public.extend([
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
        ]);
        let mut private = common();
        private.extend([
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
        ]);
        private.extend([
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ]);
        let gen_err = |e: CkError| format!("key generation failed: {}", ck(&e));
        let (mech, params): (Mechanism, &[&[u8]]) = match alg {
            Algorithm::RsaSha256 => {
                public.extend([
                    Attribute::ModulusBits(2048.into()),
                    Attribute::PublicExponent(vec![1, 0, 1]),
                ]);
                return s
                    .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
                    .map_err(gen_err);
            }
            Algorithm::EcdsaP256Sha256 => (Mechanism::EccKeyPairGen, &[P256_PARAMS]),
            Algorithm::EcdsaP384Sha384 => (Mechanism::EccKeyPairGen, &[P384_PARAMS]),
            // PKCS#11 3.0 names the curve; older tokens (SoftHSM2 2.6) want the OID.
            Algorithm::Ed25519 => (
                Mechanism::EccEdwardsKeyPairGen,
                &[ED25519_NAME_PARAMS, ED25519_OID_PARAMS],
            ),
        };
        let mut last = None;
        for p in params {
            let mut t = public.clone();
            t.push(Attribute::EcParams(p.to_vec()));
            match s.generate_key_pair(&mech, &t, &private) {
                Ok(pair) => return Ok(pair),
                Err(e) => last = Some(e),
            }
        }
        Err(gen_err(last.expect("at least one curve encoding")))
    }

    /// Names a fresh pair after its DNSKEY. `Ok(None)`: a key with that label exists already.
    fn finish_pair(
        &self,
        s: &Session,
        zone: &Name,
        alg: Algorithm,
        ksk: bool,
        pair: (ObjectHandle, ObjectHandle),
    ) -> Result<Option<Pkcs11Key>, String> {
        let (public, private) = pair;
        let (found, public_key) = read_public(s, public)?;
        if found != alg {
            return Err(format!(
                "the token made a key for algorithm {} instead of {}",
                found.number(),
                alg.number()
            ));
        }
        let flags = FLAG_ZONE | if ksk { FLAG_SEP } else { 0 };
        let dnskey = DnsKey {
            flags,
            algorithm: alg.number(),
            public_key,
        };
        let label = keyfile::basename(zone, &dnskey);
        let existing = s
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.clone().into_bytes()),
            ])
            .map_err(|e| ck(&e))?;
        if !existing.is_empty() {
            return Ok(None);
        }
        let id = key_id(&dnskey.public_key);
        let names = [
            Attribute::Label(label.clone().into_bytes()),
            Attribute::Id(id.clone()),
        ];
        for h in [public, private] {
            s.update_attributes(h, &names)
                .map_err(|e| format!("cannot label the new key {label}: {}", ck(&e)))?;
        }
        Ok(Some(self.new_key(dnskey, alg, label, id, private)))
    }
}

impl Keystore for Pkcs11Keystore {
    fn describe(&self) -> String {
        self.uri.public.clone()
    }

    fn load(&self, zone: &Name) -> Result<Vec<Arc<dyn SigningKey>>, HsmError> {
        let s = self.token.lease().map_err(|e| self.err(e))?;
        let mut template = vec![
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Token(true),
        ];
        if let Some(object) = &self.uri.object {
            template.push(Attribute::Label(object.as_bytes().to_vec()));
        }
        if let Some(id) = &self.uri.id {
            template.push(Attribute::Id(id.clone()));
        }
        let handles = s
            .find_objects(&template)
            .map_err(|e| self.err(format!("cannot search the token: {}", ck(&e))))?;
        let mut keys = Vec::new();
        for h in handles {
            if let Some(key) = self.load_one(&s, zone, h).map_err(|e| self.err(e))? {
                keys.push(key);
            }
        }
        keys.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(keys
            .into_iter()
            .map(|k| Arc::new(k) as Arc<dyn SigningKey>)
            .collect())
    }

    fn generate(
        &self,
        zone: &Name,
        alg: Algorithm,
        ksk: bool,
    ) -> Result<Arc<dyn SigningKey>, HsmError> {
        let s = self.token.new_session(true).map_err(|e| self.err(e))?;
        // A new key whose tag another key of the zone already has is thrown away and redone.
        for _ in 0..4 {
            let mut temp = [0u8; 16];
            SystemRandom::new()
                .fill(&mut temp)
                .map_err(|_| self.err("no randomness for a temporary key id"))?;
            let pair = self
                .generate_pair(&s, alg, &temp)
                .map_err(|e| self.err(e))?;
            match self.finish_pair(&s, zone, alg, ksk, pair) {
                Ok(Some(key)) => return Ok(Arc::new(key)),
                Ok(None) => destroy_pair(&s, pair),
                Err(e) => {
                    destroy_pair(&s, pair);
                    return Err(self.err(e));
                }
            }
        }
        Err(self.err("every generated key collided with the label of an existing key"))
    }
}

/// Best-effort removal of a half-made key pair.
fn destroy_pair(s: &Session, (public, private): (ObjectHandle, ObjectHandle)) {
    for h in [public, private] {
        if let Err(e) = s.destroy_object(h) {
            tracing::warn!("cannot remove a half-made key object: {}", ck(&e));
        }
    }
}

#[cfg(test)]
mod tests;
