//! The load driver of the benchmarks (`cargo run --release --example loadgen -- SCENARIO ...`):
//! drives a running server over HTTP/1.1 keep-alive connections and reports throughput, latency
//! percentiles, errors and the server's peak memory.
//!
//! Scenarios: `ingest` (the generated transaction Bundles, GP files before hospital files),
//! `create` (single Encounter POSTs), `read` (random existing resources), `search-identifier`
//! (Patient by NHS number), `search-patient` (a patient's Encounters), `everything`
//! (`Patient/{id}/$everything` of the heavy patients) and `mixed` (70% reads and searches, 30%
//! creates). Closed loop (each of `concurrency` clients sends its next request when the last one
//! is answered: the most the server can do) or fixed rate (requests are due at a steady rate and
//! latency is counted from when each was due, so a slow server cannot hide its queue).
//!
//! It runs on the actix runtime and speaks HTTP/1.1 itself over the runtime's TCP streams (one
//! connection per client, requests prepared up front): the library cannot use `awc` (a
//! dev-dependency) and a lean client keeps the driver's share of a small machine low. Only
//! loopback servers are driven: any other host is refused.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actix_web::rt::net::TcpStream;
use serde_json::{json, Value};

use crate::synthetic::{Manifest, Rng, NHS_NUMBER};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Ingest,
    Create,
    Read,
    SearchIdentifier,
    SearchPatient,
    Everything,
    Mixed,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Self::Ingest,
        Self::Create,
        Self::Read,
        Self::SearchIdentifier,
        Self::SearchPatient,
        Self::Everything,
        Self::Mixed,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Create => "create",
            Self::Read => "read",
            Self::SearchIdentifier => "search-identifier",
            Self::SearchPatient => "search-patient",
            Self::Everything => "everything",
            Self::Mixed => "mixed",
        }
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub scenario: Scenario,
    /// The FHIR base, e.g. `http://127.0.0.1:8080/fhir/default` (loopback only).
    pub base: String,
    /// A bearer token (`carerecord token --system default --role feeder --sub loadgen`).
    pub token: Option<String>,
    /// The generator's output folder (`manifest.json`, `bundles/`).
    pub data: PathBuf,
    /// Clients, each with its own connection.
    pub concurrency: usize,
    /// Fixed-rate mode: requests per second across all clients. `None`: closed loop.
    pub rate: Option<f64>,
    /// Stop after this many requests (ingest: bundles).
    pub requests: Option<u64>,
    /// Stop after this long (requests under way are finished).
    pub duration: Duration,
    /// The server's process id, for its peak resident memory (`VmHWM`).
    pub server_pid: Option<u32>,
    pub seed: u64,
    /// Patients whose ids are looked up before measuring (read, search-patient, create).
    pub sample: usize,
    /// `_count` of `$everything` (the whole record of a heavy patient fits one page).
    pub everything_count: usize,
    /// Where the looked-up ids are kept between runs on the same server and data (read if it
    /// exists, written otherwise).
    pub pool_file: Option<PathBuf>,
    /// Extra fields for the JSON line (backend, size...).
    pub tags: BTreeMap<String, String>,
}

impl Config {
    pub fn new(scenario: Scenario, base: impl Into<String>, data: impl Into<PathBuf>) -> Self {
        Self {
            scenario,
            base: base.into(),
            token: None,
            data: data.into(),
            concurrency: 4,
            rate: None,
            requests: None,
            duration: Duration::from_secs(30),
            server_pid: None,
            seed: 1,
            sample: 2_000,
            everything_count: 1_000,
            pool_file: None,
            tags: BTreeMap::new(),
        }
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    fn of(mut micros: Vec<u32>) -> Self {
        if micros.is_empty() {
            return Self::default();
        }
        micros.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * micros.len() as f64).ceil() as usize).clamp(1, micros.len());
            f64::from(micros[rank - 1]) / 1_000.0
        };
        let sum: u64 = micros.iter().map(|&m| u64::from(m)).sum();
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
            mean: sum as f64 / micros.len() as f64 / 1_000.0,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub scenario: String,
    /// `closed` or `fixed-rate`.
    pub mode: String,
    pub concurrency: usize,
    pub target_rate: Option<f64>,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    /// Requests answered per second.
    pub throughput: f64,
    /// Resources sent per second (ingest: Bundle entries; create: one a request).
    pub resources_per_second: Option<f64>,
    /// Resources the server created per second (ingest: entries answered 201).
    pub created_per_second: Option<f64>,
    pub latency: Latency,
    /// The server's peak resident memory since it started (`VmHWM`), MB.
    pub server_peak_rss_mb: Option<f64>,
    /// Its resident memory at the end of the run (`VmRSS`), MB.
    pub server_rss_mb: Option<f64>,
    /// The first few failures, for the log.
    pub error_samples: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

impl Report {
    /// The JSON line the benchmark script collects.
    pub fn to_json(&self) -> Value {
        let mut line = json!({
            "scenario": self.scenario,
            "mode": self.mode,
            "concurrency": self.concurrency,
            "target_rate": self.target_rate,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "throughput": round(self.throughput, 1),
            "resources_per_second": self.resources_per_second.map(|v| round(v, 1)),
            "created_per_second": self.created_per_second.map(|v| round(v, 1)),
            "latency_ms": {
                "p50": round(self.latency.p50, 3),
                "p90": round(self.latency.p90, 3),
                "p99": round(self.latency.p99, 3),
                "max": round(self.latency.max, 3),
                "mean": round(self.latency.mean, 3),
            },
            "server_peak_rss_mb": self.server_peak_rss_mb.map(|v| round(v, 1)),
            "server_rss_mb": self.server_rss_mb.map(|v| round(v, 1)),
            "error_samples": self.error_samples,
        });
        for (key, value) in &self.tags {
            line[key] = json!(value);
        }
        line
    }

    /// A human summary.
    pub fn summary(&self) -> String {
        let mode = match self.target_rate {
            Some(rate) => format!("fixed rate {rate:.0}/s"),
            None => "closed loop".to_owned(),
        };
        let mut text = format!(
            "{}: {} requests in {:.1}s with {} clients ({mode}): {:.0} req/s",
            self.scenario, self.requests, self.seconds, self.concurrency, self.throughput
        );
        if let Some(r) = self.resources_per_second {
            text.push_str(&format!(", {r:.0} resources/s"));
        }
        if let Some(c) = self.created_per_second {
            text.push_str(&format!(" ({c:.0} created/s)"));
        }
        text.push_str(&format!(
            "\n  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}\n  errors: {}",
            self.latency.p50,
            self.latency.p90,
            self.latency.p99,
            self.latency.max,
            self.latency.mean,
            self.errors
        ));
        if let (Some(peak), Some(now)) = (self.server_peak_rss_mb, self.server_rss_mb) {
            text.push_str(&format!(
                "\n  server memory: peak {peak:.0} MB, now {now:.0} MB"
            ));
        }
        for sample in &self.error_samples {
            text.push_str(&format!("\n  error: {sample}"));
        }
        text
    }
}

// ---------------------------------------------------------------------------------------------
// The target

/// A parsed, loopback-only FHIR base.
#[derive(Debug, Clone)]
pub struct Target {
    pub address: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Path prefix of the base, without a trailing slash (`/fhir/default`).
    pub prefix: String,
}

impl Target {
    /// Accepts only `http://` URLs whose host is 127.0.0.1, localhost or [::1].
    pub fn parse(base: &str) -> Result<Self, String> {
        let rest = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("{base}: only http:// loopback URLs are driven"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{base}: bad IPv6 host"))?;
            (host, after.strip_prefix(':').unwrap_or("80"))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p),
                None => (authority, "80"),
            }
        };
        if !matches!(host, "127.0.0.1" | "localhost" | "::1") {
            return Err(format!(
                "{base}: the load driver only drives a server on this machine (127.0.0.1, localhost or [::1])"
            ));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{base}: bad port '{port}'"))?;
        let lookup = if host == "::1" {
            format!("[::1]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let address = lookup
            .to_socket_addrs()
            .map_err(|e| format!("{base}: {e}"))?
            .find(|a| a.ip().is_loopback())
            .ok_or_else(|| format!("{base}: {host} does not resolve to a loopback address"))?;
        Ok(Self {
            address,
            host: authority.to_owned(),
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client

/// A request, serialised once.
#[derive(Debug, Clone)]
pub struct Request {
    bytes: Vec<u8>,
    /// The status that counts as success.
    expect: u16,
    /// Resources it carries (for resources/s).
    resources: u64,
}

impl Request {
    pub fn new(
        target: &Target,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        expect: u16,
    ) -> Self {
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nAccept: application/fhir+json\r\n",
            target.prefix, target.host
        );
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/fhir+json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if let Some(body) = body {
            bytes.extend_from_slice(body);
        }
        Self {
            bytes,
            expect,
            resources: 1,
        }
    }
}

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One keep-alive connection.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

const SCRATCH: usize = 64 * 1024;

impl Connection {
    async fn open(address: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(SCRATCH),
        })
    }

    async fn write_all(&self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            self.stream.writable().await?;
            match self.stream.try_write(bytes) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads more into the buffer; an error at end of stream.
    async fn fill(&mut self, scratch: &mut [u8]) -> std::io::Result<()> {
        loop {
            self.stream.readable().await?;
            match self.stream.try_read(scratch) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.buffer.extend_from_slice(&scratch[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends a request and reads its response. `Ok((response, keep))`: `keep` is false when
    /// the server closes the connection after it.
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<(Response, bool)> {
        let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        self.write_all(request).await?;
        let mut scratch = vec![0u8; SCRATCH];
        let head_end = loop {
            if let Some(i) = find(&self.buffer, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buffer.len() > 1024 * 1024 {
                return Err(invalid("response head too long"));
            }
            self.fill(&mut scratch).await?;
        };
        let head = std::str::from_utf8(&self.buffer[..head_end])
            .map_err(|_| invalid("response head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("bad status line"))?;
        let mut length = None;
        let mut chunked = false;
        let mut keep = true;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                keep = !value.eq_ignore_ascii_case("close");
            }
        }
        let body = if chunked {
            let mut body = Vec::new();
            let mut at = head_end;
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buffer[at..], b"\r\n") {
                        break at + i;
                    }
                    self.fill(&mut scratch).await?;
                };
                let size_text = std::str::from_utf8(&self.buffer[at..line_end])
                    .map_err(|_| invalid("bad chunk size"))?;
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| invalid("bad chunk size"))?;
                let data = line_end + 2;
                while self.buffer.len() < data + size + 2 {
                    self.fill(&mut scratch).await?;
                }
                body.extend_from_slice(&self.buffer[data..data + size]);
                at = data + size + 2;
                if size == 0 {
                    break;
                }
            }
            self.buffer.drain(..at);
            body
        } else if let Some(length) = length {
            while self.buffer.len() < head_end + length {
                self.fill(&mut scratch).await?;
            }
            let body = self.buffer[head_end..head_end + length].to_vec();
            self.buffer.drain(..head_end + length);
            body
        } else if status == 204 || status == 304 {
            self.buffer.drain(..head_end);
            Vec::new()
        } else {
            // No length: the body runs to the end of the connection.
            loop {
                match self.fill(&mut scratch).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            keep = false;
            self.buffer.split_off(head_end)
        };
        Ok((Response { status, body }, keep))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A client: a connection opened on first use and again after a failure.
pub struct Client {
    address: SocketAddr,
    connection: Option<Connection>,
}

impl Client {
    pub fn new(target: &Target) -> Self {
        Self {
            address: target.address,
            connection: None,
        }
    }

    pub async fn send(&mut self, request: &[u8]) -> Result<Response, String> {
        let mut connection = match self.connection.take() {
            Some(c) => c,
            None => Connection::open(self.address)
                .await
                .map_err(|e| format!("connect: {e}"))?,
        };
        match connection.exchange(request).await {
            Ok((response, keep)) => {
                if keep {
                    self.connection = Some(connection);
                }
                Ok(response)
            }
            Err(e) => Err(format!("transport: {e}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Work: what each scenario sends

/// Ids found on the server before measuring.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Pools {
    /// (id, NHS number) of the sampled patients.
    pub patients: Vec<(String, String)>,
    pub encounters: Vec<String>,
    pub service_requests: Vec<String>,
    /// Ids of the heavy patients (100 encounters, 20 referrals).
    pub heavy: Vec<String>,
    /// Encounters (without id and meta) to copy for creates.
    pub templates: Vec<Value>,
    /// Every NHS number of the data set.
    pub nhs_numbers: Vec<String>,
}

/// What the clients send next.
enum Work {
    /// Bundle files by phase (every file of a phase is answered before the next phase starts).
    Files {
        phases: Vec<Vec<PathBuf>>,
    },
    Generated(Box<Generator>),
}

struct Generator {
    scenario: Scenario,
    pools: Pools,
    rng: Rng,
    run: String,
    count: u64,
    everything_count: usize,
}

impl Generator {
    fn next(&mut self, target: &Target, token: Option<&str>) -> Request {
        let scenario = match self.scenario {
            Scenario::Mixed => match self.rng.below(100) {
                0..=29 => Scenario::Create,
                30..=59 => Scenario::Read,
                60..=79 => Scenario::SearchIdentifier,
                _ => Scenario::SearchPatient,
            },
            other => other,
        };
        self.count += 1;
        let get = |path: String| Request::new(target, token, "GET", &path, None, 200);
        match scenario {
            Scenario::Read => {
                let pools = &self.pools;
                let total =
                    pools.patients.len() + pools.encounters.len() + pools.service_requests.len();
                let mut n = self.rng.below(total as u64) as usize;
                let path = if n < pools.patients.len() {
                    format!("/Patient/{}", pools.patients[n].0)
                } else {
                    n -= pools.patients.len();
                    if n < pools.encounters.len() {
                        format!("/Encounter/{}", pools.encounters[n])
                    } else {
                        n -= pools.encounters.len();
                        format!("/ServiceRequest/{}", pools.service_requests[n])
                    }
                };
                get(path)
            }
            Scenario::SearchIdentifier => {
                let nhs = self.rng.pick(&self.pools.nhs_numbers);
                get(format!("/Patient?identifier={NHS_NUMBER}|{nhs}"))
            }
            Scenario::SearchPatient => {
                let (id, _) = self.rng.pick(&self.pools.patients);
                get(format!("/Encounter?patient={id}"))
            }
            Scenario::Everything => {
                let id = self.rng.pick(&self.pools.heavy);
                get(format!(
                    "/Patient/{id}/$everything?_count={}",
                    self.everything_count
                ))
            }
            Scenario::Create | Scenario::Ingest | Scenario::Mixed => {
                let mut encounter = self.rng.pick(&self.pools.templates).clone();
                encounter["identifier"] = json!([{
                    "system": "https://fhir.carerecord.dev/Id/loadgen",
                    "value": format!("{}-{}", self.run, self.count),
                }]);
                let body = encounter.to_string();
                Request::new(
                    target,
                    token,
                    "POST",
                    "/Encounter",
                    Some(body.as_bytes()),
                    201,
                )
            }
        }
    }
}

/// The bundle files under `data/bundles`, by phase (top-level folder), each in name order.
pub fn bundle_phases(data: &Path) -> Result<Vec<Vec<PathBuf>>, String> {
    let root = data.join("bundles");
    let mut phases: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    let entries = std::fs::read_dir(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            let mut files = Vec::new();
            for file in std::fs::read_dir(&path).map_err(|e| format!("{}: {e}", path.display()))? {
                let file = file.map_err(|e| e.to_string())?.path();
                if file.extension().is_some_and(|e| e == "json") {
                    files.push(file);
                }
            }
            files.sort();
            phases.insert(path, files);
        } else if path.extension().is_some_and(|e| e == "json") {
            phases.entry(root.clone()).or_default().push(path);
        }
    }
    let mut phases: Vec<Vec<PathBuf>> = phases.into_values().filter(|p| !p.is_empty()).collect();
    for phase in &mut phases {
        phase.sort();
    }
    if phases.is_empty() {
        return Err(format!("no bundles under {}", root.display()));
    }
    Ok(phases)
}

/// Counts occurrences of a short needle.
fn occurrences(haystack: &[u8], needle: &[u8]) -> u64 {
    if needle.is_empty() || haystack.len() < needle.len() {
        return 0;
    }
    let mut count = 0;
    let mut i = 0;
    while i + needle.len() <= haystack.len() {
        if &haystack[i..i + needle.len()] == needle {
            count += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    count
}

/// Looks up, on the server, the ids the generated scenarios need: a sample of the manifest's
/// patients (by NHS number), their Encounters and ServiceRequests, and the heavy patients.
pub async fn discover(config: &Config, target: &Target) -> Result<Pools, String> {
    let manifest = Manifest::read(&config.data)?;
    let token = config.token.as_deref();
    let mut rng = Rng::for_item(config.seed, 7, 0);
    let mut wanted: Vec<String> = manifest.heavy.clone();
    let mut indices: Vec<usize> = (0..manifest.nhs_numbers.len()).collect();
    // A seeded shuffle, then the first `sample`.
    for i in (1..indices.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        indices.swap(i, j);
    }
    for &i in indices.iter().take(config.sample) {
        if !wanted.contains(&manifest.nhs_numbers[i]) {
            wanted.push(manifest.nhs_numbers[i].clone());
        }
    }
    let pools = RefCell::new(Pools {
        nhs_numbers: manifest.nhs_numbers.clone(),
        ..Pools::default()
    });
    let next = Cell::new(0usize);
    let failure: RefCell<Option<String>> = RefCell::new(None);
    let heavy: Vec<String> = manifest.heavy.clone();
    let worker = || async {
        let mut client = Client::new(target);
        loop {
            let i = next.get();
            if i >= wanted.len() || failure.borrow().is_some() {
                break;
            }
            next.set(i + 1);
            let nhs = &wanted[i];
            let result = discover_one(&mut client, target, token, nhs).await;
            match result {
                Ok(Some(found)) => {
                    let mut pools = pools.borrow_mut();
                    if heavy.contains(nhs) {
                        pools.heavy.push(found.id.clone());
                    }
                    pools.encounters.extend(found.encounters);
                    pools.service_requests.extend(found.service_requests);
                    if pools.templates.len() < 200 {
                        if let Some(t) = found.template {
                            pools.templates.push(t);
                        }
                    }
                    pools.patients.push((found.id, nhs.clone()));
                }
                Ok(None) => {}
                Err(e) => *failure.borrow_mut() = Some(e),
            }
        }
    };
    futures_util::future::join_all((0..4).map(|_| worker())).await;
    if let Some(e) = failure.into_inner() {
        return Err(format!("looking up the data set's ids: {e}"));
    }
    let pools = pools.into_inner();
    if pools.patients.is_empty() {
        return Err(format!(
            "none of the data set's patients are on the server at {}: load the data first",
            config.base
        ));
    }
    Ok(pools)
}

/// The ids to use: from `config.pool_file` when it exists, else looked up (and saved there).
async fn pools(config: &Config, target: &Target) -> Result<Pools, String> {
    if let Some(path) = &config.pool_file {
        if let Ok(text) = std::fs::read_to_string(path) {
            return serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()));
        }
    }
    let pools = discover(config, target).await?;
    if let Some(path) = &config.pool_file {
        let text = serde_json::to_string(&pools).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(pools)
}

struct Found {
    id: String,
    encounters: Vec<String>,
    service_requests: Vec<String>,
    template: Option<Value>,
}

async fn get_json(
    client: &mut Client,
    target: &Target,
    token: Option<&str>,
    path: &str,
) -> Result<Value, String> {
    let request = Request::new(target, token, "GET", path, None, 200);
    let response = client.send(&request.bytes).await?;
    if response.status != 200 {
        return Err(format!(
            "GET {path}: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body[..response.body.len().min(300)])
        ));
    }
    serde_json::from_slice(&response.body).map_err(|e| format!("GET {path}: {e}"))
}

fn ids_of(bundle: &Value) -> Vec<(String, Value)> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] != "include")
        .filter_map(|e| {
            let resource = &e["resource"];
            resource["id"]
                .as_str()
                .map(|id| (id.to_owned(), resource.clone()))
        })
        .collect()
}

async fn discover_one(
    client: &mut Client,
    target: &Target,
    token: Option<&str>,
    nhs: &str,
) -> Result<Option<Found>, String> {
    let patients = get_json(
        client,
        target,
        token,
        &format!("/Patient?identifier={NHS_NUMBER}|{nhs}"),
    )
    .await?;
    let Some((id, _)) = ids_of(&patients).into_iter().next() else {
        return Ok(None);
    };
    let encounters = ids_of(
        &get_json(
            client,
            target,
            token,
            &format!("/Encounter?patient={id}&_count=200"),
        )
        .await?,
    );
    let service_requests = ids_of(
        &get_json(
            client,
            target,
            token,
            &format!("/ServiceRequest?patient={id}&_count=200"),
        )
        .await?,
    );
    let template = encounters.first().map(|(_, resource)| {
        let mut template = resource.clone();
        if let Some(object) = template.as_object_mut() {
            object.shift_remove("id");
            object.shift_remove("meta");
            object.shift_remove("basedOn");
        }
        template
    });
    Ok(Some(Found {
        id,
        encounters: encounters.into_iter().map(|(id, _)| id).collect(),
        service_requests: service_requests.into_iter().map(|(id, _)| id).collect(),
        template,
    }))
}

// ---------------------------------------------------------------------------------------------
// Running

/// Reads `VmHWM` and `VmRSS` of a process, in MB.
pub fn server_memory(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// What the clients share while running.
struct Shared<'a> {
    config: &'a Config,
    target: &'a Target,
    deadline: Instant,
    limit: u64,
    issued: Cell<u64>,
    latencies: RefCell<Vec<u32>>,
    errors: Cell<u64>,
    resources: Cell<u64>,
    created: Cell<u64>,
    samples: RefCell<Vec<String>>,
}

impl Shared<'_> {
    fn record(&self, scheduled: Instant, request: &Request, result: Result<Response, String>) {
        let micros = scheduled.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        self.latencies.borrow_mut().push(micros);
        match result {
            Ok(response) if response.status == request.expect => {
                self.resources.set(self.resources.get() + request.resources);
                if self.config.scenario == Scenario::Ingest {
                    self.created
                        .set(self.created.get() + occurrences(&response.body, b"\"201 Created\""));
                } else if request.expect == 201 {
                    self.created.set(self.created.get() + 1);
                }
            }
            Ok(response) => {
                self.errors.set(self.errors.get() + 1);
                self.sample(format!(
                    "{} {}",
                    response.status,
                    String::from_utf8_lossy(&response.body[..response.body.len().min(400)])
                ));
            }
            Err(e) => {
                self.errors.set(self.errors.get() + 1);
                self.sample(e);
            }
        }
    }

    fn sample(&self, text: String) {
        let mut samples = self.samples.borrow_mut();
        if samples.len() < 5 {
            samples.push(text);
        }
    }

    /// Claims the next request; false when the run is over.
    fn claim(&self) -> bool {
        let n = self.issued.get();
        if n >= self.limit || Instant::now() >= self.deadline {
            return false;
        }
        self.issued.set(n + 1);
        true
    }
}

/// Runs one scenario and reports what it measured.
pub async fn run(config: &Config) -> Result<Report, String> {
    let target = Target::parse(&config.base)?;
    if config.concurrency == 0 {
        return Err("concurrency must be at least 1".into());
    }
    if let Some(rate) = config.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err("rate must be a positive number of requests per second".into());
        }
    }
    let token = config.token.as_deref();
    let work = match config.scenario {
        Scenario::Ingest => Work::Files {
            phases: bundle_phases(&config.data)?,
        },
        scenario => {
            let pools = pools(config, &target).await?;
            if scenario == Scenario::Everything && pools.heavy.is_empty() {
                return Err("no heavy patient of the data set is on the server".into());
            }
            if matches!(scenario, Scenario::Create | Scenario::Mixed) && pools.templates.is_empty()
            {
                return Err("no Encounter found to copy for creates".into());
            }
            Work::Generated(Box::new(Generator {
                scenario,
                pools,
                rng: Rng::for_item(config.seed, 11, 0),
                run: format!("{:x}", Rng::new(config.seed ^ now_nanos()).next_u64()),
                count: 0,
                everything_count: config.everything_count,
            }))
        }
    };
    let started = Instant::now();
    let shared = Shared {
        config,
        target: &target,
        deadline: started + config.duration,
        limit: config.requests.unwrap_or(u64::MAX),
        issued: Cell::new(0),
        latencies: RefCell::new(Vec::new()),
        errors: Cell::new(0),
        resources: Cell::new(0),
        created: Cell::new(0),
        samples: RefCell::new(Vec::new()),
    };
    match work {
        Work::Files { phases } => {
            for phase in phases {
                let files = RefCell::new(phase.into_iter());
                drive(&shared, config, || {
                    let path = files.borrow_mut().next()?;
                    Some(match std::fs::read(&path) {
                        Ok(body) => {
                            let mut request =
                                Request::new(&target, token, "POST", "", Some(&body), 200);
                            request.resources = occurrences(&body, b"\"fullUrl\"");
                            Ok(request)
                        }
                        Err(e) => Err(format!("{}: {e}", path.display())),
                    })
                })
                .await;
                if shared.issued.get() >= shared.limit || Instant::now() >= shared.deadline {
                    break;
                }
            }
        }
        Work::Generated(generator) => {
            let generator = RefCell::new(*generator);
            drive(&shared, config, || {
                Some(Ok(generator.borrow_mut().next(&target, token)))
            })
            .await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let latencies = shared.latencies.into_inner();
    let requests = latencies.len() as u64;
    let memory = config.server_pid.and_then(server_memory);
    let per_second = |n: u64| n as f64 / seconds.max(1e-9);
    let counts_resources = matches!(config.scenario, Scenario::Ingest | Scenario::Create);
    Ok(Report {
        scenario: config.scenario.as_str().to_owned(),
        mode: if config.rate.is_some() {
            "fixed-rate".into()
        } else {
            "closed".into()
        },
        concurrency: config.concurrency,
        target_rate: config.rate,
        requests,
        errors: shared.errors.get(),
        seconds,
        throughput: per_second(requests),
        resources_per_second: counts_resources.then(|| per_second(shared.resources.get())),
        created_per_second: matches!(
            config.scenario,
            Scenario::Ingest | Scenario::Create | Scenario::Mixed
        )
        .then(|| per_second(shared.created.get())),
        latency: Latency::of(latencies),
        server_peak_rss_mb: memory.map(|m| m.0),
        server_rss_mb: memory.map(|m| m.1),
        error_samples: shared.samples.into_inner(),
        tags: config.tags.clone(),
    })
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs `concurrency` clients until `next` runs dry, the request limit or the deadline. In
/// fixed-rate mode the `n`th request of this call is due `n / rate` seconds after it starts and
/// client `n % concurrency` sends it; one sent late (its client still waited for a slow answer)
/// counts its latency from when it was due, so a slow server cannot hide its queue.
async fn drive<F>(shared: &Shared<'_>, config: &Config, next: F)
where
    F: Fn() -> Option<Result<Request, String>>,
{
    let clients = config.concurrency;
    let origin = Instant::now();
    let next = &next;
    let client = |k: usize| async move {
        let mut client = Client::new(shared.target);
        let mut mine = k as u64;
        loop {
            let scheduled = match config.rate {
                Some(rate) => {
                    let due = origin + Duration::from_secs_f64(mine as f64 / rate);
                    mine += clients as u64;
                    if due >= shared.deadline {
                        break;
                    }
                    let now = Instant::now();
                    if due > now {
                        // On time: latency runs from the wake-up (the timer's granularity is
                        // the driver's, not the server's).
                        actix_web::rt::time::sleep(due - now).await;
                        Instant::now()
                    } else {
                        // Late, because this client's last response came late: latency runs
                        // from when the request was due.
                        due
                    }
                }
                None => Instant::now(),
            };
            if !shared.claim() {
                break;
            }
            let request = match next() {
                None => break,
                Some(Ok(request)) => request,
                Some(Err(e)) => {
                    shared.errors.set(shared.errors.get() + 1);
                    shared.sample(e);
                    continue;
                }
            };
            let result = client.send(&request.bytes).await;
            shared.record(scheduled, &request, result);
        }
    };
    futures_util::future::join_all((0..clients).map(client)).await;
}

// ---------------------------------------------------------------------------------------------
// Reporting: the benchmark script's markdown

/// One target of the benchmarks (`benches/run.sh`), checked against measured lines.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetCheck {
    pub target: String,
    pub measured: String,
    /// `None` when nothing measured it.
    pub met: Option<bool>,
}

fn num(line: &Value, path: &[&str]) -> Option<f64> {
    let mut value = line;
    for key in path {
        value = value.get(*key)?;
    }
    value.as_f64()
}

fn tag(line: &Value, key: &str) -> String {
    line.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn size_of(line: &Value) -> u64 {
    tag(line, "size").parse().unwrap_or(0)
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Checks the targets against the run lines of one backend (the targets are for SQLite on the
/// 2-core machine; other backends are shown against the same figures).
pub fn check_targets(lines: &[Value]) -> Vec<TargetCheck> {
    let runs: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("scenario").is_some())
        .collect();
    let pick = |scenario: &str, mode: &str| -> Vec<&Value> {
        let mut found: Vec<&Value> = runs
            .iter()
            .copied()
            .filter(|l| tag(l, "scenario") == scenario && tag(l, "mode") == mode)
            .collect();
        found.sort_by_key(|l| size_of(l));
        found
    };
    let per_size = |found: &[&Value], show: &dyn Fn(&Value) -> String| {
        found
            .iter()
            .map(|l| format!("{}: {}", human(size_of(l)), show(l)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let all = |found: &[&Value], ok: &dyn Fn(&Value) -> bool| {
        (!found.is_empty()).then(|| found.iter().all(|l| ok(l)))
    };
    let mut checks = Vec::new();

    let ingest = pick("ingest", "closed");
    checks.push(TargetCheck {
        target: "ingest ≥ 10,000 resources/s (100-entry transactions, 4 clients)".into(),
        measured: per_size(&ingest, &|l| {
            format!(
                "{:.0}/s ({:.0} created/s)",
                num(l, &["resources_per_second"]).unwrap_or(0.0),
                num(l, &["created_per_second"]).unwrap_or(0.0)
            )
        }),
        met: all(&ingest, &|l| {
            num(l, &["resources_per_second"]).unwrap_or(0.0) >= 10_000.0
        }),
    });
    let create = pick("create", "closed");
    checks.push(TargetCheck {
        target: "single create ≥ 3,000/s".into(),
        measured: per_size(&create, &|l| {
            format!("{:.0}/s", num(l, &["throughput"]).unwrap_or(0.0))
        }),
        met: all(&create, &|l| {
            num(l, &["throughput"]).unwrap_or(0.0) >= 3_000.0
        }),
    });
    let read = pick("read", "closed");
    checks.push(TargetCheck {
        target: "read by id ≥ 25,000 req/s with p99 < 10 ms".into(),
        measured: per_size(&read, &|l| {
            format!(
                "{:.0} req/s, p99 {:.1} ms",
                num(l, &["throughput"]).unwrap_or(0.0),
                num(l, &["latency_ms", "p99"]).unwrap_or(0.0)
            )
        }),
        met: all(&read, &|l| {
            num(l, &["throughput"]).unwrap_or(0.0) >= 25_000.0
                && num(l, &["latency_ms", "p99"]).unwrap_or(f64::MAX) < 10.0
        }),
    });
    let search = pick("search-identifier", "closed");
    checks.push(TargetCheck {
        target: "identifier search ≥ 10,000 req/s".into(),
        measured: per_size(&search, &|l| {
            format!("{:.0} req/s", num(l, &["throughput"]).unwrap_or(0.0))
        }),
        met: all(&search, &|l| {
            num(l, &["throughput"]).unwrap_or(0.0) >= 10_000.0
        }),
    });
    let everything = pick("everything", "fixed-rate");
    checks.push(TargetCheck {
        target: "$everything (100 encounters, 20 referrals) p50 < 5 ms".into(),
        measured: per_size(&everything, &|l| {
            format!(
                "p50 {:.2} ms at {:.0}/s",
                num(l, &["latency_ms", "p50"]).unwrap_or(0.0),
                num(l, &["target_rate"]).unwrap_or(0.0)
            )
        }),
        met: all(&everything, &|l| {
            num(l, &["latency_ms", "p50"]).unwrap_or(f64::MAX) < 5.0
        }),
    });
    let mut growth = Vec::new();
    let mut growth_ok = None;
    for scenario in ["search-identifier", "search-patient"] {
        let found = pick(scenario, "fixed-rate");
        if let (Some(small), Some(large)) = (found.first(), found.last()) {
            if size_of(small) < size_of(large) {
                let (a, b) = (
                    num(small, &["latency_ms", "p50"]).unwrap_or(0.0),
                    num(large, &["latency_ms", "p50"]).unwrap_or(0.0),
                );
                let ratio = if a > 0.0 { b / a } else { f64::INFINITY };
                growth.push(format!(
                    "{scenario} p50 {a:.2} → {b:.2} ms ({ratio:.2}×, {} → {})",
                    human(size_of(small)),
                    human(size_of(large))
                ));
                growth_ok = Some(growth_ok.unwrap_or(true) && ratio <= 2.0);
            }
        }
    }
    checks.push(TargetCheck {
        target: "search latency at the largest size within 2× of 10,000 resources".into(),
        measured: growth.join("; "),
        met: growth_ok,
    });
    let largest = runs.iter().map(|l| size_of(l)).max().unwrap_or(0);
    let peak = runs
        .iter()
        .filter(|l| size_of(l) == largest)
        .filter_map(|l| num(l, &["server_peak_rss_mb"]))
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    checks.push(TargetCheck {
        target: "server RSS < 300 MB at 1,000,000 resources".into(),
        measured: peak
            .map(|p| format!("peak {p:.0} MB at {}", human(largest)))
            .unwrap_or_default(),
        // Measured at a smaller size only: not decided.
        met: peak.filter(|_| largest >= 1_000_000).map(|p| p < 300.0),
    });
    checks
}

/// The markdown of one backend's results: the machine, the data set, the targets, every run.
pub fn markdown(lines: &[Value]) -> String {
    let mut out = String::new();
    let backend = lines
        .iter()
        .find_map(|l| l.get("backend").and_then(Value::as_str))
        .unwrap_or("unknown");
    out.push_str(&format!("### {backend}\n\n"));
    if let Some(machine) = lines.iter().find_map(|l| l.get("machine")) {
        out.push_str(&format!(
            "Machine: {} — {} cores, {} memory; {}; carerecord {}; {}.\n\n",
            tag(machine, "cpu"),
            tag(machine, "cores"),
            tag(machine, "memory"),
            tag(machine, "os"),
            tag(machine, "commit"),
            tag(machine, "date"),
        ));
    }
    let datasets: Vec<&Value> = lines.iter().filter_map(|l| l.get("dataset")).collect();
    if !datasets.is_empty() {
        out.push_str("| data set | patients | resources stored | avg size | bulk load |\n|---|---:|---:|---:|---|\n");
        for d in datasets {
            out.push_str(&format!(
                "| {} | {} | {} | {} B | {} |\n",
                tag(d, "size"),
                tag(d, "patients"),
                tag(d, "stored"),
                tag(d, "average_bytes"),
                tag(d, "load"),
            ));
        }
        out.push('\n');
    }
    out.push_str("| target | measured | met |\n|---|---|---|\n");
    for check in check_targets(lines) {
        let met = match check.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        out.push_str(&format!(
            "| {} | {} | {met} |\n",
            check.target,
            if check.measured.is_empty() {
                "—"
            } else {
                &check.measured
            }
        ));
    }
    out.push_str("\n| size | scenario | load | requests | req/s | resources/s | p50 ms | p90 ms | p99 ms | max ms | errors | server peak RSS |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for l in lines.iter().filter(|l| l.get("scenario").is_some()) {
        let load = match num(l, &["target_rate"]) {
            Some(rate) => format!(
                "{rate:.0}/s fixed, {} clients",
                num(l, &["concurrency"]).unwrap_or(0.0)
            ),
            None => format!(
                "closed, {} clients",
                num(l, &["concurrency"]).unwrap_or(0.0)
            ),
        };
        let resources = num(l, &["resources_per_second"])
            .map(|r| format!("{r:.0}"))
            .unwrap_or_else(|| "—".into());
        out.push_str(&format!(
            "| {} | {} | {load} | {} | {:.0} | {resources} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} |\n",
            human(size_of(l)),
            tag(l, "scenario"),
            num(l, &["requests"]).unwrap_or(0.0),
            num(l, &["throughput"]).unwrap_or(0.0),
            num(l, &["latency_ms", "p50"]).unwrap_or(0.0),
            num(l, &["latency_ms", "p90"]).unwrap_or(0.0),
            num(l, &["latency_ms", "p99"]).unwrap_or(0.0),
            num(l, &["latency_ms", "max"]).unwrap_or(0.0),
            num(l, &["errors"]).unwrap_or(0.0),
            num(l, &["server_peak_rss_mb"])
                .map(|m| format!("{m:.0} MB"))
                .unwrap_or_else(|| "—".into()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        for ok in [
            "http://127.0.0.1:8080/fhir/default",
            "http://localhost:8080/fhir/default/",
            "http://[::1]:8080/fhir/x",
        ] {
            let target = Target::parse(ok);
            // [::1] may not resolve where IPv6 is off; the others must.
            if !ok.contains("::1") {
                assert!(target.is_ok(), "{ok}: {target:?}");
            }
        }
        for bad in [
            "http://10.0.0.1:8080/fhir/default",
            "http://example.com/fhir/default",
            "https://127.0.0.1/fhir/default",
            "http://127.0.0.1.example.com/fhir",
            "http://0.0.0.0:8080/fhir",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        let t = Target::parse("http://127.0.0.1:9/fhir/default/").unwrap();
        assert_eq!(t.prefix, "/fhir/default");
        assert_eq!(t.host, "127.0.0.1:9");
    }

    #[test]
    fn percentiles() {
        let l = Latency::of((1..=100).map(|ms| ms * 1_000).collect());
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        assert!((l.mean - 50.5).abs() < 1e-9);
    }

    #[test]
    fn targets_are_checked_per_size() {
        let line = |scenario: &str, mode: &str, size: &str, throughput: f64, p50: f64| {
            json!({"scenario": scenario, "mode": mode, "size": size, "throughput": throughput,
                   "resources_per_second": throughput, "target_rate": if mode == "fixed-rate" { Some(100.0) } else { None },
                   "latency_ms": {"p50": p50, "p99": p50 * 2.0}, "server_peak_rss_mb": 100.0, "backend": "sqlite"})
        };
        let lines = vec![
            line("read", "closed", "10000", 30_000.0, 1.0),
            line("read", "closed", "1000000", 20_000.0, 1.0),
            line("search-identifier", "fixed-rate", "10000", 100.0, 1.0),
            line("search-identifier", "fixed-rate", "1000000", 100.0, 2.5),
        ];
        let checks = check_targets(&lines);
        let read = checks
            .iter()
            .find(|c| c.target.starts_with("read"))
            .unwrap();
        assert_eq!(read.met, Some(false));
        assert!(read.measured.contains("10k: 30000 req/s") && read.measured.contains("1M: 20000"));
        let growth = checks
            .iter()
            .find(|c| c.target.contains("within 2×"))
            .unwrap();
        assert_eq!(growth.met, Some(false), "{growth:?}");
        let rss = checks.iter().find(|c| c.target.contains("RSS")).unwrap();
        assert_eq!(rss.met, Some(true));
        let small: Vec<Value> = lines.iter().take(1).cloned().collect();
        let rss = check_targets(&small)
            .into_iter()
            .find(|c| c.target.contains("RSS"))
            .unwrap();
        assert_eq!(rss.met, None);
        let create = checks.iter().find(|c| c.target.contains("create")).unwrap();
        assert_eq!(create.met, None);
        assert!(markdown(&lines).contains("| 1M | read | closed"));
    }

    #[test]
    fn counts() {
        assert_eq!(occurrences(b"\"fullUrl\" x \"fullUrl\"", b"\"fullUrl\""), 2);
        assert_eq!(occurrences(b"", b"x"), 0);
    }
}
