//! Tokens name their key and verify against it, forgeries and strangers' tokens do not, keys
//! rotate through the folder without a restart; passwords hash and verify.

use std::time::Duration;

use mercato_core::domain::users::Role;
use mercato_gateway::auth::{hash_password, verify_password, Keys};
use mercato_gateway::keyring::{KeyError, KeyRing};

const KEY_ONE: &[u8] = b"0123456789abcdef0123456789abcdef-one";
const KEY_TWO: &[u8] = b"0123456789abcdef0123456789abcdef-two";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn keys(kid: &str, key: &[u8]) -> Keys {
    Keys::new(KeyRing::from_keys(vec![(kid.to_owned(), key.to_vec())]).unwrap())
}

#[test]
fn tokens_verify_and_forgeries_do_not() {
    let keys_one = keys("k-1", KEY_ONE);
    let (token, _) = keys_one.issue("u1", Role::Shopper, 60).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some("k-1"));
    let caller = keys_one.caller(Some(&bearer(&token))).unwrap();
    assert_eq!(caller.user_id, "u1");
    // The same key id with another key: the signature does not verify.
    let impostor = keys("k-1", KEY_TWO);
    let err = impostor.caller(Some(&bearer(&token))).unwrap_err();
    assert_eq!(err.code, "unauthorized");
    // Another installation's key: refused, saying which key it names.
    let stranger = keys("k-9", KEY_TWO);
    let err = stranger.caller(Some(&bearer(&token))).unwrap_err();
    assert!(err.message.contains("\"k-1\""), "{}", err.message);
    assert!(keys_one.caller(None).is_err());
    assert!(keys_one.caller(Some("Basic abc")).is_err());
    let (expired, _) = keys_one.issue("u1", Role::Shopper, -60).unwrap();
    assert!(keys_one.caller(Some(&bearer(&expired))).is_err());
    // A token that names no key is refused before any key is tried.
    let claims =
        serde_json::json!({"sub": "u1", "role": "admin", "exp": 4_000_000_000i64, "iat": 0});
    let unnamed = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY_ONE),
    )
    .unwrap();
    let err = keys_one.caller(Some(&bearer(&unnamed))).unwrap_err();
    assert!(err.message.contains("names no key"), "{}", err.message);
}

#[test]
fn a_key_added_to_the_folder_signs_and_every_gateway_learns_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k-2026-01"), KEY_ONE).unwrap();
    // A mounted Secret's bookkeeping is not a key.
    std::fs::write(dir.path().join("..data"), "x").unwrap();
    let before = Keys::new(KeyRing::from_dir(dir.path()).unwrap());
    let (old_token, _) = before.issue("u1", Role::Shopper, 60).unwrap();

    // Rotation: a key whose name sorts last, with a trailing newline as `echo` writes it.
    let mut newer = KEY_TWO.to_vec();
    newer.push(b'\n');
    std::fs::write(dir.path().join("k-2026-07"), &newer).unwrap();
    let after = Keys::new(KeyRing::from_dir(dir.path()).unwrap());
    let (new_token, _) = after.issue("u2", Role::Shopper, 60).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&new_token)
            .unwrap()
            .kid
            .as_deref(),
        Some("k-2026-07")
    );
    // Tokens signed before the rotation still verify.
    assert_eq!(
        after.caller(Some(&bearer(&old_token))).unwrap().user_id,
        "u1"
    );
    // A gateway that read the folder before the new key reads it again for a token naming it
    // (at most once a second).
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        before.caller(Some(&bearer(&new_token))).unwrap().user_id,
        "u2"
    );
}

#[test]
fn a_folder_of_bad_keys_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        KeyRing::from_dir(dir.path()),
        Err(KeyError::Empty { .. })
    ));
    assert!(matches!(
        KeyRing::from_dir(&dir.path().join("absent")),
        Err(KeyError::Read { .. })
    ));
    std::fs::write(dir.path().join("short"), b"too short\n").unwrap();
    let err = KeyRing::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, KeyError::TooShort { len: 9, .. }), "{err}");
    std::fs::remove_file(dir.path().join("short")).unwrap();
    std::fs::write(dir.path().join("k 1"), KEY_ONE).unwrap();
    let err = KeyRing::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, KeyError::BadKid { .. }), "{err}");
    // Debug output names key ids, never keys.
    let ring = KeyRing::from_keys(vec![("k-1".to_owned(), KEY_ONE.to_vec())]).unwrap();
    let shown = format!("{ring:?}");
    assert!(
        shown.contains("k-1") && !shown.contains("0123456789abcdef"),
        "{shown}"
    );
}

#[test]
fn passwords_hash_and_verify() {
    let phc = hash_password("correct horse").unwrap();
    assert!(verify_password("correct horse", &phc));
    assert!(!verify_password("wrong horse", &phc));
    assert!(!verify_password("x", "not a hash"));
}
