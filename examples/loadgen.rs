//! The benchmarks' load driver (see `carerecord::loadgen`): drives a carerecord server on this
//! machine and prints a JSON line (standard output) and a summary (standard error) per run.
//!
//! ```sh
//! TOKEN=$(carerecord token --system default --role feeder --sub loadgen)
//! cargo run --release --example loadgen -- read --token "$TOKEN" --data target/carerecord-data \
//!     --concurrency 8 --duration 20 --server-pid "$(pgrep -n carerecord)"
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use carerecord::loadgen::{self, Config, Scenario};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Drive a local carerecord server and measure it")]
struct Args {
    /// ingest | create | read | search-identifier | search-patient | everything | mixed
    /// (or `report FILE.jsonl...`: markdown tables of results)
    scenario: String,
    /// FHIR base of the local system (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080/fhir/default")]
    base: String,
    /// Bearer token (a feeder's, from `carerecord token`); also read from LOADGEN_TOKEN.
    #[arg(long, env = "LOADGEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The generator's output folder.
    #[arg(long)]
    data: PathBuf,
    /// Concurrent clients (connections).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Fixed-rate mode: requests per second. Without it: closed loop (maximum throughput).
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many requests (ingest: bundles).
    #[arg(long)]
    requests: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// The server's pid, for its peak memory (VmHWM).
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Patients looked up before measuring.
    #[arg(long, default_value_t = 2000)]
    sample: usize,
    /// _count for $everything.
    #[arg(long, default_value_t = 1000)]
    everything_count: usize,
    /// Keep the looked-up ids here between runs against the same server and data.
    #[arg(long)]
    pool_file: Option<PathBuf>,
    /// KEY=VALUE added to the JSON line (repeatable).
    #[arg(long = "tag", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// Also append the JSON line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("'{text}' is not KEY=VALUE"))
}

/// `loadgen report FILE.jsonl...`: the markdown tables of benchmark results.
fn report(files: &[String]) -> ExitCode {
    let mut lines = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {file}: {e}");
                return ExitCode::FAILURE;
            }
        };
        lines.extend(
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()),
        );
    }
    print!("{}", loadgen::markdown(&lines));
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("report") {
        return report(&raw[2..]);
    }
    let args = Args::parse();
    let Some(scenario) = Scenario::parse(&args.scenario) else {
        eprintln!(
            "error: unknown scenario '{}' (one of: {})",
            args.scenario,
            Scenario::ALL.map(Scenario::as_str).join(", ")
        );
        return ExitCode::FAILURE;
    };
    if !(args.duration.is_finite() && args.duration > 0.0) {
        eprintln!("error: --duration must be a positive number of seconds");
        return ExitCode::FAILURE;
    }
    let mut config = Config::new(scenario, args.base, args.data);
    config.token = args.token;
    config.concurrency = args.concurrency;
    config.rate = args.rate;
    config.requests = args.requests;
    config.duration = Duration::from_secs_f64(args.duration);
    config.server_pid = args.server_pid;
    config.seed = args.seed;
    config.sample = args.sample;
    config.everything_count = args.everything_count;
    config.pool_file = args.pool_file;
    config.tags = args.tags.into_iter().collect::<BTreeMap<_, _>>();
    let result = actix_web::rt::System::new().block_on(loadgen::run(&config));
    match result {
        Ok(report) => {
            let line = report.to_json().to_string();
            println!("{line}");
            eprintln!("{}", report.summary());
            if let Some(path) = &args.json_out {
                let written = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| writeln!(f, "{line}"));
                if let Err(e) = written {
                    eprintln!("error: {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            if report.errors > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
