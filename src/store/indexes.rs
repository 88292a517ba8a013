//! Writing search index rows: replaced with every version, inside its transaction, as one
//! multi-row INSERT per index table.

use diesel::prelude::*;

use super::schema::{
    search_date, search_quantity, search_reference, search_string, search_token, search_uri,
};
use super::{search, DbConnection, StoreError};
use crate::search::sql::{Bind, Sql};
use crate::search::IndexRows;

/// The most rows one INSERT statement carries (SQLite allows 32,766 bound values per statement);
/// statements carry powers of two rows up to this ([`super::power_of_two_chunks`]).
const ROWS_PER_INSERT: usize = 128;

/// Removes a resource's index rows (on delete, and before writing a new version's).
pub fn clear(conn: &mut DbConnection, pk: i64) -> QueryResult<()> {
    diesel::delete(search_string::table.filter(search_string::resource_pk.eq(pk))).execute(conn)?;
    diesel::delete(search_token::table.filter(search_token::resource_pk.eq(pk))).execute(conn)?;
    diesel::delete(search_date::table.filter(search_date::resource_pk.eq(pk))).execute(conn)?;
    diesel::delete(search_reference::table.filter(search_reference::resource_pk.eq(pk)))
        .execute(conn)?;
    diesel::delete(search_quantity::table.filter(search_quantity::resource_pk.eq(pk)))
        .execute(conn)?;
    diesel::delete(search_uri::table.filter(search_uri::resource_pk.eq(pk))).execute(conn)?;
    Ok(())
}

pub(crate) fn text(value: &str) -> Bind {
    Bind::Text(value.to_owned())
}

fn optional(value: Option<&str>) -> Option<Bind> {
    value.map(text)
}

/// Inserts `rows` (each a list of values; `None` is a NULL text) into `table (columns)`, as
/// multi-row INSERTs.
pub(crate) fn insert(
    conn: &mut DbConnection,
    table: &str,
    columns: &str,
    rows: Vec<Vec<Option<Bind>>>,
) -> Result<(), StoreError> {
    insert_then(conn, table, columns, rows, "")
}

/// [`insert`], each statement ending with `clause` (` ON CONFLICT ... DO NOTHING`, say).
pub(crate) fn insert_then(
    conn: &mut DbConnection,
    table: &str,
    columns: &str,
    rows: Vec<Vec<Option<Bind>>>,
    clause: &str,
) -> Result<(), StoreError> {
    for chunk in super::power_of_two_chunks(&rows, ROWS_PER_INSERT) {
        let mut sql = Sql::new(&format!("INSERT INTO {table} ({columns}) VALUES "));
        for (i, row) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            for (j, value) in row.iter().enumerate() {
                if j > 0 {
                    sql.push(", ");
                }
                sql.bind(value.clone().unwrap_or(Bind::NullText));
            }
            sql.push(")");
        }
        sql.push(clause);
        search::execute(conn, &sql)?;
    }
    Ok(())
}

/// Writes the index rows of a resource's current version.
pub fn write(
    conn: &mut DbConnection,
    system_id: i64,
    pk: i64,
    rows: &IndexRows,
) -> Result<(), StoreError> {
    write_many(conn, system_id, &[(pk, rows)])
}

/// Writes the index rows of many resources, a few statements in all.
pub fn write_many(
    conn: &mut DbConnection,
    system_id: i64,
    resources: &[(i64, &IndexRows)],
) -> Result<(), StoreError> {
    let mut strings = Vec::new();
    let mut tokens = Vec::new();
    let mut dates = Vec::new();
    let mut references = Vec::new();
    let mut quantities = Vec::new();
    let mut uris = Vec::new();
    for (pk, rows) in resources {
        let key = || [Some(Bind::Int(system_id)), Some(Bind::Int(*pk))];
        for v in &rows.strings {
            let mut row = key().to_vec();
            row.extend([
                Some(text(&v.param)),
                Some(text(&v.norm)),
                Some(text(&v.exact)),
            ]);
            strings.push(row);
        }
        for v in &rows.tokens {
            let mut row = key().to_vec();
            row.extend([
                Some(text(&v.param)),
                Some(text(&v.system)),
                Some(text(&v.code)),
                optional(v.text.as_deref()),
                optional(v.type_system.as_deref()),
                optional(v.type_code.as_deref()),
            ]);
            tokens.push(row);
        }
        for v in &rows.dates {
            let mut row = key().to_vec();
            row.extend([
                Some(text(&v.param)),
                Some(Bind::Int(v.low)),
                Some(Bind::Int(v.high)),
            ]);
            dates.push(row);
        }
        for v in &rows.references {
            let mut row = key().to_vec();
            row.extend([
                Some(text(&v.param)),
                optional(v.target_type.as_deref()),
                optional(v.target_id.as_deref()),
                optional(v.url.as_deref()),
                optional(v.identifier_system.as_deref()),
                optional(v.identifier_value.as_deref()),
            ]);
            references.push(row);
        }
        for v in &rows.quantities {
            let mut row = key().to_vec();
            row.extend([
                Some(text(&v.param)),
                Some(Bind::Float(v.value)),
                Some(text(&v.system)),
                Some(text(&v.code)),
            ]);
            quantities.push(row);
        }
        for v in &rows.uris {
            let mut row = key().to_vec();
            row.extend([Some(text(&v.param)), Some(text(&v.value))]);
            uris.push(row);
        }
    }
    insert(
        conn,
        "search_string",
        "system_id, resource_pk, param, value_norm, value_exact",
        strings,
    )?;
    insert(
        conn,
        "search_token",
        "system_id, resource_pk, param, system, code, text_norm, type_system, type_code",
        tokens,
    )?;
    insert(
        conn,
        "search_date",
        "system_id, resource_pk, param, low, high",
        dates,
    )?;
    insert(
        conn,
        "search_reference",
        "system_id, resource_pk, param, target_type, target_id, url, identifier_system, identifier_value",
        references,
    )?;
    insert(
        conn,
        "search_quantity",
        "system_id, resource_pk, param, value, system, code",
        quantities,
    )?;
    insert(
        conn,
        "search_uri",
        "system_id, resource_pk, param, value",
        uris,
    )?;
    Ok(())
}
