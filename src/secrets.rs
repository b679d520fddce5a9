//! Secrets from the environment or files, never from code or logs.

use secrecy::SecretString;

/// A secret that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading secret {name}: {reason}")]
pub struct SecretError {
    /// The environment variable concerned.
    pub name: String,
    /// What went wrong (never the secret itself).
    pub reason: String,
}

/// Reads secret `NAME` from the environment variable `NAME`, or from the file named by
/// `NAME_FILE` (trailing newline removed), as Docker and Kubernetes secrets provide.
/// Setting both is an error; an empty secret is an error.
pub fn from_env(name: &str) -> Result<Option<SecretString>, SecretError> {
    let err = |reason: String| SecretError {
        name: name.to_string(),
        reason,
    };
    let direct = std::env::var(name).ok();
    let file = std::env::var(format!("{name}_FILE")).ok();
    let value = match (direct, file) {
        (Some(_), Some(_)) => return Err(err(format!("both {name} and {name}_FILE are set"))),
        (Some(v), None) => v,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| err(format!("cannot read {name}_FILE={path}: {e}")))?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
        (None, None) => return Ok(None),
    };
    if value.is_empty() {
        return Err(err("it is empty".into()));
    }
    Ok(Some(SecretString::from(value)))
}
