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
    check_unconditional, BatchOutcome, Page, PartitionWrite, Row, Store, StoreError, StoreResult,
    Write,
};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

/// The server's clock in milliseconds since the epoch: every expiry is judged by it.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

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
    /// Connects to `url` (`postgres://user:password@host:port/database`), applies pending
    /// migrations, and starts the janitor.
    pub async fn connect(url: &str, options: PostgresOptions) -> StoreResult<Self> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("bad PostgreSQL URL: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
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
            .map_err(|e| StoreError::Invalid(format!("cannot build the connection pool: {e}")))?;
        migrate(&pool).await?;
        let janitor = tokio::spawn(janitor(pool.clone()));
        Ok(Self { pool, janitor })
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("PostgreSQL: {e}")))
    }

    async fn try_batch(
        &self,
        table: &str,
        partition: &str,
        writes: &[Write],
    ) -> StoreResult<BatchOutcome> {
        let mut client = self.client().await?;
        // One write needs no transaction: a statement is atomic.
        if let [write] = writes {
            return match apply(&client, table, partition, write).await? {
                Effect::Wrote(row) => Ok(BatchOutcome {
                    applied: true,
                    rows: vec![row],
                }),
                Effect::Refused => refusal(&client, table, partition, writes).await,
            };
        }
        let tx = client.transaction().await.map_err(pg)?;
        // Rows are locked in clustering order, so two batches over the same rows cannot
        // deadlock on each other.
        let mut order: Vec<usize> = (0..writes.len()).collect();
        order.sort_by(|a, b| writes[*a].clustering().cmp(writes[*b].clustering()));
        let mut rows = vec![None; writes.len()];
        for i in order {
            match apply(&tx, table, partition, &writes[i]).await? {
                Effect::Wrote(row) => rows[i] = row,
                Effect::Refused => {
                    tx.rollback().await.map_err(pg)?;
                    return refusal(&client, table, partition, writes).await;
                }
            }
        }
        tx.commit().await.map_err(pg)?;
        Ok(BatchOutcome {
            applied: true,
            rows,
        })
    }
}

/// The answer to a refused batch: the rows as they stand now.
async fn refusal(
    conn: &impl GenericClient,
    table: &str,
    partition: &str,
    writes: &[Write],
) -> StoreResult<BatchOutcome> {
    Ok(BatchOutcome {
        applied: false,
        rows: current_rows(conn, table, partition, writes).await?,
    })
}

enum Effect {
    /// Applied; the row as it now stands (`None` after a delete).
    Wrote(Option<Row>),
    Refused,
}

async fn apply(
    conn: &impl GenericClient,
    table: &str,
    partition: &str,
    write: &Write,
) -> StoreResult<Effect> {
    let ttl_ms =
        |ttl: &Option<Duration>| ttl.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
    let returned = |clustering: &str, value: &[u8], found: Option<tokio_postgres::Row>| {
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
        } => {
            let sql = upsert_sql("");
            let found = conn
                .query_opt(
                    &conn.prepare_cached(&sql).await.map_err(pg)?,
                    &[&table, &partition, clustering, value, &ttl_ms(ttl)],
                )
                .await
                .map_err(pg)?;
            returned(clustering, value, found)
        }
        Write::InsertIfAbsent {
            clustering,
            value,
            ttl,
        } => {
            let sql = upsert_sql(&format!(
                "WHERE mercato_rows.expires_at IS NOT NULL AND mercato_rows.expires_at <= {NOW_MS}"
            ));
            let found = conn
                .query_opt(
                    &conn.prepare_cached(&sql).await.map_err(pg)?,
                    &[&table, &partition, clustering, value, &ttl_ms(ttl)],
                )
                .await
                .map_err(pg)?;
            returned(clustering, value, found)
        }
        Write::CompareAndSet {
            clustering,
            expected,
            value,
            ttl,
        } => {
            let sql = format!(
                "UPDATE mercato_rows SET value = $4, version = nextval('mercato_row_versions'),
                     expires_at = CASE WHEN $5::bigint IS NULL THEN NULL ELSE {NOW_MS} + $5 END
                 WHERE tbl = $1 AND part = $2 AND clust = $3 AND version = $6
                   AND (expires_at IS NULL OR expires_at > {NOW_MS})
                 RETURNING version, expires_at"
            );
            let expected = version_param(*expected);
            let found = conn
                .query_opt(
                    &conn.prepare_cached(&sql).await.map_err(pg)?,
                    &[
                        &table,
                        &partition,
                        clustering,
                        value,
                        &ttl_ms(ttl),
                        &expected,
                    ],
                )
                .await
                .map_err(pg)?;
            returned(clustering, value, found)
        }
        Write::DeleteIfVersion {
            clustering,
            expected,
        } => {
            let sql = format!(
                "DELETE FROM mercato_rows
                 WHERE tbl = $1 AND part = $2 AND clust = $3 AND version = $4
                   AND (expires_at IS NULL OR expires_at > {NOW_MS})"
            );
            let expected = version_param(*expected);
            let deleted = conn
                .execute(
                    &conn.prepare_cached(&sql).await.map_err(pg)?,
                    &[&table, &partition, clustering, &expected],
                )
                .await
                .map_err(pg)?;
            (deleted == 1).then_some(None)
        }
        Write::Delete { clustering } => {
            let stmt = conn
                .prepare_cached(
                    "DELETE FROM mercato_rows WHERE tbl = $1 AND part = $2 AND clust = $3",
                )
                .await
                .map_err(pg)?;
            conn.execute(&stmt, &[&table, &partition, clustering])
                .await
                .map_err(pg)?;
            Some(None)
        }
    };
    Ok(match effect {
        Some(row) => Effect::Wrote(row),
        None => Effect::Refused,
    })
}

/// Versions come from a `bigint` sequence: one beyond its range can match no row.
fn version_param(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(-1)
}

/// An insert that replaces the row standing in its way when `condition` holds (always, when
/// it is empty); it returns nothing when the row stays.
fn upsert_sql(condition: &str) -> String {
    format!(
        "INSERT INTO mercato_rows AS mercato_rows (tbl, part, clust, value, version, expires_at)
         VALUES ($1, $2, $3, $4, nextval('mercato_row_versions'),
                 CASE WHEN $5::bigint IS NULL THEN NULL ELSE {NOW_MS} + $5 END)
         ON CONFLICT (tbl, part, clust) DO UPDATE
             SET value = EXCLUDED.value, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at
             {condition}
         RETURNING version, expires_at"
    )
}

async fn current_rows(
    conn: &impl GenericClient,
    table: &str,
    partition: &str,
    writes: &[Write],
) -> StoreResult<Vec<Option<Row>>> {
    let keys: Vec<&str> = writes.iter().map(Write::clustering).collect();
    let sql = format!(
        "SELECT clust, value, version, expires_at FROM mercato_rows
         WHERE tbl = $1 AND part = $2 AND clust = ANY($3)
           AND (expires_at IS NULL OR expires_at > {NOW_MS})"
    );
    let found: Vec<Row> = conn
        .query(
            &conn.prepare_cached(&sql).await.map_err(pg)?,
            &[&table, &partition, &keys],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(to_row)
        .collect();
    Ok(keys
        .iter()
        .map(|k| found.iter().find(|r| r.clustering == *k).cloned())
        .collect())
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
        let sql = format!(
            "SELECT clust, value, version, expires_at FROM mercato_rows
             WHERE tbl = $1 AND part = $2 AND clust = $3
               AND (expires_at IS NULL OR expires_at > {NOW_MS})"
        );
        let stmt = client.prepare_cached(&sql).await.map_err(pg)?;
        let found = client
            .query_opt(&stmt, &[&table, &partition, &clustering])
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
        // The empty string is a valid clustering key: "after nothing" must include it.
        let (op, from) = match after {
            Some(a) => (">", a),
            None => (">=", ""),
        };
        let sql = format!(
            "SELECT clust, value, version, expires_at FROM mercato_rows
             WHERE tbl = $1 AND part = $2 AND clust {op} $3
               AND (expires_at IS NULL OR expires_at > {NOW_MS})
             ORDER BY clust LIMIT $4"
        );
        let stmt = client.prepare_cached(&sql).await.map_err(pg)?;
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let mut rows: Vec<Row> = client
            .query(&stmt, &[&table, &partition, &from, &fetch])
            .await
            .map_err(pg)?
            .iter()
            .map(to_row)
            .collect();
        let mut page = Page::default();
        if rows.len() > limit {
            rows.truncate(limit);
            page.next = rows.last().map(|r| r.clustering.clone());
        }
        page.rows = rows;
        Ok(page)
    }

    async fn batch(
        &self,
        table: &str,
        partition: &str,
        writes: Vec<Write>,
    ) -> StoreResult<BatchOutcome> {
        if writes.is_empty() {
            return Ok(BatchOutcome {
                applied: true,
                rows: Vec::new(),
            });
        }
        let mut attempt = 0;
        loop {
            match self.try_batch(table, partition, &writes).await {
                Err(StoreError::Io(msg)) if attempt < RETRIES && msg.starts_with(RETRYABLE) => {
                    attempt += 1;
                    tracing::debug!(
                        table,
                        partition,
                        attempt,
                        "batch rolled back ({msg}); retrying"
                    );
                    tokio::time::sleep(Duration::from_millis(2 << attempt)).await;
                }
                other => return other,
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
                        put_ttls
                            .push(ttl.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX)));
                    }
                    other => {
                        del_parts.push(w.partition.as_str());
                        del_keys.push(other.clustering());
                    }
                }
            }
            if !put_keys.is_empty() {
                let sql = format!(
                    "INSERT INTO mercato_rows (tbl, part, clust, value, version, expires_at)
                     SELECT $1, p, c, v, nextval('mercato_row_versions'),
                            CASE WHEN t IS NULL THEN NULL ELSE {NOW_MS} + t END
                     FROM unnest($2::text[], $3::text[], $4::bytea[], $5::bigint[]) AS u(p, c, v, t)
                     ON CONFLICT (tbl, part, clust) DO UPDATE
                         SET value = EXCLUDED.value, version = EXCLUDED.version,
                             expires_at = EXCLUDED.expires_at"
                );
                client
                    .execute(
                        &sql,
                        &[&table, &put_parts, &put_keys, &put_values, &put_ttls],
                    )
                    .await
                    .map_err(pg)?;
            }
            if !del_keys.is_empty() {
                client
                    .execute(
                        "DELETE FROM mercato_rows WHERE tbl = $1
                         AND (part, clust) IN (SELECT * FROM unnest($2::text[], $3::text[]))",
                        &[&table, &del_parts, &del_keys],
                    )
                    .await
                    .map_err(pg)?;
            }
        }
        Ok(())
    }
}

/// The prefix of the message `pg` gives errors that roll a transaction back harmlessly.
const RETRYABLE: &str = "retryable:";

fn pg(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(code)
            if *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE =>
        {
            StoreError::Io(format!("{RETRYABLE} {e}"))
        }
        Some(code)
            if code.code().starts_with("08")
                || code.code().starts_with("57P")
                || code.code().starts_with("53") =>
        {
            StoreError::Unavailable(format!("PostgreSQL: {e}"))
        }
        Some(_) => StoreError::Io(format!("PostgreSQL: {e}")),
        // No SQLSTATE: the connection itself failed.
        None => StoreError::Unavailable(format!("PostgreSQL: {e}")),
    }
}

async fn migrate(pool: &Pool) -> StoreResult<()> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| StoreError::Unavailable(format!("PostgreSQL: {e}")))?;
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
        return Err(StoreError::Invalid(format!(
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
    let sql = format!(
        "DELETE FROM mercato_rows WHERE ctid IN (
             SELECT ctid FROM mercato_rows WHERE expires_at < {NOW_MS} - 60000 LIMIT $1)"
    );
    loop {
        tokio::time::sleep(JANITOR_EVERY).await;
        let Ok(client) = pool.get().await else {
            continue;
        };
        match client.execute(&sql, &[&JANITOR_BATCH]).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "removed expired rows"),
            Err(e) => tracing::debug!(error = %e, "removing expired rows failed; will retry"),
        }
    }
}
