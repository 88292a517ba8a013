//! The command line (see DESIGN.md, "Binary and commands"). Every flag also reads a
//! `CARERECORD_*` environment variable; the README lists them all.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use validator::Validate;

use crate::fhir::SystemSlug;
use crate::settings::{self, Settings};
use crate::store::{systems, Database};

#[derive(Debug, Parser)]
#[command(
    name = "carerecord",
    version,
    about = "FHIR R4 shared care record server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve FHIR over HTTP (migrations run first).
    Serve(ServeArgs),
    /// Manage local systems.
    System {
        #[command(subcommand)]
        command: SystemCommand,
    },
    /// Run database migrations only.
    Migrate(DatabaseArgs),
    /// Load transaction/batch Bundles (.json), directories of them, and NDJSON files into a
    /// local system.
    Import(ImportArgs),
    /// Mint an access token signed with the server's key, printed alone on standard output.
    Token(TokenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The local system the token is valid for.
    #[arg(long)]
    pub system: String,
    /// clinician | patient | feeder | admin
    #[arg(long)]
    pub role: String,
    /// The subject: who the token is for (and, as Type/id, its fhirUser unless --fhir-user is given).
    #[arg(long)]
    pub sub: String,
    /// SMART v2 scopes (default: the role's, see DESIGN.md).
    #[arg(long)]
    pub scope: Option<String>,
    /// fhirUser, e.g. Patient/123 or Practitioner/456.
    #[arg(long)]
    pub fhir_user: Option<String>,
    /// ODS code of the caller's organisation.
    #[arg(long)]
    pub org: Option<String>,
    /// purpose_of_use, e.g. BTG for break-glass.
    #[arg(long)]
    pub purpose_of_use: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: i64,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Files or directories to load.
    #[arg(required = true)]
    pub paths: Vec<std::path::PathBuf>,
    /// The local system to load into.
    #[arg(long, default_value = "default")]
    pub system: String,
    /// Parallel workers (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub jobs: usize,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Register a local system.
    Add {
        slug: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List local systems.
    List(DatabaseArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// sqlite://PATH or postgres://USER@HOST/DB
    #[arg(long, env = "CARERECORD_DATABASE_URL", default_value = settings::DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CARERECORD_LISTEN", default_value = settings::DEFAULT_LISTEN)]
    pub listen: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Largest request body in bytes.
    #[arg(long, env = "CARERECORD_MAX_BODY_BYTES", default_value_t = settings::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Database connections in the pool.
    #[arg(long, env = "CARERECORD_DB_POOL_SIZE", default_value_t = settings::DEFAULT_POOL_SIZE)]
    pub db_pool_size: u32,
    /// Public base URL (scheme://host[:port]) when behind a proxy.
    #[arg(long, env = "CARERECORD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// HTTP worker threads; 0 means one per core.
    #[arg(long, env = "CARERECORD_WORKERS", default_value_t = 0)]
    pub workers: usize,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Requests per second per token; 0 turns limiting off.
    #[arg(long, env = "CARERECORD_RATE_LIMIT", default_value_t = settings::DEFAULT_RATE_LIMIT)]
    pub rate_limit: u32,
    /// Serve without tokens, every request acting as a feeder. For local experiments only.
    #[arg(long)]
    pub insecure_no_auth: bool,
}

#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Folder for the generated token secret.
    #[arg(long, env = "CARERECORD_DATA_DIR", default_value = settings::DEFAULT_DATA_DIR)]
    pub data_dir: std::path::PathBuf,
    /// HS256 token secret (otherwise generated once into the data folder).
    #[arg(long, env = "CARERECORD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public keys (RS256/ES256) of external identity providers, comma-separated.
    #[arg(long, env = "CARERECORD_JWT_PUBLIC_KEYS", value_delimiter = ',')]
    pub jwt_public_keys: Vec<std::path::PathBuf>,
    /// A JWKS file of external identity providers' public keys.
    #[arg(long, env = "CARERECORD_JWKS_FILE")]
    pub jwks_file: Option<std::path::PathBuf>,
    /// Required token issuer (iss).
    #[arg(long, env = "CARERECORD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required token audience (aud).
    #[arg(long, env = "CARERECORD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

impl ServeArgs {
    pub fn settings(self) -> Settings {
        Settings {
            listen: self.listen,
            database_url: self.database.database_url,
            max_body_bytes: self.max_body_bytes,
            db_pool_size: self.db_pool_size,
            public_url: self.public_url,
            workers: self.workers,
            data_dir: self.keys.data_dir,
            jwt_secret: self.keys.jwt_secret,
            jwt_public_keys: self.keys.jwt_public_keys,
            jwks_file: self.keys.jwks_file,
            jwt_issuer: self.keys.jwt_issuer,
            jwt_audience: self.keys.jwt_audience,
            rate_limit: self.rate_limit,
            insecure_no_auth: self.insecure_no_auth,
        }
    }
}

/// Runs a command; the exit code says whether it worked.
pub fn run(cli: Cli) -> ExitCode {
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> Result<(), String> {
    match command {
        Command::Serve(args) => serve(args.settings()),
        Command::Import(args) => import(args),
        Command::Token(args) => token(args),
        Command::Migrate(args) => {
            open(&args)?;
            println!("migrations are up to date");
            Ok(())
        }
        Command::System { command } => match command {
            SystemCommand::Add {
                slug,
                name,
                database,
            } => {
                let slug = SystemSlug::parse(&slug)
                    .ok_or_else(|| format!("'{slug}' is not a valid slug ([a-z0-9-]{{1,63}})"))?;
                if name.trim().is_empty() || name.chars().count() > 200 {
                    return Err("--name must be 1 to 200 characters".into());
                }
                let db = open(&database)?;
                let mut conn = db.conn().map_err(|e| e.to_string())?;
                match systems::add(&mut conn, &slug, &name).map_err(|e| e.to_string())? {
                    Some(system) => {
                        println!(
                            "added {} ({}) at /fhir/{}/",
                            system.slug, system.name, system.slug
                        );
                        Ok(())
                    }
                    None => Err(format!("local system '{slug}' already exists")),
                }
            }
            SystemCommand::List(database) => {
                let db = open(&database)?;
                let mut conn = db.conn().map_err(|e| e.to_string())?;
                for system in systems::list(&mut conn).map_err(|e| e.to_string())? {
                    println!("{}\t{}", system.slug, system.name);
                }
                Ok(())
            }
        },
    }
}

fn token(args: TokenArgs) -> Result<(), String> {
    let role = crate::auth::Role::parse(&args.role).ok_or_else(|| {
        format!(
            "'{}' is not a role (clinician, patient, feeder, admin)",
            args.role
        )
    })?;
    SystemSlug::parse(&args.system)
        .ok_or_else(|| format!("'{}' is not a valid system slug", args.system))?;
    let fhir_user = args
        .fhir_user
        .or_else(|| args.sub.contains('/').then(|| args.sub.clone()));
    if role == crate::auth::Role::Patient
        && !fhir_user
            .as_deref()
            .is_some_and(|u| u.starts_with("Patient/"))
    {
        return Err("a patient token needs --sub Patient/[id] or --fhir-user Patient/[id]".into());
    }
    let now = chrono::Utc::now().timestamp();
    let claims = crate::auth::Claims {
        sub: args.sub,
        role,
        system: args.system,
        scope: args
            .scope
            .unwrap_or_else(|| role.default_scope().to_owned()),
        fhir_user,
        org: args.org,
        purpose_of_use: args.purpose_of_use,
        exp: now + args.ttl.max(1),
        nbf: Some(now),
        iat: Some(now),
        iss: args.keys.jwt_issuer.clone(),
        aud: args.keys.jwt_audience.clone(),
    };
    let config = crate::auth::keys::KeyConfig {
        secret: args.keys.jwt_secret,
        data_dir: args.keys.data_dir,
        ..Default::default()
    };
    let token = crate::auth::keys::mint(&config, &claims).map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}

fn import(args: ImportArgs) -> Result<(), String> {
    let jobs = if args.jobs == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        args.jobs
    };
    let summary = crate::import::run(crate::import::ImportOptions {
        database_url: args.database.database_url,
        system: args.system,
        paths: args.paths,
        jobs,
        progress: !args.quiet,
    })?;
    let seconds = summary.elapsed.as_secs_f64().max(0.001);
    println!(
        "imported {} resources in {:.1}s ({:.0}/s): {} created, {} updated, {} unchanged, {} failed",
        summary.resources(),
        seconds,
        summary.resources() as f64 / seconds,
        summary.created,
        summary.updated,
        summary.unchanged,
        summary.failed
    );
    for reason in &summary.reasons {
        println!("  failed: {reason}");
    }
    if summary.failed > 0 {
        Err(format!("{} resources failed to load", summary.failed))
    } else {
        Ok(())
    }
}

fn open(args: &DatabaseArgs) -> Result<Database, String> {
    Database::open(&args.database_url, 2).map_err(|e| e.to_string())
}

fn serve(settings: Settings) -> Result<(), String> {
    settings
        .validate()
        .map_err(|e| format!("invalid settings: {e}"))?;
    if settings.insecure_no_auth {
        log::warn!("serving WITHOUT authentication (--insecure-no-auth): every request acts as a feeder; never do this with real data");
    }
    actix_web::rt::System::new().block_on(async move {
        let state = crate::startup::build_state(settings).map_err(|e| e.to_string())?;
        log::info!(
            "carerecord {} serving FHIR R4 on http://{}/fhir/{{system}}/ ({} database)",
            env!("CARGO_PKG_VERSION"),
            state.settings.listen,
            state.db.backend()
        );
        let listener = std::net::TcpListener::bind(&state.settings.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", state.settings.listen))?;
        crate::startup::server(state, listener)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    })
}
