//! The Store port on ScyllaDB.
//!
//! Every Mercato table lives in one CQL table, `rows`, whose partition key is (table,
//! partition) and whose clustering key is Mercato's clustering key, so a scan of a partition is
//! one slice in clustering order and a new Mercato table needs no DDL.
//!
//! **Expiry.** CQL's TTL counts whole seconds from a second boundary, so a hold of 1.5 s could
//! vanish after 1.1 s. The exact expiry is therefore a column (`expires_at`, milliseconds; the
//! largest `bigint` for "never") judged against this process's clock, and the native TTL only
//! clears the row a minute later, as the PostgreSQL janitor does. An expired row reads as absent
//! at once.
//!
//! **Conditions.** Every conditional write is a lightweight transaction on the row's version:
//! compare-and-set and delete-if are `IF version = ? AND expires_at > ?now`. Insert-if-absent
//! must also win over an expired row that is still stored, and CQL has no `OR` in conditions, so
//! it is sent in the form its row calls for: `IF version = null` for no row, `IF version = ?` for
//! an expired one (an expired row never comes back to life, so its version pins it). ScyllaDB
//! answers every conditional statement with the row it found; when a write was sent in the wrong
//! form (the row expired, or vanished, since) it is sent again in the right one, and only a live
//! row in the way or a version that differs is a refusal.
//!
//! **Writes are updates.** Every write sets all three regular cells with one TTL and none writes
//! a row marker, so a row is always whole or absent.
//!
//! **Versions** are the write's time in microseconds followed by 11 random bits, and increase
//! within a process: unique for a key in practice, without a round trip to a sequence.
//!
//! ScyllaDB advises against mixing lightweight and plain writes on the same rows. Mercato's
//! plain writes (puts, deletes, bulk loads) go to rows that no condition is racing for at that
//! moment; a later condition on them is ordered after the plain write as long as the nodes'
//! clocks agree to within the gap between the two requests.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::stream::{self, StreamExt, TryStreamExt};
use mercato_core::store::{
    check_batch, check_unconditional, BatchOutcome, Page, PartitionWrite, Row, Store, StoreError,
    StoreResult, Version, Write,
};
use rand::Rng;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::response::query_result::QueryResult;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::CqlValue;

/// `expires_at` of a row that never expires: conditions compare it like any other.
/// The name errors give this engine.
const ENGINE: &str = "ScyllaDB";
const NEVER: i64 = i64::MAX;
/// Expired rows stay stored this long before ScyllaDB's TTL clears them.
const GRACE_SECS: i64 = 60;
/// CQL refuses TTLs over 20 years.
const MAX_TTL_SECS: i64 = 20 * 365 * 24 * 3600;
/// A conditional batch is sent again at most this often when its rows changed form under it.
const FORM_ATTEMPTS: usize = 8;
/// Statements per unlogged batch in `write_many`, and partitions written at once.
const BULK_CHUNK: usize = 100;
const BULK_CONCURRENCY: usize = 32;

/// Where and how to connect, from `scylla://[USER:PASSWORD@]HOST[:PORT][,HOST…]/[KEYSPACE]
/// [?replication_factor=N&serial=local|global]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScyllaOptions {
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub credentials: Option<(String, String)>,
    /// Used only when the keyspace does not exist yet.
    pub replication_factor: u32,
    /// `LocalSerial` (the default) keeps transactions within one datacenter; `Serial` spans
    /// them all.
    pub serial: SerialConsistency,
    pub connect_timeout: Duration,
}

impl ScyllaOptions {
    pub fn from_url(url: &str) -> StoreResult<Self> {
        let bad = |why: &str| StoreError::invalid(format!("bad ScyllaDB URL {url:?}: {why}"));
        let rest = url
            .strip_prefix("scylla://")
            .ok_or_else(|| bad("expected scylla://HOST[:PORT][,HOST…]/KEYSPACE"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, keyspace) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((c, h)) => {
                let (user, password) = c
                    .split_once(':')
                    .ok_or_else(|| bad("credentials are USER:PASSWORD"))?;
                (Some((user.to_owned(), password.to_owned())), h)
            }
            None => (None, authority),
        };
        let nodes: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.contains(':') && !h.ends_with(']') {
                    h.to_owned()
                } else {
                    format!("{h}:9042")
                }
            })
            .collect();
        if nodes.is_empty() {
            return Err(bad("no host"));
        }
        let keyspace = if keyspace.is_empty() {
            "mercato".to_owned()
        } else {
            keyspace.to_owned()
        };
        let valid = keyspace.len() <= 48
            && keyspace.starts_with(|c: char| c.is_ascii_alphabetic())
            && keyspace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(bad(
                "a keyspace is a letter then up to 47 letters, digits or _",
            ));
        }
        let mut options = Self {
            nodes,
            keyspace: keyspace.to_ascii_lowercase(),
            credentials,
            replication_factor: 1,
            serial: SerialConsistency::LocalSerial,
            connect_timeout: Duration::from_secs(5),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("replication_factor", n)) => {
                    options.replication_factor = n
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("replication_factor is a positive number"))?;
                }
                Some(("serial", "local")) => options.serial = SerialConsistency::LocalSerial,
                Some(("serial", "global")) => options.serial = SerialConsistency::Serial,
                _ => return Err(bad(&format!("unknown option {pair:?}"))),
            }
        }
        Ok(options)
    }
}

/// The prepared statements, one per shape of request.
struct Statements {
    get: PreparedStatement,
    get_many: PreparedStatement,
    scan_from_start: PreparedStatement,
    scan_after: PreparedStatement,
    put: PreparedStatement,
    insert_if_null: PreparedStatement,
    replace_expired: PreparedStatement,
    compare_and_set: PreparedStatement,
    delete_if_version: PreparedStatement,
    delete: PreparedStatement,
}

pub struct ScyllaStore {
    session: Session,
    statements: Statements,
    serial: SerialConsistency,
    last_version: AtomicU64,
}

impl ScyllaStore {
    /// Connects, creates the keyspace and table when they are missing, and prepares every
    /// statement.
    pub async fn connect(options: ScyllaOptions) -> StoreResult<Self> {
        let mut builder = SessionBuilder::new()
            .known_nodes(&options.nodes)
            .connection_timeout(options.connect_timeout);
        if let Some((user, password)) = &options.credentials {
            builder = builder.user(user, password);
        }
        let session = builder.build().await.map_err(|e| {
            StoreError::unavailable(
                ENGINE,
                format!("cannot reach {}", options.nodes.join(",")),
                e,
            )
        })?;
        create_schema(&session, &options).await?;
        let statements = prepare_all(&session, &options).await?;
        Ok(Self {
            session,
            statements,
            serial: options.serial,
            last_version: AtomicU64::new(0),
        })
    }

    /// A version no earlier write of this process had, and in practice no other process's.
    fn next_version(&self) -> Version {
        let micros = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros(),
        )
        .unwrap_or(u64::MAX >> 12);
        let candidate =
            ((micros << 11) | rand::thread_rng().gen_range(0..2048)) & (i64::MAX as u64);
        let previous = self.last_version.fetch_max(candidate, Ordering::Relaxed);
        if candidate > previous {
            candidate
        } else {
            // Same microsecond, or the clock stepped back: one past the last, atomically.
            self.last_version.fetch_add(1, Ordering::Relaxed) + 1
        }
    }

    async fn read_many(
        &self,
        table: &str,
        partition: &str,
        keys: Vec<String>,
    ) -> StoreResult<HashMap<String, Stored>> {
        let result = self
            .session
            .execute_unpaged(&self.statements.get_many, (table, partition, keys))
            .await
            .map_err(execution)?;
        Ok(stored_rows(result)?
            .into_iter()
            .filter_map(|s| Some((s.clustering.clone()?, s)))
            .collect())
    }

    /// Writes with no condition: one statement, or one unlogged batch (a batch inside one
    /// partition is atomic in ScyllaDB, logged or not).
    async fn write_plain(
        &self,
        table: &str,
        partition: &str,
        writes: &[Write],
    ) -> StoreResult<Vec<Option<Row>>> {
        let now = now_ms();
        let mut statements = Vec::with_capacity(writes.len());
        let mut rows = Vec::with_capacity(writes.len());
        for write in writes {
            let (statement, bound, row) = self.plain(table, partition, write, now);
            statements.push((statement, bound));
            rows.push(row);
        }
        self.send(BatchType::Unlogged, statements).await?;
        Ok(rows)
    }

    /// One statement alone, or several as one batch of `kind`.
    async fn send(
        &self,
        kind: BatchType,
        mut statements: Vec<(&PreparedStatement, Vec<CqlValue>)>,
    ) -> StoreResult<QueryResult> {
        if statements.len() == 1 {
            if let Some((statement, bound)) = statements.pop() {
                return self
                    .session
                    .execute_unpaged(statement, bound)
                    .await
                    .map_err(execution);
            }
        }
        let mut batch = Batch::new(kind);
        batch.set_consistency(Consistency::LocalQuorum);
        batch.set_serial_consistency(Some(self.serial));
        let mut values = Vec::with_capacity(statements.len());
        for (statement, bound) in statements {
            batch.append_statement(statement.clone());
            values.push(bound);
        }
        self.session.batch(&batch, values).await.map_err(execution)
    }

    fn plain<'a>(
        &'a self,
        table: &str,
        partition: &str,
        write: &Write,
        now: i64,
    ) -> (&'a PreparedStatement, Vec<CqlValue>, Option<Row>) {
        match write {
            Write::Put {
                clustering,
                value,
                ttl,
            } => {
                let version = self.next_version();
                let (expires_at, ttl_secs) = expiry(now, *ttl);
                let bound = set_values(
                    ttl_secs, value, version, expires_at, table, partition, clustering,
                );
                let row = new_row(clustering, value, version, expires_at);
                (&self.statements.put, bound, Some(row))
            }
            other => (
                &self.statements.delete,
                key_values(table, partition, other.clustering()),
                None,
            ),
        }
    }

    /// One attempt at a conditional batch, each insert-if-absent sent in the form `forms`
    /// gives it.
    async fn try_conditional(
        &self,
        table: &str,
        partition: &str,
        writes: &[Write],
        forms: &[Form],
    ) -> StoreResult<Attempt> {
        let now = now_ms();
        let mut statements = Vec::with_capacity(writes.len());
        let mut answers = Vec::with_capacity(writes.len());
        for (write, form) in writes.iter().zip(forms) {
            let (statement, bound, row) = self.conditional(table, partition, write, *form, now);
            statements.push((statement, bound));
            answers.push(row);
        }
        let (applied, found) = lwt_answer(self.send(BatchType::Logged, statements).await?)?;
        if applied {
            return Ok(Attempt::Applied(answers));
        }
        let conditional: Vec<&Write> = writes.iter().filter(|w| w.is_conditional()).collect();
        let found = align(&conditional, found);
        let mut next_forms = forms.to_vec();
        let mut refused = false;
        let mut by_key: HashMap<String, Option<Row>> = HashMap::new();
        let mut slot = found.into_iter();
        for (i, write) in writes.iter().enumerate() {
            if !write.is_conditional() {
                continue;
            }
            let old = slot.next().flatten();
            match judge(write, forms[i], old.as_ref(), now) {
                Verdict::Holds => {}
                Verdict::Refused => refused = true,
                Verdict::SendAs(form) => next_forms[i] = form,
            }
            by_key.insert(
                write.clustering().to_owned(),
                old.and_then(|s| s.live_row(write.clustering(), now)),
            );
        }
        if refused {
            return Ok(Attempt::Refused(by_key));
        }
        if next_forms == forms {
            return Err(StoreError::io_because(
                ENGINE,
                "it refused a conditional batch whose every condition held",
            ));
        }
        Ok(Attempt::Resend(next_forms))
    }

    fn conditional<'a>(
        &'a self,
        table: &str,
        partition: &str,
        write: &Write,
        form: Form,
        now: i64,
    ) -> (&'a PreparedStatement, Vec<CqlValue>, Option<Row>) {
        let s = &self.statements;
        match write {
            Write::InsertIfAbsent {
                clustering,
                value,
                ttl,
            }
            | Write::CompareAndSet {
                clustering,
                value,
                ttl,
                ..
            } => {
                let version = self.next_version();
                let (expires_at, ttl_secs) = expiry(now, *ttl);
                let mut bound = set_values(
                    ttl_secs, value, version, expires_at, table, partition, clustering,
                );
                let statement = match (write, form) {
                    (Write::CompareAndSet { expected, .. }, _) => {
                        bound.push(version_value(*expected));
                        bound.push(CqlValue::BigInt(now));
                        &s.compare_and_set
                    }
                    (_, Form::Expired(old)) => {
                        bound.push(version_value(old));
                        &s.replace_expired
                    }
                    _ => &s.insert_if_null,
                };
                let row = new_row(clustering, value, version, expires_at);
                (statement, bound, Some(row))
            }
            Write::DeleteIfVersion {
                clustering,
                expected,
            } => {
                let mut bound = key_values(table, partition, clustering);
                bound.push(version_value(*expected));
                bound.push(CqlValue::BigInt(now));
                (&s.delete_if_version, bound, None)
            }
            plain => self.plain(table, partition, plain, now),
        }
    }
}

enum Attempt {
    Applied(Vec<Option<Row>>),
    /// The rows that stood in the way, by clustering key.
    Refused(HashMap<String, Option<Row>>),
    Resend(Vec<Form>),
}

/// How an insert-if-absent is sent: against no row, or against the expired row with this
/// version. Other writes ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    NoRow,
    Expired(Version),
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// This write's condition held against the row found.
    Holds,
    /// A live row in the way, or another version: the batch is refused.
    Refused,
    /// The condition failed only because the write was sent in the wrong form.
    SendAs(Form),
}

/// A row as ScyllaDB holds it, expired or not.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    clustering: Option<String>,
    value: Vec<u8>,
    version: Version,
    expires_at: i64,
}

impl Stored {
    fn is_live(&self, now: i64) -> bool {
        self.expires_at > now
    }

    fn live_row(self, clustering: &str, now: i64) -> Option<Row> {
        if !self.is_live(now) {
            return None;
        }
        Some(Row {
            clustering: self.clustering.unwrap_or_else(|| clustering.to_owned()),
            value: self.value,
            version: self.version,
            expires_at_ms: expires_at_ms(self.expires_at),
        })
    }
}

/// Whether a conditional write's condition held against the row ScyllaDB found (`None`: no
/// row), judged with the same clock reading the conditions were built with.
fn judge(write: &Write, form: Form, found: Option<&Stored>, now: i64) -> Verdict {
    match write {
        Write::InsertIfAbsent { .. } => match found {
            Some(row) if row.is_live(now) => Verdict::Refused,
            Some(expired) => {
                let right = Form::Expired(expired.version);
                if form == right {
                    Verdict::Holds
                } else {
                    Verdict::SendAs(right)
                }
            }
            None if form == Form::NoRow => Verdict::Holds,
            None => Verdict::SendAs(Form::NoRow),
        },
        Write::CompareAndSet { expected, .. } | Write::DeleteIfVersion { expected, .. } => {
            match found {
                Some(row) if row.version == *expected && row.is_live(now) => Verdict::Holds,
                _ => Verdict::Refused,
            }
        }
        Write::Put { .. } | Write::Delete { .. } => Verdict::Holds,
    }
}

/// ScyllaDB answers a refused conditional batch with one row per conditional statement, in
/// statement order; Cassandra with one per row, in clustering order. Rows are matched by
/// clustering key when the count says the answer is not ScyllaDB's.
fn align(conditional: &[&Write], found: Vec<Option<Stored>>) -> Vec<Option<Stored>> {
    if found.len() == conditional.len() {
        return found;
    }
    let by_key: BTreeMap<String, Stored> = found
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s.clustering.clone()?, s)))
        .collect();
    conditional
        .iter()
        .map(|w| by_key.get(w.clustering()).cloned())
        .collect()
}

/// `[applied]`, and the row each conditional statement found (`None` where there was none).
fn lwt_answer(result: QueryResult) -> StoreResult<(bool, Vec<Option<Stored>>)> {
    let rows = result
        .into_rows_result()
        .map_err(|e| StoreError::io(ENGINE, "a conditional write answered with no rows", e))?;
    let specs = rows.column_specs();
    let applied_at = specs
        .get_by_name("[applied]")
        .map(|(i, _)| i)
        .ok_or_else(|| {
            StoreError::io_because(ENGINE, "a conditional write answered without [applied]")
        })?;
    let columns = Columns::of(&specs);
    let mut applied = true;
    let mut found = Vec::new();
    for row in rows
        .rows::<scylla::value::Row>()
        .map_err(|e| StoreError::io(ENGINE, "reading an LWT answer of unexpected shape", e))?
    {
        let row = row.map_err(|e| StoreError::io(ENGINE, "reading an LWT answer", e))?;
        if !matches!(
            row.columns.get(applied_at),
            Some(Some(CqlValue::Boolean(true)))
        ) {
            applied = false;
        }
        found.push(columns.stored(&row.columns)?);
    }
    Ok((applied, found))
}

/// Where the columns of a row are in an answer, by name.
struct Columns {
    clustering: Option<usize>,
    value: Option<usize>,
    version: Option<usize>,
    expires_at: Option<usize>,
}

impl Columns {
    fn of(specs: &scylla::response::query_result::ColumnSpecs<'_, '_>) -> Self {
        let at = |name: &str| specs.get_by_name(name).map(|(i, _)| i);
        Self {
            clustering: at("clust"),
            value: at("value"),
            version: at("version"),
            expires_at: at("expires_at"),
        }
    }

    /// `None` for a row that is not there (its version is null).
    fn stored(&self, columns: &[Option<CqlValue>]) -> StoreResult<Option<Stored>> {
        let cell = |i: Option<usize>| i.and_then(|i| columns.get(i)).and_then(Option::as_ref);
        let version = match cell(self.version) {
            None => return Ok(None),
            Some(CqlValue::BigInt(v)) => u64::try_from(*v).map_err(|_| {
                StoreError::corrupt(ENGINE, format!("a row has negative version {v}"))
            })?,
            Some(other) => return Err(corrupt_column("version", other)),
        };
        let value = match cell(self.value) {
            Some(CqlValue::Blob(b)) => b.clone(),
            None => Vec::new(),
            Some(other) => return Err(corrupt_column("value", other)),
        };
        let expires_at = match cell(self.expires_at) {
            Some(CqlValue::BigInt(e)) => *e,
            None => NEVER,
            Some(other) => return Err(corrupt_column("expires_at", other)),
        };
        let clustering = match cell(self.clustering) {
            Some(CqlValue::Text(c)) => Some(c.clone()),
            _ => None,
        };
        Ok(Some(Stored {
            clustering,
            value,
            version,
            expires_at,
        }))
    }
}

fn corrupt_column(column: &str, found: &CqlValue) -> StoreError {
    StoreError::corrupt(ENGINE, format!("column {column} holds {found:?}"))
}

/// The rows of a plain read.
fn stored_rows(result: QueryResult) -> StoreResult<Vec<Stored>> {
    let rows = result
        .into_rows_result()
        .map_err(|e| StoreError::io(ENGINE, "a read answered with no rows", e))?;
    let specs = rows.column_specs();
    let columns = Columns::of(&specs);
    let mut out = Vec::new();
    for row in rows
        .rows::<scylla::value::Row>()
        .map_err(|e| StoreError::io(ENGINE, "reading an answer of unexpected shape", e))?
    {
        let row = row.map_err(|e| StoreError::io(ENGINE, "reading a row", e))?;
        if let Some(stored) = columns.stored(&row.columns)? {
            out.push(stored);
        }
    }
    Ok(out)
}

#[async_trait]
impl Store for ScyllaStore {
    async fn get(
        &self,
        table: &str,
        partition: &str,
        clustering: &str,
    ) -> StoreResult<Option<Row>> {
        let result = self
            .session
            .execute_unpaged(&self.statements.get, (table, partition, clustering))
            .await
            .map_err(execution)?;
        let now = now_ms();
        Ok(stored_rows(result)?
            .into_iter()
            .next()
            .and_then(|s| s.live_row(clustering, now)))
    }

    async fn scan(
        &self,
        table: &str,
        partition: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page> {
        let limit = limit.max(1);
        // One live row more than asked tells whether there is a next page. Expired rows still
        // stored are skipped, so a slice may have to be read again further on.
        let fetch = i32::try_from(limit + 1).unwrap_or(i32::MAX);
        let mut live: Vec<Row> = Vec::new();
        let mut cursor: Option<String> = after.map(str::to_owned);
        loop {
            let result = match &cursor {
                Some(c) => {
                    self.session
                        .execute_unpaged(&self.statements.scan_after, (table, partition, c, fetch))
                        .await
                }
                None => {
                    self.session
                        .execute_unpaged(
                            &self.statements.scan_from_start,
                            (table, partition, fetch),
                        )
                        .await
                }
            }
            .map_err(execution)?;
            let stored = stored_rows(result)?;
            let exhausted = stored.len() < limit + 1;
            let now = now_ms();
            for s in stored {
                let Some(key) = s.clustering.clone() else {
                    continue;
                };
                cursor = Some(key.clone());
                if let Some(row) = s.live_row(&key, now) {
                    live.push(row);
                }
            }
            if live.len() > limit || exhausted {
                break;
            }
        }
        Ok(Page::from_overfetch(live, limit))
    }

    async fn batch(
        &self,
        table: &str,
        partition: &str,
        writes: Vec<Write>,
    ) -> StoreResult<BatchOutcome> {
        check_batch(&writes)?;
        if writes.is_empty() {
            return Ok(BatchOutcome::nothing());
        }
        if !writes.iter().any(Write::is_conditional) {
            let rows = self.write_plain(table, partition, &writes).await?;
            return Ok(BatchOutcome {
                applied: true,
                rows,
            });
        }
        let mut forms = vec![Form::NoRow; writes.len()];
        for _ in 0..FORM_ATTEMPTS {
            match self
                .try_conditional(table, partition, &writes, &forms)
                .await?
            {
                Attempt::Applied(rows) => {
                    return Ok(BatchOutcome {
                        applied: true,
                        rows,
                    })
                }
                Attempt::Resend(next) => forms = next,
                Attempt::Refused(mut by_key) => {
                    // Rows of the batch's plain writes were not part of the answer.
                    let missing: Vec<String> = writes
                        .iter()
                        .map(|w| w.clustering().to_owned())
                        .filter(|k| !by_key.contains_key(k))
                        .collect();
                    if !missing.is_empty() {
                        let now = now_ms();
                        let mut read = self.read_many(table, partition, missing.clone()).await?;
                        for key in missing {
                            let row = read.remove(&key).and_then(|s| s.live_row(&key, now));
                            by_key.insert(key, row);
                        }
                    }
                    let rows = writes
                        .iter()
                        .map(|w| by_key.get(w.clustering()).cloned().flatten())
                        .collect();
                    return Ok(BatchOutcome {
                        applied: false,
                        rows,
                    });
                }
            }
        }
        Err(StoreError::unavailable_because(
            ENGINE,
            format!("rows of {table}/{partition} kept expiring under a conditional batch"),
        ))
    }

    async fn write_many(&self, table: &str, writes: Vec<PartitionWrite>) -> StoreResult<()> {
        check_unconditional(&writes)?;
        let mut by_partition: BTreeMap<String, Vec<Write>> = BTreeMap::new();
        for w in writes {
            by_partition.entry(w.partition).or_default().push(w.write);
        }
        let chunks: Vec<(String, Vec<Write>)> = by_partition
            .into_iter()
            .flat_map(|(partition, writes)| {
                writes
                    .chunks(BULK_CHUNK)
                    .map(|c| (partition.clone(), c.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect();
        stream::iter(chunks)
            .map(|(partition, writes)| async move {
                self.write_plain(table, &partition, &writes).await
            })
            .buffer_unordered(BULK_CONCURRENCY)
            .try_for_each(|_| async { Ok(()) })
            .await
    }
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}

/// The exact expiry in milliseconds, and the native TTL in seconds that clears the row a grace
/// period after it (0: none).
fn expiry(now: i64, ttl: Option<Duration>) -> (i64, i32) {
    let Some(ttl) = ttl else {
        return (NEVER, 0);
    };
    let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let expires_at = now.saturating_add(ms).min(NEVER - 1);
    let secs = (ms.saturating_add(999) / 1000)
        .saturating_add(GRACE_SECS)
        .min(MAX_TTL_SECS);
    (expires_at, i32::try_from(secs).unwrap_or(i32::MAX))
}

fn expires_at_ms(expires_at: i64) -> Option<u64> {
    (expires_at != NEVER).then(|| u64::try_from(expires_at).unwrap_or(0))
}

fn new_row(clustering: &str, value: &[u8], version: Version, expires_at: i64) -> Row {
    Row {
        clustering: clustering.to_owned(),
        value: value.to_vec(),
        version,
        expires_at_ms: expires_at_ms(expires_at),
    }
}

fn version_value(version: Version) -> CqlValue {
    // A version beyond bigint can only be one no row has: it compares unequal, as it should.
    CqlValue::BigInt(i64::try_from(version).unwrap_or(-1))
}

/// The bound values of `UPDATE … USING TTL ? SET value, version, expires_at WHERE key`.
fn set_values(
    ttl_secs: i32,
    value: &[u8],
    version: Version,
    expires_at: i64,
    table: &str,
    partition: &str,
    clustering: &str,
) -> Vec<CqlValue> {
    let mut bound = vec![
        CqlValue::Int(ttl_secs),
        CqlValue::Blob(value.to_vec()),
        version_value(version),
        CqlValue::BigInt(expires_at),
    ];
    bound.extend(key_values(table, partition, clustering));
    bound
}

fn key_values(table: &str, partition: &str, clustering: &str) -> Vec<CqlValue> {
    vec![
        CqlValue::Text(table.to_owned()),
        CqlValue::Text(partition.to_owned()),
        CqlValue::Text(clustering.to_owned()),
    ]
}

/// A lost node, an overloaded one or a timeout is `Unavailable`: the caller may try again. A
/// timed-out lightweight transaction may still have applied; the caller's retry then finds its
/// own row in the way, as with any store that lost its answer.
fn execution(e: ExecutionError) -> StoreError {
    let unavailable = match &e {
        ExecutionError::ConnectionPoolError(_)
        | ExecutionError::EmptyPlan
        | ExecutionError::RequestTimeout(_) => true,
        ExecutionError::LastAttemptError(attempt) => match attempt {
            RequestAttemptError::BrokenConnectionError(_)
            | RequestAttemptError::UnableToAllocStreamId => true,
            RequestAttemptError::DbError(db, _) => matches!(
                db,
                DbError::Unavailable { .. }
                    | DbError::Overloaded
                    | DbError::IsBootstrapping
                    | DbError::ReadTimeout { .. }
                    | DbError::WriteTimeout { .. }
                    | DbError::RateLimitReached { .. }
            ),
            _ => false,
        },
        _ => false,
    };
    if unavailable {
        StoreError::unavailable(ENGINE, "running a statement", e)
    } else {
        StoreError::io(ENGINE, "running a statement", e)
    }
}

async fn create_schema(session: &Session, options: &ScyllaOptions) -> StoreResult<()> {
    let ks = &options.keyspace;
    let rf = options.replication_factor;
    // Lightweight transactions need vnodes: ScyllaDB versions with tablets take the option,
    // older ones and Cassandra refuse it and get the plain statement.
    let with_tablets = format!(
        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
         {{'class': 'NetworkTopologyStrategy', 'replication_factor': {rf}}} \
         AND tablets = {{'enabled': false}}"
    );
    if let Err(e) = session.query_unpaged(with_tablets, ()).await {
        tracing::debug!(error = %e, "keyspace with tablets disabled refused; creating without");
        let plain = format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
             {{'class': 'NetworkTopologyStrategy', 'replication_factor': {rf}}}"
        );
        session
            .query_unpaged(plain, ())
            .await
            .map_err(|e| StoreError::io(ENGINE, format!("creating keyspace {ks}"), e))?;
    }
    let table = format!(
        "CREATE TABLE IF NOT EXISTS {ks}.rows (tbl text, part text, clust text, value blob, \
         version bigint, expires_at bigint, PRIMARY KEY ((tbl, part), clust)) \
         WITH CLUSTERING ORDER BY (clust ASC)"
    );
    session
        .query_unpaged(table, ())
        .await
        .map_err(|e| StoreError::io(ENGINE, format!("creating table {ks}.rows"), e))?;
    if rf == 1 {
        tracing::info!(keyspace = %ks, "keyspace replication_factor is 1; give ?replication_factor=3 for a cluster that survives a node");
    }
    Ok(())
}

async fn prepare_all(session: &Session, options: &ScyllaOptions) -> StoreResult<Statements> {
    let ks = &options.keyspace;
    let columns = "clust, value, version, expires_at";
    let key = "tbl = ? AND part = ? AND clust = ?";
    let set = format!(
        "UPDATE {ks}.rows USING TTL ? SET value = ?, version = ?, expires_at = ? WHERE {key}"
    );
    let prepare = |cql: String, idempotent: bool| async move {
        let mut statement = session
            .prepare(cql.clone())
            .await
            .map_err(|e| StoreError::io(ENGINE, format!("preparing {cql:?}"), e))?;
        statement.set_consistency(Consistency::LocalQuorum);
        statement.set_serial_consistency(Some(options.serial));
        statement.set_is_idempotent(idempotent);
        Ok::<_, StoreError>(statement)
    };
    Ok(Statements {
        get: prepare(format!("SELECT {columns} FROM {ks}.rows WHERE {key}"), true).await?,
        get_many: prepare(
            format!("SELECT {columns} FROM {ks}.rows WHERE tbl = ? AND part = ? AND clust IN ?"),
            true,
        )
        .await?,
        scan_from_start: prepare(
            format!("SELECT {columns} FROM {ks}.rows WHERE tbl = ? AND part = ? LIMIT ?"),
            true,
        )
        .await?,
        scan_after: prepare(
            format!(
                "SELECT {columns} FROM {ks}.rows WHERE tbl = ? AND part = ? AND clust > ? LIMIT ?"
            ),
            true,
        )
        .await?,
        // A put carries its version, so sending it twice writes the same row.
        put: prepare(set.clone(), true).await?,
        insert_if_null: prepare(format!("{set} IF version = null"), false).await?,
        replace_expired: prepare(format!("{set} IF version = ?"), false).await?,
        compare_and_set: prepare(format!("{set} IF version = ? AND expires_at > ?"), false).await?,
        delete_if_version: prepare(
            format!("DELETE FROM {ks}.rows WHERE {key} IF version = ? AND expires_at > ?"),
            false,
        )
        .await?,
        delete: prepare(format!("DELETE FROM {ks}.rows WHERE {key}"), true).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(version: Version, expires_at: i64) -> Stored {
        Stored {
            clustering: Some("k".into()),
            value: b"v".to_vec(),
            version,
            expires_at,
        }
    }

    fn insert() -> Write {
        Write::InsertIfAbsent {
            clustering: "k".into(),
            value: vec![],
            ttl: None,
        }
    }

    #[test]
    fn insert_if_absent_is_sent_in_the_form_its_row_calls_for() {
        let now = 1_000;
        assert_eq!(judge(&insert(), Form::NoRow, None, now), Verdict::Holds);
        assert_eq!(
            judge(&insert(), Form::NoRow, Some(&stored(7, 999)), now),
            Verdict::SendAs(Form::Expired(7)),
            "an expired row still stored is replaced by its version"
        );
        assert_eq!(
            judge(&insert(), Form::Expired(7), Some(&stored(7, 999)), now),
            Verdict::Holds
        );
        assert_eq!(
            judge(&insert(), Form::Expired(7), Some(&stored(8, 500)), now),
            Verdict::SendAs(Form::Expired(8)),
            "another expired row took its place"
        );
        assert_eq!(
            judge(&insert(), Form::Expired(7), None, now),
            Verdict::SendAs(Form::NoRow),
            "the expired row was cleared"
        );
        assert_eq!(
            judge(&insert(), Form::Expired(7), Some(&stored(9, NEVER)), now),
            Verdict::Refused,
            "a live row is in the way"
        );
        assert_eq!(
            judge(&insert(), Form::NoRow, Some(&stored(9, 1_001)), now),
            Verdict::Refused
        );
    }

    #[test]
    fn compare_and_set_holds_only_on_a_live_row_of_its_version() {
        let cas = Write::CompareAndSet {
            clustering: "k".into(),
            expected: 7,
            value: vec![],
            ttl: None,
        };
        let now = 1_000;
        assert_eq!(
            judge(&cas, Form::NoRow, Some(&stored(7, NEVER)), now),
            Verdict::Holds
        );
        assert_eq!(
            judge(&cas, Form::NoRow, Some(&stored(8, NEVER)), now),
            Verdict::Refused
        );
        assert_eq!(
            judge(&cas, Form::NoRow, Some(&stored(7, 1_000)), now),
            Verdict::Refused
        );
        assert_eq!(judge(&cas, Form::NoRow, None, now), Verdict::Refused);
    }

    #[test]
    fn expiry_is_exact_and_the_native_ttl_clears_later() {
        assert_eq!(expiry(5_000, None), (NEVER, 0));
        let (at, secs) = expiry(5_000, Some(Duration::from_millis(1_500)));
        assert_eq!(at, 6_500);
        assert_eq!(secs, 2 + GRACE_SECS as i32);
        let (_, secs) = expiry(0, Some(Duration::from_secs(u64::MAX)));
        assert_eq!(i64::from(secs), MAX_TTL_SECS);
        assert_eq!(expires_at_ms(NEVER), None);
        assert_eq!(expires_at_ms(6_500), Some(6_500));
    }

    #[test]
    fn answers_are_matched_by_key_when_not_in_statement_order() {
        let a = Write::Delete {
            clustering: "a".into(),
        };
        let b = Write::Delete {
            clustering: "b".into(),
        };
        let mut row_b = stored(2, NEVER);
        row_b.clustering = Some("b".into());
        let aligned = align(&[&a, &b], vec![Some(row_b.clone())]);
        assert_eq!(aligned, vec![None, Some(row_b)]);
    }

    #[test]
    fn urls_parse_with_defaults_and_refuse_nonsense() {
        let o = ScyllaOptions::from_url("scylla://db1,db2:19042").unwrap();
        assert_eq!(o.nodes, vec!["db1:9042", "db2:19042"]);
        assert_eq!(o.keyspace, "mercato");
        assert_eq!(o.replication_factor, 1);
        let o = ScyllaOptions::from_url(
            "scylla://app:s3cret@10.0.0.1/shop?replication_factor=3&serial=global",
        )
        .unwrap();
        assert_eq!(o.credentials, Some(("app".into(), "s3cret".into())));
        assert_eq!(o.keyspace, "shop");
        assert_eq!(o.replication_factor, 3);
        assert_eq!(o.serial, SerialConsistency::Serial);
        for bad in [
            "postgres://x",
            "scylla://",
            "scylla://h/bad-keyspace",
            "scylla://h/ks?replication_factor=0",
            "scylla://h/ks?colour=blue",
            "scylla://nopassword@h/ks",
        ] {
            assert!(ScyllaOptions::from_url(bad).is_err(), "{bad}");
        }
    }
}
