//! Times as AWS's senders write them. EventBridge's `time` and the EC2 warnings' termination times are RFC 3339;
//! AWS Health writes HTTP dates (RFC 1123), not always correctly: a weekday that does not match the date has been
//! seen, and AWS's own readers accept it. So the weekday is never checked, and the older HTTP-date forms
//! (RFC 850, asctime) and two-digit years are read too. Anything else is no time at all, never a guess.

use std::sync::LazyLock;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use regex::Regex;

// `[Weekday,] 5 Dec 2026 10:00[:00] GMT`, with `-` between the date's parts as RFC 850 writes them.
static DAY_FIRST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[A-Za-z]+,?\s+)?([0-9]{1,2})[\s-]+([A-Za-z]+)\.?[\s-]+([0-9]{4}|[0-9]{2})\s+([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]+)?)?(?:\s*(\S+))?$",
    )
    .expect("valid regex")
});
// asctime: `[Weekday] Dec  5 10:00:00 2026`.
static MONTH_FIRST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[A-Za-z]+,?\s+)?([A-Za-z]+)\.?\s+([0-9]{1,2})\s+([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?\s+([0-9]{4})(?:\s+(\S+))?$",
    )
    .expect("valid regex")
});

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Reads an RFC 3339 time or an HTTP date in any of the forms above; `None` for anything else.
pub fn read(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    if let Some(c) = DAY_FIRST.captures(text) {
        let year = full_year(&c[3])?;
        let seconds = c.get(6).map_or("0", |m| m.as_str());
        return at(year, month(&c[2])?, &c[1], &c[4], &c[5], seconds, c.get(7).map(|m| m.as_str()));
    }
    if let Some(c) = MONTH_FIRST.captures(text) {
        let seconds = c.get(5).map_or("0", |m| m.as_str());
        return at(c[6].parse().ok()?, month(&c[1])?, &c[2], &c[3], &c[4], seconds, c.get(7).map(|m| m.as_str()));
    }
    None
}

fn at(
    year: i32,
    month: u32,
    day: &str,
    hour: &str,
    minute: &str,
    second: &str,
    zone: Option<&str>,
) -> Option<DateTime<Utc>> {
    let date = NaiveDate::from_ymd_opt(year, month, day.parse().ok()?)?;
    let (hour, minute, second): (u32, u32, u32) = (hour.parse().ok()?, minute.parse().ok()?, second.parse().ok()?);
    // A leap second is the last moment of its minute.
    let time = match second {
        60 => NaiveTime::from_hms_milli_opt(hour, minute, 59, 999)?,
        _ => NaiveTime::from_hms_opt(hour, minute, second)?,
    };
    let local = NaiveDateTime::new(date, time);
    Some(offset(zone)?.from_local_datetime(&local).single()?.with_timezone(&Utc))
}

/// `Dec`, `dec`, `DEC`, `Sept`, `December`: any prefix of the name of at least three letters.
fn month(name: &str) -> Option<u32> {
    let name = name.to_ascii_lowercase();
    if name.len() < 3 {
        return None;
    }
    MONTHS.iter().position(|m| m.starts_with(&name)).map(|i| i as u32 + 1)
}

/// RFC 2822's rule for two-digit years: 00–49 are this century, 50–99 the last.
fn full_year(text: &str) -> Option<i32> {
    let year: i32 = text.parse().ok()?;
    Some(match (text.len(), year) {
        (2, 0..=49) => 2000 + year,
        (2, _) => 1900 + year,
        _ => year,
    })
}

/// No zone, `GMT`, `UTC`, `UT` and `Z` are UTC; numeric offsets and RFC 822's North American names are read; an
/// unknown name makes the time unknown rather than wrong by hours.
fn offset(zone: Option<&str>) -> Option<FixedOffset> {
    let hours = |h: i32| FixedOffset::east_opt(h * 3600);
    let Some(zone) = zone else { return hours(0) };
    match zone.to_ascii_uppercase().as_str() {
        "GMT" | "UTC" | "UT" | "Z" => hours(0),
        "EDT" => hours(-4),
        "EST" | "CDT" => hours(-5),
        "CST" | "MDT" => hours(-6),
        "MST" | "PDT" => hours(-7),
        "PST" => hours(-8),
        numeric => {
            let (sign, digits) = match numeric.as_bytes().first()? {
                b'+' => (1, &numeric[1..]),
                b'-' => (-1, &numeric[1..]),
                _ => return None,
            };
            let digits = digits.replace(':', "");
            if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let (h, m): (i32, i32) = (digits[..2].parse().ok()?, digits[2..].parse().ok()?);
            if m >= 60 {
                return None;
            }
            FixedOffset::east_opt(sign * (h * 3600 + m * 60))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> Option<String> {
        read(text).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    }

    #[test]
    fn reads_rfc3339() {
        assert_eq!(utc("2026-11-27T10:02:03Z").as_deref(), Some("2026-11-27T10:02:03Z"));
        assert_eq!(utc(" 2026-11-27T11:02:03+01:00 ").as_deref(), Some("2026-11-27T10:02:03Z"));
        assert_eq!(utc("1970-01-01T00:00:00Z").as_deref(), Some("1970-01-01T00:00:00Z"));
    }

    #[test]
    fn a_weekday_that_does_not_match_the_date_is_ignored() {
        // 5 December 2026 is a Saturday.
        assert_eq!(utc("Fri, 5 Dec 2026 10:00:00 GMT").as_deref(), Some("2026-12-05T10:00:00Z"));
        assert_eq!(utc("Sat, 05 Dec 2026 10:00:00 GMT").as_deref(), Some("2026-12-05T10:00:00Z"));
        assert_eq!(utc("Monday, 05-Dec-26 10:00:00 GMT").as_deref(), Some("2026-12-05T10:00:00Z"));
    }

    #[test]
    fn reads_the_variants_senders_produce() {
        let want = Some("2026-12-02T14:00:00Z");
        for text in [
            "Wed, 02 Dec 2026 14:00:00 GMT",
            "Wed, 2 Dec 2026 14:00:00 GMT",
            "02 Dec 2026 14:00:00 GMT",
            "Wed 02 Dec 2026 14:00:00 GMT",
            "wed, 02 dec 2026 14:00:00 gmt",
            "Wed, 02 DEC 2026 14:00:00 UTC",
            "Wed, 02 December 2026 14:00:00 GMT",
            "Wed, 02 Dec 2026 14:00 GMT",
            "Wed, 02 Dec 2026 14:00:00",
            "Wed, 02 Dec 2026 14:00:00 +0000",
            "Wed, 02 Dec 2026 15:00:00 +01:00",
            "Wed, 02 Dec 2026 09:00:00 EST",
            "Wednesday, 02-Dec-26 14:00:00 GMT",
            "Wed Dec  2 14:00:00 2026",
            "Wed,  02  Dec  2026  14:00:00  GMT",
        ] {
            assert_eq!(utc(text).as_deref(), want, "{text}");
        }
        assert_eq!(utc("Tue, 30 Jun 2026 23:59:60 GMT").as_deref(), Some("2026-06-30T23:59:59Z"));
        assert_eq!(utc("Thu, 01 Jan 70 00:00:00 GMT").as_deref(), Some("1970-01-01T00:00:00Z"));
    }

    #[test]
    fn what_is_not_a_time_stays_unknown() {
        for text in [
            "",
            "   ",
            "TIME",
            "not-a-date",
            "next tuesday",
            "Wed, 31 Nov 2026 14:00:00 GMT",
            "Wed, 02 Dex 2026 14:00:00 GMT",
            "Wed, 02 Ju 2026 14:00:00 GMT",
            "Wed, 02 Dec 2026 25:00:00 GMT",
            "Wed, 02 Dec 2026 14:00:00 CEST",
            "Wed, 02 Dec 2026 14:00:00 +01",
            "2026-11-27",
            "1764237723",
        ] {
            assert_eq!(utc(text), None, "{text:?}");
        }
    }
}
