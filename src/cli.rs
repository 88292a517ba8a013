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
