//! The Store port on PostgreSQL.
//!
//! Every Mercato table lives in one PostgreSQL table keyed by (table, partition, clustering), so
//! a new Mercato table needs no DDL. A row's version comes from one sequence, which is what
//! keeps versions unique for a key across its whole life (a row deleted and written again gets
//! a version no earlier row had). Expiry is a column compared with the server's clock, so every
//! process agrees on when a hold lapsed, and an expired row reads as absent at once; a janitor
//! removes expired rows later, which changes nothing anyone can observe.
//!
//! A batch runs in one transaction. Each write is one statement whose `WHERE` is its condition
//! (`ON CONFLICT … DO UPDATE … WHERE expired` for insert-if-absent, `version = $n` for
//! compare-and-set), so PostgreSQL's row locks decide races: a statement that waited on a
//! concurrent writer re-checks its condition against the committed row. If any condition does
//! not hold the transaction rolls back and the answer carries the rows as they stand, as a
//! ScyllaDB lightweight transaction does.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use mercato_core::store::{
    check_batch, check_unconditional, BatchOutcome, Page, PartitionWrite, Row, Store, StoreError,
    StoreResult, Write,
};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

// The statements are constants, put together at compile time: nothing on the request path
// formats SQL, and each is prepared once per connection.

/// The server's clock in milliseconds since the epoch: every expiry is judged by it.
macro_rules! now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}

/// The row has not expired.
macro_rules! live {
    () => {
        concat!("(expires_at IS NULL OR expires_at > ", now_ms!(), ")")
    };
}

/// The expiry of a row written now with a TTL of `$5` milliseconds (none when NULL).
macro_rules! expiry {
    () => {
        concat!(
            "CASE WHEN $5::bigint IS NULL THEN NULL ELSE ",
            now_ms!(),
            " + $5 END"
        )
    };
}

/// The columns a read answers with, in the order `to_row` takes them.
macro_rules! select {
    () => {
        "SELECT clust, value, version, expires_at FROM mercato_rows"
    };
}

/// An insert that replaces the row in its way when the condition after it holds (always, when
/// there is none); it returns nothing when the row stays.
macro_rules! upsert {
    ($condition:expr) => {
        concat!(
            "INSERT INTO mercato_rows AS mercato_rows (tbl, part, clust, value, version, expires_at)
             VALUES ($1, $2, $3, $4, nextval('mercato_row_versions'), ",
            expiry!(),
            ")
             ON CONFLICT (tbl, part, clust) DO UPDATE
                 SET value = EXCLUDED.value, version = EXCLUDED.version,
                     expires_at = EXCLUDED.expires_at ",
            $condition,
            " RETURNING version, expires_at"
        )
    };
}

const PUT: &str = upsert!("");
const INSERT_IF_ABSENT: &str = upsert!(concat!(
    "WHERE mercato_rows.expires_at IS NOT NULL AND mercato_rows.expires_at <= ",
    now_ms!()
));
const COMPARE_AND_SET: &str = concat!(
    "UPDATE mercato_rows SET value = $4, version = nextval('mercato_row_versions'), expires_at = ",
    expiry!(),
    " WHERE tbl = $1 AND part = $2 AND clust = $3 AND version = $6 AND ",
    live!(),
    " RETURNING version, expires_at"
);
const DELETE_IF_VERSION: &str = concat!(
    "DELETE FROM mercato_rows WHERE tbl = $1 AND part = $2 AND clust = $3 AND version = $4 AND ",
    live!()
);
const DELETE: &str = "DELETE FROM mercato_rows WHERE tbl = $1 AND part = $2 AND clust = $3";
const GET: &str = concat!(
    select!(),
    " WHERE tbl = $1 AND part = $2 AND clust = $3 AND ",
    live!()
);
const GET_MANY: &str = concat!(
    select!(),
    " WHERE tbl = $1 AND part = $2 AND clust = ANY($3) AND ",
    live!()
);
// The empty string is a valid clustering key: "after nothing" must include it, hence two.
const SCAN_FROM: &str = concat!(
    select!(),
    " WHERE tbl = $1 AND part = $2 AND clust >= $3 AND ",
    live!(),
    " ORDER BY clust LIMIT $4"
);
const SCAN_AFTER: &str = concat!(
    select!(),
    " WHERE tbl = $1 AND part = $2 AND clust > $3 AND ",
    live!(),
    " ORDER BY clust LIMIT $4"
);
const PUT_MANY: &str = concat!(
    "INSERT INTO mercato_rows (tbl, part, clust, value, version, expires_at)
     SELECT $1, p, c, v, nextval('mercato_row_versions'),
            CASE WHEN t IS NULL THEN NULL ELSE ",
    now_ms!(),
    " + t END
     FROM unnest($2::text[], $3::text[], $4::bytea[], $5::bigint[]) AS u(p, c, v, t)
     ON CONFLICT (tbl, part, clust) DO UPDATE
         SET value = EXCLUDED.value, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at"
);
const DELETE_MANY: &str = "DELETE FROM mercato_rows WHERE tbl = $1
     AND (part, clust) IN (SELECT * FROM unnest($2::text[], $3::text[]))";
/// Rows a minute past their expiry, a few thousand at a time.
const PURGE: &str = concat!(
    "DELETE FROM mercato_rows WHERE ctid IN (SELECT ctid FROM mercato_rows WHERE expires_at < ",
    now_ms!(),
    " - 60000 LIMIT $1)"
);

/// Each entry moves the schema one version on; they run once, in order, under an advisory lock
/// so processes starting together do not race.
const MIGRATIONS: &[&str] = &[r#"CREATE TABLE mercato_rows (
        tbl text COLLATE "C" NOT NULL,
        part text COLLATE "C" NOT NULL,
        clust text COLLATE "C" NOT NULL,
        value bytea NOT NULL,
        version bigint NOT NULL,
        expires_at bigint,
        PRIMARY KEY (tbl, part, clust)
    );
    CREATE SEQUENCE mercato_row_versions;
    CREATE INDEX mercato_rows_expiry ON mercato_rows (expires_at) WHERE expires_at IS NOT NULL;"#];

/// An arbitrary constant: the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x006d_6572_6361_746f;

/// How often expired rows are removed, and how many at a time.
const JANITOR_EVERY: Duration = Duration::from_secs(30);
const JANITOR_BATCH: i64 = 5_000;

/// Deadlocks and serialization failures roll the whole batch back, so it is retried.
const RETRIES: usize = 5;

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub pool_size: usize,
    /// How long a request waits for a connection before failing with `Unavailable`.
    pub wait: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            wait: Duration::from_secs(2),
        }
    }
}

pub struct PostgresStore {
    pool: Pool,
    janitor: JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.janitor.abort();
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, with `sslmode` and
    /// `sslrootcert` for TLS: see [`crate::postgres_tls`]), applies pending migrations, and
    /// starts the janitor.
    pub async fn connect(url: &str, options: PostgresOptions) -> StoreResult<Self> {
        let connection = crate::postgres_tls::connection(url)?;
        let manager = Manager::from_config(
            connection.config,
            connection.tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.wait))
            .create_timeout(Some(options.wait))
            .recycle_timeout(Some(options.wait))
            .build()
            .map_err(|e| StoreError::invalid(format!("cannot build the connection pool: {e}")))?;
        migrate(&pool).await?;
        let janitor = tokio::spawn(janitor(pool.clone()));
        Ok(Self { pool, janitor })
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::unavailable(ENGINE, "taking a pooled connection", e))
    }

    async fn try_batch(
        &self,
        table: &str,
        partition: &str,
        writes: &[Write],
    ) -> Result<BatchOutcome, BatchFailure> {
        let mut client = self.client().await?;
        // One write needs no transaction: a statement is atomic.
        if let [write] = writes {
            return Ok(match apply(&client, table, partition, write).await? {
                Effect::Wrote(row) => BatchOutcome {
                    applied: true,
                    rows: vec![row],
                },
                Effect::Refused => refusal(&client, table, partition, writes).await?,
            });
        }
        let tx = client.transaction().await?;
        // Rows are locked in clustering order, so two batches over the same rows cannot
        // deadlock on each other.
        let mut order: Vec<usize> = (0..writes.len()).collect();
        order.sort_by(|a, b| writes[*a].clustering().cmp(writes[*b].clustering()));
        let mut rows = vec![None; writes.len()];
        for i in order {
            match apply(&tx, table, partition, &writes[i]).await? {
                Effect::Wrote(row) => rows[i] = row,
                Effect::Refused => {
                    tx.rollback().await?;
                    return Ok(refusal(&client, table, partition, writes).await?);
                }
            }
        }
        tx.commit().await?;
        Ok(BatchOutcome {
            applied: true,
            rows,
        })
    }
}

/// What can stop a batch: PostgreSQL's own error is kept whole, so that a rollback worth
/// retrying (a deadlock, a serialization failure) can be told from the rest.
enum BatchFailure {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for BatchFailure {
    fn from(e: tokio_postgres::Error) -> Self {
        BatchFailure::Pg(e)
    }
}

impl From<StoreError> for BatchFailure {
    fn from(e: StoreError) -> Self {
        BatchFailure::Store(e)
    }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// The answer to a refused batch: the rows as they stand now.
async fn refusal(
    conn: &impl GenericClient,
    table: &str,
    partition: &str,
    writes: &[Write],
) -> Result<BatchOutcome, tokio_postgres::Error> {
    let keys: Vec<&str> = writes.iter().map(Write::clustering).collect();
    let found: Vec<Row> = query(conn, GET_MANY, &[&table, &partition, &keys])
        .await?
        .iter()
        .map(to_row)
        .collect();
    let rows = keys
        .iter()
        .map(|k| found.iter().find(|r| r.clustering == *k).cloned())
        .collect();
    Ok(BatchOutcome {
        applied: false,
        rows,
    })
}

enum Effect {
    /// Applied; the row as it now stands (`None` after a delete).
    Wrote(Option<Row>),
    Refused,
}

async fn query(
    conn: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    conn.query(&conn.prepare_cached(sql).await?, params).await
}

async fn query_opt(
    conn: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
    conn.query_opt(&conn.prepare_cached(sql).await?, params)
        .await
}

async fn execute(
    conn: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    conn.execute(&conn.prepare_cached(sql).await?, params).await
}

async fn apply(
    conn: &impl GenericClient,
    table: &str,
    partition: &str,
    write: &Write,
) -> Result<Effect, tokio_postgres::Error> {
    // A statement that returns the new version and expiry has applied; one that returns
    // nothing met a condition that did not hold.
    let written = |clustering: &str, value: &[u8], found: Option<tokio_postgres::Row>| {
        found.map(|r| {
            Some(Row {
                clustering: clustering.to_owned(),
                value: value.to_vec(),
                version: r.get::<_, i64>(0) as u64,
                expires_at_ms: r.get::<_, Option<i64>>(1).map(|e| e as u64),
            })
        })
    };
    let effect = match write {
        Write::Put {
            clustering,
            value,
            ttl,
        }
        | Write::InsertIfAbsent {
            clustering,
            value,
            ttl,
        } => {
            let sql = if write.is_conditional() {
                INSERT_IF_ABSENT
            } else {
                PUT
            };
            let params: [&(dyn ToSql + Sync); 5] =
                [&table, &partition, clustering, value, &ttl_ms(*ttl)];
            written(clustering, value, query_opt(conn, sql, &params).await?)
        }
        Write::CompareAndSet {
            clustering,
            expected,
            value,
            ttl,
        } => {
            let params: [&(dyn ToSql + Sync); 6] = [
                &table,
                &partition,
                clustering,
                value,
                &ttl_ms(*ttl),
                &version_param(*expected),
            ];
            written(
                clustering,
                value,
                query_opt(conn, COMPARE_AND_SET, &params).await?,
            )
        }
        Write::DeleteIfVersion {
            clustering,
            expected,
        } => {
            let params: [&(dyn ToSql + Sync); 4] =
                [&table, &partition, clustering, &version_param(*expected)];
            (execute(conn, DELETE_IF_VERSION, &params).await? == 1).then_some(None)
        }
        Write::Delete { clustering } => {
            execute(conn, DELETE, &[&table, &partition, clustering]).await?;
            Some(None)
        }
    };
    Ok(match effect {
        Some(row) => Effect::Wrote(row),
        None => Effect::Refused,
    })
}

/// A TTL as the milliseconds the statements add to the server's clock.
fn ttl_ms(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX))
}

/// Versions come from a `bigint` sequence: one beyond its range can match no row.
fn version_param(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(-1)
}

fn to_row(r: &tokio_postgres::Row) -> Row {
    Row {
        clustering: r.get(0),
        value: r.get(1),
        version: r.get::<_, i64>(2) as u64,
        expires_at_ms: r.get::<_, Option<i64>>(3).map(|e| e as u64),
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn get(
        &self,
        table: &str,
        partition: &str,
        clustering: &str,
    ) -> StoreResult<Option<Row>> {
        let client = self.client().await?;
        let found = query_opt(&client, GET, &[&table, &partition, &clustering])
            .await
            .map_err(pg)?;
        Ok(found.as_ref().map(to_row))
    }

    async fn scan(
        &self,
        table: &str,
        partition: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page> {
        let client = self.client().await?;
        let limit = limit.max(1);
        let (sql, from) = match after {
            Some(a) => (SCAN_AFTER, a),
            None => (SCAN_FROM, ""),
        };
        // One row more than asked tells whether there is a next page.
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let rows: Vec<Row> = query(&client, sql, &[&table, &partition, &from, &fetch])
            .await
            .map_err(pg)?
            .iter()
            .map(to_row)
            .collect();
        Ok(Page::from_overfetch(rows, limit))
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
        let mut attempt = 0;
        loop {
            match self.try_batch(table, partition, &writes).await {
                Ok(outcome) => return Ok(outcome),
                Err(BatchFailure::Pg(e)) if attempt < RETRIES && retryable(&e) => {
                    attempt += 1;
                    tracing::debug!(table, partition, attempt, error = %e, "batch rolled back; retrying");
                    tokio::time::sleep(Duration::from_millis(2 << attempt)).await;
                }
                Err(BatchFailure::Pg(e)) => return Err(pg(e)),
                Err(BatchFailure::Store(e)) => return Err(e),
            }
        }
    }

    async fn write_many(&self, table: &str, writes: Vec<PartitionWrite>) -> StoreResult<()> {
        check_unconditional(&writes)?;
        // One round trip per few hundred rows: the rows travel as arrays and are unnested.
        for chunk in writes.chunks(500) {
            let client = self.client().await?;
            let mut put_parts = Vec::new();
            let mut put_keys = Vec::new();
            let mut put_values = Vec::new();
            let mut put_ttls: Vec<Option<i64>> = Vec::new();
            let mut del_parts = Vec::new();
            let mut del_keys = Vec::new();
            for w in chunk {
                match &w.write {
                    Write::Put {
                        clustering,
                        value,
                        ttl,
                    } => {
                        put_parts.push(w.partition.as_str());
                        put_keys.push(clustering.as_str());
                        put_values.push(value.as_slice());
                        put_ttls.push(ttl_ms(*ttl));
                    }
                    other => {
                        del_parts.push(w.partition.as_str());
                        del_keys.push(other.clustering());
                    }
                }
            }
            if !put_keys.is_empty() {
                let params: [&(dyn ToSql + Sync); 5] =
                    [&table, &put_parts, &put_keys, &put_values, &put_ttls];
                execute(&client, PUT_MANY, &params).await.map_err(pg)?;
            }
            if !del_keys.is_empty() {
                execute(&client, DELETE_MANY, &[&table, &del_parts, &del_keys])
                    .await
                    .map_err(pg)?;
            }
        }
        Ok(())
    }
}

/// The name errors give this engine.
const ENGINE: &str = "PostgreSQL";

fn pg(e: tokio_postgres::Error) -> StoreError {
    match e.code().map(SqlState::code) {
        Some(code)
            if code.starts_with("08") || code.starts_with("57P") || code.starts_with("53") =>
        {
            StoreError::unavailable(ENGINE, "running a statement", e)
        }
        Some(_) => StoreError::io(ENGINE, "running a statement", e),
        // No SQLSTATE: the connection itself failed.
        None => StoreError::unavailable(ENGINE, "running a statement", e),
    }
}

async fn migrate(pool: &Pool) -> StoreResult<()> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| StoreError::unavailable(ENGINE, "taking a connection to migrate", e))?;
    let tx = client.transaction().await.map_err(pg)?;
    // "already exists, skipping" notices are expected here, not news.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS mercato_schema (version integer NOT NULL);
         INSERT INTO mercato_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM mercato_schema);",
    )
    .await
    .map_err(pg)?;
    let at: i32 = tx
        .query_one("SELECT version FROM mercato_schema", &[])
        .await
        .map_err(pg)?
        .get(0);
    let at = usize::try_from(at).unwrap_or(0);
    if at > MIGRATIONS.len() {
        return Err(StoreError::invalid(format!(
            "the database's schema is version {at}, newer than this release knows ({}); \
             run a newer Mercato",
            MIGRATIONS.len()
        )));
    }
    for (n, step) in MIGRATIONS.iter().enumerate().skip(at) {
        tracing::info!(version = n + 1, "applying PostgreSQL migration");
        tx.batch_execute(step).await.map_err(pg)?;
    }
    let now = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    tx.execute("UPDATE mercato_schema SET version = $1", &[&now])
        .await
        .map_err(pg)?;
    tx.commit().await.map_err(pg)
}

async fn janitor(pool: Pool) {
    loop {
        tokio::time::sleep(JANITOR_EVERY).await;
        let Ok(client) = pool.get().await else {
            continue;
        };
        match client.execute(PURGE, &[&JANITOR_BATCH]).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "removed expired rows"),
            Err(e) => tracing::debug!(error = %e, "removing expired rows failed; will retry"),
        }
    }
}
