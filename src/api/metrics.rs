//! `GET /metrics`: Prometheus text — requests by method and status class, their total latency,
//! the database pool, and the audit trail's health. No patient data; public like `/health`.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{web, HttpResponse};

use super::AppState;

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OTHER"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Counters shared by every worker.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [[AtomicU64; 5]; 7],
    micros: AtomicU64,
    count: AtomicU64,
}

impl Metrics {
    pub fn observe(&self, method: &str, status: u16, micros: u64) {
        let m = METHODS
            .iter()
            .position(|x| *x == method)
            .unwrap_or(METHODS.len() - 1);
        let c = usize::from((status / 100).clamp(1, 5) - 1);
        self.requests[m][c].fetch_add(1, Ordering::Relaxed);
        self.micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    let mut out = String::new();
    out.push_str(
        "# HELP carerecord_http_requests_total HTTP requests served, by method and status class.\n",
    );
    out.push_str("# TYPE carerecord_http_requests_total counter\n");
    for (i, method) in METHODS.iter().enumerate() {
        for (j, class) in CLASSES.iter().enumerate() {
            let n = m.requests[i][j].load(Ordering::Relaxed);
            if n > 0 {
                out.push_str(&format!("carerecord_http_requests_total{{method=\"{method}\",status=\"{class}\"}} {n}\n"));
            }
        }
    }
    out.push_str("# HELP carerecord_http_request_duration_seconds Time spent serving requests.\n");
    out.push_str("# TYPE carerecord_http_request_duration_seconds summary\n");
    out.push_str(&format!(
        "carerecord_http_request_duration_seconds_sum {:.6}\n",
        m.micros.load(Ordering::Relaxed) as f64 / 1e6
    ));
    out.push_str(&format!(
        "carerecord_http_request_duration_seconds_count {}\n",
        m.count.load(Ordering::Relaxed)
    ));
    let pool = state.db.pool_state();
    out.push_str("# HELP carerecord_db_connections Database connections in the pool.\n");
    out.push_str("# TYPE carerecord_db_connections gauge\n");
    out.push_str(&format!(
        "carerecord_db_connections{{state=\"idle\"}} {}\n",
        pool.1
    ));
    out.push_str(&format!(
        "carerecord_db_connections{{state=\"in_use\"}} {}\n",
        pool.0.saturating_sub(pool.1)
    ));
    out.push_str("# HELP carerecord_info The server's version and database backend.\n");
    out.push_str("# TYPE carerecord_info gauge\n");
    out.push_str(&format!(
        "carerecord_info{{version=\"{}\",database=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION"),
        state.db.backend()
    ));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out)
}
