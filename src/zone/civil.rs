//! Civil dates (proleptic Gregorian, UTC) from and to days since 1970-01-01: Howard
//! Hinnant's algorithms. For RRSIG times, datecounter serials and printed times.

/// Days since 1970-01-01 → (year, month 1–12, day 1–31).
pub fn from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// (year, month 1–12, day 1–31) → days since 1970-01-01.
pub fn to_days(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (m as i64, d as i64);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc(t: u64) -> String {
    let (y, m, d) = from_days((t / 86_400) as i64);
    let s = t % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        assert_eq!(from_days(0), (1970, 1, 1));
        assert_eq!(from_days(11_016), (2000, 2, 29));
        assert_eq!(from_days(-1), (1969, 12, 31));
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = from_days(z);
            assert_eq!(to_days(y, m, d), z, "{y}-{m}-{d}");
        }
        assert_eq!(utc(1_767_225_600), "2026-01-01 00:00:00");
    }
}
