//! Running the SQL that `search::sql` builds.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text};

use super::{DbConnection, StoreError};
use crate::search::sql::{Bind, Dialect, Sql};

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

pub(crate) fn dialect(conn: &DbConnection) -> Dialect {
    match conn {
        DbConnection::Sqlite(_) => Dialect::Sqlite,
        DbConnection::Pg(_) => Dialect::Postgres,
    }
}

pub(crate) fn prepared<'a>(
    conn: &DbConnection,
    sql: &'a Sql,
) -> diesel::query_builder::BoxedSqlQuery<'a, Backend, diesel::query_builder::SqlQuery> {
    let mut query = diesel::sql_query(sql.render(dialect(conn))).into_boxed::<Backend>();
    for bind in &sql.binds {
        query = match bind {
            Bind::Text(v) => query.bind::<Text, _>(v.clone()),
            Bind::Int(v) => query.bind::<BigInt, _>(*v),
            Bind::Float(v) => query.bind::<Double, _>(*v),
            Bind::Bool(v) => query.bind::<diesel::sql_types::Bool, _>(*v),
        };
    }
    query
}

pub fn hits(conn: &mut DbConnection, sql: &Sql) -> Result<Vec<Hit>, StoreError> {
    let query = prepared(conn, sql);
    Ok(query.load::<Hit>(conn)?)
}

pub fn count(conn: &mut DbConnection, sql: &Sql) -> Result<i64, StoreError> {
    let query = prepared(conn, sql);
    Ok(query.get_result::<Count>(conn)?.n)
}

/// Runs a statement that returns no rows.
pub fn execute(conn: &mut DbConnection, sql: &Sql) -> Result<usize, StoreError> {
    let query = prepared(conn, sql);
    Ok(query.execute(conn)?)
}
