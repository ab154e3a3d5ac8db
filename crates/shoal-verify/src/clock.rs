//! Calendar arithmetic for the few dates verify reads and writes: `$isoTimestamp`,
//! `$datetime rfc1123`, and cookie `Expires` attributes. UTC only; no time-zone database.
//! Written here rather than taken from `httpdate` (already in the build, through hyper):
//! that crate formats and parses only the HTTP date, where verify also needs ISO 8601 and
//! RFC 6265's lenient cookie dates (dashes, two-digit years, any token order).

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Seconds since the epoch, now.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `2024-06-01T12:00:00Z`.
pub(crate) fn iso8601(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `Sat, 01 Jun 2024 12:00:00 GMT`.
pub(crate) fn rfc1123(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let s = secs.rem_euclid(86_400);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Reads a cookie date (`Sat, 01 Jun 2024 12:00:00 GMT`, also with dashes or a two-digit
/// year, as RFC 6265 §5.1.1 allows) as seconds since the epoch.
pub(crate) fn parse_cookie_date(text: &str) -> Option<i64> {
    let (mut day, mut month, mut year, mut time) = (None, None, None, None);
    for token in text.split(|c: char| !c.is_ascii_alphanumeric() && c != ':') {
        if token.is_empty() {
            continue;
        }
        if time.is_none() && token.contains(':') {
            let parts: Vec<i64> = token.split(':').filter_map(|p| p.parse().ok()).collect();
            if parts.len() == 3 {
                time = Some(parts[0] * 3600 + parts[1] * 60 + parts[2]);
                continue;
            }
        }
        if month.is_none()
            && let Some(m) = MONTHS
                .iter()
                .position(|m| token.len() >= 3 && m.eq_ignore_ascii_case(&token[..3]))
        {
            month = Some(m as i64 + 1);
            continue;
        }
        if token.bytes().all(|b| b.is_ascii_digit()) {
            let value: i64 = token.parse().ok()?;
            if day.is_none() && token.len() <= 2 {
                day = Some(value);
            } else if year.is_none() {
                year = Some(match value {
                    70..=99 => 1900 + value,
                    0..=69 => 2000 + value,
                    _ => value,
                });
            }
        }
    }
    let (day, month, year) = (day?, month?, year?);
    Some(days_from_civil(year, month, day) * 86_400 + time.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc1123(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(iso8601(1_717_243_200), "2024-06-01T12:00:00Z");
        assert_eq!(rfc1123(1_717_243_200), "Sat, 01 Jun 2024 12:00:00 GMT");
        assert_eq!(
            parse_cookie_date("Sat, 01 Jun 2024 12:00:00 GMT"),
            Some(1_717_243_200)
        );
        assert_eq!(
            parse_cookie_date("Saturday, 01-Jun-24 12:00:00 GMT"),
            Some(1_717_243_200)
        );
        assert_eq!(parse_cookie_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_cookie_date("soon"), None);
    }

    proptest::proptest! {
        #[test]
        fn rfc1123_parses_back(secs in 0i64..4_000_000_000) {
            proptest::prop_assert_eq!(parse_cookie_date(&rfc1123(secs)), Some(secs));
        }
    }
}
