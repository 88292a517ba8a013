//! The search test corpus: a few hundred valid resources over every served type, generated
//! deterministically and written through the API (targets before what refers to them), with
//! client-chosen ids so that the search tests can name the exact ids they expect.
//!
//! Two parts:
//! - *specials*, written out by hand, each with the values one search case probes (names with
//!   accents, birth dates at every precision, encounter periods around 2024-03-10, lengths,
//!   profiles, tags, identifiers with and without a system or a type);
//! - *bulk*, generated: patients born 2000–2009, encounters in 2019, referrals, and the
//!   organisations and practitioners they point at. No bulk value starts with a string a special
//!   case probes, and bulk dates are years away from the special ones, so each case's expected ids
//!   are either a short written list or that list plus a plainly described bulk set.
//!
//! Every resource carries `meta.source` = `urn:carerecord-test:{system}`, so a test can tell which
//! local system's copy it was given.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};

use super::TestApp;

pub const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const ODS: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
pub const GMC: &str = "https://fhir.hl7.org.uk/Id/gmc-number";
pub const UBRN: &str = "https://fhir.nhs.uk/Id/UBRN";
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
pub const TAGS: &str = "https://carerecord.invalid/tags";
pub const UK_CORE_PATIENT: &str = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient";
pub const UK_CORE_ENCOUNTER: &str = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Encounter";

/// The NHS number of `p-smith` (the NHS's own example number).
pub const SMITH_NHS: &str = "9434765919";

/// Bulk sizes.
pub const BULK_ORGANIZATIONS: usize = 6;
pub const BULK_PRACTITIONERS: usize = 6;
pub const BULK_LOCATIONS: usize = 3;
pub const BULK_ROLES: usize = 6;
pub const BULK_PATIENTS: usize = 60;
pub const BULK_ENCOUNTERS: usize = 150;
pub const BULK_REFERRALS: usize = 50;

const BULK_FAMILIES: [&str; 8] = [
    "Patel", "Khan", "Moore", "Walker", "Wright", "Hughes", "Edwards", "Green",
];
const BULK_GIVEN: [&str; 5] = ["Amir", "Beth", "Carl", "Dina", "Eli"];
const BULK_GENDERS: [&str; 5] = ["female", "male", "female", "male", "other"];
const BULK_STATUSES: [&str; 4] = ["finished", "finished", "in-progress", "cancelled"];
const BULK_CLASSES: [&str; 3] = ["AMB", "IMP", "EMER"];

/// A valid NHS number (Modulus 11) made from `seed`; distinct seeds give distinct numbers.
pub fn nhs_number(seed: usize) -> String {
    let mut prefix = 900_000_000 + seed * 10;
    loop {
        let digits: Vec<u32> = prefix
            .to_string()
            .chars()
            .map(|c| c.to_digit(10).unwrap())
            .collect();
        let sum: u32 = digits.iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
        let check = match 11 - sum % 11 {
            11 => Some(0),
            10 => None,
            c => Some(c),
        };
        if let Some(check) = check {
            return format!("{prefix}{check}");
        }
        prefix += 1;
    }
}

fn nhs_identifier(value: &str) -> Value {
    json!({"system": NHS, "value": value})
}

fn reference(target: &str) -> Value {
    json!({"reference": target})
}

/// What the tests know of a bulk patient.
#[derive(Debug, Clone)]
pub struct BulkPatient {
    pub id: String,
    pub gender: &'static str,
    pub gp: String,
}

/// What the tests know of a bulk encounter.
#[derive(Debug, Clone)]
pub struct BulkEncounter {
    pub id: String,
    pub subject: String,
    pub status: &'static str,
    pub class: &'static str,
}

/// The corpus of one local system, in creation order.
pub struct Corpus {
    pub system: String,
    pub resources: Vec<Value>,
    pub bulk_patients: Vec<BulkPatient>,
    pub bulk_encounters: Vec<BulkEncounter>,
    pub bulk_referrals: Vec<String>,
}

impl Corpus {
    /// The corpus as it will be written into `system`.
    pub fn new(system: &str) -> Self {
        let mut corpus = Corpus {
            system: system.to_owned(),
            resources: Vec::new(),
            bulk_patients: Vec::new(),
            bulk_encounters: Vec::new(),
            bulk_referrals: Vec::new(),
        };
        corpus.organizations();
        corpus.practitioners();
        corpus.locations();
        corpus.roles();
        corpus.patients();
        corpus.encounters();
        corpus.referrals();
        let source = format!("urn:carerecord-test:{system}");
        for resource in &mut corpus.resources {
            let meta = resource
                .as_object_mut()
                .unwrap()
                .entry("meta")
                .or_insert_with(|| json!({}));
            meta["source"] = json!(source);
        }
        corpus
    }

    /// Writes the corpus into its system with `PUT [type]/[id]` (update as create).
    pub async fn load(app: &TestApp, system: &str) -> Self {
        let corpus = Self::new(system);
        for resource in &corpus.resources {
            let path = format!(
                "/fhir/{system}/{}/{}",
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            );
            let reply = app.put(&path, resource).await;
            assert_eq!(
                reply.status.as_u16(),
                201,
                "{path}: {}",
                String::from_utf8_lossy(&reply.body)
            );
        }
        corpus
    }

    /// The ids of every corpus resource of a type, in creation order.
    pub fn ids(&self, rtype: &str) -> Vec<String> {
        self.resources
            .iter()
            .filter(|r| r["resourceType"] == rtype)
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The ids of the bulk patients meeting `keep`.
    pub fn bulk_patients_where(&self, keep: impl Fn(&BulkPatient) -> bool) -> Vec<String> {
        self.bulk_patients
            .iter()
            .filter(|p| keep(p))
            .map(|p| p.id.clone())
            .collect()
    }

    /// The ids of the bulk encounters meeting `keep`.
    pub fn bulk_encounters_where(&self, keep: impl Fn(&BulkEncounter) -> bool) -> Vec<String> {
        self.bulk_encounters
            .iter()
            .filter(|e| keep(e))
            .map(|e| e.id.clone())
            .collect()
    }

    fn add(&mut self, resource: Value) {
        self.resources.push(resource);
    }

    fn organizations(&mut self) {
        let special = [
            ("org-riverside", "Riverside Surgery", "B82001"),
            ("org-northgate", "Northgate Medical Practice", "B82002"),
            ("org-stmarys", "St Mary's Hospital", "RJ101"),
        ];
        for (id, name, ods) in special {
            self.add(json!({
                "resourceType": "Organization", "id": id,
                "identifier": [{"system": ODS, "value": ods}],
                "active": true, "name": name
            }));
        }
        // org-1: an identifier is enough.
        self.add(json!({
            "resourceType": "Organization", "id": "org-ods-only",
            "identifier": [{"system": ODS, "value": "Y00001"}]
        }));
        for i in 1..=BULK_ORGANIZATIONS {
            self.add(json!({
                "resourceType": "Organization", "id": format!("org-{i:02}"),
                "identifier": [{"system": ODS, "value": format!("C{i:05}")}],
                "name": format!("Hillcrest Practice {i}")
            }));
        }
    }

    fn practitioners(&mut self) {
        self.add(json!({
            "resourceType": "Practitioner", "id": "pract-okafor",
            "identifier": [{"system": GMC, "value": "C1234567"}],
            "name": [{"family": "Okafor", "given": ["Chidi"], "prefix": ["Dr"]}]
        }));
        self.add(json!({
            "resourceType": "Practitioner", "id": "pract-alvarez",
            "identifier": [{"system": GMC, "value": "C7654321"}],
            "name": [{"family": "Álvarez", "given": ["José"], "prefix": ["Dr"]}]
        }));
        for i in 1..=BULK_PRACTITIONERS {
            self.add(json!({
                "resourceType": "Practitioner", "id": format!("pract-{i:02}"),
                "identifier": [{"system": GMC, "value": format!("C90000{i:02}")}],
                "name": [{"family": format!("Turner{i}"), "given": ["Pat"]}]
            }));
        }
    }

    fn locations(&mut self) {
        self.add(json!({
            "resourceType": "Location", "id": "loc-ward7", "status": "active", "name": "Ward 7",
            "address": {"city": "Leeds"},
            "managingOrganization": reference("Organization/org-stmarys")
        }));
        self.add(json!({
            "resourceType": "Location", "id": "loc-clinic", "status": "active",
            "name": "Outpatient Clinic B",
            "managingOrganization": reference("Organization/org-stmarys")
        }));
        for i in 1..=BULK_LOCATIONS {
            self.add(json!({
                "resourceType": "Location", "id": format!("loc-{i:02}"),
                "name": format!("Room {i}"),
                "managingOrganization": reference(&format!("Organization/org-{i:02}"))
            }));
        }
    }

    fn roles(&mut self) {
        self.add(json!({
            "resourceType": "PractitionerRole", "id": "role-okafor-riverside", "active": true,
            "practitioner": reference("Practitioner/pract-okafor"),
            "organization": reference("Organization/org-riverside")
        }));
        self.add(json!({
            "resourceType": "PractitionerRole", "id": "role-alvarez-stmarys", "active": true,
            "practitioner": reference("Practitioner/pract-alvarez"),
            "organization": reference("Organization/org-stmarys"),
            "location": [reference("Location/loc-clinic")]
        }));
        for i in 1..=BULK_ROLES {
            self.add(json!({
                "resourceType": "PractitionerRole", "id": format!("role-{i:02}"),
                "practitioner": reference(&format!("Practitioner/pract-{i:02}")),
                "organization": reference(&format!("Organization/org-{i:02}"))
            }));
        }
    }

    fn patients(&mut self) {
        self.add(json!({
            "resourceType": "Patient", "id": "p-smith",
            "meta": {"profile": [UK_CORE_PATIENT], "tag": [{"system": TAGS, "code": "vip"}]},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">John Smith</div>"},
            "identifier": [
                nhs_identifier(SMITH_NHS),
                {"type": {"coding": [{"system": V2_0203, "code": "MR"}], "text": "Hospital number"},
                 "system": "https://stmarys.invalid/mrn", "value": "MRN-0001"}
            ],
            "active": true,
            "name": [{"family": "Smith", "given": ["John"]}],
            "telecom": [{"system": "email", "value": "john.smith@example.org"}],
            "gender": "male", "birthDate": "1980-02-29",
            "address": [{"city": "Leeds", "postalCode": "LS1 4AP"}],
            "generalPractitioner": [reference("Organization/org-riverside")]
        }));
        self.add(json!({
            "resourceType": "Patient", "id": "p-smithson",
            "meta": {"tag": [{"system": TAGS, "code": "research"}]},
            "identifier": [nhs_identifier(&nhs_number(9001))],
            "active": true,
            "name": [{"family": "Smithson", "given": ["Anne"]}],
            "gender": "female", "birthDate": "1980-03",
            "generalPractitioner": [reference("Organization/org-riverside")]
        }));
        self.add(json!({
            "resourceType": "Patient", "id": "p-smyth",
            "identifier": [nhs_identifier(&nhs_number(9002))],
            "name": [{"family": "Smyth", "given": ["Ian"]}],
            "gender": "male", "birthDate": "1980",
            "generalPractitioner": [reference("Organization/org-northgate")]
        }));
        self.add(json!({
            "resourceType": "Patient", "id": "p-olaf",
            "meta": {"profile": [UK_CORE_PATIENT]},
            "identifier": [nhs_identifier(&nhs_number(9003))],
            "name": [{"family": "Ólafsdóttir", "given": ["Guðrún"]}],
            "gender": "female", "birthDate": "1979-12-31",
            "address": [{"city": "York", "postalCode": "YO19 5UZ"}],
            "generalPractitioner": [reference("Organization/org-northgate")]
        }));
        self.add(json!({
            "resourceType": "Patient", "id": "p-zoe",
            "meta": {"tag": [{"system": TAGS, "code": "vip"}]},
            "identifier": [{"value": "LOCAL-77"}],
            "name": [{"family": "Okafor", "given": ["Zoë"]}],
            "gender": "female", "birthDate": "1981-01-01",
            "generalPractitioner": [reference("Organization/org-riverside")]
        }));
        self.add(json!({
            "resourceType": "Patient", "id": "p-obrien",
            "active": false,
            "name": [{"family": "O'Brien", "given": ["Seán"]}],
            "gender": "male", "birthDate": "1965-06-15"
        }));
        self.add(json!({
            "resourceType": "Patient", "id": "p-davidson",
            "identifier": [nhs_identifier(&nhs_number(9004))],
            "name": [{"family": "Davidson", "given": ["Mary"]}],
            "generalPractitioner": [reference("Organization/org-northgate")]
        }));
        self.add(json!({
            "resourceType": "Patient", "id": "p-noname",
            "identifier": [nhs_identifier(&nhs_number(9005))],
            "gender": "unknown", "birthDate": "1990-05-05",
            "generalPractitioner": [reference("Organization/org-stmarys")]
        }));
        for i in 1..=BULK_PATIENTS {
            let id = format!("pat-{i:03}");
            let gender = BULK_GENDERS[i % BULK_GENDERS.len()];
            let gp = format!("org-{:02}", 1 + i % BULK_ORGANIZATIONS);
            let birth = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap()
                + chrono::Duration::days(((i * 61) % 3650) as i64);
            self.add(json!({
                "resourceType": "Patient", "id": id,
                "identifier": [nhs_identifier(&nhs_number(i))],
                "name": [{
                    "family": BULK_FAMILIES[i % BULK_FAMILIES.len()],
                    "given": [BULK_GIVEN[i % BULK_GIVEN.len()]]
                }],
                "gender": gender,
                "birthDate": birth.format("%Y-%m-%d").to_string(),
                "generalPractitioner": [reference(&format!("Organization/{gp}"))]
            }));
            self.bulk_patients.push(BulkPatient { id, gender, gp });
        }
    }

    fn encounters(&mut self) {
        let minutes = |n: u32| json!({"value": n, "unit": "min", "system": UCUM, "code": "min"});
        let class = |code: &str| json!({"system": ACT_CODE, "code": code});
        self.add(json!({
            "resourceType": "Encounter", "id": "e-morning",
            "meta": {"profile": [UK_CORE_ENCOUNTER]},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">GP consultation</div>"},
            "status": "finished", "class": class("AMB"),
            "type": [{"text": "GP consultation"}],
            "subject": reference("Patient/p-smith"),
            "participant": [{"individual": reference("Practitioner/pract-okafor")}],
            "period": {"start": "2024-03-10T09:00:00Z", "end": "2024-03-10T10:30:00Z"},
            "length": minutes(90),
            "location": [{"location": reference("Location/loc-clinic")}],
            "serviceProvider": reference("Organization/org-riverside")
        }));
        self.add(json!({
            "resourceType": "Encounter", "id": "e-afternoon",
            "status": "finished", "class": class("AMB"),
            "subject": reference("Patient/p-smith"),
            "participant": [{"individual": reference("Practitioner/pract-okafor")}],
            "period": {"start": "2024-03-10T14:00:00Z", "end": "2024-03-10T15:00:00Z"},
            "length": minutes(60),
            "serviceProvider": reference("Organization/org-riverside")
        }));
        self.add(json!({
            "resourceType": "Encounter", "id": "e-nextday",
            "status": "finished", "class": class("IMP"),
            "subject": reference("Patient/p-smithson"),
            "participant": [{"individual": reference("Practitioner/pract-alvarez")}],
            "period": {"start": "2024-03-11T08:00:00+01:00", "end": "2024-03-11T09:00:00+01:00"},
            "length": minutes(45),
            "location": [{"location": reference("Location/loc-ward7")}],
            "serviceProvider": reference("Organization/org-stmarys")
        }));
        self.add(json!({
            "resourceType": "Encounter", "id": "e-long",
            "status": "finished", "class": class("IMP"),
            "subject": reference("Patient/p-olaf"),
            "period": {"start": "2024-02-20", "end": "2024-03-15"},
            "length": {"value": 24, "unit": "days", "system": UCUM, "code": "d"},
            "location": [{"location": reference("Location/loc-ward7")}],
            "serviceProvider": reference("Organization/org-stmarys")
        }));
        self.add(json!({
            "resourceType": "Encounter", "id": "e-open",
            "status": "in-progress", "class": class("EMER"),
            "subject": reference("Patient/p-olaf"),
            "period": {"start": "2024-03-12T12:00:00Z"},
            "serviceProvider": reference("Organization/org-stmarys")
        }));
        self.add(json!({
            "resourceType": "Encounter", "id": "e-2021",
            "status": "cancelled", "class": class("AMB"),
            "subject": reference("Patient/p-zoe"),
            "period": {"start": "2021-11-05T10:00:00Z", "end": "2021-11-05T11:00:00Z"},
            "length": minutes(60)
        }));
        // The subject named only by its NHS number (a logical reference).
        self.add(json!({
            "resourceType": "Encounter", "id": "e-by-identifier",
            "status": "planned", "class": class("AMB"),
            "subject": {"identifier": nhs_identifier(&nhs_number(9002)), "display": "Ian Smyth"}
        }));
        for i in 1..=BULK_ENCOUNTERS {
            let id = format!("enc-{i:03}");
            let subject = format!("pat-{:03}", 1 + i % BULK_PATIENTS);
            let status = BULK_STATUSES[i % BULK_STATUSES.len()];
            let class_code = BULK_CLASSES[i % BULK_CLASSES.len()];
            let start = chrono::NaiveDate::from_ymd_opt(2019, 1, 1).unwrap()
                + chrono::Duration::days((i * 2) as i64);
            let day = start.format("%Y-%m-%d");
            self.add(json!({
                "resourceType": "Encounter", "id": id,
                "status": status, "class": class(class_code),
                "subject": reference(&format!("Patient/{subject}")),
                "participant": [{"individual": reference(&format!("Practitioner/pract-{:02}", 1 + i % BULK_PRACTITIONERS))}],
                "period": {"start": format!("{day}T09:00:00Z"), "end": format!("{day}T10:00:00Z")},
                "serviceProvider": reference(&format!("Organization/org-{:02}", 1 + i % BULK_ORGANIZATIONS))
            }));
            self.bulk_encounters.push(BulkEncounter {
                id,
                subject,
                status,
                class: class_code,
            });
        }
    }

    fn referrals(&mut self) {
        let snomed = |code: &str, display: &str| json!({"coding": [{"system": SNOMED, "code": code, "display": display}]});
        self.add(json!({
            "resourceType": "ServiceRequest", "id": "sr-cardio",
            "identifier": [{"system": UBRN, "value": "000000000001"}],
            "status": "active", "intent": "order",
            "code": snomed("183519002", "Referral to cardiology service"),
            "subject": reference("Patient/p-smith"),
            "authoredOn": "2024-03-10",
            "requester": reference("Practitioner/pract-okafor"),
            "performer": [reference("Organization/org-stmarys")]
        }));
        self.add(json!({
            "resourceType": "ServiceRequest", "id": "sr-derm",
            "identifier": [{"system": UBRN, "value": "000000000002"}],
            "status": "active", "intent": "order",
            "code": snomed("306160009", "Referral to dermatology service"),
            "subject": reference("Patient/p-zoe"),
            "authoredOn": "2024-03-11",
            "requester": reference("PractitionerRole/role-okafor-riverside"),
            "performer": [reference("Organization/org-stmarys")]
        }));
        self.add(json!({
            "resourceType": "ServiceRequest", "id": "sr-physio",
            "status": "completed", "intent": "plan",
            "code": {"text": "Physiotherapy referral"},
            "subject": reference("Patient/p-smithson"),
            "requester": reference("PractitionerRole/role-alvarez-stmarys")
        }));
        for i in 1..=BULK_REFERRALS {
            let id = format!("sr-{i:03}");
            self.add(json!({
                "resourceType": "ServiceRequest", "id": id,
                "identifier": [{"system": UBRN, "value": format!("1000000{i:05}")}],
                "status": if i % 2 == 0 { "active" } else { "revoked" }, "intent": "order",
                "code": snomed("183444007", "Referral for further care"),
                "subject": reference(&format!("Patient/pat-{:03}", 1 + i % BULK_PATIENTS)),
                "requester": reference(&format!("PractitionerRole/role-{:02}", 1 + i % BULK_ROLES))
            }));
            self.bulk_referrals.push(id);
        }
    }
}
