//! Connections: one writer (SQLite has a single writer; batches make that cheap) and a small
//! pool of readers, which WAL lets run beside the writer. Every call runs on a blocking thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use herald_store::{Result, StoreError};
use rusqlite::{Connection, OpenFlags};

use crate::migrations::MIGRATIONS;

pub(crate) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// How hard a commit tries to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// The WAL is fsynced before a write is acknowledged: it survives power loss.
    Full,
    /// WAL default: survives a process crash, not a power loss.
    Normal,
}

/// SQLite itself always runs with `synchronous = NORMAL`: a commit writes its WAL frames and
/// returns, and only checkpoints fsync. Durability (`Synchronous::Full`) comes from an explicit
/// `fdatasync` of the WAL file after the commit, taken *outside* the writer lock: the next
/// transaction runs while the disk flushes the previous one, and one flush covers every commit
/// that returned before it started. A checkpoint fsyncs the WAL before copying frames into the
/// database and fsyncs the database before the WAL is reused, so frames flushed this way stay
/// recoverable until they are in the database file.
pub(crate) struct Pool {
    path: PathBuf,
    /// The WAL file, with `Synchronous::Full` (`None`: nothing is flushed), opened at start from the path SQLite itself
    /// uses (symlinks resolved). SQLite truncates and reuses it but never deletes it while a
    /// connection is open, so the handle stays the file's.
    wal: Option<std::fs::File>,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// At most `MAX_READERS` reads at once: each reader connection has its own page cache, and
    /// a burst of reads (hundreds of chat sockets reconnecting) must not open hundreds.
    reading: tokio::sync::Semaphore,
}

const MAX_READERS: usize = 8;

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Durability is a flush of the WAL file: without WAL there is nothing to flush.
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database cannot use WAL mode (journal_mode stays {mode:?}); Herald needs a file system with shared-memory support"
        )));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // The hot pages (pushbacks, dialogs, the tails of the log and messages) must stay cached:
    // SQLite's default 2 MiB cache made the writer re-read pages from the OS on every batch.
    conn.pragma_update(None, "cache_size", -32768)?;
    conn.set_prepared_statement_cache_capacity(64);
    // Checkpoints run on a thread of their own (`checkpointer`); this is only a safety net.
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT)?;
    Ok(())
}

/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
/// Past this many frames in the WAL, the checkpointer finishes its work under the writer lock,
/// so that the writer's next transaction can start the WAL over.
const RESTART_FRAMES: i64 = 32_000;
/// Frames the checkpointer leaves to copy under the writer lock.
const CATCH_UP_FRAMES: i64 = 200;
/// The writer's own automatic checkpoint: only if the checkpointer falls far behind.
const WRITER_AUTOCHECKPOINT: i64 = 50_000;

/// Copies the WAL into the database file off the writer's thread.
///
/// SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold (1,000
/// pages by default): under load that was dozens of checkpoints a second, each copying the same
/// hot pages again and fsyncing twice, all while the writer (and every request waiting on it)
/// stood still. Here a `PASSIVE` checkpoint on a connection of its own copies what is there
/// every 200 ms while the writer goes on. A WAL only starts over when a writer finds it fully
/// copied, which a checkpoint racing a busy writer rarely leaves it; so once the WAL is past
/// `RESTART_FRAMES`, the checkpointer copies the last few frames while holding the writer lock,
/// a pause of about one commit's pages and one fsync.
fn checkpointer(pool: std::sync::Weak<Pool>, conn: Connection, db: std::fs::File) {
    let passive = || {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
    };
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let started = std::time::Instant::now();
        let outcome = (|| -> rusqlite::Result<()> {
            let (mut frames, mut copied) = passive()?;
            // Each pass copies only what was committed during the one before: a few passes
            // leave little for the pause under the lock.
            for _ in 0..16 {
                if frames - copied <= CATCH_UP_FRAMES {
                    break;
                }
                (frames, copied) = passive()?;
            }
            // Even when everything was copied, the writer may have begun a transaction on
            // the frames just copied, which then appends instead of starting over: the pass
            // under the lock settles it (and copies nothing if nothing is left).
            if frames > RESTART_FRAMES {
                // SQLite fsyncs the database only in the pass that copies the last frame, which
                // would then write back every page the passes before copied, under the lock
                // (25 – 30 ms measured). Writing them back first leaves it one pass's pages.
                if let Err(e) = db.sync_data() {
                    tracing::warn!(error = %e, "syncing the database file before a checkpoint's last pass failed");
                }
                let writer = pool.writer.lock().unwrap_or_else(|e| e.into_inner());
                let paused = std::time::Instant::now();
                passive()?;
                drop(writer);
                metrics::histogram!("herald_sqlite_write_seconds", "phase" => "checkpoint_pause")
                    .record(paused.elapsed().as_secs_f64());
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "WAL checkpoint failed; the next one retries");
        }
        metrics::histogram!("herald_sqlite_write_seconds", "phase" => "checkpoint")
            .record(started.elapsed().as_secs_f64());
    }
}

impl Pool {
    pub(crate) fn open(path: &Path, sync: Synchronous) -> Result<Arc<Self>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(backend)?;
        }
        let mut writer = Connection::open(path).map_err(backend)?;
        configure(&writer).map_err(backend)?;
        migrate(&mut writer)?;
        let wal = match sync {
            Synchronous::Normal => None,
            Synchronous::Full => {
                let db = writer
                    .path()
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| backend("the database has no file name"))?;
                let name = format!("{db}-wal");
                Some(
                    std::fs::File::open(&name)
                        .map_err(|e| backend(format!("cannot open the WAL file {name}: {e}")))?,
                )
            }
        };
        let pool = Arc::new(Self {
            path: path.to_owned(),
            wal,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            reading: tokio::sync::Semaphore::new(MAX_READERS),
        });
        pool.flush_now()?;
        let conn = Connection::open(path).map_err(backend)?;
        configure(&conn).map_err(backend)?;
        let db = std::fs::File::open(path)
            .map_err(|e| backend(format!("cannot open {}: {e}", path.display())))?;
        let weak = Arc::downgrade(&pool);
        std::thread::Builder::new()
            .name("herald-checkpoint".into())
            .spawn(move || checkpointer(weak, conn, db))
            .map_err(|e| backend(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(pool)
    }

    fn open_reader(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(backend)?;
        conn.pragma_update(None, "cache_size", -8192)
            .map_err(backend)?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(conn)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer, commits, and flushes: the
    /// write is durable when this returns.
    pub(crate) async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let pool = self.clone();
        let queued = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            metrics::histogram!("herald_sqlite_write_seconds", "phase" => "queue")
                .record(queued.elapsed().as_secs_f64());
            pool.write_now(f, true)
        })
        .await
        .map_err(backend)?
    }

    pub(crate) fn flush_now(&self) -> Result<()> {
        let Some(wal) = &self.wal else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        if let Err(e) = wal.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages and marked them
            // clean: a later flush could succeed while earlier commits never reached the disk,
            // and recovery stops at the first frame missing. Nothing committed since the last
            // good flush may be acknowledged, so the process stops here; at the next start,
            // recovery replays the log from what the disk has.
            tracing::error!(error = %e, "flushing the WAL to disk failed; Herald stops so that no unflushed write is acknowledged");
            std::process::exit(74);
        }
        metrics::histogram!("herald_sqlite_write_seconds", "phase" => "flush")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// One transaction on the calling thread, which it blocks; flushed if `flush`.
    pub(crate) fn write_now<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
        flush: bool,
    ) -> Result<T> {
        let started = std::time::Instant::now();
        let mut conn = self
            .writer
            .lock()
            .map_err(|_| backend("writer lock poisoned"))?;
        let locked = std::time::Instant::now();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        let out = f(&tx)?;
        let written = std::time::Instant::now();
        tx.commit().map_err(backend)?;
        let done = std::time::Instant::now();
        metrics::histogram!("herald_sqlite_write_seconds", "phase" => "lock")
            .record((locked - started).as_secs_f64());
        metrics::histogram!("herald_sqlite_write_seconds", "phase" => "statements")
            .record((written - locked).as_secs_f64());
        metrics::histogram!("herald_sqlite_write_seconds", "phase" => "commit")
            .record((done - written).as_secs_f64());
        drop(conn);
        if flush {
            self.flush_now()?;
        }
        Ok(out)
    }

    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let _permit = self
            .reading
            .acquire()
            .await
            .map_err(|_| backend("reader pool closed"))?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool
                .readers
                .lock()
                .map_err(|_| backend("reader lock poisoned"))?
                .pop()
            {
                Some(c) => c,
                None => pool.open_reader()?,
            };
            let out = f(&conn);
            // A connection left inside a transaction (a failed rollback) would read an old
            // snapshot from then on: it is closed instead of reused.
            if conn.is_autocommit()
                && let Ok(mut idle) = pool.readers.lock()
            {
                idle.push(conn);
            }
            out
        })
        .await
        .map_err(backend)?
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, i64::MAX)
}

/// Runs the pending migrations up to version `last`.
pub(crate) fn migrate_to(conn: &mut Connection, last: i64) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(backend)?;
    let current: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(backend)?;
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > known {
        // An older Herald would write rows the newer schema's invariants do not expect (e.g.
        // messages left out of their dialog's chain).
        return Err(StoreError::Backend(format!(
            "the database's schema is version {current}, newer than this Herald's ({known}): \
             it was written by a newer Herald, which is the one to run on it"
        )));
    }
    for (version, sql) in MIGRATIONS {
        if *version <= current || *version > last {
            continue;
        }
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![version, jiff::Timestamp::now().as_millisecond()],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(())
}
