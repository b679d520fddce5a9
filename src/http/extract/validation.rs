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
