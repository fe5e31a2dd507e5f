use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::sync::Arc;

use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use crate::writer::{CommitGroup, Pending, WriteQueue, application_order};
use crate::{Collection, Expect, Record, RecordStore, StoreError, Write, WriteOp};

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
/// Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE records (
        collection TEXT NOT NULL,
        key        TEXT NOT NULL,
        revision   INTEGER NOT NULL,
        body       BLOB NOT NULL,
        PRIMARY KEY (collection, key)
    ) WITHOUT ROWID",
    // One counter for the whole store: a record recreated after a delete never
    // gets a revision an old expectation could mistake for its own.
    "CREATE TABLE revision_counter (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
     INSERT INTO revision_counter (id, value) SELECT 1, COALESCE(MAX(revision), 0) FROM records",
];

/// The embedded store: one SQLite database in WAL mode with `synchronous=FULL`,
/// so a committed batch survives a crash or power loss.
///
/// Writes go through one writer task that commits every batch waiting at that
/// moment in a single transaction (group commit): each batch in its own savepoint,
/// so a batch whose expectations fail is rolled back alone, and one fsync makes
/// them all durable before any caller is answered.
pub struct SqliteStore {
    pool: SqlitePool,
    writer: WriteQueue,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        migrate(&pool).await?;
        // SQLite has one writer at a time: a second writer task would only wait for the lock.
        let writer = WriteQueue::start(Arc::new(Writer { pool: pool.clone() }), 1);
        Ok(Self { pool, writer })
    }
}

/// Applies the migrations not yet applied (before the writer task starts).
async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    let applied: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(pool).await?;
    let applied = usize::try_from(applied).map_err(|_| StoreError::Backend("negative user_version".into()))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the database has schema version {applied}, newer than this ferrocore ({}); upgrade ferrocore",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query(&format!("PRAGMA user_version = {}", index + 1)).execute(&mut *tx).await?;
        tx.commit().await?;
        tracing::info!(version = index + 1, "applied store migration");
    }
    Ok(())
}

async fn current_revision(
    tx: &mut Transaction<'static, Sqlite>,
    collection: Collection,
    key: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar("SELECT revision FROM records WHERE collection = ? AND key = ?")
        .bind(collection.as_str())
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?)
}

fn record_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Record, StoreError> {
    Ok(Record { key: row.try_get("key")?, revision: row.try_get("revision")?, body: row.try_get("body")? })
}

#[async_trait::async_trait]
impl RecordStore for SqliteStore {
    async fn get(&self, collection: Collection, key: &str) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query("SELECT key, revision, body FROM records WHERE collection = ? AND key = ?")
            .bind(collection.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn list(&self, collection: Collection, after: Option<&str>, limit: usize) -> Result<Vec<Record>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match after {
            Some(after) => {
                sqlx::query(
                    "SELECT key, revision, body FROM records WHERE collection = ? AND key > ? ORDER BY key LIMIT ?",
                )
                .bind(collection.as_str())
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query("SELECT key, revision, body FROM records WHERE collection = ? ORDER BY key LIMIT ?")
                    .bind(collection.as_str())
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(record_from_row).collect()
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<i64, StoreError> {
        self.writer.commit(writes).await
    }
}

struct Writer {
    pool: SqlitePool,
}

#[async_trait::async_trait]
impl CommitGroup for Writer {
    /// One transaction for the group. If the commit itself fails, every batch fails with it.
    async fn commit_group(&self, group: &[Pending]) -> Vec<Result<i64, StoreError>> {
        match try_commit_group(&self.pool, group).await {
            Ok(outcomes) => outcomes,
            Err(err) => group.iter().map(|_| Err(StoreError::Backend(err.to_string()))).collect(),
        }
    }
}

async fn try_commit_group(pool: &SqlitePool, group: &[Pending]) -> Result<Vec<Result<i64, StoreError>>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // One revision per batch, taken for the whole group at once; a failed batch's is
    // skipped, never reused.
    let count = i64::try_from(group.len()).unwrap_or(i64::MAX);
    let last: i64 = sqlx::query_scalar("UPDATE revision_counter SET value = value + ? WHERE id = 1 RETURNING value")
        .bind(count)
        .fetch_one(&mut *tx)
        .await?;
    let mut outcomes = Vec::with_capacity(group.len());
    for (batch, revision) in group.iter().zip(last - count + 1..) {
        let (writes, guarded) = application_order(&batch.writes);
        if guarded {
            sqlx::query("SAVEPOINT batch").execute(&mut *tx).await?;
        }
        let outcome = apply(&mut tx, &writes, revision).await;
        if guarded {
            if outcome.is_err() {
                sqlx::query("ROLLBACK TO batch").execute(&mut *tx).await?;
            }
            sqlx::query("RELEASE batch").execute(&mut *tx).await?;
        } else if let Err(failure @ StoreError::Backend(_)) = outcome {
            // The database failed part way through a batch without a savepoint: the
            // whole group is rolled back. (A conflict there comes before any change.)
            return Err(failure);
        }
        outcomes.push(outcome);
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Checks a batch's expectations and applies its writes in the order given, all
/// with the batch's revision (returned). Each write is one statement where the
/// statement itself can check the expectation.
async fn apply(tx: &mut Transaction<'static, Sqlite>, writes: &[&Write], revision: i64) -> Result<i64, StoreError> {
    for write in writes {
        let holds = match (&write.op, write.expect) {
            (WriteOp::NoneWithPrefix, _) => {
                let next: Option<String> = sqlx::query_scalar(
                    "SELECT key FROM records WHERE collection = ? AND key >= ? ORDER BY key LIMIT 1",
                )
                .bind(write.collection.as_str())
                .bind(&write.key)
                .fetch_optional(&mut **tx)
                .await?;
                !next.is_some_and(|key| key.starts_with(&write.key))
            }
            (WriteOp::Put(body), Expect::Anything) => {
                upsert(write, revision, body).execute(&mut **tx).await?;
                true
            }
            (WriteOp::Put(body), Expect::Absent) => {
                sqlx::query(
                    "INSERT INTO records (collection, key, revision, body) VALUES (?, ?, ?, ?)
                     ON CONFLICT (collection, key) DO NOTHING",
                )
                .bind(write.collection.as_str())
                .bind(&write.key)
                .bind(revision)
                .bind(body)
                .execute(&mut **tx)
                .await?
                .rows_affected()
                    == 1
            }
            (WriteOp::Put(body), Expect::Revision(expected)) => {
                sqlx::query(
                    "UPDATE records SET revision = ?, body = ? WHERE collection = ? AND key = ? AND revision = ?",
                )
                .bind(revision)
                .bind(body)
                .bind(write.collection.as_str())
                .bind(&write.key)
                .bind(expected)
                .execute(&mut **tx)
                .await?
                .rows_affected()
                    == 1
            }
            (WriteOp::Delete, Expect::Revision(expected)) => {
                sqlx::query("DELETE FROM records WHERE collection = ? AND key = ? AND revision = ?")
                    .bind(write.collection.as_str())
                    .bind(&write.key)
                    .bind(expected)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
                    == 1
            }
            (op, expect) => {
                let current = current_revision(tx, write.collection, &write.key).await?;
                let holds = match expect {
                    Expect::Anything => true,
                    Expect::Absent => current.is_none(),
                    Expect::Revision(expected) => current == Some(expected),
                };
                let statement = match op {
                    WriteOp::Check => Some(
                        sqlx::query("UPDATE records SET revision = ? WHERE collection = ? AND key = ?")
                            .bind(revision)
                            .bind(write.collection.as_str())
                            .bind(&write.key),
                    ),
                    WriteOp::Delete => Some(
                        sqlx::query("DELETE FROM records WHERE collection = ? AND key = ?")
                            .bind(write.collection.as_str())
                            .bind(&write.key),
                    ),
                    WriteOp::Put(body) => Some(upsert(write, revision, body)),
                    // One writer at a time: what was checked stays so until the commit.
                    WriteOp::Hold | WriteOp::NoneWithPrefix => None,
                };
                if let Some(statement) = statement.filter(|_| holds) {
                    statement.execute(&mut **tx).await?;
                }
                holds
            }
        };
        if !holds {
            return Err(StoreError::Conflict { collection: write.collection.as_str(), key: write.key.clone() });
        }
    }
    Ok(revision)
}

fn upsert<'q>(
    write: &'q Write,
    revision: i64,
    body: &'q [u8],
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    sqlx::query(
        "INSERT INTO records (collection, key, revision, body) VALUES (?, ?, ?, ?)
         ON CONFLICT (collection, key) DO UPDATE SET revision = excluded.revision, body = excluded.body",
    )
    .bind(write.collection.as_str())
    .bind(&write.key)
    .bind(revision)
    .bind(body)
}
