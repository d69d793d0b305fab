//! Calendar formatting of UNIX times, in UTC, without a date library.

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

/// `20261125-190000`, the timestamp in image names.
pub fn compact(epoch: i64) -> String {
    let (y, mo, d, h, mi, s) = parts(epoch);
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}")
}

/// (year, month, day) in UTC.
pub fn date(epoch: i64) -> (i64, u32, u32) {
    civil_from_days(epoch.div_euclid(86_400))
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
}
