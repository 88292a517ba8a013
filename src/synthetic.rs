//! Synthetic UK data for benchmarks and tests: a local system fed by its GP practices and
//! hospital trusts, deterministic for a seed.
//!
//! Per patient, a **GP feed** (the Patient, consultations as Encounters, referrals as UK Core
//! ServiceRequests with a UBRN and the SNOMED CT category 3457005 "Patient referral") and a
//! **hospital feed** (outpatient, inpatient and A&E Encounters — class AMB, IMP, EMER — for the same
//! patient, found by NHS number through conditional references, outpatient attendances pointing at
//! their referral by UBRN). GP practices and trusts are Organizations with ODS codes, their sites
//! Locations with ODS site codes, GPs and consultants Practitioners with SDS user ids. NHS numbers
//! are valid Modulus 11 numbers in the 999 test range, never issued to a real person.
//!
//! [`generate`] writes, under the output folder:
//!
//! - `bundles/1-gp/gp-NNNNNN.json` then `bundles/2-hospital/hospital-NNNNNN.json`: transaction
//!   Bundles of about [`Options::bundle_entries`] entries, each from one sender (a practice, a
//!   trust), with conditional creates on business identifiers and conditional updates for
//!   hospital encounters, named so that loading them in name order is valid (a parallel loader
//!   finishes `1-gp/` before it starts `2-hospital/`);
//! - `ndjson/N-Type.ndjson`: the same resources, with ids and `Type/id` references, one file per
//!   type, named so that loading them in name order (one at a time) meets every reference;
//! - `manifest.json`: the counts, every NHS number, and the *heavy* patients (100 encounters and
//!   20 referrals each, one in [`HEAVY_EVERY`] patients) that `$everything` is measured on.
//!
//! Only std and serde_json: the random numbers come from a small splitmix64 generator, so the
//! same seed gives the same bytes on every platform.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// One patient in this many has a heavy record (100 encounters, 20 referrals); patient 0 always.
pub const HEAVY_EVERY: usize = 500;
/// Encounters of a heavy patient.
pub const HEAVY_ENCOUNTERS: usize = 100;
/// Referrals of a heavy patient.
pub const HEAVY_REFERRALS: usize = 20;
/// The most patients one run can number (the 999 range holds about 909,000 valid NHS numbers).
pub const MAX_PATIENTS: usize = 900_000;

pub const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const ODS_ORGANIZATION: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
pub const ODS_SITE: &str = "https://fhir.nhs.uk/Id/ods-site-code";
pub const SDS_USER: &str = "https://fhir.nhs.uk/Id/sds-user-id";
pub const UBRN: &str = "https://fhir.nhs.uk/Id/UBRN";
/// GP consultation identifiers (per practice: the value starts with the practice's ODS code).
pub const GP_CONSULTATION: &str = "https://fhir.carerecord.dev/Id/gp-consultation";
/// Hospital encounter identifiers (the value starts with the trust's ODS code).
pub const HOSPITAL_ENCOUNTER: &str = "https://fhir.carerecord.dev/Id/hospital-encounter";

const SNOMED: &str = "http://snomed.info/sct";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const VERIFICATION_EXTENSION: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus";
const VERIFICATION_SYSTEM: &str =
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland";
/// Every date is on or before this day (the data is the same whenever it is generated).
const LAST_DAY: i64 = 20_757; // 2026-10-31, days since 1970-01-01

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    pub patients: usize,
    pub seed: u64,
    pub out: PathBuf,
    /// Entries per transaction Bundle, about (a patient's feed is never split).
    pub bundle_entries: usize,
}

impl Options {
    pub fn new(patients: usize, seed: u64, out: impl Into<PathBuf>) -> Self {
        Self {
            patients,
            seed,
            out: out.into(),
            bundle_entries: 100,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub patients: usize,
    /// Distinct resources (what the NDJSON holds, and what loading the bundles stores).
    pub resources: usize,
    pub by_type: BTreeMap<String, usize>,
    /// Bytes of the NDJSON resources (compact JSON), for the average size.
    pub resource_bytes: u64,
    pub gp_bundles: usize,
    pub hospital_bundles: usize,
    /// Entries across all bundles (shared resources repeat in each bundle that uses them).
    pub bundle_entries: usize,
    pub heavy: Vec<String>,
}

impl Summary {
    pub fn average_resource_bytes(&self) -> u64 {
        self.resource_bytes / (self.resources.max(1) as u64)
    }
}

/// The `manifest.json` written beside the data (what the load driver reads).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub seed: u64,
    pub patients: usize,
    pub resources: usize,
    pub counts: BTreeMap<String, usize>,
    pub average_resource_bytes: u64,
    pub gp_bundles: usize,
    pub hospital_bundles: usize,
    pub bundle_entries: usize,
    /// NHS numbers of the heavy patients (100 encounters, 20 referrals).
    pub heavy: Vec<String>,
    /// Every patient's NHS number, in patient order.
    pub nhs_numbers: Vec<String>,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Self, String> {
        let path = dir.join("manifest.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

// ---------------------------------------------------------------------------------------------
// Random numbers

/// splitmix64: tiny, fast, statistically fine for test data, and the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for one item of a stream: independent of how many items came before.
    pub fn for_item(seed: u64, stream: u64, item: u64) -> Self {
        let mut rng = Self(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        rng.0 ^= rng.next_u64() ^ item.wrapping_mul(0xE703_7ED1_A0B4_28DB);
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; 0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high.saturating_sub(low) + 1)
    }

    /// True with probability `percent` in 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A version 4 UUID made of this generator's bits.
    pub fn uuid(&mut self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    fn digits(&mut self, count: usize) -> String {
        (0..count)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// NHS numbers

/// The Modulus 11 check digit of the first nine digits; `None` when it would be 10 (such numbers
/// are never issued).
pub fn nhs_check_digit(first_nine: &[u8; 9]) -> Option<u8> {
    let sum: u32 = first_nine
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| u32::from(*d) * w)
        .sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        check => Some(check as u8),
    }
}

/// The `count` NHS numbers of a run: valid, distinct, in 999 000 0000 – 999 999 9999, spread over
/// the range in an order the seed decides.
pub fn nhs_numbers(seed: u64, count: usize) -> Vec<String> {
    // i -> (offset + i * STRIDE) mod 10^6 visits every six-digit body once (STRIDE is prime to 10).
    const STRIDE: u64 = 7_919;
    let offset = Rng::new(seed ^ 0x4E48_5321).below(1_000_000);
    let mut out = Vec::with_capacity(count);
    let mut i = 0u64;
    while out.len() < count && i < 1_000_000 {
        let body = (offset + i * STRIDE) % 1_000_000;
        i += 1;
        let text = format!("999{body:06}");
        let mut first_nine = [0u8; 9];
        for (slot, b) in first_nine.iter_mut().zip(text.bytes()) {
            *slot = b - b'0';
        }
        let Some(check) = nhs_check_digit(&first_nine) else {
            continue;
        };
        let number = format!("{text}{check}");
        // 999 999 999 9 passes Modulus 11 but one repeated digit is never valid.
        if number.bytes().all(|b| b == b'9') {
            continue;
        }
        out.push(number);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Reference data: names, places, services

const MALE: &[&str] = &[
    "Oliver",
    "George",
    "Harry",
    "Jack",
    "Jacob",
    "Noah",
    "Charlie",
    "Muhammad",
    "Thomas",
    "Oscar",
    "William",
    "James",
    "Henry",
    "Leo",
    "Alfie",
    "Joshua",
    "Freddie",
    "Archie",
    "Ethan",
    "Isaac",
    "Alexander",
    "Joseph",
    "Edward",
    "Samuel",
    "Max",
    "Daniel",
    "Arthur",
    "Lucas",
    "Mohammed",
    "Logan",
    "David",
    "John",
    "Michael",
    "Paul",
    "Peter",
    "Robert",
    "Stephen",
    "Andrew",
    "Mark",
    "Richard",
    "Christopher",
    "Ian",
    "Gary",
    "Kevin",
    "Brian",
    "Keith",
    "Colin",
    "Derek",
    "Ravi",
    "Imran",
    "Tariq",
    "Piotr",
    "Tomasz",
    "Sean",
    "Callum",
    "Rhys",
    "Owen",
    "Dylan",
    "Ryan",
];
const FEMALE: &[&str] = &[
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Emily",
    "Isabella",
    "Mia",
    "Poppy",
    "Ella",
    "Lily",
    "Sophie",
    "Grace",
    "Freya",
    "Evie",
    "Charlotte",
    "Jessica",
    "Ruby",
    "Chloe",
    "Florence",
    "Alice",
    "Margaret",
    "Susan",
    "Patricia",
    "Elizabeth",
    "Sarah",
    "Helen",
    "Karen",
    "Julie",
    "Joanne",
    "Claire",
    "Rachel",
    "Emma",
    "Laura",
    "Rebecca",
    "Hannah",
    "Lucy",
    "Katie",
    "Megan",
    "Jean",
    "Dorothy",
    "Joan",
    "Sheila",
    "Pauline",
    "Janet",
    "Aisha",
    "Fatima",
    "Priya",
    "Ayesha",
    "Zainab",
    "Agnieszka",
    "Anna",
    "Siobhan",
    "Niamh",
    "Bethan",
    "Rhiannon",
    "Shannon",
    "Nicola",
];
const FAMILY: &[&str] = &[
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Harris",
    "Clarke",
    "Patel",
    "Jackson",
    "Wood",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Morris",
    "Moore",
    "Clark",
    "Lee",
    "King",
    "Baker",
    "Harrison",
    "Morgan",
    "Allen",
    "James",
    "Scott",
    "Phillips",
    "Watson",
    "Davis",
    "Parker",
    "Price",
    "Bennett",
    "Young",
    "Griffiths",
    "Mitchell",
    "Kelly",
    "Cook",
    "Carter",
    "Richardson",
    "Bailey",
    "Collins",
    "Bell",
    "Shaw",
    "Murphy",
    "Miller",
    "Cox",
    "Richards",
    "Khan",
    "Marshall",
    "Anderson",
    "Simpson",
    "Ellis",
    "Adams",
    "Singh",
    "Begum",
    "Wilkinson",
    "Foster",
    "Chapman",
    "Powell",
    "Webb",
    "Rogers",
    "Gray",
    "Mason",
    "Ali",
    "Hunt",
    "Hussain",
    "Campbell",
    "Matthews",
    "Owen",
    "Palmer",
    "Holmes",
    "Mills",
    "Barnes",
    "Knight",
    "Lloyd",
    "Butler",
    "Russell",
    "Barker",
    "Fisher",
    "Stevens",
    "Jenkins",
    "Murray",
    "Dixon",
    "Harvey",
    "Ahmed",
    "Kaur",
    "Nowak",
    "O'Brien",
    "Graham",
    "Reid",
    "Sutcliffe",
    "Ackroyd",
    "Holroyd",
    "Haigh",
    "Brook",
];
const STREET_NAMES: &[&str] = &[
    "Church",
    "Station",
    "Victoria",
    "Park",
    "Mill",
    "Manor",
    "Queen's",
    "King's",
    "Albert",
    "York",
    "Chapel",
    "Westfield",
    "Springfield",
    "Moor",
    "Green",
    "Holly",
    "Oak",
    "Beech",
    "Ash",
    "Elm",
    "Willow",
    "Meadow",
    "Valley",
    "Highfield",
    "Woodland",
    "Stanley",
    "Granville",
    "Cavendish",
    "Clarendon",
    "Otley",
    "Harrogate",
    "Wakefield",
    "Beckett",
    "Bank",
    "Cliff",
    "Hollin",
    "Kirkgate",
    "Wellington",
    "Devonshire",
    "Grosvenor",
    "Lidget",
    "Carr",
    "Ings",
];
const STREET_KINDS: &[&str] = &[
    "Road", "Street", "Lane", "Avenue", "Close", "Drive", "Grove", "Terrace", "Crescent", "Way",
    "Gardens", "Mount", "View", "Walk",
];
/// Inward-code letters (postcodes never use C, I, K, M, O or V there).
const INWARD_LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";

struct Town {
    name: &'static str,
    district: Option<&'static str>,
    area: &'static str,
    districts: (u32, u32),
    neighbourhoods: &'static [&'static str],
}

const TOWNS: &[Town] = &[
    Town {
        name: "Leeds",
        district: Some("West Yorkshire"),
        area: "LS",
        districts: (1, 29),
        neighbourhoods: &[
            "Headingley",
            "Chapel Allerton",
            "Roundhay",
            "Horsforth",
            "Armley",
            "Beeston",
            "Seacroft",
            "Garforth",
        ],
    },
    Town {
        name: "Bradford",
        district: Some("West Yorkshire"),
        area: "BD",
        districts: (1, 22),
        neighbourhoods: &[
            "Shipley",
            "Manningham",
            "Idle",
            "Thornton",
            "Bingley",
            "Keighley",
        ],
    },
    Town {
        name: "Wakefield",
        district: Some("West Yorkshire"),
        area: "WF",
        districts: (1, 17),
        neighbourhoods: &["Ossett", "Horbury", "Pontefract", "Normanton"],
    },
    Town {
        name: "Huddersfield",
        district: Some("West Yorkshire"),
        area: "HD",
        districts: (1, 9),
        neighbourhoods: &["Holmfirth", "Marsden", "Lindley", "Almondbury"],
    },
    Town {
        name: "Halifax",
        district: Some("West Yorkshire"),
        area: "HX",
        districts: (1, 7),
        neighbourhoods: &["Sowerby Bridge", "Brighouse", "Hebden Bridge", "Elland"],
    },
    Town {
        name: "York",
        district: Some("North Yorkshire"),
        area: "YO",
        districts: (1, 32),
        neighbourhoods: &["Acomb", "Haxby", "Heworth", "Fulford"],
    },
    Town {
        name: "Harrogate",
        district: Some("North Yorkshire"),
        area: "HG",
        districts: (1, 5),
        neighbourhoods: &["Knaresborough", "Ripon", "Pannal", "Starbeck"],
    },
];

struct TrustSpec {
    ods: &'static str,
    name: &'static str,
    town: usize,
    sites: &'static [(&'static str, &'static str)],
}

const TRUSTS: &[TrustSpec] = &[
    TrustSpec {
        ods: "RR8",
        name: "Leeds Teaching Hospitals NHS Trust",
        town: 0,
        sites: &[
            ("RR801", "Leeds General Infirmary"),
            ("RR813", "St James's University Hospital"),
            ("RR807", "Chapel Allerton Hospital"),
        ],
    },
    TrustSpec {
        ods: "RAE",
        name: "Bradford Teaching Hospitals NHS Foundation Trust",
        town: 1,
        sites: &[
            ("RAE01", "Bradford Royal Infirmary"),
            ("RAE05", "St Luke's Hospital"),
        ],
    },
    TrustSpec {
        ods: "RXF",
        name: "Mid Yorkshire Teaching NHS Trust",
        town: 2,
        sites: &[
            ("RXF05", "Pinderfields Hospital"),
            ("RXF03", "Pontefract Hospital"),
            ("RXF10", "Dewsbury and District Hospital"),
        ],
    },
    TrustSpec {
        ods: "RWY",
        name: "Calderdale and Huddersfield NHS Foundation Trust",
        town: 3,
        sites: &[
            ("RWY01", "Huddersfield Royal Infirmary"),
            ("RWY02", "Calderdale Royal Hospital"),
        ],
    },
    TrustSpec {
        ods: "RCB",
        name: "York and Scarborough Teaching Hospitals NHS Foundation Trust",
        town: 5,
        sites: &[
            ("RCB55", "York Hospital"),
            ("RCBCA", "Scarborough Hospital"),
        ],
    },
];

/// (SNOMED CT code, display) pairs.
type Concept = (&'static str, &'static str);

const GP_ENCOUNTER_TYPES: &[Concept] = &[
    ("185347001", "Encounter for problem"),
    ("185317003", "Telephone encounter"),
    ("390906007", "Follow-up encounter"),
    ("185316007", "Indirect encounter"),
    ("439708006", "Home visit"),
    ("410620009", "Well child visit"),
];
const PROBLEMS: &[(&str, &str, &str)] = &[
    ("38341003", "Hypertensive disorder", "Blood pressure review"),
    (
        "44054006",
        "Type 2 diabetes mellitus",
        "Diabetes annual review",
    ),
    (
        "195967001",
        "Asthma",
        "Asthma review; inhaler technique checked",
    ),
    (
        "35489007",
        "Depressive disorder",
        "Low mood, medication review",
    ),
    ("29857009", "Chest pain", "Chest pain on exertion"),
    (
        "279039007",
        "Low back pain",
        "Low back pain for three weeks",
    ),
    (
        "68566005",
        "Urinary tract infectious disease",
        "Dysuria and frequency",
    ),
    (
        "54150009",
        "Upper respiratory infection",
        "Cough and sore throat",
    ),
    ("267036007", "Dyspnoea", "Breathless on exertion"),
    ("25064002", "Headache", "Recurrent headaches"),
    (
        "13645005",
        "Chronic obstructive lung disease",
        "COPD review",
    ),
    (
        "49436004",
        "Atrial fibrillation",
        "Irregular pulse found at review",
    ),
    (
        "239873007",
        "Osteoarthritis of knee",
        "Knee pain, worse on stairs",
    ),
    ("271807003", "Eruption of skin", "Itchy rash on forearms"),
    ("197480006", "Anxiety disorder", "Anxiety, sleeping poorly"),
];
/// (referral code, display, specialty text, problem index it usually follows).
const REFERRALS: &[(&str, &str, &str)] = &[
    ("183519002", "Referral to cardiology service", "Cardiology"),
    (
        "183521007",
        "Referral to gastroenterology service",
        "Gastroenterology",
    ),
    ("183524004", "Referral to psychiatry service", "Psychiatry"),
    (
        "183545006",
        "Referral to orthopaedic service",
        "Trauma and orthopaedics",
    ),
    (
        "183543004",
        "Referral to dermatology service",
        "Dermatology",
    ),
    (
        "183526002",
        "Referral to respiratory service",
        "Respiratory medicine",
    ),
    (
        "183542009",
        "Referral to ophthalmology service",
        "Ophthalmology",
    ),
    ("306206005", "Referral to service", "General surgery"),
];
const OUTPATIENT_TYPES: &[Concept] = &[
    ("11429006", "Consultation"),
    ("185389009", "Follow-up visit"),
    ("270427003", "Patient-initiated encounter"),
];
const INPATIENT_REASONS: &[Concept] = &[
    ("233604007", "Pneumonia"),
    ("22298006", "Myocardial infarction"),
    ("230690007", "Cerebrovascular accident"),
    ("74400008", "Appendicitis"),
    ("5913000", "Fracture of neck of femur"),
    (
        "195951007",
        "Acute exacerbation of chronic obstructive airways disease",
    ),
];
const AE_REASONS: &[Concept] = &[
    ("125667009", "Contusion"),
    ("263204007", "Fracture of wrist"),
    ("29857009", "Chest pain"),
    ("21522001", "Abdominal pain"),
    ("62315008", "Diarrhoea"),
    ("422587007", "Nausea"),
    ("283682007", "Laceration of hand"),
];

// ---------------------------------------------------------------------------------------------
// The world: practices, trusts, sites, clinicians

/// A shared resource (Organization, Location, Practitioner): its id, its conditional-create
/// query, and its content.
#[derive(Debug, Clone)]
struct Shared {
    id: String,
    rtype: &'static str,
    condition: String,
    resource: Value,
}

struct Practice {
    org: usize,
    ods: String,
    town: usize,
    gps: Vec<usize>,
}

struct Trust {
    org: usize,
    ods: &'static str,
    sites: Vec<usize>,
    /// Consultants by team: one team per referral specialty, then acute and emergency medicine.
    teams: Vec<Vec<usize>>,
}

/// The team of a trust that takes admissions, and the one that runs A&E.
const ACUTE_TEAM: usize = REFERRALS.len();
const EMERGENCY_TEAM: usize = REFERRALS.len() + 1;

struct World {
    shared: Vec<Shared>,
    practices: Vec<Practice>,
    trusts: Vec<Trust>,
}

fn postcode(rng: &mut Rng, town: &Town) -> String {
    let district = rng.range(u64::from(town.districts.0), u64::from(town.districts.1));
    format!(
        "{}{} {}{}{}",
        town.area,
        district,
        rng.below(10),
        char::from(*rng.pick(INWARD_LETTERS)),
        char::from(*rng.pick(INWARD_LETTERS))
    )
}

fn street(rng: &mut Rng) -> String {
    format!("{} {}", rng.pick(STREET_NAMES), rng.pick(STREET_KINDS))
}

fn address(rng: &mut Rng, town_index: usize, use_: Option<&str>) -> Value {
    let town = &TOWNS[town_index];
    let mut line = vec![Value::String(format!(
        "{} {}",
        rng.range(1, 180),
        street(rng)
    ))];
    if rng.percent(40) {
        line.push(Value::String((*rng.pick(town.neighbourhoods)).to_owned()));
    }
    let mut address = Map::new();
    if let Some(use_) = use_ {
        address.insert("use".into(), json!(use_));
        address.insert("type".into(), json!("physical"));
    }
    address.insert("line".into(), Value::Array(line));
    address.insert("city".into(), json!(town.name));
    if let Some(district) = town.district {
        address.insert("district".into(), json!(district));
    }
    address.insert("postalCode".into(), json!(postcode(rng, town)));
    address.insert("country".into(), json!("GB"));
    Value::Object(address)
}

fn landline(rng: &mut Rng) -> String {
    // Ofcom's drama numbers for Leeds: 0113 496 0000 – 0113 496 0999.
    format!("0113 496 0{}", rng.digits(3))
}

fn mobile(rng: &mut Rng) -> String {
    // Ofcom's drama range for mobiles: 07700 900000 – 07700 900999.
    format!("07700 900{}", rng.digits(3))
}

fn practitioner(rng: &mut Rng, sds: &str, gp: bool) -> Value {
    let female = rng.percent(55);
    let given = if female {
        rng.pick(FEMALE)
    } else {
        rng.pick(MALE)
    };
    let family = rng.pick(FAMILY);
    let mut resource = json!({
        "resourceType": "Practitioner",
        "identifier": [{"system": SDS_USER, "value": sds}],
        "active": true,
        "name": [{"use": "official", "family": family, "given": [given], "prefix": ["Dr"]}],
        "telecom": [{"system": "phone", "value": landline(rng), "use": "work"}],
        "gender": if female { "female" } else { "male" },
    });
    if !gp {
        resource["qualification"] = json!([{
            "code": {"text": "FRCP"},
        }]);
    }
    resource
}

fn build_world(seed: u64, patients: usize) -> World {
    let mut rng = Rng::for_item(seed, 1, 0);
    let mut shared = Vec::new();
    let mut used_ods = HashSet::new();
    let mut used_sds = HashSet::new();
    let mut sds = |rng: &mut Rng| loop {
        let value = format!("{}{}", rng.range(1, 9), rng.digits(11));
        if used_sds.insert(value.clone()) {
            return value;
        }
    };

    let mut trusts = Vec::new();
    for spec in TRUSTS {
        let org = shared.len();
        shared.push(Shared {
            id: rng.uuid(),
            rtype: "Organization",
            condition: format!("identifier={ODS_ORGANIZATION}|{}", spec.ods),
            resource: json!({
                "resourceType": "Organization",
                "identifier": [{"system": ODS_ORGANIZATION, "value": spec.ods}],
                "active": true,
                "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov", "display": "Healthcare Provider"}]}],
                "name": spec.name,
                "telecom": [{"system": "phone", "value": landline(&mut rng), "use": "work"}],
                "address": [address(&mut rng, spec.town, None)],
            }),
        });
        used_ods.insert(spec.ods.to_owned());
        trusts.push(Trust {
            org,
            ods: spec.ods,
            sites: Vec::new(),
            teams: Vec::new(),
        });
    }
    for (trust, spec) in trusts.iter_mut().zip(TRUSTS) {
        let org_id = shared[trust.org].id.clone();
        for (code, name) in spec.sites {
            trust.sites.push(shared.len());
            shared.push(Shared {
                id: rng.uuid(),
                rtype: "Location",
                condition: format!("identifier={ODS_SITE}|{code}"),
                resource: json!({
                    "resourceType": "Location",
                    "identifier": [{"system": ODS_SITE, "value": code}],
                    "status": "active",
                    "name": name,
                    "mode": "instance",
                    "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "HOSP", "display": "Hospital"}]}],
                    "address": address(&mut rng, spec.town, None),
                    "managingOrganization": {"reference": format!("Organization/{org_id}")},
                }),
            });
        }
        for _ in 0..=EMERGENCY_TEAM {
            let mut team = Vec::new();
            for _ in 0..1 + patients / 20_000 {
                team.push(shared.len());
                let value = sds(&mut rng);
                shared.push(Shared {
                    id: rng.uuid(),
                    rtype: "Practitioner",
                    condition: format!("identifier={SDS_USER}|{value}"),
                    resource: practitioner(&mut rng, &value, false),
                });
            }
            trust.teams.push(team);
        }
    }

    let practice_count = (patients / 1_500).max(3);
    let mut practices = Vec::new();
    for _ in 0..practice_count {
        let town_index = rng.below(TOWNS.len() as u64) as usize;
        let town = &TOWNS[town_index];
        let ods = loop {
            // GP practice codes: a letter for the region, five digits.
            let code = format!("{}{}", char::from(*rng.pick(b"BCDJM")), rng.digits(5));
            if used_ods.insert(code.clone()) {
                break code;
            }
        };
        let name = match rng.below(4) {
            0 => format!("{} Surgery", street(&mut rng)),
            1 => format!("{} Medical Practice", rng.pick(town.neighbourhoods)),
            2 => format!("{} Health Centre", rng.pick(town.neighbourhoods)),
            _ => format!("The {} Practice", rng.pick(STREET_NAMES)),
        };
        let org = shared.len();
        shared.push(Shared {
            id: rng.uuid(),
            rtype: "Organization",
            condition: format!("identifier={ODS_ORGANIZATION}|{ods}"),
            resource: json!({
                "resourceType": "Organization",
                "identifier": [{"system": ODS_ORGANIZATION, "value": ods}],
                "active": true,
                "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov", "display": "Healthcare Provider"}], "text": "GP practice"}],
                "name": name,
                "telecom": [{"system": "phone", "value": landline(&mut rng), "use": "work"}],
                "address": [address(&mut rng, town_index, None)],
            }),
        });
        let mut gps = Vec::new();
        for _ in 0..rng.range(3, 7) {
            gps.push(shared.len());
            let value = sds(&mut rng);
            shared.push(Shared {
                id: rng.uuid(),
                rtype: "Practitioner",
                condition: format!("identifier={SDS_USER}|{value}"),
                resource: practitioner(&mut rng, &value, true),
            });
        }
        practices.push(Practice {
            org,
            ods,
            town: town_index,
            gps,
        });
    }
    World {
        shared,
        practices,
        trusts,
    }
}

// ---------------------------------------------------------------------------------------------
// Dates

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn date(days: i64) -> String {
    let (y, m, d) = civil(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `days` plus `minutes` after midnight UTC, as a FHIR dateTime.
fn date_time(days: i64, minutes: i64) -> String {
    let days = days + minutes.div_euclid(1_440);
    let minutes = minutes.rem_euclid(1_440);
    format!("{}T{:02}:{:02}:00Z", date(days), minutes / 60, minutes % 60)
}

// ---------------------------------------------------------------------------------------------
// One patient

/// A resource of a feed: its id, its content with `urn:uuid:` references for the bundle, and
/// with `Type/id` references for NDJSON.
struct Item {
    id: String,
    rtype: &'static str,
    /// Bundle entry request: `POST` with `ifNoneExist`, or a conditional `PUT` URL.
    request: Value,
    bundle: Value,
    ndjson: Value,
}

/// Items of one feed, and the shared resources (practices, sites, clinicians) they refer to.
#[derive(Default)]
struct Feed {
    items: Vec<Item>,
    shared: Vec<usize>,
}

impl Feed {
    fn share(&mut self, index: usize) {
        if !self.shared.contains(&index) {
            self.shared.push(index);
        }
    }
}

/// What one patient contributes: the GP feed (from the patient's practice) and a hospital feed
/// from each trust that saw the patient.
struct PatientData {
    nhs_number: String,
    practice: usize,
    gp: Feed,
    /// By trust.
    hospital: Vec<Feed>,
}

/// A reference rendered both ways: within a bundle and in NDJSON.
#[derive(Clone)]
struct Ref {
    bundle: String,
    ndjson: String,
}

impl Ref {
    fn to(rtype: &str, id: &str) -> Self {
        Self {
            bundle: format!("urn:uuid:{id}"),
            ndjson: format!("{rtype}/{id}"),
        }
    }

    fn conditional(rtype: &str, id: &str, query: String) -> Self {
        Self {
            bundle: format!("{rtype}?{query}"),
            ndjson: format!("{rtype}/{id}"),
        }
    }
}

/// Builds a resource whose references are filled in by `refs` (each `{"reference": ...}` placed by
/// `with` is rendered in both forms).
fn both(build: impl Fn(&dyn Fn(&Ref) -> Value) -> Value) -> (Value, Value) {
    let bundle = build(&|r: &Ref| json!({ "reference": r.bundle }));
    let ndjson = build(&|r: &Ref| json!({ "reference": r.ndjson }));
    (bundle, ndjson)
}

fn coding(system: &str, concept: Concept) -> Value {
    json!({"coding": [{"system": system, "code": concept.0, "display": concept.1}]})
}

fn shared_ref(world: &World, index: usize) -> Ref {
    let s = &world.shared[index];
    Ref::to(s.rtype, &s.id)
}

struct Referral {
    id: String,
    ubrn: String,
    kind: usize,
    trust: usize,
    authored: i64,
}

#[allow(clippy::too_many_lines)]
fn patient(world: &World, seed: u64, index: usize, nhs_number: String) -> PatientData {
    let mut rng = Rng::for_item(seed, 2, index as u64);
    let heavy = index % HEAVY_EVERY == 0;
    let practice_index = rng.below(world.practices.len() as u64) as usize;
    let practice = &world.practices[practice_index];
    let gp = *rng.pick(&practice.gps);
    let practice_ref = shared_ref(world, practice.org);
    let patient_id = rng.uuid();
    let patient_ref = Ref::conditional(
        "Patient",
        &patient_id,
        format!("identifier={NHS_NUMBER}|{nhs_number}"),
    );
    let patient_local = Ref::to("Patient", &patient_id);
    let mut gp_shared = vec![practice.org, gp];

    // Demographics.
    let gender = match rng.below(100) {
        0 => "unknown",
        1 => "other",
        n if n < 51 => "female",
        _ => "male",
    };
    let born = LAST_DAY - rng.range(30, 100 * 365) as i64;
    let age_years = (LAST_DAY - born) / 365;
    let female = gender == "female" || (gender != "male" && rng.percent(50));
    let given = |rng: &mut Rng| -> String {
        (*if female {
            rng.pick(FEMALE)
        } else {
            rng.pick(MALE)
        })
        .to_owned()
    };
    let family = *rng.pick(FAMILY);
    let mut givens = vec![given(&mut rng)];
    if rng.percent(45) {
        givens.push(given(&mut rng));
    }
    let prefix = if age_years < 16 {
        None
    } else if female {
        Some(*rng.pick(&["Mrs", "Ms", "Miss"]))
    } else {
        Some("Mr")
    };
    let mut name = json!({"use": "official", "family": family, "given": givens});
    if let Some(prefix) = prefix {
        name["prefix"] = json!([prefix]);
    }
    let mut telecom = vec![json!({"system": "phone", "value": landline(&mut rng), "use": "home"})];
    if age_years >= 12 && rng.percent(80) {
        telecom.push(
            json!({"system": "phone", "value": mobile(&mut rng), "use": "mobile", "rank": 1}),
        );
    }
    if age_years >= 16 && rng.percent(50) {
        telecom.push(json!({
            "system": "email",
            "value": format!("{}.{}{}@example.com", givens[0].to_lowercase(), family.to_lowercase().replace('\'', ""), rng.below(100)),
            "use": "home",
        }));
    }
    let home = address(&mut rng, practice.town, Some("home"));
    let contact = rng.percent(50).then(|| {
        let relative_female = rng.percent(50);
        json!([{
            "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N", "display": "Next-of-Kin"}]}],
            "name": {"use": "official", "family": family, "given": [if relative_female { rng.pick(FEMALE) } else { rng.pick(MALE) }]},
            "telecom": [{"system": "phone", "value": mobile(&mut rng), "use": "mobile"}],
            "gender": if relative_female { "female" } else { "male" },
        }])
    });
    let (patient_bundle, patient_ndjson) = both(|r| {
        let mut p = json!({
            "resourceType": "Patient",
            "identifier": [{
                "extension": [{
                    "url": VERIFICATION_EXTENSION,
                    "valueCodeableConcept": {"coding": [{"system": VERIFICATION_SYSTEM, "code": "01", "display": "Number present and verified"}]},
                }],
                "system": NHS_NUMBER,
                "value": nhs_number,
            }],
            "active": true,
            "name": [name.clone()],
            "telecom": telecom.clone(),
            "gender": gender,
            "birthDate": date(born),
            "address": [home.clone()],
            "generalPractitioner": [r(&practice_ref)],
            "managingOrganization": r(&practice_ref),
        });
        if let Some(contact) = &contact {
            p["contact"] = contact.clone();
        }
        p
    });
    let mut gp_items = vec![Item {
        id: patient_id.clone(),
        rtype: "Patient",
        request: json!({"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={NHS_NUMBER}|{nhs_number}")}),
        bundle: patient_bundle,
        ndjson: patient_ndjson,
    }];

    // The record spans up to the last ten years, not before birth.
    let first_day = (LAST_DAY - 3_650).max(born);
    let span = (LAST_DAY - first_day).max(1) as u64;
    let day = |rng: &mut Rng| first_day + rng.below(span) as i64;

    // GP consultations.
    let (gp_count, referral_count, outpatient_extra, inpatient, ae) = if heavy {
        (HEAVY_ENCOUNTERS / 2, HEAVY_REFERRALS, 0, 0, 0)
    } else {
        (
            rng.range(10, 34) as usize,
            rng.range(1, 4) as usize,
            rng.below(4) as usize,
            usize::from(rng.percent(35)) + usize::from(rng.percent(15)),
            rng.below(3) as usize,
        )
    };
    let mut problems = Vec::new();
    for _ in 0..rng.range(1, 4) {
        problems.push(rng.below(PROBLEMS.len() as u64) as usize);
    }
    for n in 0..gp_count {
        let id = rng.uuid();
        let start = day(&mut rng);
        let minute = rng.range(8 * 60, 18 * 60) as i64;
        let length = *rng.pick(&[10, 10, 15, 15, 20, 30]);
        let problem = PROBLEMS[*rng.pick(&problems)];
        let clinician = if rng.percent(70) {
            gp
        } else {
            *rng.pick(&practice.gps)
        };
        if !gp_shared.contains(&clinician) {
            gp_shared.push(clinician);
        }
        let value = format!("{}-{}-{n:03}", practice.ods, &nhs_number[3..]);
        let kind = GP_ENCOUNTER_TYPES[rng.below(GP_ENCOUNTER_TYPES.len() as u64) as usize];
        let clinician_ref = shared_ref(world, clinician);
        let (bundle, ndjson) = both(|r| {
            json!({
                "resourceType": "Encounter",
                "identifier": [{"system": GP_CONSULTATION, "value": value}],
                "status": "finished",
                "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
                "type": [coding(SNOMED, kind)],
                "subject": r(&patient_local),
                "participant": [{
                    "type": [{"coding": [{"system": PARTICIPATION, "code": "PPRF", "display": "primary performer"}]}],
                    "individual": r(&clinician_ref),
                }],
                "period": {"start": date_time(start, minute), "end": date_time(start, minute + length)},
                "reasonCode": [{"coding": [{"system": SNOMED, "code": problem.0, "display": problem.1}], "text": problem.2}],
                "serviceProvider": r(&practice_ref),
            })
        });
        gp_items.push(Item {
            id,
            rtype: "Encounter",
            request: json!({"method": "POST", "url": "Encounter", "ifNoneExist": format!("identifier={GP_CONSULTATION}|{value}")}),
            bundle,
            ndjson,
        });
    }

    // Referrals.
    let mut referrals = Vec::new();
    for n in 0..referral_count {
        let kind = rng.below(REFERRALS.len() as u64) as usize;
        let trust = rng.below(world.trusts.len() as u64) as usize;
        let authored = day(&mut rng);
        let ubrn = format!("{:012}", (index as u64) * 100 + n as u64 + 1);
        let referral = Referral {
            id: rng.uuid(),
            ubrn,
            kind,
            trust,
            authored,
        };
        let trust_org = world.trusts[trust].org;
        if !gp_shared.contains(&trust_org) {
            gp_shared.push(trust_org);
        }
        let (code, display, specialty) = REFERRALS[kind];
        let problem = PROBLEMS[*rng.pick(&problems)];
        let recent = LAST_DAY - authored < 120;
        let urgent = rng.percent(20);
        let gp_ref = shared_ref(world, gp);
        let trust_ref = shared_ref(world, trust_org);
        let (bundle, ndjson) = both(|r| {
            json!({
                "resourceType": "ServiceRequest",
                "identifier": [{"system": UBRN, "value": referral.ubrn}],
                "status": if recent { "active" } else { "completed" },
                "intent": "order",
                "category": [{"coding": [{"system": SNOMED, "code": "3457005", "display": "Patient referral"}]}],
                "priority": if urgent { "urgent" } else { "routine" },
                "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": specialty},
                "subject": r(&patient_local),
                "authoredOn": date_time(authored, 600 + (n as i64) * 7),
                "requester": r(&gp_ref),
                "performer": [r(&trust_ref)],
                "reasonCode": [{"coding": [{"system": SNOMED, "code": problem.0, "display": problem.1}], "text": problem.2}],
                "note": [{"text": format!("{} referral for {}; seen in practice, please assess.", if urgent { "Urgent" } else { "Routine" }, problem.1.to_lowercase())}],
            })
        });
        gp_items.push(Item {
            id: referral.id.clone(),
            rtype: "ServiceRequest",
            request: json!({"method": "POST", "url": "ServiceRequest", "ifNoneExist": format!("identifier={UBRN}|{}", referral.ubrn)}),
            bundle,
            ndjson,
        });
        referrals.push(referral);
    }

    // Hospital encounters: outpatient attendances for each referral (and follow-ups), admissions
    // and A&E attendances at the trust nearest home.
    let mut visits = HospitalVisits {
        world,
        nhs_number: &nhs_number,
        patient: patient_ref,
        feeds: (0..world.trusts.len()).map(|_| Feed::default()).collect(),
        count: 0,
    };
    let (inpatient, ae, outpatients) = if heavy {
        (8, 12, HEAVY_ENCOUNTERS / 2 - 8 - 12)
    } else {
        (inpatient, ae, referrals.len() + outpatient_extra)
    };
    for n in 0..outpatients {
        let referral = &referrals[n % referrals.len()];
        let round = (n / referrals.len()) as i64;
        let start = (referral.authored + 14 + 28 * round).min(LAST_DAY);
        let kind = if round == 0 {
            OUTPATIENT_TYPES[0]
        } else {
            OUTPATIENT_TYPES[1 + rng.below(2) as usize]
        };
        let (code, display, _) = REFERRALS[referral.kind];
        let minute = rng.range(9 * 60, 16 * 60) as i64;
        visits.add(
            &mut rng,
            Visit {
                trust: referral.trust,
                team: referral.kind,
                class: ("AMB", "ambulatory"),
                start,
                minutes: (minute, 20),
                kind,
                reason: (code, display),
                based_on: Some(referral),
            },
        );
    }
    let home_trust = TRUSTS
        .iter()
        .position(|t| t.town == practice.town)
        .unwrap_or(practice.town % TRUSTS.len());
    for _ in 0..inpatient {
        let start = day(&mut rng);
        let reason = *rng.pick(INPATIENT_REASONS);
        let minute = rng.range(0, 1_439) as i64;
        let stay = rng.range(1, 10) as i64 * 1_440;
        visits.add(
            &mut rng,
            Visit {
                trust: home_trust,
                team: ACUTE_TEAM,
                class: ("IMP", "inpatient encounter"),
                start,
                minutes: (minute, stay),
                kind: ("32485007", "Hospital admission"),
                reason,
                based_on: None,
            },
        );
    }
    for _ in 0..ae {
        let start = day(&mut rng);
        let reason = *rng.pick(AE_REASONS);
        let minute = rng.range(0, 1_439) as i64;
        let stay = rng.range(60, 300) as i64;
        visits.add(
            &mut rng,
            Visit {
                trust: home_trust,
                team: EMERGENCY_TEAM,
                class: ("EMER", "emergency"),
                start,
                minutes: (minute, stay),
                kind: ("50849002", "Emergency room admission"),
                reason,
                based_on: None,
            },
        );
    }
    PatientData {
        nhs_number: nhs_number.clone(),
        practice: practice_index,
        gp: Feed {
            items: gp_items,
            shared: gp_shared,
        },
        hospital: visits.feeds,
    }
}

/// One hospital encounter to make.
struct Visit<'r> {
    trust: usize,
    team: usize,
    class: (&'static str, &'static str),
    start: i64,
    /// Minutes after midnight it starts, and how long it lasts.
    minutes: (i64, i64),
    kind: Concept,
    reason: Concept,
    based_on: Option<&'r Referral>,
}

/// A patient's hospital encounters, by trust.
struct HospitalVisits<'w> {
    world: &'w World,
    nhs_number: &'w str,
    /// The patient as hospital feeds name them: by NHS number.
    patient: Ref,
    feeds: Vec<Feed>,
    count: usize,
}

impl HospitalVisits<'_> {
    fn add(&mut self, rng: &mut Rng, visit: Visit<'_>) {
        let world = self.world;
        let trust = &world.trusts[visit.trust];
        let site = *rng.pick(&trust.sites);
        // A referral is seen by the same consultant each time.
        let team = &trust.teams[visit.team];
        let consultant = match visit.based_on {
            Some(referral) => team[referral.authored.unsigned_abs() as usize % team.len()],
            None => *rng.pick(team),
        };
        let feed = &mut self.feeds[visit.trust];
        for s in [trust.org, site, consultant] {
            feed.share(s);
        }
        self.count += 1;
        let value = format!("{}-{}-{:03}", trust.ods, &self.nhs_number[3..], self.count);
        let id = rng.uuid();
        let inpatient = visit.class.0 == "IMP";
        let in_progress = inpatient && LAST_DAY - visit.start < 3;
        let (trust_ref, site_ref, consultant_ref) = (
            shared_ref(world, trust.org),
            shared_ref(world, site),
            shared_ref(world, consultant),
        );
        let referral_ref = visit.based_on.map(|r| {
            Ref::conditional(
                "ServiceRequest",
                &r.id,
                format!("identifier={UBRN}|{}", r.ubrn),
            )
        });
        let (start, minutes) = (visit.start, visit.minutes);
        let (bundle, ndjson) = both(|r| {
            let mut period = json!({"start": date_time(start, minutes.0)});
            if !in_progress {
                period["end"] = json!(date_time(start, minutes.0 + minutes.1));
            }
            let mut e = json!({
                "resourceType": "Encounter",
                "identifier": [{"system": HOSPITAL_ENCOUNTER, "value": value}],
                "status": if in_progress { "in-progress" } else { "finished" },
                "class": {"system": ACT_CODE, "code": visit.class.0, "display": visit.class.1},
                "type": [coding(SNOMED, visit.kind)],
                "subject": r(&self.patient),
            });
            if let Some(referral) = &referral_ref {
                e["basedOn"] = json!([r(referral)]);
            }
            let (role, role_display) = if inpatient {
                ("ATND", "attender")
            } else {
                ("PPRF", "primary performer")
            };
            e["participant"] = json!([{
                "type": [{"coding": [{"system": PARTICIPATION, "code": role, "display": role_display}]}],
                "individual": r(&consultant_ref),
            }]);
            e["period"] = period;
            e["reasonCode"] = json!([coding(SNOMED, visit.reason)]);
            if inpatient {
                let mut hospitalization = json!({
                    "admitSource": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/admit-source", "code": "emd", "display": "From accident/emergency department"}]},
                });
                if !in_progress {
                    hospitalization["dischargeDisposition"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": "home", "display": "Home"}]});
                }
                e["hospitalization"] = hospitalization;
            }
            e["location"] = json!([{
                "location": r(&site_ref),
                "status": if in_progress { "active" } else { "completed" },
            }]);
            e["serviceProvider"] = r(&trust_ref);
            e
        });
        feed.items.push(Item {
            id,
            rtype: "Encounter",
            request: json!({"method": "PUT", "url": format!("Encounter?identifier={HOSPITAL_ENCOUNTER}|{value}")}),
            bundle,
            ndjson,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Output

/// Packs one sender's feeds into transaction Bundles of about `limit` entries.
#[derive(Default)]
struct Packer {
    shared: Vec<usize>,
    entries: Vec<Value>,
}

/// Where the bundles of one feed go, numbered in the order they are finished.
struct BundleFiles {
    dir: PathBuf,
    prefix: &'static str,
    limit: usize,
    written: usize,
    entries: usize,
}

impl BundleFiles {
    fn new(dir: PathBuf, prefix: &'static str, limit: usize) -> Self {
        Self {
            dir,
            prefix,
            limit,
            written: 0,
            entries: 0,
        }
    }

    fn add(&mut self, world: &World, packer: &mut Packer, feed: &Feed) -> Result<(), String> {
        if feed.items.is_empty() {
            return Ok(());
        }
        let new_shared = feed
            .shared
            .iter()
            .filter(|s| !packer.shared.contains(s))
            .count();
        let size = packer.shared.len() + packer.entries.len();
        if size > 0 && size + new_shared + feed.items.len() > self.limit {
            self.flush(world, packer)?;
        }
        for s in &feed.shared {
            if !packer.shared.contains(s) {
                packer.shared.push(*s);
            }
        }
        for item in &feed.items {
            packer.entries.push(json!({
                "fullUrl": format!("urn:uuid:{}", item.id),
                "resource": item.bundle,
                "request": item.request,
            }));
        }
        Ok(())
    }

    fn flush(&mut self, world: &World, packer: &mut Packer) -> Result<(), String> {
        if packer.entries.is_empty() {
            return Ok(());
        }
        // Shared resources first, in one global order: transactions that conditionally create
        // the same ones then take their locks (PostgreSQL's advisory locks) in the same order,
        // rather than deadlocking on each other.
        packer.shared.sort_unstable();
        let mut entries: Vec<Value> = packer
            .shared
            .iter()
            .map(|&s| {
                let shared = &world.shared[s];
                json!({
                    "fullUrl": format!("urn:uuid:{}", shared.id),
                    "resource": shared_for_bundle(shared),
                    "request": {"method": "POST", "url": shared.rtype, "ifNoneExist": shared.condition},
                })
            })
            .collect();
        entries.append(&mut packer.entries);
        packer.shared.clear();
        self.entries += entries.len();
        self.written += 1;
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let path = self
            .dir
            .join(format!("{}-{:06}.json", self.prefix, self.written));
        let text = serde_json::to_vec(&bundle).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// A shared resource as a bundle carries it: a site's managing trust is in the same bundle
/// (every hospital bundle carrying a site carries its trust).
fn shared_for_bundle(shared: &Shared) -> Value {
    let mut resource = shared.resource.clone();
    if let Some(reference) = resource
        .get_mut("managingOrganization")
        .and_then(|r| r.get_mut("reference"))
    {
        if let Some(id) = reference
            .as_str()
            .and_then(|r| r.strip_prefix("Organization/"))
        {
            *reference = Value::String(format!("urn:uuid:{id}"));
        }
    }
    resource
}

/// NDJSON files, one per type, named in a loading order that meets every reference.
const NDJSON_ORDER: [&str; 6] = [
    "Organization",
    "Location",
    "Practitioner",
    "Patient",
    "ServiceRequest",
    "Encounter",
];

struct NdjsonWriter {
    files: Vec<BufWriter<File>>,
    bytes: u64,
    counts: BTreeMap<String, usize>,
}

impl NdjsonWriter {
    fn new(dir: &Path) -> Result<Self, String> {
        let mut files = Vec::new();
        for (n, rtype) in NDJSON_ORDER.iter().enumerate() {
            let path = dir.join(format!("{}-{rtype}.ndjson", n + 1));
            let file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            files.push(BufWriter::new(file));
        }
        Ok(Self {
            files,
            bytes: 0,
            counts: BTreeMap::new(),
        })
    }

    fn write(&mut self, rtype: &str, id: &str, resource: &Value) -> Result<(), String> {
        let slot = NDJSON_ORDER
            .iter()
            .position(|t| *t == rtype)
            .ok_or_else(|| format!("no NDJSON file for {rtype}"))?;
        let mut object = Map::new();
        object.insert("resourceType".into(), json!(rtype));
        object.insert("id".into(), json!(id));
        if let Value::Object(fields) = resource {
            for (k, v) in fields {
                if k != "resourceType" {
                    object.insert(k.clone(), v.clone());
                }
            }
        }
        let mut text = serde_json::to_vec(&Value::Object(object)).map_err(|e| e.to_string())?;
        self.bytes += text.len() as u64;
        text.push(b'\n');
        self.files[slot]
            .write_all(&text)
            .map_err(|e| e.to_string())?;
        *self.counts.entry(rtype.to_owned()).or_default() += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<(u64, BTreeMap<String, usize>), String> {
        for file in &mut self.files {
            file.flush().map_err(|e| e.to_string())?;
        }
        Ok((self.bytes, self.counts))
    }
}

/// Writes the data set (see the module documentation). Refuses a folder that already holds one.
pub fn generate(options: &Options) -> Result<Summary, String> {
    if options.patients == 0 || options.patients > MAX_PATIENTS {
        return Err(format!("--patients must be 1 to {MAX_PATIENTS}"));
    }
    let bundles = options.out.join("bundles");
    let ndjson = options.out.join("ndjson");
    for dir in [&bundles, &ndjson] {
        if dir.exists()
            && std::fs::read_dir(dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .next()
                .is_some()
        {
            return Err(format!(
                "{} is not empty: generate into a new folder",
                dir.display()
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let limit = options.bundle_entries.max(10);
    let world = build_world(options.seed, options.patients);
    let numbers = nhs_numbers(options.seed, options.patients);
    if numbers.len() < options.patients {
        return Err("not enough NHS numbers in the test range".into());
    }

    let mut out = NdjsonWriter::new(&ndjson)?;
    for shared in &world.shared {
        out.write(shared.rtype, &shared.id, &shared.resource)?;
    }
    // GP feeds come from each practice's system, hospital feeds from each trust's: a bundle
    // carries one sender's patients. Every GP file is named before every hospital file, so each
    // hospital file's patients and referrals exist once the GP files are loaded.
    let mut gp = BundleFiles::new(bundles.join("1-gp"), "gp", limit);
    let mut hospital = BundleFiles::new(bundles.join("2-hospital"), "hospital", limit);
    for dir in [&gp.dir, &hospital.dir] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut practices: Vec<Packer> = world.practices.iter().map(|_| Packer::default()).collect();
    let mut trusts: Vec<Packer> = world.trusts.iter().map(|_| Packer::default()).collect();
    let mut heavy = Vec::new();
    for (index, nhs_number) in numbers.into_iter().enumerate() {
        let data = patient(&world, options.seed, index, nhs_number);
        if index % HEAVY_EVERY == 0 {
            heavy.push(data.nhs_number.clone());
        }
        for item in data
            .gp
            .items
            .iter()
            .chain(data.hospital.iter().flat_map(|f| &f.items))
        {
            out.write(item.rtype, &item.id, &item.ndjson)?;
        }
        gp.add(&world, &mut practices[data.practice], &data.gp)?;
        for (trust, feed) in data.hospital.iter().enumerate() {
            hospital.add(&world, &mut trusts[trust], feed)?;
        }
    }
    for packer in &mut practices {
        gp.flush(&world, packer)?;
    }
    for packer in &mut trusts {
        hospital.flush(&world, packer)?;
    }
    let (resource_bytes, by_type) = out.finish()?;
    let summary = Summary {
        patients: options.patients,
        resources: by_type.values().sum(),
        by_type,
        resource_bytes,
        gp_bundles: gp.written,
        hospital_bundles: hospital.written,
        bundle_entries: gp.entries + hospital.entries,
        heavy,
    };
    let manifest = Manifest {
        seed: options.seed,
        patients: summary.patients,
        resources: summary.resources,
        counts: summary.by_type.clone(),
        average_resource_bytes: summary.average_resource_bytes(),
        gp_bundles: summary.gp_bundles,
        hospital_bundles: summary.hospital_bundles,
        bundle_entries: summary.bundle_entries,
        heavy: summary.heavy.clone(),
        nhs_numbers: nhs_numbers(options.seed, options.patients),
    };
    let path = options.out.join("manifest.json");
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(summary)
}

/// How many patients make about `resources` resources (for sizing a run by resources).
pub fn patients_for(resources: usize) -> usize {
    // About 31 resources a patient (heavy ones included); measured on seeds 1 to 3.
    (resources / 31).clamp(1, MAX_PATIENTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers_are_valid_distinct_test_numbers() {
        let numbers = nhs_numbers(7, 20_000);
        assert_eq!(numbers.len(), 20_000);
        let distinct: HashSet<_> = numbers.iter().collect();
        assert_eq!(distinct.len(), numbers.len());
        for n in &numbers {
            assert!(n.starts_with("999") && n.len() == 10, "{n}");
            assert!(
                crate::validation::nhs_number::NhsNumber::parse(n).is_ok(),
                "{n}"
            );
        }
    }

    #[test]
    fn check_digit_matches_known_numbers() {
        // 943 476 5919 is the NHS's own example.
        assert_eq!(nhs_check_digit(&[9, 4, 3, 4, 7, 6, 5, 9, 1]), Some(9));
        assert_eq!(nhs_check_digit(&[9, 9, 9, 9, 9, 9, 9, 9, 9]), Some(9));
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(LAST_DAY), "2026-10-31");
        assert_eq!(date_time(0, 1_440 + 61), "1970-01-02T01:01:00Z");
    }

    #[test]
    fn same_seed_same_patient() {
        let world = build_world(3, 10);
        let a = patient(&world, 3, 5, "9990000001".into());
        let b = patient(&world, 3, 5, "9990000001".into());
        assert_eq!(a.gp.items[0].bundle, b.gp.items[0].bundle);
        assert_eq!(a.hospital.len(), b.hospital.len());
        assert_eq!(a.nhs_number, b.nhs_number);
    }
}
