//! Field validation: per-field 422 errors collected for one request, and the PATCH
//! helper for fields that may be set to `null`.

use serde::{Deserialize, Deserializer};

use crate::http::error::{ApiError, FieldError};

/// For PATCH fields that may be set to `null`: absent → `None`, `null` → `Some(None)`.
pub fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// For PATCH fields that cannot be cleared: absent → `None`, a value → `Some`, and `null`
/// is an error (a 422), as the document's non-nullable schema says, instead of reading as
/// "absent" and leaving a PATCH of only `null`s with nothing to change.
pub fn not_null<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// 2^63, exactly (`i64::MAX + 1`).
const TWO_63: f64 = 9_223_372_036_854_775_808_u64 as f64;

/// An integer field that also takes an integral number written with a fraction or an
/// exponent (`5.0`, `1e3`): JSON Schema's `type: integer` is the mathematical integer, so
/// a client that follows the document may send them. Anything else serde's `i64` rejects
/// stays rejected.
pub fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    use serde::de::Error;
    match serde_json::Number::deserialize(d)? {
        n if n.is_i64() => n.as_i64().ok_or_else(|| D::Error::custom("not an integer")),
        n => match n.as_f64() {
            // 2^63 is the first float past i64::MAX; every float below it in range is exact.
            Some(f) if f.fract() == 0.0 && (-TWO_63..TWO_63).contains(&f) => Ok(f as i64),
            _ => Err(D::Error::custom(format!(
                "invalid value: {n}, expected an integer between {} and {}",
                i64::MIN,
                i64::MAX
            ))),
        },
    }
}

/// [`integer`] for a PATCH field: absent → `None`; `null` is an error, as in [`not_null`].
pub fn some_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    integer(d).map(Some)
}

/// Collects validation errors for one request.
#[derive(Debug, Default)]
pub struct Check(Vec<FieldError>);

impl Check {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an error for `field` unless `ok`.
    pub fn that(&mut self, ok: bool, field: &str, message: &str) -> &mut Self {
        if !ok {
            self.0.push(FieldError::new(field, message));
        }
        self
    }

    /// Checks a string's length in characters.
    pub fn len(&mut self, field: &str, value: Option<&str>, min: usize, max: usize) -> &mut Self {
        if let Some(v) = value {
            let n = v.chars().count();
            if n < min || n > max {
                self.0.push(FieldError::new(
                    field,
                    format!("must be {min} to {max} characters long"),
                ));
            } else if v.contains('\0') {
                self.0
                    .push(FieldError::new(field, "must not contain NUL characters"));
            }
        }
        self
    }

    /// Checks that a value is one of `allowed`.
    pub fn one_of(&mut self, field: &str, value: Option<&str>, allowed: &[&str]) -> &mut Self {
        if let Some(v) = value {
            if !allowed.contains(&v) {
                self.0.push(FieldError::new(
                    field,
                    format!("must be one of: {}", allowed.join(", ")),
                ));
            }
        }
        self
    }

    /// 422 if anything was recorded.
    pub fn done(&mut self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(std::mem::take(&mut self.0)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(deserialize_with = "integer")]
        n: i64,
        #[serde(default, deserialize_with = "some_integer")]
        m: Option<i64>,
        #[serde(default, deserialize_with = "not_null")]
        s: Option<String>,
    }

    fn parse(s: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn integers_take_integral_floats_and_nothing_else() {
        assert_eq!(parse(r#"{"n": 66060676.0}"#).unwrap().n, 66_060_676);
        assert_eq!(parse(r#"{"n": 1e3, "m": 2.0}"#).unwrap().m, Some(2));
        assert_eq!(parse(r#"{"n": -7}"#).unwrap().n, -7);
        assert_eq!(parse(r#"{"n": 9223372036854775807}"#).unwrap().n, i64::MAX);
        for bad in [
            r#"{"n": 1.5}"#,
            r#"{"n": "1"}"#,
            r#"{"n": null}"#,
            r#"{"n": 9223372036854775808}"#,
            r#"{"n": 1e19}"#,
            r#"{"n": 1, "m": null}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn not_null_fields_are_absent_or_a_value() {
        assert_eq!(parse(r#"{"n": 1}"#).unwrap().s, None);
        assert_eq!(
            parse(r#"{"n": 1, "s": "x"}"#).unwrap().s.as_deref(),
            Some("x")
        );
        assert!(parse(r#"{"n": 1, "s": null}"#).is_err());
    }
}
