//! Exact Kubernetes quantities (`20Gi`, `21474836480`, `1.5G`, `500M`, `1e3`).
//!
//! Sizes are compared exactly, as the API server does: `20Gi` equals `21474836480`, and
//! `21474836479` is smaller. A quantity is kept as an integer numerator over a power of ten,
//! so no floating point is involved.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer};

/// Largest power of ten used as a denominator (nano plus fractional digits).
const MAX_SCALE: u32 = 36;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity {0:?} is empty")]
    Empty(String),
    #[error("quantity {0:?} is not a number with an optional suffix (e.g. 20Gi, 500M, 1e9)")]
    Syntax(String),
    #[error(
        "quantity {0:?} has an unknown suffix {1:?} (use Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E, m, u, n or an exponent)"
    )]
    Suffix(String, String),
    #[error("quantity {0:?} is too large or too precise to compare")]
    Range(String),
}

/// A parsed quantity: `sign * numerator / 10^scale`, plus the text it was written as.
#[derive(Debug, Clone)]
pub struct Quantity {
    negative: bool,
    numerator: u128,
    scale: u32,
    text: String,
}

impl Quantity {
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let s = text.trim();
        if s.is_empty() {
            return Err(QuantityError::Empty(text.to_owned()));
        }
        let (negative, body) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let number_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (number, suffix) = body.split_at(number_end);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(QuantityError::Syntax(text.to_owned()));
        }
        let range = || QuantityError::Range(text.to_owned());
        let mut numerator: u128 = 0;
        for digit in int_part.bytes().chain(frac_part.bytes()) {
            numerator = numerator
                .checked_mul(10)
                .and_then(|n| n.checked_add(u128::from(digit - b'0')))
                .ok_or_else(range)?;
        }
        let mut scale = u32::try_from(frac_part.len()).map_err(|_| range())?;

        // Apply the suffix: a binary multiplier, or a power of ten that moves the scale.
        let (binary, decimal_exponent): (u32, i32) = match suffix {
            "" => (0, 0),
            "Ki" => (10, 0),
            "Mi" => (20, 0),
            "Gi" => (30, 0),
            "Ti" => (40, 0),
            "Pi" => (50, 0),
            "Ei" => (60, 0),
            "n" => (0, -9),
            "u" => (0, -6),
            "m" => (0, -3),
            "k" => (0, 3),
            "M" => (0, 6),
            "G" => (0, 9),
            "T" => (0, 12),
            "P" => (0, 15),
            "E" => (0, 18),
            other if other.starts_with(['e', 'E']) => {
                let exp: i32 = other[1..]
                    .parse()
                    .map_err(|_| QuantityError::Suffix(text.to_owned(), other.to_owned()))?;
                if exp.unsigned_abs() > MAX_SCALE {
                    return Err(range());
                }
                (0, exp)
            }
            other => return Err(QuantityError::Suffix(text.to_owned(), other.to_owned())),
        };
        numerator = numerator.checked_mul(1u128 << binary).ok_or_else(range)?;
        if decimal_exponent >= 0 {
            let mut exp = decimal_exponent.unsigned_abs();
            // Cancel fractional digits first, then multiply what is left.
            let cancel = exp.min(scale);
            scale -= cancel;
            exp -= cancel;
            numerator = numerator
                .checked_mul(10u128.checked_pow(exp).ok_or_else(range)?)
                .ok_or_else(range)?;
        } else {
            scale += decimal_exponent.unsigned_abs();
        }
        if scale > MAX_SCALE {
            return Err(range());
        }
        Ok(Self {
            negative: negative && numerator != 0,
            numerator,
            scale,
            text: s.to_owned(),
        })
    }

    /// The text the quantity was written as.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value as a whole number when it is one (bytes, for storage sizes).
    pub fn as_integer(&self) -> Option<i128> {
        let divisor = 10u128.pow(self.scale);
        if !self.numerator.is_multiple_of(divisor) {
            return None;
        }
        let value = i128::try_from(self.numerator / divisor).ok()?;
        Some(if self.negative { -value } else { value })
    }

    fn scaled_to(&self, scale: u32) -> Option<u128> {
        self.numerator
            .checked_mul(10u128.checked_pow(scale - self.scale)?)
    }

    /// Exact comparison; `None` only when the two cannot be brought to a common scale
    /// without overflow (far beyond any real storage size).
    pub fn compare(&self, other: &Self) -> Option<Ordering> {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.scaled_to(scale)?, other.scaled_to(scale)?);
        Some(match (self.negative, other.negative) {
            (false, false) => a.cmp(&b),
            (true, true) => b.cmp(&a),
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
        })
    }
}

impl fmt::Display for Quantity {
    /// `20Gi (21474836480 bytes)`: what was written, and the exact number behind it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_integer() {
            Some(n) if n.to_string() != self.text => write!(f, "{} ({n} bytes)", self.text),
            _ => f.write_str(&self.text),
        }
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.compare(other) == Some(Ordering::Equal)
    }
}

/// Quantities arrive as strings, but the API accepts (and some tools write) bare numbers.
/// A hand-written visitor (not an untagged enum) so a wrong type is reported as what it is
/// ("invalid type: boolean `true`, expected a quantity ..."), not as "no variant matched".
impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct QuantityVisitor;

        impl serde::de::Visitor<'_> for QuantityVisitor {
            type Value = Quantity;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity: a string such as \"20Gi\" or a number")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                Quantity::parse(v).map_err(E::custom)
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                if !v.is_finite() {
                    return Err(E::invalid_value(serde::de::Unexpected::Float(v), &self));
                }
                self.visit_str(&v.to_string())
            }
        }

        d.deserialize_any(QuantityVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn binary_and_plain_forms_compare_exactly() {
        assert_eq!(q("20Gi"), q("21474836480"));
        assert_eq!(
            q("20Gi").compare(&q("21474836479")),
            Some(Ordering::Greater)
        );
        assert_eq!(q("1Gi").compare(&q("1G")), Some(Ordering::Greater));
        assert_eq!(q("1.5Gi").as_integer(), Some(1_610_612_736));
        assert_eq!(q("1.5G").as_integer(), Some(1_500_000_000));
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("1E3"), q("1000"));
        assert_eq!(q("100m").compare(&q("0.1")), Some(Ordering::Equal));
        assert_eq!(q("500M").compare(&q("0.5G")), Some(Ordering::Equal));
        assert_eq!(q("-1").compare(&q("0")), Some(Ordering::Less));
        assert_eq!(q("-0"), q("0"));
    }

    #[test]
    fn fractional_values_are_not_integers() {
        assert_eq!(q("100m").as_integer(), None);
        assert_eq!(q("1.5").as_integer(), None);
    }

    #[test]
    fn display_names_the_exact_byte_count() {
        assert_eq!(q("20Gi").to_string(), "20Gi (21474836480 bytes)");
        assert_eq!(q("1024").to_string(), "1024");
    }

    #[test]
    fn bad_quantities_are_clear_errors() {
        assert!(matches!(Quantity::parse(""), Err(QuantityError::Empty(_))));
        assert!(matches!(
            Quantity::parse("Gi"),
            Err(QuantityError::Syntax(_))
        ));
        assert!(matches!(
            Quantity::parse("1.2.3"),
            Err(QuantityError::Syntax(_))
        ));
        assert!(matches!(
            Quantity::parse("10GB"),
            Err(QuantityError::Suffix(_, _))
        ));
        assert!(matches!(
            Quantity::parse("1e999"),
            Err(QuantityError::Range(_))
        ));
        assert!(matches!(
            Quantity::parse("99999999999999999999999999999999999999999Ei"),
            Err(QuantityError::Range(_))
        ));
    }

    #[test]
    fn deserialises_strings_and_numbers() {
        let a: Quantity = serde_json::from_str("\"20Gi\"").unwrap();
        let b: Quantity = serde_json::from_str("21474836480").unwrap();
        assert_eq!(a, b);
        assert!(serde_json::from_str::<Quantity>("\"ten\"").is_err());
        let c: Quantity = serde_json::from_str("18446744073709551615").unwrap();
        assert_eq!(c.as_integer(), Some(18_446_744_073_709_551_615));
        let d: Quantity = serde_json::from_str("1.5").unwrap();
        assert_eq!(d, q("1500m"));
    }

    #[test]
    fn a_wrong_type_is_named() {
        for (json, what) in [
            ("true", "boolean `true`"),
            ("[1]", "sequence"),
            ("{}", "map"),
            ("null", "null"),
        ] {
            let err = serde_json::from_str::<Quantity>(json)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(what) && err.contains("expected a quantity"),
                "{json}: {err}"
            );
        }
    }
}
