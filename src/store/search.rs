//! Running the SQL that `search::sql` builds.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text};

use super::{DbConnection, StoreError};
use crate::search::sql::{Bind, Sql};

type Backend = <DbConnection as Connection>::Backend;

/// One found resource: its key, type, id, JSON, and sort keys as text.
#[derive(Debug, Clone, QueryableByName)]
pub struct Hit {
    #[diesel(sql_type = BigInt)]
    pub pk: i64,
    #[diesel(sql_type = Text)]
    pub resource_type: String,
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub content: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub k0: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub k1: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub k2: Option<String>,
}

impl Hit {
    pub fn keys(&self) -> Vec<Option<String>> {
        vec![self.k0.clone(), self.k1.clone(), self.k2.clone()]
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Distinct statement texts whose prepared statements connections keep, at most. Prepared
/// statements are reused per connection (SQLite parses and plans a search's SELECT in tens of
/// microseconds, more than running it; PostgreSQL saves a round trip), but diesel keeps every
/// statement it is allowed to cache for the connection's lifetime, and the texts searches make
/// vary with the parameters a client combines. So the first texts seen are admitted to the cache
/// and the rest are prepared each time they run: memory stays bounded whatever clients send.
const CACHED_TEXTS: usize = 1_024;

static ADMITTED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// Whether connections may keep the prepared statement of this text.
fn admitted(text: &str) -> bool {
    let Ok(mut admitted) = ADMITTED.lock() else {
        return false;
    };
    if admitted.contains(text) {
        return true;
    }
    if admitted.len() >= CACHED_TEXTS {
        return false;
    }
    admitted.insert(text.to_owned())
}

/// A statement built by [`Sql`], run with its binds; reusable as a prepared statement when its
/// text was admitted.
pub(crate) struct Statement<'a> {
    sql: &'a Sql,
    cache: bool,
}

impl diesel::query_builder::QueryId for Statement<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for Statement<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::query_builder::QueryFragment<Backend> for Statement<'_> {
    /// The text between `?` placeholders, each placeholder written by the backend (`?` or `$n`)
    /// with its value.
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, Backend>,
    ) -> QueryResult<()> {
        if !self.cache {
            out.unsafe_to_cache_prepared();
        }
        let mut segments = self.sql.as_str().split('?');
        if let Some(first) = segments.next() {
            out.push_sql(first);
        }
        for (segment, bind) in segments.zip(&self.sql.binds) {
            match bind {
                Bind::Text(v) => out.push_bind_param::<Text, String>(v)?,
                Bind::Int(v) => out.push_bind_param::<BigInt, i64>(v)?,
                Bind::Float(v) => out.push_bind_param::<Double, f64>(v)?,
                Bind::Bool(v) => out.push_bind_param::<diesel::sql_types::Bool, bool>(v)?,
                Bind::NullText => out.push_bind_param::<Nullable<Text>, Option<String>>(&None)?,
            }
            out.push_sql(segment);
        }
        Ok(())
    }
}

impl RunQueryDsl<DbConnection> for Statement<'_> {}

pub(crate) fn prepared<'a>(_conn: &DbConnection, sql: &'a Sql) -> Statement<'a> {
    Statement {
        sql,
        cache: admitted(sql.as_str()),
    }
}

pub fn hits(conn: &mut DbConnection, sql: &Sql) -> Result<Vec<Hit>, StoreError> {
    let query = prepared(conn, sql);
    Ok(query.load::<Hit>(conn)?)
}

pub fn count(conn: &mut DbConnection, sql: &Sql) -> Result<i64, StoreError> {
    let query = prepared(conn, sql);
    Ok(query.get_result::<Count>(conn)?.n)
}

/// The tables searches read.
const SEARCH_TABLES: [&str; 8] = [
    "resources",
    "resource_versions",
    "search_string",
    "search_token",
    "search_date",
    "search_reference",
    "search_quantity",
    "search_uri",
];

#[derive(QueryableByName)]
struct Table {
    #[diesel(sql_type = Text)]
    relname: String,
}

/// When planner statistics were last looked at: writes counted since, and the time.
#[derive(Debug, Default)]
pub struct StatisticsGate {
    writes: std::sync::atomic::AtomicU64,
    seen: std::sync::atomic::AtomicU64,
    /// Milliseconds since the epoch.
    looked_at: std::sync::atomic::AtomicI64,
}

/// The statistics are looked at again after this long even when this process wrote nothing.
const STATISTICS_EVERY_MS: i64 = 10_000;

impl StatisticsGate {
    pub(crate) fn wrote(&self, resources: usize) {
        use std::sync::atomic::Ordering;
        self.writes.fetch_add(
            u64::try_from(resources).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Whether to look now; answering yes starts the next wait.
    pub(crate) fn due(&self) -> bool {
        use std::sync::atomic::Ordering;
        let writes = self.writes.load(Ordering::Relaxed);
        let now = crate::fhir::instant::Millis::now().0;
        let stale = now - self.looked_at.load(Ordering::Relaxed) >= STATISTICS_EVERY_MS;
        if self.seen.swap(writes, Ordering::Relaxed) == writes && !stale {
            return false;
        }
        self.looked_at.store(now, Ordering::Relaxed);
        true
    }
}

/// Makes sure PostgreSQL plans searches with statistics that describe the tables.
///
/// PostgreSQL estimates rows from the statistics ANALYZE last gathered. A table without them —
/// every search table after the first load, until autovacuum gets to it, up to a minute later —
/// is estimated at one row per condition, and the planner then nests loops whose cost multiplies
/// with every chain or `_has` level (12 s for a two-level chain over 300 resources, and far
/// worse beyond). So before a search, any of the tables that has more than doubled in size since
/// its statistics were taken is analysed (a bounded sample: milliseconds). SQLite's planner works
/// from the indexes alone here, so it needs nothing. Callers ask [`crate::store::Database::
/// statistics_due`] first: looking costs a round trip, and nothing changes while nothing is
/// written.
pub fn refresh_statistics(conn: &mut DbConnection) -> Result<(), StoreError> {
    let DbConnection::Pg(pg) = conn else {
        return Ok(());
    };
    let tables = SEARCH_TABLES
        .iter()
        .map(|t| format!("'{t}'::regclass"))
        .collect::<Vec<_>>()
        .join(", ");
    let stale: Vec<Table> = diesel::sql_query(format!(
        "SELECT c.relname::text AS relname FROM pg_class c WHERE c.oid IN ({tables}) \
         AND pg_relation_size(c.oid) > 2 * GREATEST(c.relpages, 0)::bigint * current_setting('block_size')::bigint"
    ))
    .load(pg)?;
    if stale.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = stale.iter().map(|t| t.relname.as_str()).collect();
    let names = names.join(", ");
    log::info!("analysing {names} for search planning");
    if let Err(e) = diesel::sql_query(format!("ANALYZE {names}")).execute(pg) {
        // A standby cannot analyse (nor, without a warning, can a role that does not own the
        // tables); the search still runs, on whatever statistics there are.
        log::warn!("could not analyse {names}: {e}");
    }
    Ok(())
}

/// Runs a statement that returns no rows.
pub fn execute(conn: &mut DbConnection, sql: &Sql) -> Result<usize, StoreError> {
    let query = prepared(conn, sql);
    Ok(query.execute(conn)?)
}
