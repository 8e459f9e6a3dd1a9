//! Tokens verify and forgeries do not; passwords hash and verify.

use mercato_core::domain::users::Role;
use mercato_gateway::auth::{hash_password, verify_password, Keys};

#[test]
fn tokens_verify_and_forgeries_do_not() {
    let keys = Keys::new(b"secret-one");
    let (token, _) = keys.issue("u1", Role::Shopper, 60).unwrap();
    let caller = keys.caller(Some(&format!("Bearer {token}"))).unwrap();
    assert_eq!(caller.user_id, "u1");
    let other = Keys::new(b"secret-two");
    assert_eq!(
        other
            .caller(Some(&format!("Bearer {token}")))
            .unwrap_err()
            .code,
        "unauthorized"
    );
    assert!(keys.caller(None).is_err());
    assert!(keys.caller(Some("Basic abc")).is_err());
    let (expired, _) = keys.issue("u1", Role::Shopper, -60).unwrap();
    assert!(keys.caller(Some(&format!("Bearer {expired}"))).is_err());
}

#[test]
fn passwords_hash_and_verify() {
    let phc = hash_password("correct horse").unwrap();
    assert!(verify_password("correct horse", &phc));
    assert!(!verify_password("wrong horse", &phc));
    assert!(!verify_password("x", "not a hash"));
}
