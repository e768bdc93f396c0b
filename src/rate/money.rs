//! Exact money: fixed-point integers in the hot path, `rust_decimal` at the edges.
//!
//! Every rounding point of tollgate lives in this module:
//!
//! | where                         | scale      | rule                          |
//! |-------------------------------|------------|-------------------------------|
//! | one record's charge           | 6 decimals | half-up ([`div_round_half_up`]) |
//! | an invoice line amount        | 2 decimals | half-up ([`micros_to_cents`])  |
//! | VAT of an invoice             | 2 decimals | half-up ([`vat_cents`])        |
//!
//! "Half-up" means half away from zero; amounts in rating are never negative.
//! Nothing here uses floating point.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

/// Tariff prices (connect fees, rates) are stored with 9 decimals.
pub const NANOS_PER_UNIT: i64 = 1_000_000_000;
/// Charges and totals are kept with 6 decimals.
pub const MICROS_PER_UNIT: i64 = 1_000_000;

/// Divides `num` by `den` (> 0), rounding half away from zero.
#[inline]
pub fn div_round_half_up(num: i128, den: i128) -> i128 {
    debug_assert!(den > 0);
    let q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den {
        q + num.signum()
    } else {
        q
    }
}

/// Parses a decimal string such as `"0.045"` into an integer with `scale` decimals.
///
/// Refuses more decimals than `scale` (never rounds silently), signs other than a
/// leading `-`, exponents and empty input.
pub fn parse_fixed(s: &str, scale: u32) -> Result<i64, String> {
    let s = s.trim();
    let d: Decimal = s
        .parse()
        .map_err(|_| format!("`{s}` is not a decimal number"))?;
    if s.contains(['e', 'E']) {
        return Err(format!("`{s}` is not a plain decimal number"));
    }
    if d.scale() > scale {
        return Err(format!("`{s}` has more than {scale} decimals"));
    }
    let v = d
        .checked_mul(Decimal::from(10i64.pow(scale)))
        .ok_or_else(|| format!("`{s}` is too large"))?;
    v.to_i64().ok_or_else(|| format!("`{s}` is too large"))
}

/// Converts a fixed-point integer with `scale` decimals into a `Decimal`.
pub fn to_decimal(v: i128, scale: u32) -> Decimal {
    Decimal::from_i128_with_scale(v, scale)
}

/// Rounds a sum of 6-decimal charges to whole cents, half-up.
#[inline]
pub fn micros_to_cents(micros: i128) -> i64 {
    div_round_half_up(micros, 10_000) as i64
}

/// VAT in cents for a net amount in cents at `rate` percent, half-up.
pub fn vat_cents(net_cents: i64, rate_percent: Decimal) -> i64 {
    let vat = Decimal::from(net_cents) * rate_percent / Decimal::from(100);
    let rounded = vat.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    rounded.to_i64().expect("vat of an i64 amount fits in i64")
}

/// Formats cents as a decimal string with exactly two decimals (`1234` → `"12.34"`).
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let a = cents.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// Formats a 6-decimal fixed-point amount exactly (`45000` → `"0.045000"`).
pub fn format_micros(micros: i128) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let a = micros.unsigned_abs();
    format!("{sign}{}.{:06}", a / 1_000_000, a % 1_000_000)
}

/// Formats a 9-decimal tariff price without trailing zeros beyond 4 decimals (`45000000` → `"0.0450"`).
pub fn format_nanos(nanos: i64) -> String {
    let d = to_decimal(nanos as i128, 9).normalize();
    if d.scale() < 4 {
        let mut d = d;
        d.rescale(4);
        d.to_string()
    } else {
        d.to_string()
    }
}

/// Parses a money string with at most 2 decimals into cents (`"12.5"` → `1250`).
pub fn parse_cents(s: &str) -> Result<i64, String> {
    parse_fixed(s, 2)
}

/// Defines a fixed-point amount type: an `i64` with a fixed scale whose text (serde,
/// `Display`) is exactly the one tollgate writes (`$format`), and whose parsing
/// (`FromStr`, `Deserialize`) refuses text that is not such an amount, quoting it.
macro_rules! fixed_point {
    ($(#[$doc:meta])* $name:ident, $what:literal, $format:expr, $parse:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub i64);

        impl $name {
            pub const ZERO: $name = $name(0);
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&$format(self.0))
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<$name, String> {
                $parse(s)
                    .map($name)
                    .map_err(|e| format!("not {}: {e}", $what))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.to_string()
            }
        }

        impl From<&$name> for String {
            fn from(v: &$name) -> String {
                v.to_string()
            }
        }

        impl std::ops::Add for $name {
            type Output = $name;
            fn add(self, o: $name) -> $name {
                $name(self.0 + o.0)
            }
        }

        impl std::ops::Sub for $name {
            type Output = $name;
            fn sub(self, o: $name) -> $name {
                $name(self.0 - o.0)
            }
        }

        impl std::ops::Neg for $name {
            type Output = $name;
            fn neg(self) -> $name {
                $name(-self.0)
            }
        }

        impl std::ops::AddAssign for $name {
            fn add_assign(&mut self, o: $name) {
                self.0 += o.0;
            }
        }

        impl std::ops::SubAssign for $name {
            fn sub_assign(&mut self, o: $name) {
                self.0 -= o.0;
            }
        }

        impl std::iter::Sum for $name {
            fn sum<I: Iterator<Item = $name>>(it: I) -> $name {
                $name(it.map(|c| c.0).sum())
            }
        }
    };
}

fixed_point!(
    /// An amount in cents (2 decimals): invoice totals and lines, VAT, ledger entries,
    /// fees. Its text is [`format_cents`] (`"12.34"`, `"-0.50"`); parsing is
    /// [`parse_cents`], and a stored amount that does not parse is an error, never 0.00.
    Cents,
    "an amount with 2 decimals",
    format_cents,
    parse_cents
);

fixed_point!(
    /// An exact charge with 6 decimals (rated charges and their sums: checkpoints, the
    /// annex, usage per day). Its text is [`format_micros`] (`"0.045000"`), always six
    /// decimals; parsing is [`parse_fixed`] with scale 6.
    Micros,
    "a charge with 6 decimals",
    |v: i64| format_micros(v as i128),
    |s: &str| parse_fixed(s, 6)
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_up_rounding() {
        assert_eq!(div_round_half_up(5, 10), 1);
        assert_eq!(div_round_half_up(4, 10), 0);
        assert_eq!(div_round_half_up(15, 10), 2);
        assert_eq!(div_round_half_up(-15, 10), -2);
        assert_eq!(div_round_half_up(-14, 10), -1);
        assert_eq!(div_round_half_up(0, 7), 0);
    }

    #[test]
    fn parse_fixed_is_exact() {
        assert_eq!(parse_fixed("0.045", 9), Ok(45_000_000));
        assert_eq!(parse_fixed("12.50", 2), Ok(1250));
        assert_eq!(parse_fixed("1", 6), Ok(1_000_000));
        assert_eq!(parse_fixed("-0.01", 2), Ok(-1));
        assert!(parse_fixed("0.001", 2).is_err());
        assert!(parse_fixed("abc", 2).is_err());
        assert!(parse_fixed("", 2).is_err());
        assert!(parse_fixed("1e3", 2).is_err());
    }

    #[test]
    fn cents_rounding_and_format() {
        assert_eq!(micros_to_cents(5_000), 1); // 0.005 -> 0.01
        assert_eq!(micros_to_cents(4_999), 0);
        assert_eq!(micros_to_cents(1_234_567), 123);
        assert_eq!(format_cents(123), "1.23");
        assert_eq!(format_cents(5), "0.05");
        assert_eq!(format_cents(-5), "-0.05");
        assert_eq!(format_micros(45_000), "0.045000");
        assert_eq!(format_nanos(45_000_000), "0.0450");
        assert_eq!(format_nanos(1), "0.000000001");
    }

    #[test]
    fn vat_half_up() {
        // 0.50 * 21 % = 0.105 -> 0.11
        assert_eq!(vat_cents(50, Decimal::from(21)), 11);
        // 10.00 * 21 % = 2.10
        assert_eq!(vat_cents(1000, Decimal::from(21)), 210);
        // 0.02 * 21 % = 0.0042 -> 0.00
        assert_eq!(vat_cents(2, Decimal::from(21)), 0);
        assert_eq!(vat_cents(1234, "9".parse().unwrap()), 111); // 1.1106
    }

    #[test]
    fn typed_amounts_keep_their_text_and_refuse_bad_text() {
        let c: Cents = serde_json::from_str("\"-0.50\"").unwrap();
        assert_eq!(c, Cents(-50));
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"-0.50\"");
        assert_eq!(Cents(1234).to_string(), "12.34");
        let e = serde_json::from_str::<Cents>("\"12,34\"").unwrap_err();
        assert!(e.to_string().contains("`12,34`"), "{e}");
        assert!(serde_json::from_str::<Cents>("\"0.001\"").is_err());
        assert!(serde_json::from_str::<Cents>("12.34").is_err());
        let m: Micros = serde_json::from_str("\"0.045000\"").unwrap();
        assert_eq!(m, Micros(45_000));
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"0.045000\"");
        assert_eq!(Micros(0).to_string(), "0.000000");
        assert!(serde_json::from_str::<Micros>("\"0.0000001\"").is_err());
        assert_eq!([Cents(1), Cents(2)].into_iter().sum::<Cents>(), Cents(3));
    }
}
