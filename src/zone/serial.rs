//! Serial-number arithmetic (RFC 1982) for SOA serials and RRSIG times, and the serial
//! policies that pick the next version's serial.

/// `a <= b` in RFC 1982 serial-number arithmetic (32 bits): `b` is `a` or at most 2³¹ − 1
/// ahead of it.
pub fn le(a: u32, b: u32) -> bool {
    a == b || (b.wrapping_sub(a) as i32) > 0
}

/// `a < b` in RFC 1982 serial-number arithmetic.
pub fn lt(a: u32, b: u32) -> bool {
    a != b && le(a, b)
}

/// How the next version's SOA serial is chosen (`serial =` in a zone's settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The input's serial; a version whose input serial did not move is refused.
    Keep,
    /// The input's serial, or one past the published serial when that is not ahead.
    Increment,
    /// Unix seconds now, or one past the published serial.
    Unixtime,
    /// `YYYYMMDDnn` of today, or one past the published serial.
    Datecounter,
}

impl Policy {
    pub fn parse(s: &str) -> Result<Policy, String> {
        Ok(match s {
            "keep" => Policy::Keep,
            "increment" => Policy::Increment,
            "unixtime" => Policy::Unixtime,
            "datecounter" => Policy::Datecounter,
            p => {
                return Err(format!(
                    "serial policy {p:?}: expected keep, increment, unixtime or datecounter"
                ));
            }
        })
    }
}

/// The serial of the next version under `policy` (`keep`, `increment`, `unixtime`,
/// `datecounter`), never at or behind `current` (the published one). `input` is the
/// input's serial, `now` Unix seconds.
pub fn next(policy: &str, current: Option<u32>, input: u32, now: u64) -> Result<u32, String> {
    let after = |c: Option<u32>, want: u32| match c {
        Some(c) if !le(want, c) => want,
        Some(c) => c.wrapping_add(1),
        None => want,
    };
    Ok(match Policy::parse(policy)? {
        Policy::Keep => match current {
            Some(c) if le(input, c) => {
                return Err(format!(
                    "serial policy keep: the input's serial {input} does not move forward \
                     from the published {c}"
                ));
            }
            _ => input,
        },
        Policy::Increment => after(current, input),
        Policy::Unixtime => after(current, now as u32),
        Policy::Datecounter => {
            let (y, m, d) = super::civil::from_days((now / 86_400) as i64);
            let base = (y as u32) * 1_000_000 + m * 10_000 + d * 100;
            after(current, base)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_wraps_around() {
        assert!(le(5, 5) && !lt(5, 5));
        assert!(lt(u32::MAX, 0) && lt(u32::MAX - 10, 3));
        assert!(!le(3, u32::MAX - 10));
        assert!(lt(0, 0x7fff_ffff) && !le(0, 0x8000_0001));
    }

    // 2026-11-23 00:00:00 UTC
    const NOW: u64 = 1_795_392_000;

    #[test]
    fn serial_policies_move_forward_and_never_back() {
        assert_eq!(next("increment", None, 7, NOW), Ok(7));
        assert_eq!(next("increment", Some(7), 7, NOW), Ok(8));
        assert_eq!(next("increment", Some(7), 100, NOW), Ok(100));
        assert_eq!(next("increment", Some(100), 7, NOW), Ok(101));
        assert_eq!(next("keep", Some(7), 8, NOW), Ok(8));
        assert!(
            next("keep", Some(7), 7, NOW)
                .unwrap_err()
                .contains("does not move forward")
        );
        assert_eq!(next("unixtime", None, 1, NOW), Ok(NOW as u32));
        assert_eq!(
            next("unixtime", Some(NOW as u32 + 5), 1, NOW),
            Ok(NOW as u32 + 6)
        );
        assert_eq!(next("datecounter", None, 1, NOW), Ok(2026112300));
        assert_eq!(
            next("datecounter", Some(2026112300), 1, NOW),
            Ok(2026112301)
        );
        assert_eq!(
            next("datecounter", Some(2026112299), 1, NOW + 86_400),
            Ok(2026112400)
        );
        // Serial arithmetic (RFC 1982): past the wrap, still forward.
        assert_eq!(next("increment", Some(u32::MAX), 3, NOW), Ok(3));
        assert_eq!(next("increment", Some(u32::MAX), u32::MAX, NOW), Ok(0));
        assert!(next("sometimes", None, 1, NOW).is_err());
    }
}
