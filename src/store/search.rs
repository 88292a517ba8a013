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
    #[diesel(sql_type = BigInt)]
    rows: i64,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    stale: bool,
}

/// When planner statistics were last looked at, and when to look again: after a share of the
/// rows there were then has been written through this process (tables that grew by half may have
/// doubled soon after), or after [`STATISTICS_EVERY_MS`] whatever was written (other processes
/// write too). Looking costs a round trip; a table is analysed only when it has doubled.
#[derive(Debug, Default)]
pub struct StatisticsGate {
    writes: std::sync::atomic::AtomicU64,
    /// `writes` at the last look.
    seen: std::sync::atomic::AtomicU64,
    /// Writes to wait for after a look: half the resources the statistics then counted (0 until
    /// a look found any, so the first writes to an empty database are looked at at once).
    every: std::sync::atomic::AtomicU64,
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

    /// Whether to look now; answering yes (to one caller of those asking at once) starts the
    /// next wait.
    pub(crate) fn due(&self) -> bool {
        use std::sync::atomic::Ordering;
        let writes = self.writes.load(Ordering::Relaxed);
        let now = crate::fhir::instant::Millis::now().0;
        let looked_at = self.looked_at.load(Ordering::Relaxed);
        let written = writes.saturating_sub(self.seen.load(Ordering::Relaxed));
        let grown = written > 0 && written >= self.every.load(Ordering::Relaxed);
        if !grown && now - looked_at < STATISTICS_EVERY_MS {
            return false;
        }
        if self
            .looked_at
            .compare_exchange(looked_at, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.seen.store(writes, Ordering::Relaxed);
        true
    }

    /// Makes sure PostgreSQL plans searches with statistics that describe the tables.
    ///
    /// PostgreSQL estimates rows from the statistics ANALYZE last gathered. A table without them
    /// — every search table after the first load, until autovacuum gets to it, up to a minute
    /// later — is estimated at one row per condition, and the planner then nests loops whose cost
    /// multiplies with every chain or `_has` level (12 s for a two-level chain over 300
    /// resources, and far worse beyond). So before a search, any of the tables that has more than
    /// doubled in size since its statistics were taken is analysed (a bounded sample:
    /// milliseconds). SQLite's planner works from the indexes alone here, so it needs nothing.
    /// Callers ask [`crate::store::Database::statistics_due`] first.
    pub fn refresh(&self, conn: &mut DbConnection) -> Result<(), StoreError> {
        let DbConnection::Pg(pg) = conn else {
            return Ok(());
        };
        // One look at a time: a search that arrives while a table is being analysed waits for
        // that ANALYZE and then finds the statistics fresh, instead of analysing it again.
        static LOOKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = LOOKING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tables = SEARCH_TABLES
            .iter()
            .map(|t| format!("'{t}'::regclass"))
            .collect::<Vec<_>>()
            .join(", ");
        let looked: Vec<Table> = diesel::sql_query(format!(
            "SELECT c.relname::text AS relname, GREATEST(c.reltuples, 0)::bigint AS rows, \
             pg_relation_size(c.oid) > 2 * GREATEST(c.relpages, 0)::bigint \
             * current_setting('block_size')::bigint AS stale \
             FROM pg_class c WHERE c.oid IN ({tables})"
        ))
        .load(pg)?;
        let stale: Vec<&str> = looked
            .iter()
            .filter(|t| t.stale)
            .map(|t| t.relname.as_str())
            .collect();
        let mut resources = looked
            .iter()
            .find(|t| t.relname == "resources")
            .map_or(0, |t| t.rows);
        if !stale.is_empty() {
            let names = stale.join(", ");
            log::info!("analysing {names} for search planning");
            match diesel::sql_query(format!("ANALYZE {names}")).execute(pg) {
                Ok(_) => {
                    #[derive(QueryableByName)]
                    struct Rows {
                        #[diesel(sql_type = BigInt)]
                        n: i64,
                    }
                    resources = diesel::sql_query(
                        "SELECT GREATEST(reltuples, 0)::bigint AS n FROM pg_class \
                         WHERE oid = 'resources'::regclass",
                    )
                    .get_result::<Rows>(pg)?
                    .n;
                }
                // A standby cannot analyse (nor, without a warning, can a role that does not own
                // the tables); the search still runs, on whatever statistics there are.
                Err(e) => log::warn!("could not analyse {names}: {e}"),
            }
        }
        self.every.store(
            u64::try_from(resources / 2).unwrap_or(0),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(())
    }
}

/// Runs a statement that returns no rows.
pub fn execute(conn: &mut DbConnection, sql: &Sql) -> Result<usize, StoreError> {
    let query = prepared(conn, sql);
    Ok(query.execute(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prepared_statement_cache_admits_a_bounded_number_of_texts() {
        let first = "SELECT 'admission test: first'";
        assert!(admitted(first));
        for n in 0..CACHED_TEXTS + 10 {
            admitted(&format!("SELECT 'admission test {n}'"));
        }
        assert!(!admitted("SELECT 'admission test: after the bound'"));
        assert!(admitted(first), "an admitted text stays admitted");
        assert!(ADMITTED.lock().unwrap().len() <= CACHED_TEXTS);
    }
}
