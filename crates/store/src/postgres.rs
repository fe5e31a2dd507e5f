use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::writer::{CommitGroup, Pending, WriteQueue, application_order};
use crate::{Collection, Expect, Record, RecordStore, StoreError, Write, WriteOp};

/// Schema migrations, applied in order; `ferrocore_schema` counts those applied.
/// Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // Keys compare byte by byte (collation "C"), as in SQLite: paging tokens and
    // key prefixes order the same on both backends.
    "CREATE TABLE records (
        collection TEXT NOT NULL,
        key        TEXT COLLATE \"C\" NOT NULL,
        revision   BIGINT NOT NULL,
        body       BYTEA NOT NULL,
        PRIMARY KEY (collection, key)
    );
    CREATE SEQUENCE revisions",
];

/// Held while migrating, so nodes starting together apply each migration once.
const MIGRATION_LOCK: i64 = 0x6665_7272_6f63_6f72; // "ferrocor"

/// Writer tasks, each with one transaction (and connection) in flight.
const WRITERS: usize = 4;

/// A group that meets a deadlock or a serialization failure is retried whole this
/// many times before its batches fail.
const TRANSIENT_RETRIES: u32 = 5;

/// PostgreSQL: the store several ferrocore nodes can share.
///
/// A batch's expectations are conditions on its own statements (`INSERT ... ON
/// CONFLICT DO NOTHING` for `Absent`, `WHERE revision = $n` for `Revision`), so
/// they hold against every other writer of the database, not only this process's.
/// Writes are group-committed as in [`crate::SqliteStore`], by several writer
/// tasks at once; revisions come from one sequence, so they are never reused.
pub struct PostgresStore {
    pool: PgPool,
    writer: WriteQueue,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, libpq's
    /// parameters such as `sslmode` included) and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("ferrocore");
        let pool = PgPoolOptions::new()
            // Holds and prefix checks rely on each statement seeing what committed before
            // it started: READ COMMITTED, whatever the server's default.
            .after_connect(|connection, _| {
                Box::pin(async move {
                    sqlx::query("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .execute(&mut *connection)
                        .await
                        .map(|_| ())
                })
            })
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        migrate(&pool).await?;
        let writer = WriteQueue::start(Arc::new(Writer { pool: pool.clone() }), WRITERS);
        Ok(Self { pool, writer })
    }
}

async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS ferrocore_schema (version INTEGER NOT NULL)").execute(&mut *tx).await?;
    let applied: Option<i32> =
        sqlx::query_scalar("SELECT max(version) FROM ferrocore_schema").fetch_one(&mut *tx).await?;
    let applied =
        usize::try_from(applied.unwrap_or(0)).map_err(|_| StoreError::Backend("negative schema version".into()))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the database has schema version {applied}, newer than this ferrocore ({}); upgrade ferrocore",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        sqlx::query("INSERT INTO ferrocore_schema (version) VALUES ($1)").bind(version).execute(&mut *tx).await?;
        tracing::info!(version, "applied store migration");
    }
    tx.commit().await?;
    Ok(())
}

fn record_from_row(row: &PgRow) -> Result<Record, StoreError> {
    Ok(Record { key: row.try_get("key")?, revision: row.try_get("revision")?, body: row.try_get("body")? })
}

#[async_trait::async_trait]
impl RecordStore for PostgresStore {
    async fn get(&self, collection: Collection, key: &str) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query("SELECT key, revision, body FROM records WHERE collection = $1 AND key = $2")
            .bind(collection.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn list(&self, collection: Collection, after: Option<&str>, limit: usize) -> Result<Vec<Record>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Without a token, `key >= ''` takes every key (one statement text per case).
        let (condition, after) = match after {
            Some(after) => ("key > $2", after),
            None => ("key >= $2", ""),
        };
        let rows = sqlx::query(&format!(
            "SELECT key, revision, body FROM records WHERE collection = $1 AND {condition} ORDER BY key LIMIT $3"
        ))
        .bind(collection.as_str())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<i64, StoreError> {
        self.writer.commit(writes).await
    }
}

struct Writer {
    pool: PgPool,
}

#[async_trait::async_trait]
impl CommitGroup for Writer {
    async fn commit_group(&self, group: &[Pending]) -> Vec<Result<i64, StoreError>> {
        match self.commit_with_retries(group).await {
            Ok(outcomes) => outcomes,
            // Still deadlocking with other writers: each batch alone, so one batch's locks
            // never hold up the others of its group; a batch that still cannot get its
            // locks is a conflict, which callers decide again.
            Err(err) if is_transient(&err) && group.len() > 1 => {
                let mut outcomes = Vec::with_capacity(group.len());
                for batch in group {
                    outcomes.push(match self.commit_with_retries(std::slice::from_ref(batch)).await {
                        Ok(mut alone) => alone.pop().unwrap_or_else(|| Err(StoreError::Backend("no outcome".into()))),
                        Err(err) => Err(failure(&err)),
                    });
                }
                outcomes
            }
            Err(err) => group.iter().map(|_| Err(failure(&err))).collect(),
        }
    }
}

impl Writer {
    async fn commit_with_retries(&self, group: &[Pending]) -> Result<Vec<Result<i64, StoreError>>, sqlx::Error> {
        let mut attempt = 0;
        loop {
            match try_commit_group(&self.pool, group).await {
                // Row locks taken in different orders by two groups: PostgreSQL aborts
                // one, and nothing of it was written.
                Err(err) if is_transient(&err) && attempt < TRANSIENT_RETRIES => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %err, "store group retried");
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5)).await;
                }
                outcome => return outcome,
            }
        }
    }
}

/// What a batch is answered when its group could not commit.
fn failure(err: &sqlx::Error) -> StoreError {
    match err {
        err if is_transient(err) => StoreError::Conflict { collection: "(deadlock)", key: err.to_string() },
        err => StoreError::Backend(err.to_string()),
    }
}

fn is_transient(err: &sqlx::Error) -> bool {
    // 40001 serialization_failure, 40P01 deadlock_detected.
    matches!(err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}

async fn try_commit_group(pool: &PgPool, group: &[Pending]) -> Result<Vec<Result<i64, StoreError>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let count = i64::try_from(group.len()).unwrap_or(i64::MAX);
    let revisions: Vec<i64> = sqlx::query_scalar("SELECT nextval('revisions') FROM generate_series(1, $1)")
        .bind(count)
        .fetch_all(&mut *tx)
        .await?;
    let mut outcomes = Vec::with_capacity(group.len());
    for (batch, revision) in group.iter().zip(revisions) {
        let (writes, guarded) = application_order(&batch.writes);
        if guarded {
            sqlx::query("SAVEPOINT batch").execute(&mut *tx).await?;
        }
        let outcome = apply(&mut tx, &writes, revision).await?;
        if guarded {
            if outcome.is_err() {
                sqlx::query("ROLLBACK TO SAVEPOINT batch").execute(&mut *tx).await?;
            }
            sqlx::query("RELEASE SAVEPOINT batch").execute(&mut *tx).await?;
        }
        outcomes.push(outcome);
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Applies a batch with one revision (returned). The outer error is the database's (the
/// group fails); the inner one an expectation that did not hold (the batch fails).
async fn apply(
    tx: &mut Transaction<'static, Postgres>,
    writes: &[&Write],
    revision: i64,
) -> Result<Result<i64, StoreError>, sqlx::Error> {
    for write in writes {
        let collection = write.collection.as_str();
        let key = write.key.as_str();
        let holds =
            match (&write.op, write.expect) {
                (WriteOp::Put(body), Expect::Anything) => {
                    sqlx::query(
                        "INSERT INTO records (collection, key, revision, body) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (collection, key) DO UPDATE SET revision = excluded.revision, body = excluded.body",
                    )
                    .bind(collection)
                    .bind(key)
                    .bind(revision)
                    .bind(body)
                    .execute(&mut **tx)
                    .await?;
                    true
                }
                (WriteOp::Put(body), Expect::Absent) => {
                    sqlx::query(
                        "INSERT INTO records (collection, key, revision, body) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (collection, key) DO NOTHING",
                    )
                    .bind(collection)
                    .bind(key)
                    .bind(revision)
                    .bind(body)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
                        == 1
                }
                (WriteOp::Put(body), Expect::Revision(expected)) => sqlx::query(
                    "UPDATE records SET revision = $3, body = $4 WHERE collection = $1 AND key = $2 AND revision = $5",
                )
                .bind(collection)
                .bind(key)
                .bind(revision)
                .bind(body)
                .bind(expected)
                .execute(&mut **tx)
                .await?
                .rows_affected()
                    == 1,
                (WriteOp::Check, Expect::Anything) => {
                    sqlx::query("UPDATE records SET revision = $3 WHERE collection = $1 AND key = $2")
                        .bind(collection)
                        .bind(key)
                        .bind(revision)
                        .execute(&mut **tx)
                        .await?;
                    true
                }
                (WriteOp::Check, Expect::Revision(expected)) => {
                    sqlx::query("UPDATE records SET revision = $3 WHERE collection = $1 AND key = $2 AND revision = $4")
                        .bind(collection)
                        .bind(key)
                        .bind(revision)
                        .bind(expected)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                        == 1
                }
                (WriteOp::Delete, Expect::Anything) => {
                    sqlx::query("DELETE FROM records WHERE collection = $1 AND key = $2")
                        .bind(collection)
                        .bind(key)
                        .execute(&mut **tx)
                        .await?;
                    true
                }
                (WriteOp::Delete, Expect::Revision(expected)) => {
                    sqlx::query("DELETE FROM records WHERE collection = $1 AND key = $2 AND revision = $3")
                        .bind(collection)
                        .bind(key)
                        .bind(expected)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                        == 1
                }
                // A shared row lock: other holders proceed, writers of the row wait for the commit.
                (WriteOp::Hold, Expect::Revision(expected)) => sqlx::query_scalar::<_, i32>(
                    "SELECT 1 FROM records WHERE collection = $1 AND key = $2 AND revision = $3 FOR SHARE",
                )
                .bind(collection)
                .bind(key)
                .bind(expected)
                .fetch_optional(&mut **tx)
                .await?
                .is_some(),
                (WriteOp::Hold, Expect::Anything) => true,
                // Each statement sees what committed before it started: a batch that held a
                // record this one removed earlier has committed by now, and its rows are seen.
                (WriteOp::NoneWithPrefix, _) => !sqlx::query_scalar::<_, String>(
                    "SELECT key FROM records WHERE collection = $1 AND key >= $2 ORDER BY key LIMIT 1",
                )
                .bind(collection)
                .bind(key)
                .fetch_optional(&mut **tx)
                .await?
                .is_some_and(|next| next.starts_with(key)),
                // Deleting, checking or holding a record that must be absent changes nothing;
                // the expectation is read (an absent row cannot be locked).
                (WriteOp::Check | WriteOp::Delete | WriteOp::Hold, Expect::Absent) => {
                    sqlx::query_scalar::<_, i32>("SELECT 1 FROM records WHERE collection = $1 AND key = $2")
                        .bind(collection)
                        .bind(key)
                        .fetch_optional(&mut **tx)
                        .await?
                        .is_none()
                }
            };
        if !holds {
            return Ok(Err(StoreError::Conflict { collection, key: write.key.clone() }));
        }
    }
    Ok(Ok(revision))
}
