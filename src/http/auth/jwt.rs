//! JWTs from an identity provider: their settings and their verification.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::principal::{Principal, Role};
use crate::http::error::ApiError;
use crate::http::limits::CredentialId;
use crate::pool::TenantId;

/// How JWTs are verified.
#[derive(Clone)]
pub enum JwtKey {
    /// A shared HS256 secret.
    Hs256(SecretString),
    /// An RS256 public key (PEM).
    Rs256Pem(Vec<u8>),
    /// An ES256 public key (PEM).
    Es256Pem(Vec<u8>),
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JwtKey::Hs256(_) => "Hs256(<secret>)",
            JwtKey::Rs256Pem(_) => "Rs256Pem",
            JwtKey::Es256Pem(_) => "Es256Pem",
        })
    }
}

/// JWT settings.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The verification key and algorithm.
    pub key: JwtKey,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Required `aud`, if any.
    pub audience: Option<String>,
}

/// A JWT or key configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid JWT configuration: {0}")]
pub struct AuthConfigError(String);

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    tenant_id: Uuid,
    role: String,
    /// Issued at (seconds since the epoch); checked against the clock with the leeway.
    #[serde(default)]
    iat: Option<f64>,
}

/// A JWT verifier built once from [`JwtConfig`].
pub(super) struct JwtVerifier {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl JwtVerifier {
    pub(super) fn new(cfg: &JwtConfig) -> Result<Self, AuthConfigError> {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation};
        let err = |e: jsonwebtoken::errors::Error| AuthConfigError(e.to_string());
        let (key, alg) = match &cfg.key {
            JwtKey::Hs256(s) => (
                DecodingKey::from_secret(s.expose_secret().as_bytes()),
                Algorithm::HS256,
            ),
            JwtKey::Rs256Pem(p) => (DecodingKey::from_rsa_pem(p).map_err(err)?, Algorithm::RS256),
            JwtKey::Es256Pem(p) => (DecodingKey::from_ec_pem(p).map_err(err)?, Algorithm::ES256),
        };
        let mut v = Validation::new(alg);
        // One leeway for exp, nbf and iat.
        v.leeway = cfg.leeway_secs;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "sub"]);
        if let Some(i) = &cfg.issuer {
            v.set_issuer(&[i]);
        }
        match &cfg.audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        Ok(Self { key, validation: v })
    }

    /// Verifies `token`: who is calling, and the subject's identity for its limits.
    pub(super) fn verify(&self, token: &str) -> Result<(Principal, CredentialId), ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| ApiError::Unauthorized)?;
        // jsonwebtoken checks exp and nbf (with the leeway) but not iat: a token issued in
        // the future is a clock or issuer fault, refused like an early nbf.
        if let Some(iat) = data.claims.iat {
            let now = jsonwebtoken::get_current_timestamp() as f64;
            if !iat.is_finite() || iat > now + self.validation.leeway as f64 {
                return Err(ApiError::Unauthorized);
            }
        }
        let role = Role::parse(&data.claims.role).ok_or(ApiError::Unauthorized)?;
        if data.claims.sub.is_empty() || data.claims.sub.len() > 256 {
            return Err(ApiError::Unauthorized);
        }
        let tenant = TenantId::from_uuid(data.claims.tenant_id);
        // The subject's limits are its own within its tenant.
        let mut digest = Sha256::new();
        digest.update(tenant.as_uuid().as_bytes());
        digest.update(data.claims.sub.as_bytes());
        let digest: [u8; 32] = digest.finalize().into();
        let mut credential = [0u8; 16];
        credential.copy_from_slice(&digest[..16]);
        Ok((
            Principal {
                tenant,
                role,
                actor: format!("user:{}", data.claims.sub),
            },
            u128::from_be_bytes(credential),
        ))
    }
}
