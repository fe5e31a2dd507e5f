use ferrocore_store::{Collection, Expect, RecordStore, SqliteStore, Write, conformance};

#[tokio::test]
async fn sqlite_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ferrocore.db")).await.unwrap();
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn committed_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferrocore.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.commit(vec![Write::put(Collection::Thing, "kept", Expect::Absent, b"body".to_vec())]).await.unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let record = store.get(Collection::Thing, "kept").await.unwrap().unwrap();
    assert_eq!(record.body, b"body");
}

#[tokio::test]
async fn two_stores_on_one_file_keep_each_others_expectations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferrocore.db");
    let a = SqliteStore::open(&path).await.unwrap();
    let b = SqliteStore::open(&path).await.unwrap();
    conformance::run_shared(&a, &b).await;
}
