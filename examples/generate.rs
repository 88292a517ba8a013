//! Synthetic UK data for the benchmarks: a local system's GP and hospital feeds as transaction
//! Bundles and NDJSON (see `carerecord::synthetic`).
//!
//! `cargo run --release --example generate -- --patients 300 --seed 1 --out target/carerecord-data`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use carerecord::synthetic::{self, Options};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Generate deterministic synthetic UK care record data")]
struct Args {
    /// Patients to generate (about 31 resources each).
    #[arg(long, conflicts_with = "resources")]
    patients: Option<usize>,
    /// Or: about this many resources.
    #[arg(long)]
    resources: Option<usize>,
    /// The seed: the same seed and size give the same files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output folder (its `bundles/` and `ndjson/` must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
    /// Entries per transaction Bundle, about.
    #[arg(long, default_value_t = 100)]
    bundle_entries: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let patients = match (args.patients, args.resources) {
        (Some(p), _) => p,
        (None, Some(r)) => synthetic::patients_for(r),
        (None, None) => 300,
    };
    let started = Instant::now();
    let mut options = Options::new(patients, args.seed, &args.out);
    options.bundle_entries = args.bundle_entries;
    match synthetic::generate(&options) {
        Ok(summary) => {
            println!(
                "{} patients, {} resources (avg {} bytes) in {:.1}s into {}",
                summary.patients,
                summary.resources,
                summary.average_resource_bytes(),
                started.elapsed().as_secs_f64(),
                args.out.display()
            );
            for (rtype, count) in &summary.by_type {
                println!("  {rtype:<16} {count}");
            }
            println!(
                "  {} GP bundles, {} hospital bundles, {} entries; {} heavy patients",
                summary.gp_bundles,
                summary.hospital_bundles,
                summary.bundle_entries,
                summary.heavy.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
