//! Calendar formatting of UNIX times, in UTC, without a date library,
//! and reading back the RFC 3339 form this module writes.

/// (year, month, day) of a day count since 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a (year, month, day) (the inverse of
/// [`civil_from_days`]; Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parts(epoch: i64) -> (i64, u32, u32, i64, i64, i64) {
    let (y, mo, d) = civil_from_days(epoch.div_euclid(86_400));
    let secs = epoch.rem_euclid(86_400);
    (y, mo, d, secs / 3_600, secs % 3_600 / 60, secs % 60)
}

/// `2026-11-25T19:00:00Z`.
pub fn rfc3339(epoch: i64) -> String {
    let (y, mo, d, h, mi, s) = parts(epoch);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// The UNIX time of `2026-11-25T19:00:00Z`, exactly as [`rfc3339`]
/// writes it (UTC, whole seconds); `None` for any other text or a date
/// that does not exist.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let shape_ok = b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text[r].parse::<u32>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d == 0 || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    // A day past the month's end comes back as another date.
    if civil_from_days(days) != (i64::from(y), mo, d) {
        return None;
    }
    Some(days * 86_400 + i64::from(h * 3_600 + mi * 60 + s))
}

/// `20261125-190000`, the timestamp in image names.
pub fn compact(epoch: i64) -> String {
    let (y, mo, d, h, mi, s) = parts(epoch);
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}")
}

/// (year, month, day) in UTC.
pub fn date(epoch: i64) -> (i64, u32, u32) {
    civil_from_days(epoch.div_euclid(86_400))
}

/// Milliseconds since the UNIX epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the UNIX epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_781_712_000), "2026-06-17T16:00:00Z");
        assert_eq!(compact(1_781_712_000), "20260617-160000");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn f4_rfc3339_reads_back_what_it_writes() {
        for t in [0, 951_782_400, 1_781_712_000, 1_781_712_000 + 86_399, -1] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t), "{t}");
        }
        for bad in [
            "",
            "2026-06-17 16:00:00Z",
            "2026-06-17T16:00:00",
            "2026-06-17T16:00:00+00:00",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-06-31T00:00:00Z",
            "2026-06-17T24:00:00Z",
            "2026-06-17T16:60:00Z",
            "2026-06-17T16:00:60Z",
            "2026-06-00T16:00:00Z",
            "+026-06-17T16:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
    }
}
