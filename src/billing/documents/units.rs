//! Quantities in the customer's terms, for the documents people read (the PDF, emails):
//! call time as `h:mm:ss` or whole minutes, data in decimal megabytes and gigabytes,
//! counts with their noun in the customer's language (`nl`, `en`). The JSON and UBL keep
//! the exact units (seconds, messages, bytes); nothing here changes an amount.
//!
//! Pure functions of integers: no floating point. Every rounding is half-up on integers
//! and is written at its function. A language other than `"nl"` gets English, as
//! [`super::pdf::money`] does.
//!
//! The API other renderers use: [`quantity`] (a line's billed units: `"1:02:05"`,
//! `"12 sms'jes"`, `"1,5 GB"`), [`count`] (its records: `"2 gesprekken"`), and
//! [`summary`] (both, as a usage line shows them).

/// `seconds` as `h:mm:ss`, hours not padded and not wrapped at a day: `59` →
/// `"0:00:59"`, `3725` → `"1:02:05"`, `90000` → `"25:00:00"`. Exact, no rounding.
pub fn duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    format!("{h}:{m:02}:{s:02}")
}

/// `seconds` in whole minutes, rounded half-up (30 s rounds up): `3725` → `"62 min"`,
/// `90` → `"2 min"`. A call time below 30 s that is not zero shows as `"< 1 min"`, not
/// as nothing.
pub fn minutes(seconds: u64) -> String {
    match div_half_up(seconds, 60) {
        0 if seconds > 0 => "< 1 min".to_owned(),
        m => format!("{m} min"),
    }
}

/// `n / d` rounded half-up (`d > 0`).
fn div_half_up(n: u64, d: u64) -> u64 {
    n / d + u64::from(n % d >= d.div_ceil(2))
}

/// An integer number of tenths as `i.t` with the language's decimal sign.
fn tenths(t: u64, lang: &str) -> String {
    let sep = if lang == "nl" { ',' } else { '.' };
    format!("{}{sep}{}", t / 10, t % 10)
}

/// A data volume in decimal (SI) units, 1 MB = 1 000 000 bytes, 1 GB = 1 000 MB:
/// below 100 MB in tenths of a MB (`"0,4 MB"`, `"1.0 MB"` for 999 999 bytes), up to
/// 999 MB in whole MB (`"850 MB"`), from there in tenths of a GB (`"1.5 GB"`, `"1.1 GB"`
/// for 1 050 000 000 bytes). Each step rounds half-up once, from the exact byte count;
/// the unit is chosen by the rounded figure, so 999 999 999 bytes is `"1.0 GB"`, never
/// `"1000 MB"`. `0` bytes is `"0 MB"`; 1 to 49 999 bytes, which would round to nothing,
/// is `"< 0.1 MB"`. Dutch takes a decimal comma.
pub fn data(bytes: u64, lang: &str) -> String {
    if bytes == 0 {
        return "0 MB".to_owned();
    }
    let t = div_half_up(bytes, 100_000);
    if t == 0 {
        return format!("< {} MB", tenths(1, lang));
    }
    if t < 1000 {
        return format!("{} MB", tenths(t, lang));
    }
    let m = div_half_up(bytes, 1_000_000);
    if m < 1000 {
        return format!("{m} MB");
    }
    format!("{} GB", tenths(div_half_up(bytes, 100_000_000), lang))
}

/// The singular and plural noun of one record of `service` in `lang`.
fn nouns(service: &str, lang: &str) -> (&'static str, &'static str) {
    match (service, lang == "nl") {
        ("voice", true) => ("gesprek", "gesprekken"),
        ("voice", false) => ("call", "calls"),
        ("sms", true) => ("sms", "sms'jes"),
        ("sms", false) => ("SMS", "SMS"),
        ("data", true) => ("sessie", "sessies"),
        ("data", false) => ("session", "sessions"),
        _ => ("record", "records"),
    }
}

/// `n` records of `service` (`voice`, `sms`, `data`) with their noun: `"1 call"`,
/// `"2 calls"`, `"1 gesprek"`, `"2 gesprekken"`, `"1 sms"`, `"2 sms'jes"`, `"1 SMS"`,
/// `"2 SMS"`, `"3 sessies"`; an unknown service counts `records`.
pub fn count(service: &str, n: u64, lang: &str) -> String {
    let (one, many) = nouns(service, lang);
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A usage line's billed units in the customer's terms: call time (`voice`, seconds) as
/// [`duration`], messages (`sms`) as a [`count`], data (`data`, bytes) as [`data`]; an
/// unknown service prints the bare number.
pub fn quantity(service: &str, units: u64, lang: &str) -> String {
    match service {
        "voice" => duration(units),
        "sms" => count("sms", units, lang),
        "data" => data(units, lang),
        _ => units.to_string(),
    }
}

/// A usage line's records and units, as the PDF prints them: `"2 calls, 0:03:00"`,
/// `"12 sms'jes"` (messages are the count itself), `"3 sessies, 1,5 GB"`.
pub fn summary(service: &str, records: u64, units: u64, lang: &str) -> String {
    match service {
        "sms" => count("sms", units, lang),
        _ => format!(
            "{}, {}",
            count(service, records, lang),
            quantity(service, units, lang)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_at_the_minute_and_hour_boundaries() {
        assert_eq!(duration(0), "0:00:00");
        assert_eq!(duration(59), "0:00:59");
        assert_eq!(duration(60), "0:01:00");
        assert_eq!(duration(3_599), "0:59:59");
        assert_eq!(duration(3_600), "1:00:00");
        assert_eq!(duration(3_725), "1:02:05");
        assert_eq!(duration(90_000), "25:00:00");
    }

    #[test]
    fn minutes_round_half_up() {
        assert_eq!(minutes(0), "0 min");
        assert_eq!(minutes(1), "< 1 min");
        assert_eq!(minutes(29), "< 1 min");
        assert_eq!(minutes(30), "1 min");
        assert_eq!(minutes(59), "1 min");
        assert_eq!(minutes(60), "1 min");
        assert_eq!(minutes(89), "1 min");
        assert_eq!(minutes(90), "2 min");
        assert_eq!(minutes(3_599), "60 min");
        assert_eq!(minutes(3_600), "60 min");
        assert_eq!(minutes(3_725), "62 min");
        assert_eq!(minutes(u64::MAX), format!("{} min", u64::MAX / 60));
    }

    #[test]
    fn data_in_decimal_units_rounded_half_up() {
        assert_eq!(data(0, "en"), "0 MB");
        assert_eq!(data(1, "en"), "< 0.1 MB");
        assert_eq!(data(49_999, "nl"), "< 0,1 MB");
        assert_eq!(data(50_000, "en"), "0.1 MB");
        assert_eq!(data(449_999, "nl"), "0,4 MB");
        assert_eq!(data(999_999, "en"), "1.0 MB");
        assert_eq!(data(1_000_000, "en"), "1.0 MB");
        assert_eq!(data(1_000_000, "nl"), "1,0 MB");
        assert_eq!(data(99_949_999, "en"), "99.9 MB");
        assert_eq!(data(99_950_000, "en"), "100 MB");
        assert_eq!(data(850_000_000, "en"), "850 MB");
        assert_eq!(data(999_499_999, "en"), "999 MB");
        assert_eq!(data(999_500_000, "en"), "1.0 GB");
        assert_eq!(data(999_999_999, "en"), "1.0 GB");
        assert_eq!(data(1_000_000_000, "en"), "1.0 GB");
        // 1.05 GB is exactly half a tenth: half-up, where a binary float would give 1.0
        assert_eq!(data(1_049_999_999, "en"), "1.0 GB");
        assert_eq!(data(1_050_000_000, "en"), "1.1 GB");
        assert_eq!(data(1_050_000_000, "nl"), "1,1 GB");
        assert_eq!(data(1_500_000_000, "nl"), "1,5 GB");
        assert_eq!(data(1_234_560_000_000, "en"), "1234.6 GB");
        assert_eq!(data(u64::MAX, "en"), "18446744073.7 GB");
    }

    #[test]
    fn counts_in_dutch_and_english() {
        assert_eq!(count("voice", 0, "en"), "0 calls");
        assert_eq!(count("voice", 1, "en"), "1 call");
        assert_eq!(count("voice", 2, "en"), "2 calls");
        assert_eq!(count("voice", 1, "nl"), "1 gesprek");
        assert_eq!(count("voice", 2, "nl"), "2 gesprekken");
        assert_eq!(count("sms", 1, "nl"), "1 sms");
        assert_eq!(count("sms", 2, "nl"), "2 sms'jes");
        assert_eq!(count("sms", 1, "en"), "1 SMS");
        assert_eq!(count("sms", 2, "en"), "2 SMS");
        assert_eq!(count("data", 1, "nl"), "1 sessie");
        assert_eq!(count("data", 3, "en"), "3 sessions");
        assert_eq!(count("fax", 2, "nl"), "2 records");
        // any language but nl is English
        assert_eq!(count("voice", 2, "de"), "2 calls");
    }

    #[test]
    fn quantities_and_summaries_per_service() {
        assert_eq!(quantity("voice", 3_725, "nl"), "1:02:05");
        assert_eq!(quantity("sms", 12, "nl"), "12 sms'jes");
        assert_eq!(quantity("data", 1_500_000_000, "en"), "1.5 GB");
        assert_eq!(quantity("fax", 7, "en"), "7");
        assert_eq!(summary("voice", 2, 180, "en"), "2 calls, 0:03:00");
        assert_eq!(summary("voice", 1, 59, "nl"), "1 gesprek, 0:00:59");
        assert_eq!(summary("sms", 3, 4, "nl"), "4 sms'jes");
        assert_eq!(summary("data", 3, 1_500_000_000, "nl"), "3 sessies, 1,5 GB");
    }
}
