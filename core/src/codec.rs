//! The compact binary encoding of records on the bus and rows in the store: a one-byte layout
//! version of the record's own type, followed by postcard. JSON is for the edge only.
//!
//! Postcard is not self-describing: a body decodes only against the layout it was written with.
//! So each record type carries its own version ([`Record::VERSION`]). Changing a type's layout
//! (a field or variant added, removed, reordered or retyped, here or in a type it contains)
//! bumps that version, and [`Record::decode_older`] turns the previous layout into the new
//! shape, so rows and queued records written by the release before stay readable during an
//! upgrade. `core/tests/record_layouts.rs` traces every record's layout and fails when one
//! changes without a bump.

use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty record")]
    Empty,
    #[error("record layout version {0} is not known to this release")]
    UnknownVersion(u8),
    #[error("malformed record: {0}")]
    Malformed(postcard::Error),
}

/// A type written to the bus or the store.
pub trait Record: Serialize + DeserializeOwned {
    /// The layout written by this release. Starts at 1; bump on every layout change.
    const VERSION: u8 = 1;

    /// Decodes a body written with an older `version` of this type's layout (only ever called
    /// with `version < VERSION`). A type that never changed knows no older version.
    fn decode_older(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        let _ = body;
        Err(CodecError::UnknownVersion(version))
    }
}

/// Declares types that are still at their first layout.
#[macro_export]
macro_rules! first_layout {
    ($($ty:ty),+ $(,)?) => {
        $(impl $crate::codec::Record for $ty {})+
    };
}

// A bare number is a record of its own (the first once-only marks were timestamps), and a
// once-only change that decides nothing records the unit.
impl Record for u64 {}
impl Record for () {}

pub fn encode<T: Record>(value: &T) -> Vec<u8> {
    let out = vec![T::VERSION];
    // Serializing plain data structures into a Vec cannot fail: postcard only errors on
    // unsupported serde features (which the domain types do not use) or on full fixed buffers.
    match postcard::to_extend(value, out) {
        Ok(v) => v,
        Err(e) => panic!("domain type is not postcard-encodable: {e}"),
    }
}

pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&v, body)) if v == T::VERSION => decode_body(body),
        Some((&v, body)) if (1..T::VERSION).contains(&v) => T::decode_older(v, body),
        Some((&v, _)) => Err(CodecError::UnknownVersion(v)),
    }
}

/// Decodes a body (the bytes after the version) as `T`'s layout; for `decode_older`, with the
/// previous layout's shape as `T`.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    postcard::from_bytes(body).map_err(CodecError::Malformed)
}

/// Version 1 of a type whose layout changed before layouts were versioned holds either layout.
/// The newer is tried first: an older layout can read a newer body as a prefix and ignore the
/// rest, while each newer layout here fails on an older body (it runs out of bytes, or meets a
/// variant index it does not have).
pub fn decode_either<New, Old>(body: &[u8]) -> Result<New, CodecError>
where
    New: DeserializeOwned,
    Old: DeserializeOwned + Into<New>,
{
    match decode_body::<New>(body) {
        Ok(v) => Ok(v),
        Err(first) => decode_body::<Old>(body).map(Into::into).map_err(|_| first),
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Before {
        a: u32,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct After {
        a: u32,
        b: String,
    }
    first_layout!(Before);
    impl Record for After {
        const VERSION: u8 = 2;
        fn decode_older(version: u8, body: &[u8]) -> Result<Self, CodecError> {
            match version {
                1 => decode_body::<Before>(body).map(|b| After {
                    a: b.a,
                    b: "default".into(),
                }),
                v => Err(CodecError::UnknownVersion(v)),
            }
        }
    }

    #[test]
    fn a_record_carries_its_own_version_and_the_previous_one_decodes() {
        let old = encode(&Before { a: 7 });
        assert_eq!(old[0], 1);
        let after: After = decode(&old).unwrap();
        assert_eq!(
            after,
            After {
                a: 7,
                b: "default".into()
            }
        );
        let new = encode(&after);
        assert_eq!(new[0], 2);
        assert_eq!(decode::<After>(&new).unwrap(), after);
        // A newer layout than the reader knows is refused, not misread.
        assert!(matches!(
            decode::<Before>(&new),
            Err(CodecError::UnknownVersion(2))
        ));
        assert!(matches!(decode::<After>(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<After>(&[0, 1]),
            Err(CodecError::UnknownVersion(0))
        ));
    }
}
