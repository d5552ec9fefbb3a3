//! The one binary encoding: bincode's standard configuration with serde, for Raft RPC
//! frames, log entries, snapshots and the signature cache file. Below every module that
//! stores or sends bytes (it imports none of them).

use serde::Serialize;

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("encodable")
}

/// Decodes `b` (an RPC frame, a log entry, a snapshot). A length prefix in a corrupt or
/// hostile input must not make the decoder allocate far more than the input could hold
/// (found by fuzzing: a 20-byte frame asked for 4 GiB), so what it may claim is bounded by
/// 16 times the input's size (at least 1 MiB), rounded up to a power of four.
pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> std::io::Result<T> {
    decode_counted(b).map(|(v, _)| v)
}

/// [`decode`], also telling how many bytes of `b` the value took (trailing bytes are the
/// caller's to refuse).
pub fn decode_counted<T: serde::de::DeserializeOwned>(b: &[u8]) -> std::io::Result<(T, usize)> {
    macro_rules! tiers {
        ($($bits:literal)*) => {{
            let want = b.len().saturating_mul(16).max(1 << 20);
            $(
                if want <= 1usize << $bits {
                    return decode_limited::<T, { 1usize << $bits }>(b);
                }
            )*
            decode_limited::<T, { 1usize << 46 }>(b)
        }};
    }
    tiers!(20 22 24 26 28 30 32 34 36 38 40 42 44)
}

fn decode_limited<T: serde::de::DeserializeOwned, const LIMIT: usize>(
    b: &[u8],
) -> std::io::Result<(T, usize)> {
    bincode::serde::decode_from_slice(b, bincode::config::standard().with_limit::<LIMIT>())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}
