//! Records no worker could use, kept with their reason and origin: never dropped silently.

use serde::{Deserialize, Serialize};

/// A record on the dead-letter topic: where the original came from, why it was refused, and
/// the original itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub reason: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}
