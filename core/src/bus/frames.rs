//! The frames of the embedded bus's log: what each kind holds, written and read in one place.

use super::Record;
use crate::log_file::{push_frame, put_str16, Reader};

const FRAME_TOPIC: u8 = 1;
const FRAME_RECORD: u8 = 2;
const FRAME_COMMIT: u8 = 3;
const FRAME_TOPIC_DELETE: u8 = 4;

/// One frame's body, decoded.
#[derive(Debug)]
pub(super) enum Frame {
    /// A topic created, or grown, to `partitions`.
    Topic {
        name: String,
        partitions: u32,
    },
    /// A record; its `offset` is 0, for the reader to set (offsets are positions in the
    /// partition, implied by order).
    Record {
        topic: String,
        record: Record,
    },
    /// A consumer's committed offset.
    Commit {
        consumer: String,
        topic: String,
        partition: u32,
        next: u64,
    },
    TopicDelete {
        name: String,
    },
}

impl Frame {
    pub(super) fn decode(body: &[u8]) -> Option<Frame> {
        let mut r = Reader::new(body);
        Some(match r.take(1)?[0] {
            FRAME_TOPIC => Frame::Topic {
                name: r.str16()?,
                partitions: r.u32()?,
            },
            FRAME_RECORD => {
                let topic = r.str16()?;
                let partition = r.u32()?;
                let timestamp_ms = r.u64()?;
                let klen = r.u32()? as usize;
                let key = r.take(klen)?.to_vec();
                let record = Record {
                    partition,
                    offset: 0,
                    timestamp_ms,
                    key,
                    value: r.rest().to_vec(),
                };
                Frame::Record { topic, record }
            }
            FRAME_COMMIT => Frame::Commit {
                consumer: r.str16()?,
                topic: r.str16()?,
                partition: r.u32()?,
                next: r.u64()?,
            },
            FRAME_TOPIC_DELETE => Frame::TopicDelete { name: r.str16()? },
            _ => return None,
        })
    }
}

pub(super) fn push_topic(name: &str, partitions: u32, out: &mut Vec<u8>) {
    let mut body = vec![FRAME_TOPIC];
    put_str16(name, &mut body);
    body.extend_from_slice(&partitions.to_le_bytes());
    push_frame(&body, out);
}

pub(super) fn push_record(
    topic: &str,
    partition: u32,
    timestamp_ms: u64,
    key: &[u8],
    value: &[u8],
    out: &mut Vec<u8>,
) {
    let mut body = Vec::with_capacity(24 + topic.len() + key.len() + value.len());
    body.push(FRAME_RECORD);
    put_str16(topic, &mut body);
    body.extend_from_slice(&partition.to_le_bytes());
    body.extend_from_slice(&timestamp_ms.to_le_bytes());
    body.extend_from_slice(&(key.len() as u32).to_le_bytes());
    body.extend_from_slice(key);
    body.extend_from_slice(value);
    push_frame(&body, out);
}

pub(super) fn push_commit(
    consumer: &str,
    topic: &str,
    partition: u32,
    next: u64,
    out: &mut Vec<u8>,
) {
    let mut body = vec![FRAME_COMMIT];
    put_str16(consumer, &mut body);
    put_str16(topic, &mut body);
    body.extend_from_slice(&partition.to_le_bytes());
    body.extend_from_slice(&next.to_le_bytes());
    push_frame(&body, out);
}

pub(super) fn push_topic_delete(name: &str, out: &mut Vec<u8>) {
    let mut body = vec![FRAME_TOPIC_DELETE];
    put_str16(name, &mut body);
    push_frame(&body, out);
}
