//! RFC 7512 keystore URIs and where the PIN comes from.
//!
//! `pkcs11:token=LABEL[;object=KEYLABEL][;id=%01%02][;slot-id=N]?module-path=PATH&pin-source=SRC`;
//! the PIN is wrapped in an `AuthPin` as soon as it is read and never printed.

use cryptoki::types::AuthPin;

use super::{DEFAULT_MODULE, PIN_ENV};

/// Characters left unescaped in URI values besides ALPHA / DIGIT / `-._~` (RFC 7512 §2.3).
pub(super) const PATH_SAFE: &[u8] = b":[]@!$'()*+,=&";
pub(super) const QUERY_SAFE: &[u8] = b":[]@!$'()*+,=/?|";

pub(super) enum PinSpec {
    /// `pin-source`: `file:PATH`, `PATH` or `env:VAR`.
    Source(String),
    /// `pin-value`.
    Value(AuthPin),
    /// Neither: the `QUORUMSIGN_PKCS11_PIN` environment variable, if set.
    Default,
}

/// A parsed keystore URI.
pub(super) struct KeystoreUri {
    pub(super) token: String,
    pub(super) slot_id: Option<u64>,
    pub(super) object: Option<String>,
    pub(super) id: Option<Vec<u8>>,
    pub(super) module_path: String,
    pub(super) pin: PinSpec,
    /// The URI as given, without `pin-value`.
    pub(super) public: String,
}

/// The URI without its `pin-value` query attribute: safe to print.
pub(super) fn public_uri(uri: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|a| !a.is_empty() && !a.starts_with("pin-value"))
        .collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

pub(super) fn set_once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), String> {
    if slot.replace(value).is_some() {
        return Err(format!("attribute {name} is given twice"));
    }
    Ok(())
}

pub(super) fn parse_uri(uri: &str) -> Result<KeystoreUri, String> {
    let rest = uri.strip_prefix("pkcs11:").ok_or("not a pkcs11: URI")?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (mut token, mut slot_id, mut object, mut id) = (None, None, None, None);
    for attr in path.split(';').filter(|a| !a.is_empty()) {
        let (name, value) = attr
            .split_once('=')
            .ok_or_else(|| format!("path attribute {attr:?} has no '='"))?;
        match name {
            "token" => set_once(&mut token, pct_decode_str(value, name)?, name)?,
            "object" => set_once(&mut object, pct_decode_str(value, name)?, name)?,
            "id" => set_once(&mut id, pct_decode(value, name)?, name)?,
            "slot-id" => {
                let n = pct_decode_str(value, name)?
                    .parse()
                    .map_err(|_| format!("slot-id {value:?} is not a number"))?;
                set_once(&mut slot_id, n, name)?
            }
            "type" => {} // always key pairs
            _ => {
                return Err(format!(
                    "unsupported path attribute {name:?} (supported: token, object, id, slot-id, type)"
                ));
            }
        }
    }
    let (mut module_path, mut source, mut value) = (None, None, None);
    for attr in query.split('&').filter(|a| !a.is_empty()) {
        let (name, v) = attr.split_once('=').unwrap_or((attr, ""));
        match name {
            "module-path" => set_once(&mut module_path, pct_decode_str(v, name)?, name)?,
            "pin-source" => set_once(&mut source, pct_decode_str(v, name)?, name)?,
            "pin-value" => set_once(&mut value, AuthPin::from(pct_decode_str(v, name)?), name)?,
            "module-name" => {
                return Err(
                    "module-name is not supported: give module-path=/path/to/module.so".into(),
                );
            }
            _ => {
                return Err(format!(
                    "unsupported query attribute {name:?} (supported: module-path, pin-source, pin-value)"
                ));
            }
        }
    }
    let pin = match (source, value) {
        (Some(_), Some(_)) => return Err("give pin-source or pin-value, not both".into()),
        (Some(s), None) => PinSpec::Source(s),
        (None, Some(v)) => PinSpec::Value(v),
        (None, None) => PinSpec::Default,
    };
    Ok(KeystoreUri {
        token: token.ok_or("the token attribute (token=LABEL) is required")?,
        slot_id,
        object,
        id,
        module_path: module_path.unwrap_or_else(|| DEFAULT_MODULE.to_string()),
        pin,
        public: public_uri(uri),
    })
}

/// Decodes `%XX` escapes. Errors name the attribute, never the value (it may be a PIN).
pub(super) fn pct_decode(s: &str, attr: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (hex(i + 1), hex(i + 2)) {
            (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
            _ => return Err(format!("bad percent-encoding in attribute {attr}")),
        }
        i += 3;
    }
    Ok(out)
}

pub(super) fn pct_decode_str(s: &str, attr: &str) -> Result<String, String> {
    String::from_utf8(pct_decode(s, attr)?).map_err(|_| format!("attribute {attr} is not UTF-8"))
}

/// Percent-encodes all but ALPHA / DIGIT / `-._~` and the bytes in `safe`.
pub(super) fn pct_encode(bytes: &[u8], safe: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || safe.contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

pub(super) fn resolve_pin(spec: PinSpec) -> Result<Option<AuthPin>, String> {
    match spec {
        PinSpec::Value(p) => {
            tracing::warn!(
                "pin-value in a keystore URI shows in process listings and shell history; prefer pin-source=file:PATH"
            );
            Ok(Some(p))
        }
        PinSpec::Source(src) => match src.strip_prefix("env:") {
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(AuthPin::from(v))),
                _ => Err(format!(
                    "pin-source env:{var}: the environment variable is not set or empty"
                )),
            },
            None => read_pin_file(&src).map(Some),
        },
        PinSpec::Default => Ok(std::env::var(PIN_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .map(AuthPin::from)),
    }
}

/// Reads a PIN file (`file:PATH`, `file:///PATH` or `PATH`), dropping the trailing newline.
pub(super) fn read_pin_file(src: &str) -> Result<AuthPin, String> {
    let path = match src.strip_prefix("file:") {
        Some(p) => p
            .strip_prefix("//localhost")
            .or_else(|| p.strip_prefix("//"))
            .unwrap_or(p),
        None => src,
    };
    let mut pin =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read PIN file {path}: {e}"))?;
    while pin.ends_with(['\n', '\r']) {
        pin.pop();
    }
    if pin.is_empty() {
        return Err(format!("PIN file {path} is empty"));
    }
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o004 != 0 {
            tracing::warn!("PIN file {path} is readable by every user; chmod 600 it");
        }
    }
    Ok(AuthPin::from(pin))
}
