//! `carerecord import FILE...`: loads transaction/batch Bundles (`.json`), directories of them,
//! and NDJSON files (one resource per line, loaded as updates on their id, or creates when they
//! have none) into a local system — in parallel, through the same engine as the HTTP API, with a
//! progress line and a summary. The exit status is non-zero when anything failed.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::bundle::{self, Engine, Entry, EntryResult, Kind, Method, Target};
use crate::fhir::resource::parse_object;
use crate::fhir::{ResourceId, ResourceType, SystemSlug};
use crate::search::Search;
use crate::store::resources::WriteKind;
use crate::store::{systems, Database};
use crate::validation::Validator;

/// NDJSON lines loaded per transaction.
const NDJSON_CHUNK: usize = 100;
/// Failure reasons kept for the summary.
const REASONS_SHOWN: usize = 20;

/// What to import, and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub database_url: String,
    pub system: String,
    pub paths: Vec<PathBuf>,
    pub jobs: usize,
    /// Show the progress line (on standard error).
    pub progress: bool,
}

/// The outcome of an import.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub failed: u64,
    pub reasons: Vec<String>,
    pub elapsed: Duration,
}

impl Summary {
    pub fn resources(&self) -> u64 {
        self.created + self.updated + self.unchanged + self.failed
    }
}

/// One unit of work: a bundle file, or a chunk of NDJSON lines.
enum Work {
    Bundle(PathBuf),
    Lines {
        path: PathBuf,
        first_line: usize,
        lines: Vec<String>,
    },
}

pub fn run(options: ImportOptions) -> Result<Summary, String> {
    let started = Instant::now();
    let slug = SystemSlug::parse(&options.system)
        .ok_or_else(|| format!("'{}' is not a valid system slug", options.system))?;
    let validator = Validator::new().map_err(|e| e.to_string())?;
    let search = Search::new(validator.definitions());
    let jobs = options.jobs.max(1);
    let db = Database::open(&options.database_url, u32::try_from(jobs).unwrap_or(8) + 1)
        .map_err(|e| e.to_string())?;
    let system_id = {
        let mut conn = db.conn().map_err(|e| e.to_string())?;
        systems::find(&mut conn, &slug)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!("unknown local system '{slug}' (add it with `carerecord system add`)")
            })?
            .id
    };
    let files = collect_files(&options.paths)?;
    let total_bytes: u64 = files
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum();
    let queue: Arc<Mutex<std::vec::IntoIter<PathBuf>>> = Arc::new(Mutex::new(files.into_iter()));
    let summary = Arc::new(Mutex::new(Summary::default()));
    let done_bytes = Arc::new(AtomicU64::new(0));
    let done_resources = Arc::new(AtomicU64::new(0));
    let base = format!("/fhir/{slug}");
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let progress = options.progress.then(|| {
        let (done_bytes, done_resources, finished) =
            (done_bytes.clone(), done_resources.clone(), finished.clone());
        std::thread::spawn(move || {
            while !finished.load(Ordering::Relaxed) {
                print_progress(
                    started,
                    done_bytes.load(Ordering::Relaxed),
                    total_bytes,
                    done_resources.load(Ordering::Relaxed),
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    });
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let (queue, summary, db, validator, search, base) = (
                queue.clone(),
                summary.clone(),
                &db,
                &validator,
                &search,
                &base,
            );
            let (done_bytes, done_resources) = (done_bytes.clone(), done_resources.clone());
            scope.spawn(move || {
                let engine = Engine {
                    validator,
                    search,
                    system_id,
                    base,
                    lenient: false,
                    // A local administrator's load: no caller to check, nothing audited.
                    caller: None,
                    system: base.trim_start_matches("/fhir/"),
                    agent: None,
                };
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.next());
                    let Some(path) = next else { break };
                    let size = path.metadata().map(|m| m.len()).unwrap_or(0);
                    for work in split(&path) {
                        let tally = match work {
                            Ok(work) => load(&engine, db, work),
                            Err(reason) => Summary {
                                failed: 1,
                                reasons: vec![reason],
                                ..Summary::default()
                            },
                        };
                        done_resources.fetch_add(tally.resources(), Ordering::Relaxed);
                        if let Ok(mut total) = summary.lock() {
                            merge(&mut total, tally);
                        }
                    }
                    done_bytes.fetch_add(size, Ordering::Relaxed);
                }
            });
        }
    });
    finished.store(true, Ordering::Relaxed);
    if let Some(handle) = progress {
        let _ = handle.join();
        print_progress(
            started,
            total_bytes,
            total_bytes,
            done_resources.load(Ordering::Relaxed),
        );
        eprintln!();
    }
    let mut summary = summary
        .lock()
        .map_err(|_| "a worker failed".to_owned())?
        .clone();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn merge(total: &mut Summary, part: Summary) {
    total.created += part.created;
    total.updated += part.updated;
    total.unchanged += part.unchanged;
    total.failed += part.failed;
    for reason in part.reasons {
        if total.reasons.len() < REASONS_SHOWN {
            total.reasons.push(reason);
        }
    }
}

fn print_progress(started: Instant, done: u64, total: u64, resources: u64) {
    let elapsed = started.elapsed().as_secs_f64().max(0.001);
    let fraction = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let width = 30;
    let filled = ((fraction * width as f64) as usize).min(width);
    let eta = if fraction > 0.0 {
        elapsed / fraction - elapsed
    } else {
        0.0
    };
    eprint!(
        "\r[{}{}] {:>5.1}%  {} resources  {:.0}/s  ETA {}:{:02}   ",
        "#".repeat(filled),
        " ".repeat(width - filled),
        fraction * 100.0,
        resources,
        resources as f64 / elapsed,
        (eta as u64) / 60,
        (eta as u64) % 60
    );
    let _ = std::io::stderr().flush();
}

/// The files to load: the paths given, and every `.json`/`.ndjson` file under a directory given.
fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found).map_err(|e| format!("{}: {e}", path.display()))?;
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("json" | "ndjson")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Splits a file into work: a bundle is one unit; NDJSON is chunks of lines.
fn split(path: &Path) -> Vec<Result<Work, String>> {
    if path.extension().and_then(|e| e.to_str()) != Some("ndjson") {
        return vec![Ok(Work::Bundle(path.to_path_buf()))];
    }
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return vec![Err(format!("{}: {e}", path.display()))],
    };
    let mut out = Vec::new();
    let mut lines = Vec::new();
    let mut first_line = 1;
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        match line {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => lines.push(line),
            Err(e) => {
                out.push(Err(format!("{}:{}: {e}", path.display(), number + 1)));
                break;
            }
        }
        if lines.len() == NDJSON_CHUNK {
            out.push(Ok(Work::Lines {
                path: path.to_path_buf(),
                first_line,
                lines: std::mem::take(&mut lines),
            }));
            first_line = number + 2;
        }
    }
    if !lines.is_empty() {
        out.push(Ok(Work::Lines {
            path: path.to_path_buf(),
            first_line,
            lines,
        }));
    }
    out
}

fn load(engine: &Engine<'_>, db: &Database, work: Work) -> Summary {
    let mut conn = match db.conn() {
        Ok(c) => c,
        Err(e) => {
            return Summary {
                failed: 1,
                reasons: vec![e.to_string()],
                ..Summary::default()
            }
        }
    };
    if let Some(statistics) = db.statistics_due() {
        if let Err(e) = statistics.refresh(&mut conn) {
            log::warn!("planner statistics: {e}");
        }
    }
    let summary = load_work(engine, &mut conn, work);
    db.wrote(usize::try_from(summary.resources()).unwrap_or(usize::MAX));
    summary
}

fn load_work(engine: &Engine<'_>, conn: &mut crate::store::DbConnection, work: Work) -> Summary {
    match work {
        Work::Bundle(path) => {
            let label = path.display().to_string();
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| parse_object(&bytes).map_err(|e| e.to_string()))
                .and_then(|object| bundle::parse(object, engine.base).map_err(|e| describe(&e)));
            match parsed {
                Ok((Kind::Transaction, entries)) => {
                    match bundle::transaction(engine, conn, &entries) {
                        Ok(results) => tally(&results, &label),
                        Err(e) => Summary {
                            failed: entries.len() as u64,
                            reasons: vec![format!("{label}: {}", describe(&e))],
                            ..Summary::default()
                        },
                    }
                }
                Ok((Kind::Batch, entries)) => tally(&bundle::batch(engine, conn, &entries), &label),
                Err(reason) => Summary {
                    failed: 1,
                    reasons: vec![format!("{label}: {reason}")],
                    ..Summary::default()
                },
            }
        }
        Work::Lines {
            path,
            first_line,
            lines,
        } => {
            let label = format!(
                "{}:{first_line}-{}",
                path.display(),
                first_line + lines.len() - 1
            );
            let mut entries = Vec::with_capacity(lines.len());
            let mut bad = Summary::default();
            for (offset, line) in lines.iter().enumerate() {
                match ndjson_entry(entries.len(), line) {
                    Ok(entry) => entries.push(entry),
                    Err(reason) => {
                        bad.failed += 1;
                        bad.reasons.push(format!(
                            "{}:{}: {reason}",
                            path.display(),
                            first_line + offset
                        ));
                    }
                }
            }
            // A chunk is one transaction; if it fails, its lines are loaded one by one so that
            // only the bad ones fail.
            let mut result = match bundle::transaction(engine, conn, &entries) {
                Ok(results) => tally(&results, &label),
                Err(_) => tally(&bundle::batch(engine, conn, &entries), &label),
            };
            merge(&mut result, bad);
            result
        }
    }
}

fn describe(error: &bundle::EntryError) -> String {
    error
        .issues()
        .iter()
        .map(|i| i.diagnostics.clone())
        .collect::<Vec<_>>()
        .join("; ")
}

/// An NDJSON line as an entry: an update on its id, or a create.
fn ndjson_entry(index: usize, line: &str) -> Result<Entry, String> {
    let resource: Map<String, Value> = parse_object(line.as_bytes()).map_err(|e| e.to_string())?;
    let rtype = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .and_then(ResourceType::parse)
        .ok_or_else(|| "not a resource type this server stores".to_owned())?;
    let (method, target) = match resource.get("id").and_then(Value::as_str) {
        Some(id) => (
            Method::Put,
            Target::Instance(
                rtype,
                ResourceId::parse(id).ok_or_else(|| format!("'{id}' is not a valid id"))?,
            ),
        ),
        None => (Method::Post, Target::Type(rtype)),
    };
    Ok(Entry {
        index,
        full_url: None,
        method,
        target,
        resource: Some(resource),
        if_none_exist: None,
        if_match: None,
        if_none_match: None,
    })
}

fn tally(results: &[EntryResult], label: &str) -> Summary {
    let mut summary = Summary::default();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for result in results {
        match (result.kind, &result.outcome) {
            (Some(WriteKind::Created), _) => summary.created += 1,
            (Some(WriteKind::Updated), _) => summary.updated += 1,
            (Some(WriteKind::Unchanged), _) => summary.unchanged += 1,
            (None, Some(issues)) => {
                summary.failed += 1;
                let text = issues
                    .iter()
                    .map(|i| i.diagnostics.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                *reasons.entry(text).or_default() += 1;
            }
            (None, None) => summary.unchanged += 1,
        }
    }
    summary.reasons = reasons
        .into_iter()
        .map(|(text, n)| {
            if n > 1 {
                format!("{label}: {text} (x{n})")
            } else {
                format!("{label}: {text}")
            }
        })
        .collect();
    summary
}
