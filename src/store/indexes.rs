//! Writing search index rows: replaced with every version, inside its transaction, as one
//! multi-row INSERT per index table.

use diesel::prelude::*;

use super::schema::{
    search_date, search_quantity, search_reference, search_string, search_token, search_uri,
};
use super::{search, DbConnection, StoreError};
use crate::search::sql::{Bind, Sql};
use crate::search::IndexRows;

/// Rows per INSERT statement: SQLite allows 32,766 bound values per statement.
const ROWS_PER_INSERT: usize = 500;

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

fn text(value: &str) -> Bind {
    Bind::Text(value.to_owned())
}

fn optional(value: Option<&str>) -> Option<Bind> {
    value.map(text)
}

/// Inserts `rows` (each a list of values; `None` is NULL) into `table (columns)`.
fn insert(
    conn: &mut DbConnection,
    table: &str,
    columns: &str,
    rows: Vec<Vec<Option<Bind>>>,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = Sql::new(&format!("INSERT INTO {table} ({columns}) VALUES "));
        for (i, row) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            for (j, value) in row.iter().enumerate() {
                if j > 0 {
                    sql.push(", ");
                }
                match value {
                    Some(bind) => {
                        sql.bind(bind.clone());
                    }
                    None => {
                        sql.push("NULL");
                    }
                }
            }
            sql.push(")");
        }
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
    let key = || [Some(Bind::Int(system_id)), Some(Bind::Int(pk))];
    let strings = rows
        .strings
        .iter()
        .map(|v| {
            let mut row = key().to_vec();
            row.extend([
                Some(text(&v.param)),
                Some(text(&v.norm)),
                Some(text(&v.exact)),
            ]);
            row
        })
        .collect();
    insert(
        conn,
        "search_string",
        "system_id, resource_pk, param, value_norm, value_exact",
        strings,
    )?;
    let tokens = rows
        .tokens
        .iter()
        .map(|v| {
            let mut row = key().to_vec();
            row.extend([
                Some(text(&v.param)),
                Some(text(&v.system)),
                Some(text(&v.code)),
                optional(v.text.as_deref()),
                optional(v.type_system.as_deref()),
                optional(v.type_code.as_deref()),
            ]);
            row
        })
        .collect();
    insert(
        conn,
        "search_token",
        "system_id, resource_pk, param, system, code, text_norm, type_system, type_code",
        tokens,
    )?;
    let dates = rows
        .dates
        .iter()
        .map(|v| {
            let mut row = key().to_vec();
            row.extend([
                Some(text(&v.param)),
                Some(Bind::Int(v.low)),
                Some(Bind::Int(v.high)),
            ]);
            row
        })
        .collect();
    insert(
        conn,
        "search_date",
        "system_id, resource_pk, param, low, high",
        dates,
    )?;
    let references = rows
        .references
        .iter()
        .map(|v| {
            let mut row = key().to_vec();
            row.extend([
                Some(text(&v.param)),
                optional(v.target_type.as_deref()),
                optional(v.target_id.as_deref()),
                optional(v.url.as_deref()),
                optional(v.identifier_system.as_deref()),
                optional(v.identifier_value.as_deref()),
            ]);
            row
        })
        .collect();
    insert(
        conn,
        "search_reference",
        "system_id, resource_pk, param, target_type, target_id, url, identifier_system, identifier_value",
        references,
    )?;
    let quantities = rows
        .quantities
        .iter()
        .map(|v| {
            let mut row = key().to_vec();
            row.extend([
                Some(text(&v.param)),
                Some(Bind::Float(v.value)),
                Some(text(&v.system)),
                Some(text(&v.code)),
            ]);
            row
        })
        .collect();
    insert(
        conn,
        "search_quantity",
        "system_id, resource_pk, param, value, system, code",
        quantities,
    )?;
    let uris = rows
        .uris
        .iter()
        .map(|v| {
            let mut row = key().to_vec();
            row.extend([Some(text(&v.param)), Some(text(&v.value))]);
            row
        })
        .collect();
    insert(
        conn,
        "search_uri",
        "system_id, resource_pk, param, value",
        uris,
    )?;
    Ok(())
}
