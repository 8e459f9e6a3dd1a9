//! Admissions out of an event's waiting room: short-lived tokens, signed with the session keys
//! (HS256, naming their `kid`), that bind one user to one event until they expire. Any gateway
//! verifies one without reading a store, so admitting costs the hot path nothing.
//!
//! An admission is not a session and a session is not an admission: admissions carry the
//! audience [`AUDIENCE`] and an event, sessions neither, and each side's validation refuses the
//! other's tokens.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, encode, Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;

use crate::error::ApiError;
use crate::keyring::KeyRing;

/// The audience of admission tokens.
pub const AUDIENCE: &str = "mercato-admission";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AdmissionClaims {
    sub: String,
    /// The event admitted to.
    evt: String,
    aud: String,
    exp: i64,
    iat: i64,
}

/// Why an admission does not let its bearer hold seats.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionRefusal {
    #[error("this event's on-sale goes through its waiting room: join the queue and hold seats with the admission it gives")]
    Required,
    #[error("the admission has expired: join the queue again")]
    Expired,
    #[error("the admission is not valid: {0}")]
    Invalid(String),
    #[error("the admission was given to another user")]
    OtherUser,
    #[error("the admission is for another event")]
    OtherEvent,
}

impl AdmissionRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Required => "admission_required",
            Self::Expired => "admission_expired",
            Self::Invalid(_) => "admission_invalid",
            Self::OtherUser => "admission_other_user",
            Self::OtherEvent => "admission_other_event",
        }
    }
}

impl From<AdmissionRefusal> for ApiError {
    fn from(refusal: AdmissionRefusal) -> ApiError {
        let status = match refusal {
            AdmissionRefusal::Expired => StatusCode::GONE,
            _ => StatusCode::FORBIDDEN,
        };
        ApiError::new(status, refusal.code(), refusal.to_string())
    }
}

/// Signs an admission of `user` to `event` for `valid_secs` from `now` (unix seconds): the
/// token and when it expires.
pub fn admit(
    ring: &KeyRing,
    user: &str,
    event: &str,
    now: i64,
    valid_secs: i64,
) -> Result<(String, i64), ApiError> {
    let claims = AdmissionClaims {
        sub: user.to_owned(),
        evt: event.to_owned(),
        aud: AUDIENCE.to_owned(),
        exp: now + valid_secs,
        iat: now,
    };
    let (kid, key) = ring.signer();
    let header = Header {
        kid: Some(kid),
        ..Header::new(Algorithm::HS256)
    };
    let token = encode(&header, &claims, &key).map_err(|e| {
        ApiError::unavailable("token_error", format!("cannot sign an admission: {e}"))
    })?;
    Ok((token, claims.exp))
}

/// Checks that `token` admits `user` to `event` now (`None`: no token was given).
pub fn check(
    ring: &KeyRing,
    token: Option<&str>,
    user: &str,
    event: &str,
) -> Result<(), AdmissionRefusal> {
    let token = token.map(str::trim).filter(|t| !t.is_empty());
    let token = token.ok_or(AdmissionRefusal::Required)?;
    let invalid = |e: jsonwebtoken::errors::Error| match e.kind() {
        ErrorKind::ExpiredSignature => AdmissionRefusal::Expired,
        _ => AdmissionRefusal::Invalid(e.to_string()),
    };
    let kid = decode_header(token)
        .map_err(invalid)?
        .kid
        .ok_or_else(|| AdmissionRefusal::Invalid("it names no key (kid)".into()))?;
    let key = ring
        .verifier(&kid)
        .ok_or_else(|| AdmissionRefusal::Invalid(format!("signed with unknown key {kid:?}")))?;
    let mut validation = Validation::new(Algorithm::HS256);
    // No leeway: an admission lapses when it says.
    validation.leeway = 0;
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    let claims = decode::<AdmissionClaims>(token, &key, &validation)
        .map_err(invalid)?
        .claims;
    if claims.sub != user {
        return Err(AdmissionRefusal::OtherUser);
    }
    if claims.evt != event {
        return Err(AdmissionRefusal::OtherEvent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use mercato_core::domain::users::Role;

    use super::*;
    use crate::auth::Keys;

    fn ring(kid: &str, byte: u8) -> KeyRing {
        KeyRing::from_keys(vec![(kid.into(), vec![byte; 32])]).expect("a key ring")
    }

    #[test]
    fn an_admission_admits_its_user_to_its_event_until_it_expires() {
        let keys = ring("k1", b'a');
        let now = chrono::Utc::now().timestamp();
        let (token, exp) = admit(&keys, "ada", "final", now, 600).expect("signed");
        assert_eq!(exp, now + 600);
        assert_eq!(check(&keys, Some(&token), "ada", "final"), Ok(()));
        let refused = |token: Option<&str>, user: &str, event: &str| {
            check(&keys, token, user, event)
                .expect_err("refused")
                .code()
        };
        assert_eq!(refused(None, "ada", "final"), "admission_required");
        assert_eq!(refused(Some("  "), "ada", "final"), "admission_required");
        assert_eq!(
            refused(Some(&token), "bob", "final"),
            "admission_other_user"
        );
        assert_eq!(
            refused(Some(&token), "ada", "derby"),
            "admission_other_event"
        );
        let (old, _) = admit(&keys, "ada", "final", now - 700, 600).expect("signed");
        assert_eq!(refused(Some(&old), "ada", "final"), "admission_expired");
        // Forged: another installation's key, a tampered payload, or garbage.
        let (theirs, _) = admit(&ring("k1", b'b'), "ada", "final", now, 600).expect("signed");
        assert_eq!(refused(Some(&theirs), "ada", "final"), "admission_invalid");
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert_eq!(
            refused(Some(&parts.join(".")), "ada", "final"),
            "admission_invalid"
        );
        assert_eq!(refused(Some("x.y.z"), "ada", "final"), "admission_invalid");
    }

    #[test]
    fn sessions_and_admissions_are_not_each_other() {
        let sessions = Keys::new(ring("k1", b'a'));
        let (session, _) = sessions
            .issue("ada", Role::Shopper, 600)
            .expect("a session");
        assert_eq!(
            check(&ring("k1", b'a'), Some(&session), "ada", "final")
                .expect_err("a session is no admission")
                .code(),
            "admission_invalid"
        );
        let now = chrono::Utc::now().timestamp();
        let (admission, _) = admit(&ring("k1", b'a'), "ada", "final", now, 600).expect("signed");
        let caller = sessions.caller(Some(&format!("Bearer {admission}")));
        assert!(caller.is_err(), "an admission is no session");
    }
}
