//! The conformance suite against a real PostgreSQL server. `scripts/test` starts a
//! throw-away one and sets `FERROCORE_TEST_POSTGRES_URL`; without it these tests
//! say so on stderr and pass.

use std::sync::atomic::{AtomicU32, Ordering};

use ferrocore_store::{Collection, Expect, PostgresStore, RecordStore, StoreError, Write, conformance};
use sqlx::{Connection, PgConnection};

/// A new, empty database on the test server, dropped when this is.
struct Database {
    server: String,
    name: String,
}

impl Database {
    async fn create() -> Option<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let Ok(server) = std::env::var("FERROCORE_TEST_POSTGRES_URL") else {
            eprintln!("SKIPPED: FERROCORE_TEST_POSTGRES_URL is not set (scripts/test starts a throw-away PostgreSQL)");
            return None;
        };
        let name = format!("store_test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin = PgConnection::connect(&format!("{server}/postgres")).await.unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
        Some(Self { server, name })
    }

    fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    async fn drop_now(self) {
        let mut admin = PgConnection::connect(&format!("{}/postgres", self.server)).await.unwrap();
        sqlx::raw_sql(&format!("DROP DATABASE {} WITH (FORCE)", self.name)).execute(&mut admin).await.unwrap();
    }
}

#[tokio::test]
async fn postgres_passes_the_conformance_suite() {
    let Some(database) = Database::create().await else { return };
    let store = PostgresStore::connect(&database.url()).await.unwrap();
    conformance::run_all(&store).await;
    database.drop_now().await;
}

#[tokio::test]
async fn two_nodes_on_one_database_keep_each_others_expectations() {
    let Some(database) = Database::create().await else { return };
    // Connecting twice at once also races the migrations: the advisory lock applies them once.
    let url = database.url();
    let (a, b) = tokio::join!(PostgresStore::connect(&url), PostgresStore::connect(&url));
    conformance::run_shared(&a.unwrap(), &b.unwrap()).await;
    database.drop_now().await;
}

#[tokio::test]
async fn keys_order_byte_by_byte_as_on_sqlite() {
    let Some(database) = Database::create().await else { return };
    let store = PostgresStore::connect(&database.url()).await.unwrap();
    // A collation other than "C" would sort these by language rules (case and punctuation folded).
    let keys = ["B", "a", "a-b", "a/b", "aB", "ab", "é", "Z"];
    let writes = keys.iter().map(|k| Write::put(Collection::Thing, *k, Expect::Absent, Vec::new())).collect();
    store.commit(writes).await.unwrap();
    let listed: Vec<String> =
        store.list(Collection::Thing, None, 100).await.unwrap().into_iter().map(|r| r.key).collect();
    let mut bytewise: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    bytewise.sort();
    assert_eq!(listed, bytewise);
    database.drop_now().await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_backend_error() {
    // A closed loopback port: nothing listens on port 1.
    let err = PostgresStore::connect("postgres://ferrocore@127.0.0.1:1/none").await.err().expect("no server");
    assert!(matches!(err, StoreError::Backend(_)), "{err}");
}

#[tokio::test]
async fn committed_data_survives_reconnecting() {
    let Some(database) = Database::create().await else { return };
    {
        let store = PostgresStore::connect(&database.url()).await.unwrap();
        store.commit(vec![Write::put(Collection::Thing, "kept", Expect::Absent, b"body".to_vec())]).await.unwrap();
    }
    let store = PostgresStore::connect(&database.url()).await.unwrap();
    assert_eq!(store.get(Collection::Thing, "kept").await.unwrap().unwrap().body, b"body");
    database.drop_now().await;
}
