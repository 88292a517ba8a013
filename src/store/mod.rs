//! Storage: one diesel connection type over SQLite and PostgreSQL, an r2d2 pool chosen by the URL
//! scheme, embedded per-backend migrations, and the queries. Knows nothing of HTTP.
//!
//! All database work is synchronous diesel code; [`Database::run`] moves it off the async workers.

pub mod access;
pub mod bulk;
pub mod history;
pub mod indexes;
pub mod resources;
pub mod schema;
pub mod search;
mod sqlite;
pub mod systems;

use std::path::PathBuf;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{ManageConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_AUDIT_INBOX_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("migrations/sqlite-audit-inbox");

/// One connection type over both backends; queries are written once against it.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

/// Storage failures. Callers map them to HTTP; the message is for logs only.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database connection unavailable: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database configuration: {0}")]
    Config(String),
    #[error("blocking task failed: {0}")]
    Blocking(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// The database backend, chosen by the URL scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH` (relative or absolute file path).
    Sqlite(PathBuf),
    /// `postgres://...` or `postgresql://...`, passed to libpq as is.
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::Config("sqlite:// URL needs a file path".into()));
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else {
            Err(StoreError::Config(
                "database URL must start with sqlite:// or postgres://".into(),
            ))
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// r2d2 manager that opens the right backend and sets per-connection SQLite pragmas.
#[derive(Debug)]
pub struct ConnectionManager {
    url: DatabaseUrl,
}

impl ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => sqlite::connect(path)
                .map(DbConnection::Sqlite)
                .map_err(diesel::r2d2::Error::ConnectionError),
            DatabaseUrl::Postgres(url) => PgConnection::establish(url)
                .map(DbConnection::Pg)
                .map_err(diesel::r2d2::Error::ConnectionError),
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        use diesel::r2d2::R2D2Connection;
        conn.is_broken()
    }
}

pub type DbPool = Pool<ConnectionManager>;
pub type PooledConn = PooledConnection<ConnectionManager>;

/// The pool plus what callers need to know about the backend.
#[derive(Clone)]
pub struct Database {
    pool: DbPool,
    backend: &'static str,
    url: DatabaseUrl,
    /// SQLite only: the read audit inbox beside the database file (see [`Database::audit_inbox`]).
    audit_inbox: Option<PathBuf>,
    /// SQLite: the checkpointer runs while a clone of this lives.
    _alive: std::sync::Arc<()>,
    statistics: std::sync::Arc<search::StatisticsGate>,
}

/// The read audit inbox of a SQLite database file: `carerecord.db` → `carerecord-audit-inbox.db`.
pub fn audit_inbox_path(database: &std::path::Path) -> PathBuf {
    let stem = database
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extension = database
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| "db".into());
    database.with_file_name(format!("{stem}-audit-inbox.{extension}"))
}

impl Database {
    /// Opens (creating the SQLite file and its folder if needed) and migrates the database.
    pub fn open(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        let url = DatabaseUrl::parse(url)?;
        if let DatabaseUrl::Sqlite(path) = &url {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Config(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
        }
        let backend = url.backend_name();
        let audit_inbox = match &url {
            DatabaseUrl::Sqlite(path) => Some(audit_inbox_path(path)),
            DatabaseUrl::Postgres(_) => None,
        };
        let pool = Pool::builder()
            .max_size(pool_size)
            // Connections open when first needed, never in the background: a command that exits
            // while r2d2 is still connecting to refill its idle minimum crashes in OpenSSL's exit
            // handlers (libpq negotiating TLS on a thread the process is tearing down).
            .min_idle(Some(0))
            // r2d2 would run `SELECT 1` on every checkout (a round trip to PostgreSQL per request);
            // a connection that broke is found by `has_broken` when it is returned instead.
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(15))
            .build(ConnectionManager { url: url.clone() })?;
        let alive = std::sync::Arc::new(());
        if let DatabaseUrl::Sqlite(path) = &url {
            sqlite::forget_writer(path);
            sqlite::start_checkpointer(path.clone(), std::sync::Arc::downgrade(&alive));
        }
        let db = Self {
            pool,
            backend,
            url,
            audit_inbox,
            _alive: alive,
            statistics: Default::default(),
        };
        db.migrate()?;
        Ok(db)
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// (connections, idle connections) of the pool.
    pub fn pool_state(&self) -> (u32, u32) {
        let state = self.pool.state();
        (state.connections, state.idle_connections)
    }

    /// The statistics gate, when a search or conditional write should first make sure
    /// PostgreSQL's planner statistics describe the tables ([`search::StatisticsGate::refresh`]):
    /// enough rows were written through this database since the last look, or a while has passed
    /// (other processes write too). Always `None` on SQLite, whose planner needs none.
    pub fn statistics_due(&self) -> Option<std::sync::Arc<search::StatisticsGate>> {
        (self.backend == "postgres" && self.statistics.due()).then(|| self.statistics.clone())
    }

    /// Counts resources written, for [`Database::statistics_due`].
    pub fn wrote(&self, resources: usize) {
        self.statistics.wrote(resources);
    }

    pub fn conn(&self) -> Result<PooledConn, StoreError> {
        Ok(self.pool.get()?)
    }

    /// Runs pending migrations for this backend.
    pub fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let migrations = match &*conn {
            DbConnection::Sqlite(_) => SQLITE_MIGRATIONS,
            DbConnection::Pg(_) => POSTGRES_MIGRATIONS,
        };
        conn.run_pending_migrations(migrations)
            .map(|_| ())
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        if let Some(mut inbox) = self.audit_inbox()? {
            inbox
                .run_pending_migrations(SQLITE_AUDIT_INBOX_MIGRATIONS)
                .map_err(|e| StoreError::Migration(format!("audit inbox: {e}")))?;
        }
        Ok(())
    }

    /// SQLite: a new connection to the read audit inbox, a database file of its own beside the
    /// main one. Reads of patient data are audited there, many to a small commit, and the audit
    /// writer moves them in bulk into `audit_events`. PostgreSQL has none (`None`): commits there
    /// do not hold up other writers or empty readers' caches, and read audits go straight to
    /// `audit_events`. The inbox is checkpointed by its mover, not at the writer's commits.
    pub fn audit_inbox(&self) -> Result<Option<DbConnection>, StoreError> {
        let Some(path) = &self.audit_inbox else {
            return Ok(None);
        };
        let conn = ConnectionManager {
            url: DatabaseUrl::Sqlite(path.clone()),
        }
        .connect()
        .map_err(|e| StoreError::Config(format!("audit inbox {}: {e}", path.display())))?;
        Ok(Some(conn))
    }

    /// A new connection of its own (not from the pool), for a thread that keeps one.
    pub fn dedicated_connection(&self) -> Result<DbConnection, StoreError> {
        ConnectionManager {
            url: self.url.clone(),
        }
        .connect()
        .map_err(|e| StoreError::Config(format!("database connection: {e}")))
    }

    /// SQLite: a new connection to the main database with the audit inbox attached as `inbox`,
    /// for moving its rows with SQL alone.
    pub fn audit_inbox_attached(&self) -> Result<Option<DbConnection>, StoreError> {
        let Some(path) = &self.audit_inbox else {
            return Ok(None);
        };
        let DatabaseUrl::Sqlite(main) = &self.url else {
            return Ok(None);
        };
        let mut conn = ConnectionManager {
            url: DatabaseUrl::Sqlite(main.clone()),
        }
        .connect()
        .map_err(|e| StoreError::Config(format!("audit inbox {}: {e}", path.display())))?;
        let quoted = path.to_string_lossy().replace('\'', "''");
        conn.batch_execute(&format!("ATTACH DATABASE '{quoted}' AS inbox"))?;
        Ok(Some(conn))
    }

    /// Runs `work` with a pooled connection on the blocking thread pool.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        actix_web::rt::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(StoreError::from)?;
            work(&mut conn)
        })
        .await
        .map_err(|e| E::from(StoreError::Blocking(e.to_string())))?
    }

    /// A liveness check that reaches the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| {
            diesel::sql_query("SELECT 1").execute(conn)?;
            Ok(())
        })
        .await
    }
}

/// The writers of audit inboxes (the audit writer and the mover of each) queue on this before
/// writing one, as the main database's writers do in [`sqlite`].
static SQLITE_AUDIT_INBOX_WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `work` in a write transaction. On SQLite it runs on the database's writer connection
/// (see [`sqlite`]), not on `conn`, in turn with the process's other writers, and starts with
/// `BEGIN IMMEDIATE`, so a transaction that reads before it writes takes the write lock up front
/// and waits (busy timeout) instead of failing when another process's writer commits first.
pub fn write_transaction<T, E, F>(conn: &mut DbConnection, work: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match conn {
        DbConnection::Sqlite(_) => sqlite::with_writer(conn, |writer| begun(writer, work)),
        DbConnection::Pg(_) => begun(conn, work),
    }
}

/// A write transaction on a connection to an audit inbox ([`Database::audit_inbox`]), in turn
/// with the process's other writers of inboxes.
pub fn audit_inbox_transaction<T, E, F>(conn: &mut DbConnection, work: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    as_audit_inbox_writer(|| begun(conn, work))
}

/// Checkpoints the WAL of the audit inbox attached to `conn` as `inbox` and empties it (see
/// [`sqlite::checkpoint`]), finishing in the turn of the inbox's writers.
pub fn checkpoint_attached_inbox(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    sqlite::checkpoint(conn, "inbox", || {
        SQLITE_AUDIT_INBOX_WRITER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    })
}

/// Runs `work` holding this process's turn to write audit inboxes (a statement that writes an
/// inbox attached to another connection, outside any transaction).
pub fn as_audit_inbox_writer<T>(work: impl FnOnce() -> T) -> T {
    let _writer = SQLITE_AUDIT_INBOX_WRITER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    work()
}

/// A write transaction on `conn` itself (SQLite: in turn with the process's writers), begun
/// deferred: the write lock of each database is taken when the transaction first writes it, so
/// databases attached to `conn` that it only reads are not locked against their writers.
pub fn write_transaction_deferred<T, E, F>(conn: &mut DbConnection, work: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    let _turn = matches!(conn, DbConnection::Sqlite(_)).then(sqlite::writers_turn);
    DbConnection::begin_transaction(conn)?;
    finish(conn, work)
}

/// Begins a write transaction on `conn` (SQLite: `BEGIN IMMEDIATE`) and runs `work` in it.
fn begun<T, E, F>(conn: &mut DbConnection, work: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match conn {
        DbConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
        DbConnection::Pg(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    finish(conn, work)
}

/// Runs `work` in the transaction just begun on `conn`: commits on success, rolls back otherwise.
fn finish<T, E, F>(conn: &mut DbConnection, work: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match work(conn) {
        Ok(value) => {
            DbConnection::commit_transaction(conn)?;
            Ok(value)
        }
        Err(err) => {
            // The original error matters more than a failed rollback; a broken connection is
            // detected and discarded by the pool.
            if let Err(rollback) = DbConnection::rollback_transaction(conn) {
                log::warn!("rollback failed: {rollback}");
            }
            Err(err)
        }
    }
}

/// `items` in chunks of powers of two, `most` at most (23 items, 16 at most: 16 + 4 + 2 + 1): a
/// statement per chunk, so a few statement texts serve any number of items and stay prepared.
pub(crate) fn power_of_two_chunks<T>(items: &[T], most: usize) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let size = if rest.len() >= most {
            most
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, after) = rest.split_at(size);
        chunks.push(chunk);
        rest = after;
    }
    chunks
}

/// Whether an error is a unique-constraint violation (a concurrent writer got there first).
pub fn is_unique_violation(err: &diesel::result::Error) -> bool {
    matches!(
        err,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn items_go_in_power_of_two_chunks() {
        let items: Vec<u32> = (0..23).collect();
        let sizes: Vec<usize> = super::power_of_two_chunks(&items, 16)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, [16, 4, 2, 1]);
        let sizes: Vec<usize> = super::power_of_two_chunks(&items, 8)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, [8, 8, 4, 2, 1]);
        assert!(super::power_of_two_chunks::<u32>(&[], 8).is_empty());
    }
}
