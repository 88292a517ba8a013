//! Test harness: every test starts the real server on a real listener (port 0) over its own
//! database — a temporary SQLite file, or its own schema in the PostgreSQL named by
//! `CARERECORD_TEST_POSTGRES_URL` — and talks to it over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod corpus;
pub mod searching;

use std::net::TcpListener;
use std::path::PathBuf;

use actix_web::http::StatusCode;
use awc::http::header::HeaderMap;
use carerecord::settings::Settings;
use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::Value;

pub const POSTGRES_ENV: &str = "CARERECORD_TEST_POSTGRES_URL";

/// Runs each listed `async fn name(app: TestApp)` once per backend: `sqlite::name` and
/// `postgres::name` (the latter only when `CARERECORD_TEST_POSTGRES_URL` is set).
#[macro_export]
macro_rules! on_both_backends {
    (@configure $configure:path; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name($crate::common::TestApp::sqlite_with($configure).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $name() {
                    if let Some(app) = $crate::common::TestApp::postgres_with($configure).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name($crate::common::TestApp::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $name() {
                    if let Some(app) = $crate::common::TestApp::postgres().await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}

/// A response as the tests see it.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// Asserts an OperationOutcome with this status and first issue code; returns the issue.
    pub fn assert_outcome(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
        let issue = body["issue"][0].clone();
        assert_eq!(issue["code"], code, "{body}");
        issue
    }
}

enum Db {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, schema: String },
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Postgres { admin_url, schema } = self {
            if let Ok(mut conn) = PgConnection::establish(admin_url) {
                let _ = diesel::sql_query(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&mut conn);
            }
        }
    }
}

/// The token secret of every test server.
pub const TEST_SECRET: &str = "test-secret-not-for-production-0123456789";
/// The issuer and audience every test server requires (and test tokens carry).
pub const TEST_ISSUER: &str = "https://idp.carerecord.test";
pub const TEST_AUDIENCE: &str = "carerecord-test";

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// Where the server's key files live (tests configure a secret, so nothing is generated).
    pub data_dir: PathBuf,
    pub client: awc::Client,
    pub database_url: String,
    _db: Db,
}

impl TestApp {
    pub async fn sqlite() -> Self {
        Self::sqlite_with(|_| {}).await
    }

    /// A server whose settings `configure` adjusts.
    pub async fn sqlite_with(configure: fn(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("carerecord.db");
        let url = format!("sqlite://{}", path.display());
        Self::start(url, Db::Sqlite(dir), configure).await
    }

    /// `None` (the test is skipped) when no PostgreSQL is configured.
    pub async fn postgres() -> Option<Self> {
        Self::postgres_with(|_| {}).await
    }

    pub async fn postgres_with(configure: fn(&mut Settings)) -> Option<Self> {
        let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
            eprintln!("{POSTGRES_ENV} is not set: skipping the PostgreSQL run");
            return None;
        };
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::establish(&admin_url)
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {POSTGRES_ENV}: {e}"));
        diesel::sql_query(format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .unwrap();
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-csearch_path%3D{schema}");
        Some(Self::start(url, Db::Postgres { admin_url, schema }, configure).await)
    }

    async fn start(database_url: String, db: Db, configure: fn(&mut Settings)) -> Self {
        // The server's log (RUST_LOG), shown with a failing test's output.
        let _ = env_logger::builder().is_test(true).try_init();
        let data_dir =
            std::env::temp_dir().join(format!("carerecord-test-{}", uuid::Uuid::new_v4().simple()));
        let keys = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys");
        let settings = Settings {
            listen: "127.0.0.1:0".into(),
            database_url: database_url.clone(),
            db_pool_size: 4,
            workers: 1,
            max_body_bytes: 4 * 1024 * 1024,
            jwt_secret: Some(TEST_SECRET.into()),
            data_dir: data_dir.clone(),
            jwt_public_keys: vec![keys.join("rs256-public.pem"), keys.join("es256-public.pem")],
            rate_limit: 0,
            jwt_issuer: Some(TEST_ISSUER.into()),
            jwt_audience: Some(TEST_AUDIENCE.into()),
            ..Settings::default()
        };
        let mut settings = settings;
        configure(&mut settings);
        let state = carerecord::startup::build_state(settings).expect("database opens");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = carerecord::startup::server(state, listener).unwrap();
        actix_web::rt::spawn(server);
        Self {
            data_dir,
            address: format!("http://127.0.0.1:{port}"),
            client: awc::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .finish(),
            database_url,
            _db: db,
        }
    }

    /// The FHIR base of a local system.
    pub fn base(&self, system: &str) -> String {
        format!("{}/fhir/{system}", self.address)
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.address)
        };
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, url);
        // Every request carries a token for its path (a feeder of the system, or an admin),
        // unless the test sends its own Authorization.
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        {
            if let Some(token) = self.default_token(path) {
                request = request.insert_header(("authorization", format!("Bearer {token}")));
            }
        }
        for (name, value) in headers {
            request = request.insert_header((*name, *value));
        }
        let mut response = match body {
            Some(bytes) => request.send_body(bytes.to_vec()).await,
            None => request.send().await,
        }
        .expect("request reaches the server");
        let body = response
            .body()
            .limit(64 * 1024 * 1024)
            .await
            .unwrap()
            .to_vec();
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body,
        }
    }

    fn default_token(&self, path: &str) -> Option<String> {
        let relative = path.strip_prefix(&self.address).unwrap_or(path);
        if relative.starts_with("/admin") {
            return Some(self.token("admin", "default", "admin", None, None));
        }
        let system = relative.strip_prefix("/fhir/")?.split(['/', '?']).next()?;
        Some(self.token("feeder", system, "test-feeder", None, None))
    }

    /// A token signed with the test server's secret.
    pub fn token(
        &self,
        role: &str,
        system: &str,
        sub: &str,
        fhir_user: Option<&str>,
        scope: Option<&str>,
    ) -> String {
        self.token_with(role, system, sub, fhir_user, scope, None)
    }

    pub fn token_with(
        &self,
        role: &str,
        system: &str,
        sub: &str,
        fhir_user: Option<&str>,
        scope: Option<&str>,
        purpose_of_use: Option<&str>,
    ) -> String {
        let role = carerecord::auth::Role::parse(role).unwrap();
        let now = chrono::Utc::now().timestamp();
        let claims = carerecord::auth::Claims {
            sub: sub.into(),
            role,
            system: system.into(),
            scope: scope.unwrap_or(role.default_scope()).into(),
            fhir_user: fhir_user.map(str::to_owned),
            org: Some("B82005".into()),
            purpose_of_use: purpose_of_use.map(str::to_owned),
            exp: now + 600,
            nbf: Some(now),
            iat: Some(now),
            iss: Some(TEST_ISSUER.into()),
            aud: Some(TEST_AUDIENCE.into()),
        };
        let config = carerecord::auth::keys::KeyConfig {
            secret: Some(TEST_SECRET.into()),
            ..Default::default()
        };
        carerecord::auth::keys::mint(&config, &claims).unwrap()
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], None).await
    }

    /// Sends a FHIR JSON body.
    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Reply {
        let mut all = vec![("content-type", "application/fhir+json")];
        all.extend_from_slice(headers);
        self.send(method, path, &all, Some(body.to_string().as_bytes()))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send_json("POST", path, &[], body).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send_json("PUT", path, &[], body).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, &[], None).await
    }

    /// Creates a resource in a system and returns its id.
    pub async fn create(&self, system: &str, resource: &Value) -> String {
        let rtype = resource["resourceType"].as_str().unwrap();
        let reply = self
            .post(&format!("/fhir/{system}/{rtype}"), resource)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()["id"].as_str().unwrap().to_owned()
    }

    /// Registers a local system through the admin API.
    pub async fn add_system(&self, slug: &str) {
        let reply = self
            .send_json(
                "PUT",
                &format!("/admin/systems/{slug}"),
                &[],
                &serde_json::json!({ "name": format!("System {slug}") }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
}

/// The smallest valid resource of a type (ServiceRequest needs the id of an existing Patient).
pub fn minimal(rtype: &str, patient: Option<&str>) -> Value {
    match rtype {
        "Encounter" => serde_json::json!({
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
        }),
        "ServiceRequest" => serde_json::json!({
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": format!("Patient/{}", patient.unwrap_or("missing"))}
        }),
        // org-1: an Organization needs a name or an identifier.
        "Organization" => serde_json::json!({"resourceType": "Organization", "name": "A practice"}),
        other => serde_json::json!({ "resourceType": other }),
    }
}

/// Reads a JSON file from `../shared/fhir/` or `examples/`, relative to the crate root.
pub fn fixture(relative: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}
