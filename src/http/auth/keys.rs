//! The API key format (`tgk_<tenant as 32 hex>_<secret>`), making new keys, and reading
//! the bearer credential of a request.

use axum::http::{header, HeaderMap};
use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::pool::TenantId;

/// The prefix of every tenant API key.
pub const KEY_PREFIX: &str = "tgk_";

/// A freshly made API key: the secret (shown once) and what is stored.
#[derive(Debug)]
pub struct NewKey {
    /// The full key, to show once.
    pub key: String,
    /// Short display prefix (not enough to use the key).
    pub prefix: String,
    /// sha256 of the full key: what the database keeps.
    pub hash: [u8; 32],
}

/// Makes a new key for `tenant`: 32 base62 characters (about 190 random bits).
pub fn new_api_key(tenant: TenantId) -> NewKey {
    let secret: String = rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let key = format!("{KEY_PREFIX}{}_{secret}", tenant.as_uuid().simple());
    let prefix = format!("{KEY_PREFIX}{}", &secret[..8]);
    let hash = Sha256::digest(key.as_bytes()).into();
    NewKey { key, prefix, hash }
}

/// The tenant a key claims to belong to (unverified until its hash is found there).
pub(super) fn key_tenant(key: &str) -> Option<TenantId> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (tenant, secret) = rest.split_once('_')?;
    if tenant.len() != 32 || secret.len() < 16 || secret.len() > 128 {
        return None;
    }
    Uuid::try_parse(tenant).ok().map(TenantId::from_uuid)
}

/// The bearer token of `Authorization`, if any (at most 8 KiB).
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty() && token.len() <= 8192).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_tenant() {
        let t = TenantId::from_uuid(Uuid::now_v7());
        let k = new_api_key(t);
        assert_eq!(key_tenant(&k.key), Some(t));
        assert!(k.key.len() > 60);
        assert!(key_tenant("tgk_nothex_abcdefghijklmnopqrstuvwxyz").is_none());
        assert!(key_tenant("tgk_").is_none());
    }
}
