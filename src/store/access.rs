//! Facts access control needs from the database.

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::search::prepared;
use super::{DbConnection, StoreError};
use crate::search::sql::{Bind, Sql};

/// The confidentiality code system; `R` marks a restricted record.
pub const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Text)]
    id: String,
}

/// The subset of `patients` (Patient ids) whose record is restricted (`meta.security` R).
pub fn restricted(
    conn: &mut DbConnection,
    system_id: i64,
    patients: &[String],
) -> Result<Vec<String>, StoreError> {
    if patients.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(
        "SELECT r.id FROM resources r JOIN search_token t ON t.resource_pk = r.pk \
         WHERE t.system_id = ",
    );
    sql.bind(Bind::Int(system_id));
    sql.push(" AND t.param = '_security' AND t.code = 'R' AND t.system = ");
    sql.bind(Bind::Text(CONFIDENTIALITY.into()));
    sql.push(" AND r.system_id = ");
    sql.bind(Bind::Int(system_id));
    sql.push(" AND r.resource_type = 'Patient' AND r.id IN (");
    for (i, p) in patients.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(Bind::Text(p.clone()));
    }
    sql.push(")");
    let rows: Vec<Id> = prepared(conn, &sql).load(conn)?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}
