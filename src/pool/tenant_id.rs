//! The tenant identifier.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// A tenant's id. It can only be made from a UUID, so nothing else can reach
/// `set_config('app.tenant_id', …)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct TenantId(Uuid);

impl TenantId {
    /// Wraps a UUID.
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for TenantId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

/// A string that is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tenant id {0:?}: expected a UUID")]
pub struct InvalidTenantId(pub String);

impl FromStr for TenantId {
    type Err = InvalidTenantId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| InvalidTenantId(s.chars().take(64).collect()))
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uuids_only() {
        let id: TenantId = "6f1c2a4e-8d0b-4c5e-9f3a-1b2c3d4e5f60"
            .parse()
            .expect("uuid");
        assert_eq!(id.to_string(), "6f1c2a4e-8d0b-4c5e-9f3a-1b2c3d4e5f60");
        for bad in ["", "'; DROP TABLE x; --", "not-a-uuid", "6f1c2a4e"] {
            assert!(bad.parse::<TenantId>().is_err(), "{bad:?} must not parse");
        }
    }
}
