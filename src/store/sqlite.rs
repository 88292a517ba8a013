//! What only SQLite needs: the connection settings, one writer connection per database file, and
//! a checkpointer thread.
//!
//! SQLite commits one write transaction at a time, and whenever a connection commits, every other
//! connection to the file empties its page cache before its next transaction (it cannot tell which
//! pages changed). So writes all go through one long-lived connection per file: its cache stays
//! warm from one write to the next, where a pooled connection would start every write cold and
//! read the B-tree pages of a dozen tables and indexes again. Readers keep the pool.
//!
//! A WAL file is copied back into the database (checkpointed) by whoever commits past a thousand
//! pages, with an fsync, while holding the write lock: every writer waited for it. Here the
//! connections never checkpoint; a thread of the process does, in the background, as the WAL
//! grows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, Weak};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionResult, RunQueryDsl};

use super::DbConnection;

/// How long a SQLite connection waits for a competing writer (another process) before giving up.
const BUSY_TIMEOUT_MS: u32 = 10_000;
/// Page cache of the writer connection, KiB: the upper levels of every table and index a write
/// touches, and room for a bulk load's working set.
const WRITER_CACHE_KIB: u32 = 32 * 1024;
/// The WAL is checkpointed once it holds this much.
const CHECKPOINT_AT_BYTES: u64 = 4 * 1024 * 1024;
/// How often the checkpointer looks at the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Opens a connection with the settings every connection has: WAL (readers run beside the single
/// writer), NORMAL sync (crash-safe in WAL mode: a power cut can lose the last commits, never
/// corrupt the file), foreign keys, a busy timeout, and no checkpoints at commit.
pub(super) fn connect(path: &Path) -> ConnectionResult<SqliteConnection> {
    let mut conn = SqliteConnection::establish(&path.to_string_lossy())?;
    conn.batch_execute(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA wal_autocheckpoint = 0;"
    ))
    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    Ok(conn)
}

/// This process's writer connection of each database file, behind the lock every writer of the
/// process queues on before `BEGIN IMMEDIATE` (SQLite's own busy handler, what a writer in another
/// process such as `carerecord import` waits on, sleeps and polls: a writer that wakes after the
/// lock was freed leaves the database idle — under four concurrent ingest clients, 38% of both
/// cores sat idle while transactions waited). One lock for every SQLite file of the process
/// (normally one; several only in tests).
static WRITERS: Mutex<Option<HashMap<PathBuf, DbConnection>>> = Mutex::new(None);

#[derive(diesel::QueryableByName)]
struct DatabaseFile {
    #[diesel(sql_type = diesel::sql_types::Text)]
    file: String,
}

/// The file `conn` has open as its main database.
fn main_file(conn: &mut DbConnection) -> diesel::QueryResult<PathBuf> {
    let sql =
        crate::search::sql::Sql::new("SELECT file FROM pragma_database_list WHERE name = 'main'");
    let found: DatabaseFile = super::search::prepared(conn, &sql).get_result(conn)?;
    Ok(PathBuf::from(found.file))
}

type Writers = std::sync::MutexGuard<'static, Option<HashMap<PathBuf, DbConnection>>>;

/// This process's turn to write SQLite, held until the guard drops.
pub(super) fn writers_turn() -> Writers {
    WRITERS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Forgets the writer connection of `path` (a database being opened: a file at that path may be a
/// new one).
pub(super) fn forget_writer(path: &Path) {
    if let Some(writers) = writers_turn().as_mut() {
        writers.remove(path);
    }
}

/// Runs `work` on the writer connection of the file `conn` has open, in turn with this process's
/// other writers. A writer connection that fails is closed and the next write opens another.
pub(super) fn with_writer<T, E>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    let file = main_file(conn)?;
    let mut writers = writers_turn();
    let writers = writers.get_or_insert_with(HashMap::new);
    if !writers.contains_key(&file) {
        let writer = connect(&file)
            .and_then(|mut c| {
                c.batch_execute(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB}"))
                    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                Ok(c)
            })
            .map_err(|e| {
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UnableToSendCommand,
                    Box::new(e.to_string()),
                )
            })?;
        writers.insert(file.clone(), DbConnection::Sqlite(writer));
    }
    let Some(writer) = writers.get_mut(&file) else {
        return Err(diesel::result::Error::NotFound.into());
    };
    let result = work(writer);
    if diesel::r2d2::R2D2Connection::is_broken(writer) {
        writers.remove(&file);
    }
    result
}

/// Checkpoints the WAL of `path` in the background while `alive` can be upgraded (the database
/// is open in this process).
pub(super) fn start_checkpointer(path: PathBuf, alive: Weak<()>) {
    let spawned = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || checkpointer(&path, &alive));
    if let Err(e) = spawned {
        log::error!("the SQLite checkpointer did not start: {e}");
    }
}

fn checkpointer(path: &Path, alive: &Weak<()>) {
    let wal = wal_path(path);
    let mut conn: Option<DbConnection> = None;
    while alive.strong_count() > 0 {
        std::thread::sleep(CHECKPOINT_EVERY);
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if size < CHECKPOINT_AT_BYTES {
            continue;
        }
        if conn.is_none() {
            conn = connect(path)
                .map(DbConnection::Sqlite)
                .map_err(|e| log::warn!("checkpointer: {e}"))
                .ok();
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        if let Err(e) = checkpoint(c, "main", writers_turn) {
            log::warn!("checkpoint of {}: {e}", path.display());
            conn = None;
        }
    }
}

/// Checkpoints the WAL of `schema` on `conn` and empties it. The bulk of the copying (and its
/// fsync) runs beside the writers; then, in the writers' turn (`turn`), the frames they added
/// meanwhile are copied and the WAL is truncated — a checkpoint racing writers never finishes,
/// and SQLite starts writing a WAL from its beginning again only after one has.
pub(super) fn checkpoint<G>(
    conn: &mut DbConnection,
    schema: &str,
    turn: impl FnOnce() -> G,
) -> diesel::QueryResult<()> {
    diesel::sql_query(format!("PRAGMA {schema}.wal_checkpoint(PASSIVE)")).execute(conn)?;
    let _turn = turn();
    diesel::sql_query(format!("PRAGMA {schema}.wal_checkpoint(TRUNCATE)")).execute(conn)?;
    Ok(())
}

fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}
