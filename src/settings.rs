//! Typed settings, read once at start from flags and `CARERECORD_*` variables, validated, then
//! passed to the app as data (never a global). Every setting is listed in the README.

use validator::Validate;

/// The default database: an embedded SQLite file under `./data`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/carerecord.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// 64 MiB: room for a 10,000-entry transaction Bundle.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
pub const DEFAULT_POOL_SIZE: u32 = 8;
pub const DEFAULT_HISTORY_COUNT: i64 = 50;
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_RATE_LIMIT: u32 = 1000;
pub const MAX_HISTORY_COUNT: i64 = 1000;

#[derive(Debug, Clone, Validate)]
pub struct Settings {
    /// Address to listen on (`--listen`, `CARERECORD_LISTEN`).
    #[validate(length(min = 1))]
    pub listen: String,
    /// `sqlite://PATH` or `postgres://...` (`--database-url`, `CARERECORD_DATABASE_URL`).
    #[validate(custom(function = "validate_database_url"))]
    pub database_url: String,
    /// Largest request body accepted; larger answers 413 (`CARERECORD_MAX_BODY_BYTES`).
    #[validate(range(min = 1024, max = 1073741824))]
    pub max_body_bytes: usize,
    /// Database connections in the pool (`CARERECORD_DB_POOL_SIZE`).
    #[validate(range(min = 1, max = 256))]
    pub db_pool_size: u32,
    /// The public base URL when behind a proxy, e.g. `https://care.example.nhs.uk`
    /// (`CARERECORD_PUBLIC_URL`); otherwise derived from the request's Host.
    #[validate(custom(function = "validate_public_url"))]
    pub public_url: Option<String>,
    /// HTTP worker threads (`CARERECORD_WORKERS`); 0 means one per core.
    #[validate(range(max = 256))]
    pub workers: usize,
    /// Where the server keeps its generated token secret (`CARERECORD_DATA_DIR`).
    pub data_dir: std::path::PathBuf,
    /// The HS256 token secret (`CARERECORD_JWT_SECRET`); generated into the data folder if unset.
    pub jwt_secret: Option<String>,
    /// PEM public keys of external identity providers, RS256 or ES256 (`CARERECORD_JWT_PUBLIC_KEYS`).
    pub jwt_public_keys: Vec<std::path::PathBuf>,
    /// A JWKS file of external identity providers' keys (`CARERECORD_JWKS_FILE`).
    pub jwks_file: Option<std::path::PathBuf>,
    /// Required `iss` (`CARERECORD_JWT_ISSUER`).
    pub jwt_issuer: Option<String>,
    /// Required `aud` (`CARERECORD_JWT_AUDIENCE`).
    pub jwt_audience: Option<String>,
    /// Requests per second per token (`CARERECORD_RATE_LIMIT`); 0 turns limiting off.
    pub rate_limit: u32,
    /// `--insecure-no-auth`: no tokens, every request acts as a feeder (local experiments only).
    pub insecure_no_auth: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            database_url: DEFAULT_DATABASE_URL.into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            db_pool_size: DEFAULT_POOL_SIZE,
            public_url: None,
            workers: 0,
            data_dir: DEFAULT_DATA_DIR.into(),
            jwt_secret: None,
            jwt_public_keys: Vec::new(),
            jwks_file: None,
            jwt_issuer: None,
            jwt_audience: None,
            rate_limit: DEFAULT_RATE_LIMIT,
            insecure_no_auth: false,
        }
    }
}

impl Settings {
    /// The token key configuration these settings describe.
    pub fn keys(&self) -> crate::auth::keys::KeyConfig {
        crate::auth::keys::KeyConfig {
            secret: self.jwt_secret.clone(),
            data_dir: self.data_dir.clone(),
            public_keys: self.jwt_public_keys.clone(),
            jwks: self.jwks_file.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
        }
    }
}

fn validate_database_url(url: &str) -> Result<(), validator::ValidationError> {
    crate::store::DatabaseUrl::parse(url)
        .map(|_| ())
        .map_err(|_| {
            validator::ValidationError::new("database_url must start with sqlite:// or postgres://")
        })
}

fn validate_public_url(url: &str) -> Result<(), validator::ValidationError> {
    if (url.starts_with("http://") || url.starts_with("https://")) && !url.ends_with('/') {
        Ok(())
    } else {
        Err(validator::ValidationError::new(
            "public_url must be an http(s) URL without a trailing slash",
        ))
    }
}
