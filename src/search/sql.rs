//! SQL for a parsed search, the same text for SQLite and PostgreSQL apart from placeholders.
//!
//! Every clause becomes `pk IN (SELECT resource_pk FROM search_<type> WHERE system_id = ? AND
//! param = ? AND ...)`, which the planners serve from the `(system_id, param, value...)` indexes;
//! chains and `_has` nest the same shape. Every subquery is bound to the local system. Pages are
//! keyset pages: the cursor holds the last row's sort keys and key, so a page link stays valid
//! while data changes and a walk never repeats or skips a match.

use super::query::{
    Clause, Predicate, Prefix, ReferenceMatch, SearchRequest, SortKey, StringMode, TokenMatch,
    UriMode,
};
use super::registry::ParamType;
use super::values::prefix_upper_bound;
use crate::fhir::ResourceType;

/// At most this many sort keys (`_sort=a,b,c`).
pub const MAX_SORT_KEYS: usize = 3;

#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// NULL in a text column, bound rather than written, so that rows with and without a value
    /// share one statement text.
    NullText,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// SQL text with `?` placeholders, and the values to bind in order.
#[derive(Debug, Clone, Default)]
pub struct Sql {
    text: String,
    pub binds: Vec<Bind>,
    aliases: usize,
}

impl Sql {
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            ..Self::default()
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    pub fn bind(&mut self, bind: Bind) -> &mut Self {
        self.text.push('?');
        self.binds.push(bind);
        self
    }

    fn text(&mut self, value: &str) -> &mut Self {
        self.bind(Bind::Text(value.to_owned()))
    }

    fn int(&mut self, value: i64) -> &mut Self {
        self.bind(Bind::Int(value))
    }

    /// `LIMIT n` as a literal. A bound LIMIT makes SQLite plan every statement twice: its planner
    /// reads the bound value, so binding it expires the statement just prepared, and the first
    /// step prepares it again. The number is the server's own (a page size), never the client's
    /// text.
    fn limit(&mut self, rows: usize) -> &mut Self {
        self.push(" LIMIT ");
        self.push(&rows.min(i64::MAX as usize).to_string())
    }

    fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }

    /// The statement text, `?` where each bind goes (the backend writes its own placeholder).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text for a backend, as it prepares it (PostgreSQL numbers its placeholders): for
    /// `EXPLAIN`.
    pub fn render(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::Sqlite => self.text.clone(),
            Dialect::Postgres => {
                let mut out = String::with_capacity(self.text.len() + 16);
                for (n, segment) in self.text.split('?').enumerate() {
                    if n > 0 {
                        out.push('$');
                        out.push_str(&n.to_string());
                    }
                    out.push_str(segment);
                }
                out
            }
        }
    }
}

/// Where a page starts: after (or, going backwards, before) the row with these keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    /// The sort key values of that row, as text (in `_sort` order).
    pub keys: Vec<Option<String>>,
    pub pk: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub from: Option<Position>,
    pub backwards: bool,
    /// Rows to fetch (one more than the page, to know whether another follows).
    pub limit: usize,
}

/// The searched resources, their JSON, and their sort keys as text.
pub fn select(system_id: i64, request: &SearchRequest, own_base: &str, page: &Page) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT r.pk, r.resource_type, r.id, v.content");
    for i in 0..MAX_SORT_KEYS {
        match request.sort.get(i) {
            Some(key) => {
                sql.push(", CAST(");
                sort_expression(&mut sql, key);
                sql.push(&format!(" AS TEXT) AS k{i}"));
            }
            None => {
                sql.push(&format!(", CAST(NULL AS TEXT) AS k{i}"));
            }
        }
    }
    sql.push(
        " FROM resources r JOIN resource_versions v ON v.system_id = r.system_id \
         AND v.resource_pk = r.pk AND v.version_id = r.version_id WHERE ",
    );
    filter(&mut sql, system_id, request, own_base);
    if let Some(from) = &page.from {
        sql.push(" AND ");
        keyset(&mut sql, &request.sort, from, page.backwards);
    }
    // Ordered by the typed values (not their text), missing values lowest on both backends.
    sql.push(" ORDER BY ");
    for key in &request.sort {
        let descending = key.descending != page.backwards;
        sort_expression(&mut sql, key);
        sql.push(if descending {
            " DESC NULLS LAST, "
        } else {
            " ASC NULLS FIRST, "
        });
    }
    sql.push(if page.backwards {
        "r.pk DESC"
    } else {
        "r.pk ASC"
    });
    sql.limit(page.limit);
    sql
}

/// How many resources match (`_total=accurate`).
pub fn count(system_id: i64, request: &SearchRequest, own_base: &str) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT COUNT(*) AS n FROM resources r WHERE ");
    filter(&mut sql, system_id, request, own_base);
    sql
}

/// The conditions on `r`: the local system, the types, not deleted, every clause.
fn filter(sql: &mut Sql, system_id: i64, request: &SearchRequest, own_base: &str) {
    sql.push("r.system_id = ");
    sql.int(system_id);
    sql.push(" AND r.resource_type IN (");
    for (i, rtype) in request.types.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.text(rtype.as_str());
    }
    sql.push(") AND r.deleted = FALSE");
    let rtype = request
        .types
        .first()
        .copied()
        .unwrap_or(ResourceType::Patient);
    for clause in &request.clauses {
        sql.push(" AND ");
        clause_sql(sql, system_id, "r", rtype, clause, own_base);
    }
}

fn table(kind: ParamType) -> &'static str {
    match kind {
        ParamType::String => "search_string",
        ParamType::Token => "search_token",
        ParamType::Date => "search_date",
        ParamType::Reference => "search_reference",
        ParamType::Quantity | ParamType::Number => "search_quantity",
        ParamType::Uri | ParamType::Composite | ParamType::Special => "search_uri",
    }
}

/// One clause on the resource aliased `alias`, of type `rtype`.
fn clause_sql(
    sql: &mut Sql,
    system_id: i64,
    alias: &str,
    rtype: ResourceType,
    clause: &Clause,
    own_base: &str,
) {
    match clause {
        Clause::Id(ids) => {
            if ids.is_empty() {
                sql.push("1 = 0");
                return;
            }
            sql.push(&format!("{alias}.id IN ("));
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.text(id);
            }
            sql.push(")");
        }
        Clause::LastUpdated(any_of) => {
            if any_of.is_empty() {
                sql.push("1 = 1");
                return;
            }
            let column = format!("{alias}.last_updated");
            sql.push("(");
            for (i, predicate) in any_of.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                if let Predicate::Date { prefix, low, high } = predicate {
                    date_condition(sql, &column, &column, *prefix, *low, *high);
                }
            }
            sql.push(")");
        }
        Clause::Missing {
            param,
            kind,
            missing,
        } => {
            sql.push(&format!(
                "{alias}.pk {}IN (SELECT resource_pk FROM {} WHERE system_id = ",
                if *missing { "NOT " } else { "" },
                table(*kind)
            ));
            sql.int(system_id);
            sql.push(" AND param = ");
            sql.text(param);
            sql.push(")");
        }
        Clause::Param {
            param,
            kind,
            negate,
            any_of,
        } => {
            sql.push(&format!(
                "{alias}.pk {}IN (SELECT resource_pk FROM {} WHERE system_id = ",
                if *negate { "NOT " } else { "" },
                table(*kind)
            ));
            sql.int(system_id);
            sql.push(" AND param = ");
            sql.text(param);
            sql.push(" AND (");
            for (i, predicate) in any_of.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                predicate_sql(sql, predicate, own_base);
            }
            sql.push("))");
        }
        Clause::Chain {
            param,
            target,
            inner,
        } => {
            let sr = sql.alias("sr");
            let c = sql.alias("c");
            sql.push(&format!("{alias}.pk IN (SELECT {sr}.resource_pk FROM search_reference {sr} WHERE {sr}.system_id = "));
            sql.int(system_id);
            sql.push(&format!(" AND {sr}.param = "));
            sql.text(param);
            sql.push(&format!(" AND {sr}.target_type = "));
            sql.text(target.as_str());
            sql.push(&format!(
                " AND {sr}.target_id IN (SELECT {c}.id FROM resources {c} WHERE {c}.system_id = "
            ));
            sql.int(system_id);
            sql.push(&format!(" AND {c}.resource_type = "));
            sql.text(target.as_str());
            sql.push(&format!(" AND {c}.deleted = FALSE AND "));
            clause_sql(sql, system_id, &c, *target, inner, own_base);
            sql.push("))");
        }
        Clause::InCompartment { params, patient } => {
            sql.push(&format!(
                "{alias}.pk IN (SELECT resource_pk FROM search_reference WHERE system_id = "
            ));
            sql.int(system_id);
            sql.push(" AND target_type = 'Patient' AND target_id = ");
            sql.text(patient);
            sql.push(" AND param IN (");
            list_texts(sql, params);
            sql.push("))");
        }
        Clause::ExcludeRestricted { params } => {
            let restricted_patients = |sql: &mut Sql| {
                sql.push("SELECT t.resource_pk FROM search_token t WHERE t.system_id = ");
                sql.int(system_id);
                sql.push(" AND t.param = '_security' AND t.code = 'R' AND t.system = ");
                sql.text(crate::store::access::CONFIDENTIALITY);
            };
            sql.push(&format!("{alias}.pk NOT IN ("));
            restricted_patients(sql);
            sql.push(")");
            if !params.is_empty() {
                sql.push(&format!(" AND {alias}.pk NOT IN (SELECT x.resource_pk FROM search_reference x WHERE x.system_id = "));
                sql.int(system_id);
                sql.push(" AND x.target_type = 'Patient' AND x.param IN (");
                list_texts(sql, params);
                sql.push(") AND x.target_id IN (SELECT rp.id FROM resources rp WHERE rp.pk IN (");
                restricted_patients(sql);
                sql.push(")))");
            }
        }
        Clause::Has {
            source,
            param,
            inner,
        } => {
            // From the referring resources that meet `inner`, through their own reference rows,
            // to the keys of what they refer to: the work follows the inner matches, not every
            // reference of the kind in the system, nor every resource of the searched type. So
            // the system is held on the resources at both ends, and CROSS JOIN keeps SQLite
            // (without statistics) to that order; PostgreSQL may reorder it.
            let sr = sql.alias("sr");
            let h = sql.alias("h");
            let t = sql.alias("t");
            sql.push(&format!(
                "{alias}.pk IN (SELECT {t}.pk FROM resources {h} CROSS JOIN search_reference {sr} \
                 CROSS JOIN resources {t} WHERE {sr}.resource_pk = {h}.pk AND {t}.system_id = "
            ));
            sql.int(system_id);
            sql.push(&format!(
                " AND {t}.resource_type = {sr}.target_type AND {t}.id = {sr}.target_id AND {sr}.param = "
            ));
            sql.text(param);
            sql.push(&format!(" AND {sr}.target_type = "));
            sql.text(rtype.as_str());
            sql.push(&format!(" AND {h}.system_id = "));
            sql.int(system_id);
            sql.push(&format!(" AND {h}.resource_type = "));
            sql.text(source.as_str());
            sql.push(&format!(" AND {h}.deleted = FALSE AND "));
            clause_sql(sql, system_id, &h, *source, inner, own_base);
            sql.push(")");
        }
    }
}

fn like_escaped(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('%');
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn prefix_range(sql: &mut Sql, column: &str, prefix: &str) {
    sql.push(&format!("({column} >= "));
    sql.text(prefix);
    if let Some(upper) = prefix_upper_bound(prefix) {
        sql.push(&format!(" AND {column} < "));
        sql.text(&upper);
    }
    sql.push(")");
}

fn predicate_sql(sql: &mut Sql, predicate: &Predicate, own_base: &str) {
    match predicate {
        Predicate::String { mode, value } => match mode {
            StringMode::StartsWith => prefix_range(sql, "value_norm", value),
            StringMode::Exact => {
                sql.push("value_exact = ");
                sql.text(value);
            }
            StringMode::Contains => {
                sql.push("value_norm LIKE ");
                sql.text(&like_escaped(value));
                sql.push(" ESCAPE '\\'");
            }
        },
        Predicate::Token(token) => match token {
            TokenMatch::Code { system, code } => {
                sql.push("(code = ");
                sql.text(code);
                if let Some(system) = system {
                    sql.push(" AND system = ");
                    sql.text(system);
                }
                sql.push(")");
            }
            TokenMatch::System(system) => {
                sql.push("(system = ");
                sql.text(system);
                sql.push(" AND code <> '')");
            }
            TokenMatch::Text(text) => prefix_range(sql, "text_norm", text),
            TokenMatch::OfType {
                system,
                code,
                value,
            } => {
                sql.push("(type_system = ");
                sql.text(system);
                sql.push(" AND type_code = ");
                sql.text(code);
                sql.push(" AND code = ");
                sql.text(value);
                sql.push(")");
            }
        },
        Predicate::Date { prefix, low, high } => {
            date_condition(sql, "low", "high", *prefix, *low, *high)
        }
        Predicate::Reference(reference) => match reference {
            ReferenceMatch::Local { target_type, id } => {
                local_reference(sql, target_type.as_deref(), id)
            }
            ReferenceMatch::Url(url) => {
                // A URL on this server's own base is a local reference.
                let local = url
                    .strip_prefix(own_base)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .map(|rest| rest.split('/').collect::<Vec<_>>());
                match local.as_deref() {
                    Some([t, id]) | Some([t, id, "_history", _]) => {
                        local_reference(sql, Some(t), id)
                    }
                    _ => {
                        sql.push("url = ");
                        sql.text(url);
                    }
                }
            }
            ReferenceMatch::Identifier { system, value } => {
                sql.push("(identifier_value = ");
                sql.text(value);
                if let Some(system) = system {
                    sql.push(" AND identifier_system = ");
                    sql.text(system);
                }
                sql.push(")");
            }
        },
        Predicate::Quantity {
            prefix,
            low,
            high,
            system,
            code,
        } => {
            let value = (low + high) / 2.0;
            sql.push("(");
            match prefix {
                Prefix::Eq => {
                    sql.push("value >= ")
                        .bind(Bind::Float(*low))
                        .push(" AND value < ")
                        .bind(Bind::Float(*high));
                }
                Prefix::Ne => {
                    sql.push("(value < ")
                        .bind(Bind::Float(*low))
                        .push(" OR value >= ")
                        .bind(Bind::Float(*high))
                        .push(")");
                }
                Prefix::Gt | Prefix::Sa => {
                    sql.push("value > ").bind(Bind::Float(value));
                }
                Prefix::Lt | Prefix::Eb => {
                    sql.push("value < ").bind(Bind::Float(value));
                }
                Prefix::Ge => {
                    sql.push("value >= ").bind(Bind::Float(value));
                }
                Prefix::Le => {
                    sql.push("value <= ").bind(Bind::Float(value));
                }
                Prefix::Ap => {
                    let margin = (value * 0.1).abs().max(high - low);
                    sql.push("value >= ")
                        .bind(Bind::Float(value - margin))
                        .push(" AND value <= ")
                        .bind(Bind::Float(value + margin));
                }
            }
            if let Some(system) = system {
                sql.push(" AND system = ");
                sql.text(system);
            }
            if let Some(code) = code {
                sql.push(" AND code = ");
                sql.text(code);
            }
            sql.push(")");
        }
        Predicate::Uri { mode, value } => match mode {
            UriMode::Equals => {
                sql.push("value = ");
                sql.text(value);
            }
            UriMode::Below => prefix_range(sql, "value", value),
            UriMode::Above => {
                sql.push("substr(");
                sql.text(value);
                sql.push(", 1, length(value)) = value");
            }
        },
    }
}

fn local_reference(sql: &mut Sql, target_type: Option<&str>, id: &str) {
    sql.push("(target_id = ");
    sql.text(id);
    if let Some(t) = target_type {
        sql.push(" AND target_type = ");
        sql.text(t);
    }
    sql.push(")");
}

/// A value covering `[low_col, high_col]` compared with the search range `[low, high]`, as the
/// R4 prefixes define (<https://hl7.org/fhir/R4/search.html#prefix>).
fn date_condition(
    sql: &mut Sql,
    low_col: &str,
    high_col: &str,
    prefix: Prefix,
    low: i64,
    high: i64,
) {
    // A stored range starts no later than it ends, so bounding the start as well where that
    // follows keeps an index range scan on (low, high) narrow instead of open-ended.
    let ranged = low_col != high_col;
    match prefix {
        Prefix::Eq => {
            sql.push(&format!("({low_col} >= "))
                .int(low)
                .push(&format!(" AND {high_col} <= "))
                .int(high);
            if ranged {
                sql.push(&format!(" AND {low_col} <= ")).int(high);
            }
            sql.push(")");
        }
        Prefix::Ne => {
            sql.push(&format!("({low_col} < "))
                .int(low)
                .push(&format!(" OR {high_col} > "))
                .int(high)
                .push(")");
        }
        Prefix::Gt => {
            sql.push(&format!("{high_col} > ")).int(high);
        }
        Prefix::Lt => {
            sql.push(&format!("{low_col} < ")).int(low);
        }
        Prefix::Ge => {
            sql.push(&format!("({high_col} > ")).int(high);
            sql.push(&format!(" OR ({low_col} >= "))
                .int(low)
                .push(&format!(" AND {high_col} <= "))
                .int(high)
                .push("))");
        }
        Prefix::Le => {
            sql.push(&format!("({low_col} < ")).int(low);
            sql.push(&format!(" OR ({low_col} >= "))
                .int(low)
                .push(&format!(" AND {high_col} <= "))
                .int(high)
                .push("))");
        }
        Prefix::Sa => {
            sql.push(&format!("{low_col} > ")).int(high);
        }
        Prefix::Eb => {
            sql.push(&format!("({high_col} < ")).int(low);
            if ranged {
                sql.push(&format!(" AND {low_col} < ")).int(low);
            }
            sql.push(")");
        }
        Prefix::Ap => {
            // Approximately: within 10% of the distance from now, and at least a day.
            let now = chrono::Utc::now().timestamp_millis();
            let middle = low / 2 + high / 2;
            let margin = ((now - middle).abs() / 10).max(86_400_000);
            sql.push(&format!("({low_col} <= "))
                .int(high.saturating_add(margin));
            sql.push(&format!(" AND {high_col} >= "))
                .int(low.saturating_sub(margin))
                .push(")");
        }
    }
}

/// The value a resource sorts by for one key (the lowest for ascending, highest for descending).
fn sort_expression(sql: &mut Sql, key: &SortKey) {
    let aggregate = if key.descending { "MAX" } else { "MIN" };
    match (key.param.as_str(), key.kind) {
        ("_id", _) => {
            sql.push("r.id");
        }
        ("_lastUpdated", _) => {
            sql.push("r.last_updated");
        }
        (param, kind) => {
            let column = match kind {
                ParamType::String => "value_norm",
                ParamType::Token => "code",
                ParamType::Date => {
                    if key.descending {
                        "high"
                    } else {
                        "low"
                    }
                }
                ParamType::Reference => "target_id",
                ParamType::Quantity | ParamType::Number => "value",
                _ => "value",
            };
            sql.push(&format!(
                "(SELECT {aggregate}({column}) FROM {} s WHERE s.resource_pk = r.pk AND s.param = ",
                table(kind)
            ));
            sql.text(param);
            sql.push(")");
        }
    }
}

/// Rows strictly after `from` in the sort order (before it when going backwards). A missing
/// sort value sorts first.
fn keyset(sql: &mut Sql, keys: &[SortKey], from: &Position, backwards: bool) {
    sql.push("(");
    for i in 0..=keys.len() {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push("(");
        for (j, key) in keys.iter().take(i).enumerate() {
            if j > 0 {
                sql.push(" AND ");
            }
            equal_key(sql, key, j, from.keys.get(j).cloned().flatten());
        }
        if i > 0 {
            sql.push(" AND ");
        }
        match keys.get(i) {
            Some(key) => {
                let forward = key.descending == backwards;
                beyond_key(sql, key, i, from.keys.get(i).cloned().flatten(), forward);
            }
            None => {
                sql.push(if backwards { "r.pk < " } else { "r.pk > " });
                sql.int(from.pk);
            }
        }
        sql.push(")");
    }
    sql.push(")");
}

fn key_bind(key: &SortKey, value: String) -> Bind {
    match key.param.as_str() {
        "_lastUpdated" => value.parse().map(Bind::Int).unwrap_or(Bind::Text(value)),
        _ => match key.kind {
            ParamType::Date => value.parse().map(Bind::Int).unwrap_or(Bind::Text(value)),
            ParamType::Quantity | ParamType::Number => {
                value.parse().map(Bind::Float).unwrap_or(Bind::Text(value))
            }
            _ => Bind::Text(value),
        },
    }
}

fn equal_key(sql: &mut Sql, key: &SortKey, _index: usize, value: Option<String>) {
    match value {
        None => {
            sort_expression(sql, key);
            sql.push(" IS NULL");
        }
        Some(v) => {
            sort_expression(sql, key);
            sql.push(" = ");
            sql.bind(key_bind(key, v));
        }
    }
}

/// The key strictly beyond `value` in the walking direction (NULL sorts lowest).
fn beyond_key(sql: &mut Sql, key: &SortKey, _index: usize, value: Option<String>, ascending: bool) {
    match (value, ascending) {
        (None, true) => {
            sort_expression(sql, key);
            sql.push(" IS NOT NULL");
        }
        (None, false) => {
            sql.push("1 = 0");
        }
        (Some(v), true) => {
            sort_expression(sql, key);
            sql.push(" > ");
            sql.bind(key_bind(key, v));
        }
        (Some(v), false) => {
            sql.push("(");
            sort_expression(sql, key);
            sql.push(" < ");
            sql.bind(key_bind(key, v));
            sql.push(" OR ");
            sort_expression(sql, key);
            sql.push(" IS NULL)");
        }
    }
}

/// `_include`: the resources that the rows `source_pks` point at through `params` (optionally
/// only of `target` type), in this local system, not deleted.
pub fn include(
    system_id: i64,
    source_pks: &[i64],
    params: &[String],
    target: Option<ResourceType>,
) -> Sql {
    let mut sql = Sql::default();
    sql.push(
        "SELECT DISTINCT r.pk, r.resource_type, r.id, v.content, CAST(NULL AS TEXT) AS k0, \
         CAST(NULL AS TEXT) AS k1, CAST(NULL AS TEXT) AS k2 FROM search_reference sr \
         CROSS JOIN resources r \
         JOIN resource_versions v ON v.system_id = r.system_id AND v.resource_pk = r.pk AND v.version_id = r.version_id \
         WHERE r.resource_type = sr.target_type AND r.id = sr.target_id AND sr.resource_pk IN (",
    );
    // The sources are this system's own matches, named by key, and that is where the work must
    // start (the resource_pk index), whatever the size of the system. Without statistics SQLite
    // would rather start from any system_id condition: so none is put on sr, not even through
    // the join (the system is held on what is included), and CROSS JOIN keeps SQLite from
    // starting at r (PostgreSQL treats it as an inner join it may reorder).
    list_ints(&mut sql, source_pks);
    sql.push(") AND sr.param IN (");
    list_texts(&mut sql, params);
    sql.push(")");
    if let Some(target) = target {
        sql.push(" AND sr.target_type = ");
        sql.text(target.as_str());
    }
    sql.push(" AND r.system_id = ");
    sql.int(system_id);
    sql.push(" AND r.deleted = FALSE");
    sql
}

/// `_revinclude`: the `source` resources that point at any of `targets` (type, id) through
/// `params`, in this local system, not deleted.
pub fn revinclude(
    system_id: i64,
    source: ResourceType,
    params: &[String],
    targets: &[(String, String)],
) -> Sql {
    let mut sql = Sql::default();
    sql.push(
        "SELECT DISTINCT r.pk, r.resource_type, r.id, v.content, CAST(NULL AS TEXT) AS k0, \
         CAST(NULL AS TEXT) AS k1, CAST(NULL AS TEXT) AS k2 FROM search_reference sr \
         JOIN resources r ON r.pk = sr.resource_pk \
         JOIN resource_versions v ON v.system_id = r.system_id AND v.resource_pk = r.pk AND v.version_id = r.version_id \
         WHERE sr.system_id = ",
    );
    sql.int(system_id);
    sql.push(" AND r.system_id = ");
    sql.int(system_id);
    sql.push(" AND r.resource_type = ");
    sql.text(source.as_str());
    sql.push(" AND sr.param IN (");
    list_texts(&mut sql, params);
    sql.push(") AND (");
    for (i, (rtype, id)) in targets.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push("(sr.target_id = ");
        sql.text(id);
        sql.push(" AND sr.target_type = ");
        sql.text(rtype);
        sql.push(")");
    }
    sql.push(") AND r.deleted = FALSE");
    sql
}

/// How many live resources of a type a local system holds (to refuse unselective searches).
pub fn type_size(system_id: i64, rtype: ResourceType) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT COUNT(*) AS n FROM resources r WHERE r.system_id = ");
    sql.int(system_id);
    sql.push(" AND r.resource_type = ");
    sql.text(rtype.as_str());
    sql
}

/// The live resources of a type whose token `param` holds any of `codes`, with the token's system
/// and code (the caller compares the systems): conditions of the form `param=system|code`, many
/// at once. `code IN (...)` is answered from `search_token_lookup` (system_id, param, code, system).
pub fn token_codes(system_id: i64, rtype: ResourceType, param: &str, codes: &[&str]) -> Sql {
    let mut sql = Sql::default();
    sql.push(
        "SELECT r.pk, r.id, t.param, t.system, t.code FROM search_token t \
         JOIN resources r ON r.pk = t.resource_pk WHERE t.system_id = ",
    );
    sql.int(system_id);
    sql.push(" AND t.param = ");
    sql.text(param);
    sql.push(" AND t.code IN (");
    for (i, code) in codes.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.text(code);
    }
    sql.push(") AND r.system_id = ");
    sql.int(system_id);
    sql.push(" AND r.resource_type = ");
    sql.text(rtype.as_str());
    sql.push(" AND r.deleted = FALSE");
    sql
}

fn list_ints(sql: &mut Sql, values: &[i64]) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.int(*v);
    }
}

fn list_texts(sql: &mut Sql, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.text(v);
    }
}

/// `Patient/[id]/$everything`: the patient, everything in its compartment, and the
/// Organizations, Practitioners, PractitionerRoles and Locations they refer to — keyset-paged in
/// key order, optionally since an instant and of some types only.
pub fn everything(
    system_id: i64,
    patient_id: &str,
    compartment_params: &[String],
    types: &[ResourceType],
    since: Option<i64>,
    page: &Page,
) -> Sql {
    // The record is gathered from the patient outwards — its compartment by the reference index,
    // then what those resources refer to by their own reference rows — and only then joined to
    // the resources, so the work grows with the patient's record, not with the local system.
    // CROSS JOIN keeps SQLite to that order (without statistics it would rather scan the whole
    // local system by its system_id index); PostgreSQL treats it as an inner join it may reorder.
    let mut sql =
        Sql::new("WITH members (pk) AS (SELECT p.pk FROM resources p WHERE p.system_id = ");
    sql.int(system_id);
    sql.push(" AND p.resource_type = 'Patient' AND p.id = ");
    sql.text(patient_id);
    sql.push(" UNION SELECT m.resource_pk FROM search_reference m WHERE m.system_id = ");
    sql.int(system_id);
    sql.push(" AND m.target_type = 'Patient' AND m.target_id = ");
    sql.text(patient_id);
    sql.push(" AND m.param IN (");
    list_texts(&mut sql, compartment_params);
    sql.push(
        ")), record (pk) AS (SELECT pk FROM members UNION SELECT t.pk FROM members \
         CROSS JOIN search_reference s \
         JOIN resources t ON t.system_id = s.system_id AND t.resource_type = s.target_type AND t.id = s.target_id \
         WHERE s.resource_pk = members.pk AND s.system_id = ",
    );
    sql.int(system_id);
    sql.push(
        " AND s.target_type IN ('Organization', 'Practitioner', 'PractitionerRole', 'Location')) \
         SELECT r.pk, r.resource_type, r.id, v.content, CAST(NULL AS TEXT) AS k0, \
         CAST(NULL AS TEXT) AS k1, CAST(NULL AS TEXT) AS k2 FROM record \
         CROSS JOIN resources r \
         JOIN resource_versions v ON v.system_id = r.system_id AND v.resource_pk = r.pk AND v.version_id = r.version_id \
         WHERE r.pk = record.pk AND r.system_id = ",
    );
    sql.int(system_id);
    sql.push(" AND r.deleted = FALSE");
    if !types.is_empty() {
        sql.push(" AND r.resource_type IN (");
        let names: Vec<String> = types.iter().map(|t| t.as_str().to_owned()).collect();
        list_texts(&mut sql, &names);
        sql.push(")");
    }
    if let Some(since) = since {
        sql.push(" AND r.last_updated >= ");
        sql.int(since);
    }
    if let Some(from) = &page.from {
        sql.push(if page.backwards {
            " AND r.pk < "
        } else {
            " AND r.pk > "
        });
        sql.int(from.pk);
    }
    sql.push(if page.backwards {
        " ORDER BY r.pk DESC"
    } else {
        " ORDER BY r.pk ASC"
    });
    sql.limit(page.limit);
    sql
}
