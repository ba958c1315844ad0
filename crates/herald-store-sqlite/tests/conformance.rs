//! The SQLite backend against the shared conformance suite, on a fresh database file.

use herald_store_sqlite::{SqliteStore, Synchronous};

#[tokio::test]
async fn sqlite_backend_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("herald.db"), Synchronous::Full).expect("open");
    herald_store::conformance::run_all(&store).await;
}

#[tokio::test]
async fn reopening_runs_no_migration_twice_and_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("herald.db");
    use herald_store::Store;
    let accepted = {
        let store = SqliteStore::open(&path, Synchronous::Full).expect("open");
        herald_store::conformance::run_all(&store).await;
        store.stats().await.expect("stats").accepted
    };
    let store = SqliteStore::open(&path, Synchronous::Full).expect("reopen");
    assert!(store.get_pushback("p1").await.expect("get").is_some());
    assert_eq!(
        store.stats().await.expect("stats").accepted,
        accepted,
        "every committed event, flushed or not, is there after a reopen"
    );
}
