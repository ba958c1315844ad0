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

#[tokio::test]
async fn a_database_of_a_newer_herald_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("herald.db");
    drop(SqliteStore::open(&path, Synchronous::Full).expect("open"));
    rusqlite::Connection::open(&path)
        .expect("raw open")
        .execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)",
            [],
        )
        .expect("a future migration");
    let err = SqliteStore::open(&path, Synchronous::Full)
        .err()
        .expect("a newer schema is refused");
    assert!(err.to_string().contains("version 9999, newer"), "{err}");
}
