//! The Store port, shaped like ScyllaDB.
//!
//! Rows live in tables and are addressed by a partition key and a clustering key. Every row
//! carries a version that is unique for that key across its whole life (a row rewritten after it
//! expired or was deleted never reuses a version), so compare-and-set on a version can never be
//! fooled by a look-alike row. A write may carry a TTL; an expired row reads as absent at once.
//! Conditional writes answer as a Scylla lightweight transaction does: whether they applied, and
//! the current row. A batch is atomic only inside one partition. There is no query but by key.

mod embedded;
mod error;

use std::time::Duration;

use async_trait::async_trait;

pub use embedded::EmbeddedStore;
pub use error::{report, Cause, StoreError};

pub type Version = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub clustering: String,
    pub value: Vec<u8>,
    pub version: Version,
    /// Milliseconds since the epoch after which the row is gone; `None` lives forever.
    pub expires_at_ms: Option<u64>,
}

/// One write inside a [`Store::batch`]. Conditional writes make the whole batch conditional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put {
        clustering: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    },
    InsertIfAbsent {
        clustering: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    },
    CompareAndSet {
        clustering: String,
        expected: Version,
        value: Vec<u8>,
        ttl: Option<Duration>,
    },
    DeleteIfVersion {
        clustering: String,
        expected: Version,
    },
    Delete {
        clustering: String,
    },
}

impl Write {
    pub fn clustering(&self) -> &str {
        match self {
            Write::Put { clustering, .. }
            | Write::InsertIfAbsent { clustering, .. }
            | Write::CompareAndSet { clustering, .. }
            | Write::DeleteIfVersion { clustering, .. }
            | Write::Delete { clustering } => clustering,
        }
    }

    pub fn is_conditional(&self) -> bool {
        matches!(
            self,
            Write::InsertIfAbsent { .. }
                | Write::CompareAndSet { .. }
                | Write::DeleteIfVersion { .. }
        )
    }
}

/// An unconditional write to any partition of a table, for [`Store::write_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionWrite {
    pub partition: String,
    /// A `Put` or a `Delete`: conditions need the atomicity of one partition.
    pub write: Write,
}

/// How many unconditional writes of `write_many` travel together by default.
const WRITE_MANY_CONCURRENCY: usize = 64;

/// The answer to a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub applied: bool,
    /// The row as it is after the write: the new row if it applied, the row that stood in the
    /// way (or `None`) if it did not.
    pub current: Option<Row>,
}

/// The answer to a batch: all of it applied or none of it did, and the current row for each
/// write, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub applied: bool,
    pub rows: Vec<Option<Row>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    pub rows: Vec<Row>,
    /// Pass as `after` to read the next page; `None` at the end of the partition.
    pub next: Option<String>,
}

impl Page {
    /// A page of `limit` rows from a read that asked for one row more: that extra row, when it
    /// came, says there is a next page.
    pub fn from_overfetch(mut rows: Vec<Row>, limit: usize) -> Page {
        let mut next = None;
        if rows.len() > limit {
            rows.truncate(limit);
            next = rows.last().map(|r| r.clustering.clone());
        }
        Page { rows, next }
    }
}

impl BatchOutcome {
    /// The answer to a batch of no writes.
    pub fn nothing() -> Self {
        Self {
            applied: true,
            rows: Vec::new(),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, table: &str, partition: &str, clustering: &str)
        -> StoreResult<Option<Row>>;

    /// Live rows of one partition in clustering-key order, strictly after `after`.
    async fn scan(
        &self,
        table: &str,
        partition: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page>;

    /// Writes to one partition, atomically. If any write is conditional and its condition does
    /// not hold, nothing is written and `applied` is false.
    async fn batch(
        &self,
        table: &str,
        partition: &str,
        writes: Vec<Write>,
    ) -> StoreResult<BatchOutcome>;

    /// Unconditional writes to many partitions in one round trip, like a Scylla unlogged
    /// batch: each write is applied, but not atomically with the others. Bulk loads use it.
    /// A conditional write here is refused as `Invalid`.
    async fn write_many(&self, table: &str, writes: Vec<PartitionWrite>) -> StoreResult<()> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        check_unconditional(&writes)?;
        stream::iter(writes)
            .map(|w| async move { self.batch(table, &w.partition, vec![w.write]).await })
            .buffer_unordered(WRITE_MANY_CONCURRENCY)
            .try_for_each(|_| async { Ok(()) })
            .await
    }

    async fn put(
        &self,
        table: &str,
        partition: &str,
        clustering: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> StoreResult<Row> {
        let write = Write::Put {
            clustering: clustering.to_owned(),
            value,
            ttl,
        };
        let outcome = self.batch(table, partition, vec![write]).await?;
        single_row(outcome)
            .current
            .ok_or_else(|| StoreError::io_because("store", "a put answered with no row"))
    }

    async fn insert_if_absent(
        &self,
        table: &str,
        partition: &str,
        clustering: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> StoreResult<Applied> {
        let write = Write::InsertIfAbsent {
            clustering: clustering.to_owned(),
            value,
            ttl,
        };
        Ok(single_row(self.batch(table, partition, vec![write]).await?))
    }

    async fn compare_and_set(
        &self,
        table: &str,
        partition: &str,
        clustering: &str,
        expected: Version,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> StoreResult<Applied> {
        let write = Write::CompareAndSet {
            clustering: clustering.to_owned(),
            expected,
            value,
            ttl,
        };
        Ok(single_row(self.batch(table, partition, vec![write]).await?))
    }

    async fn delete_if_version(
        &self,
        table: &str,
        partition: &str,
        clustering: &str,
        expected: Version,
    ) -> StoreResult<Applied> {
        let write = Write::DeleteIfVersion {
            clustering: clustering.to_owned(),
            expected,
        };
        Ok(single_row(self.batch(table, partition, vec![write]).await?))
    }

    async fn delete(&self, table: &str, partition: &str, clustering: &str) -> StoreResult<()> {
        let write = Write::Delete {
            clustering: clustering.to_owned(),
        };
        self.batch(table, partition, vec![write]).await.map(|_| ())
    }
}

/// Every live row of one partition, reading `page` rows at a time: for partitions known to be
/// small (a warehouse's SKU list, the warehouses), never for ones that grow with traffic.
pub async fn scan_all(
    store: &dyn Store,
    table: &str,
    partition: &str,
    page: usize,
) -> StoreResult<Vec<Row>> {
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let got = store.scan(table, partition, after.as_deref(), page).await?;
        rows.extend(got.rows);
        match got.next {
            Some(n) => after = Some(n),
            None => return Ok(rows),
        }
    }
}

/// Every engine's `batch` calls this first: a batch names each row at most once. Two writes to
/// one row in one batch have no single meaning (one engine checks both conditions against the
/// row as it stood before the batch, another one after the other), so two claims of one seat
/// could both apply; no engine accepts such a batch, it is refused as `Invalid`.
pub fn check_batch(writes: &[Write]) -> StoreResult<()> {
    if writes.len() < 2 {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(writes.len());
    match writes.iter().find(|w| !seen.insert(w.clustering())) {
        Some(w) => Err(StoreError::invalid(format!(
            "a batch writes row {:?} more than once",
            w.clustering()
        ))),
        None => Ok(()),
    }
}

pub fn check_unconditional(writes: &[PartitionWrite]) -> StoreResult<()> {
    match writes.iter().find(|w| w.write.is_conditional()) {
        Some(w) => Err(StoreError::invalid(format!(
            "write_many takes puts and deletes only; {:?} in partition {} is conditional",
            w.write.clustering(),
            w.partition
        ))),
        None => Ok(()),
    }
}

fn single_row(outcome: BatchOutcome) -> Applied {
    Applied {
        applied: outcome.applied,
        current: outcome.rows.into_iter().next().flatten(),
    }
}
