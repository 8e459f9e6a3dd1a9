//! The compact binary encoding of records on the bus and rows in the store: a one-byte schema
//! version followed by postcard. JSON is for the edge only.
//!
//! A reader accepts the versions it knows; a new field is added by bumping the version and
//! decoding the old one into the new shape, so rows written by an older release stay readable.

use serde::{de::DeserializeOwned, Serialize};

pub const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty record")]
    Empty,
    #[error("record schema version {0} is not known to this release")]
    UnknownVersion(u8),
    #[error("malformed record: {0}")]
    Malformed(postcard::Error),
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let out = vec![VERSION];
    // Serializing plain data structures into a Vec cannot fail: postcard only errors on
    // unsupported serde features (which the domain types do not use) or on full fixed buffers.
    match postcard::to_extend(value, out) {
        Ok(v) => v,
        Err(e) => panic!("domain type is not postcard-encodable: {e}"),
    }
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&VERSION, rest)) => postcard::from_bytes(rest).map_err(CodecError::Malformed),
        Some((&v, _)) => Err(CodecError::UnknownVersion(v)),
    }
}
