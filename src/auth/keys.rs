//! Token keys: the server's own HS256 secret (from `CARERECORD_JWT_SECRET`, or generated once
//! into the data folder, readable by its owner only), and public keys of external identity
//! providers (PEM files or a JWKS file) for RS256/ES256. Each key verifies only its own
//! algorithm, so an HS256 token "signed" with a public key is worthless.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};

use super::Claims;

/// Accepted clock difference for `exp` and `nbf`, in seconds.
pub const CLOCK_SKEW_SECONDS: u64 = 60;

/// Where the secret comes from, and which external keys to trust.
#[derive(Debug, Clone, Default)]
pub struct KeyConfig {
    /// `CARERECORD_JWT_SECRET`; otherwise the secret file in `data_dir`.
    pub secret: Option<String>,
    pub data_dir: PathBuf,
    /// PEM files with RSA or EC public keys.
    pub public_keys: Vec<PathBuf>,
    /// A JWKS file.
    pub jwks: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("the token could not be made: {0}")]
    Encode(String),
}

/// Why a token is not accepted (answered 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

struct PublicKey {
    algorithm: Algorithm,
    key: DecodingKey,
    kid: Option<String>,
}

/// Tokens whose signature and claims were verified, at most this many (the cache is emptied when
/// it is full).
const VERIFIED_CACHE: usize = 10_000;

/// Verifies tokens; built once at start.
pub struct Verifier {
    secret: Vec<u8>,
    public: Vec<PublicKey>,
    issuer: Option<String>,
    audience: Option<String>,
    /// A client sends the same token with every request until it expires: its signature (an HMAC
    /// or an RSA/EC verification, and the JSON of header and claims) is checked once, and later
    /// requests only check the time window again.
    verified: Mutex<HashMap<String, Claims>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("public_keys", &self.public.len())
            .finish_non_exhaustive()
    }
}

const SECRET_FILE: &str = "jwt-secret";

/// The HS256 secret: the configured one, or the data folder's (generated on first use, mode 0600).
pub fn secret(config: &KeyConfig) -> Result<Vec<u8>, KeyError> {
    if let Some(secret) = config.secret.as_ref().filter(|s| !s.is_empty()) {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = config.data_dir.join(SECRET_FILE);
    let file_error = |reason: String| KeyError::File {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().as_bytes().to_vec()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(file_error(e.to_string())),
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| file_error(e.to_string()))?;
    let generated = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    write_private(&path, &generated).map_err(|e| file_error(e.to_string()))?;
    Ok(generated.into_bytes())
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

impl Verifier {
    pub fn new(config: &KeyConfig) -> Result<Self, KeyError> {
        let mut public = Vec::new();
        for path in &config.public_keys {
            let file_error = |reason: String| KeyError::File {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
            let (algorithm, key) = match DecodingKey::from_rsa_pem(&pem) {
                Ok(key) => (Algorithm::RS256, key),
                Err(_) => (
                    Algorithm::ES256,
                    DecodingKey::from_ec_pem(&pem)
                        .map_err(|e| file_error(format!("not an RSA or EC public key: {e}")))?,
                ),
            };
            public.push(PublicKey {
                algorithm,
                key,
                kid: None,
            });
        }
        if let Some(path) = &config.jwks {
            let file_error = |reason: String| KeyError::File {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
            let set: JwkSet = serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))?;
            for jwk in &set.keys {
                let key = DecodingKey::from_jwk(jwk).map_err(|e| file_error(e.to_string()))?;
                let algorithm = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    _ => Algorithm::RS256,
                };
                public.push(PublicKey {
                    algorithm,
                    key,
                    kid: jwk.common.key_id.clone(),
                });
            }
        }
        Ok(Self {
            secret: secret(config)?,
            public,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = CLOCK_SKEW_SECONDS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        validation
    }

    /// Verifies a token and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, Invalid> {
        let cached = self
            .verified
            .lock()
            .ok()
            .and_then(|cache| cache.get(token).cloned());
        if let Some(claims) = cached {
            return within_time_window(claims);
        }
        let claims = self.verify_signed(token)?;
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= VERIFIED_CACHE {
                cache.clear();
            }
            cache.insert(token.to_owned(), claims.clone());
        }
        Ok(claims)
    }

    /// Checks the signature and every claim.
    fn verify_signed(&self, token: &str) -> Result<Claims, Invalid> {
        let header = decode_header(token)
            .map_err(|_| Invalid("the token is not a well-formed JWT".into()))?;
        let outcome = match header.alg {
            Algorithm::HS256 => decode::<Claims>(
                token,
                &DecodingKey::from_secret(&self.secret),
                &self.validation(Algorithm::HS256),
            ),
            alg @ (Algorithm::RS256 | Algorithm::ES256) => {
                let candidates = self
                    .public
                    .iter()
                    .filter(|k| k.algorithm == alg)
                    .filter(|k| header.kid.is_none() || k.kid.is_none() || k.kid == header.kid);
                let mut last = None;
                for candidate in candidates {
                    match decode::<Claims>(token, &candidate.key, &self.validation(alg)) {
                        Ok(data) => return Ok(data.claims),
                        Err(e) => last = Some(e),
                    }
                }
                match last {
                    Some(e) => Err(e),
                    None => {
                        return Err(Invalid(format!("no key is configured for {alg:?} tokens")))
                    }
                }
            }
            other => return Err(Invalid(format!("{other:?} tokens are not accepted"))),
        };
        outcome.map(|data| data.claims).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            Invalid(
                match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet",
                    ErrorKind::InvalidSignature => "the token's signature is not valid",
                    ErrorKind::InvalidAudience => "the token is for another audience",
                    ErrorKind::InvalidIssuer => "the token is from another issuer",
                    ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                    _ => "the token is not valid",
                }
                .to_owned(),
            )
        })
    }
}

/// `exp` and `nbf` of claims verified earlier, against the clock now (with the same skew).
fn within_time_window(claims: Claims) -> Result<Claims, Invalid> {
    let now = chrono::Utc::now().timestamp();
    let skew = i64::try_from(CLOCK_SKEW_SECONDS).unwrap_or(i64::MAX);
    if claims.exp.saturating_add(skew) < now {
        return Err(Invalid("the token has expired".into()));
    }
    if claims.nbf.is_some_and(|nbf| nbf.saturating_sub(skew) > now) {
        return Err(Invalid("the token is not valid yet".into()));
    }
    Ok(claims)
}

/// Signs claims with the server's HS256 secret (`carerecord token`).
pub fn mint(config: &KeyConfig, claims: &Claims) -> Result<String, KeyError> {
    let secret = secret(config)?;
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(&secret),
    )
    .map_err(|e| KeyError::Encode(e.to_string()))
}
