//! Accounts and sessions: argon2 password hashes and HS256 JWTs naming their key (`kid`).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use jsonwebtoken::{decode, decode_header, encode, Algorithm, Header, Validation};
use mercato_core::domain::users::Role;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::keyring::KeyRing;

/// How long a session token is good for.
pub const SESSION_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: i64,
    pub iat: i64,
}

/// Signs and verifies session tokens with the key ring: the token's header names its key.
pub struct Keys {
    ring: KeyRing,
    validation: Validation,
}

/// The caller, once their token verified.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub role: Role,
}

impl Caller {
    pub fn can_see(&self, owner: &str) -> bool {
        self.user_id == owner || self.role == Role::Admin
    }
}

impl Keys {
    pub fn new(ring: KeyRing) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        Self { ring, validation }
    }

    /// The keys: admissions out of a waiting room are signed with them too.
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    pub fn issue(
        &self,
        user_id: &str,
        role: Role,
        valid_secs: i64,
    ) -> Result<(String, i64), ApiError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_owned(),
            role,
            exp: now + valid_secs,
            iat: now,
        };
        let (kid, key) = self.ring.signer();
        let header = Header {
            kid: Some(kid),
            ..Header::new(Algorithm::HS256)
        };
        let token = encode(&header, &claims, &key).map_err(|e| {
            ApiError::unavailable("token_error", format!("cannot sign a token: {e}"))
        })?;
        Ok((token, claims.exp))
    }

    /// Verifies `Authorization: Bearer <token>`.
    pub fn caller(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        let header = authorization
            .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be 'Bearer <token>'")
            })?;
        let token = token.trim();
        let invalid =
            |e: jsonwebtoken::errors::Error| ApiError::unauthorized(format!("invalid token: {e}"));
        let kid = decode_header(token)
            .map_err(invalid)?
            .kid
            .ok_or_else(|| ApiError::unauthorized("invalid token: it names no key (kid)"))?;
        let key = self.ring.verifier(&kid).ok_or_else(|| {
            ApiError::unauthorized(format!(
                "invalid token: signed with key {kid:?}, which this gateway does not have \
                 (retired, or another installation's); sign in again"
            ))
        })?;
        let data = decode::<Claims>(token, &key, &self.validation).map_err(invalid)?;
        Ok(Caller {
            user_id: data.claims.sub,
            role: data.claims.role,
        })
    }
}

pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::unavailable("hash_error", format!("cannot hash the password: {e}")))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}
