//! FHIR search by parameter type (<https://hl7.org/fhir/R4/search.html>), on SQLite and PostgreSQL,
//! over the corpus of `common::corpus`: for every parameter type, modifier and prefix, the exact
//! ids each search matches. Strings (starts-with, case- and accent-insensitive, `:exact`,
//! `:contains`), tokens (`system|code`, `|code`, `system|`, `code`, `:not`, `:text`, `:of-type`),
//! dates with every prefix at every precision over dates and Periods, references in every form,
//! quantities, uris (`:below`, `:above`), `_id`, `_lastUpdated`, `_tag`, `_profile`, OR by commas,
//! AND by repetition, and `:missing` on every type. NHS numbers are found as people write them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::corpus::{nhs_number, Corpus, SMITH_NHS};
use common::searching::{case, check, ids, Case};
use common::TestApp;

/// `all` without `removed`.
fn except(all: &[String], removed: &[&str]) -> Vec<String> {
    all.iter()
        .filter(|id| !removed.contains(&id.as_str()))
        .cloned()
        .collect()
}

/// `specials` followed by `more`.
fn plus(specials: &[&str], more: Vec<String>) -> Vec<String> {
    let mut all = ids(specials);
    all.extend(more);
    all
}

async fn string_parameters(app: TestApp) {
    let corpus = Corpus::load(&app, "default").await;
    let cases: Vec<Case> = vec![
        // Default: starts-with, ignoring case and accents.
        case("Patient?family=smi", ids(&["p-smith", "p-smithson"])),
        case("Patient?family=SMITH", ids(&["p-smith", "p-smithson"])),
        case("Patient?family=Smy", ids(&["p-smyth"])),
        case("Patient?family=mith", ids(&[])),
        case("Patient?family=olaf", ids(&["p-olaf"])),
        case("Patient?family=%C3%93LAFSD%C3%93TTIR", ids(&["p-olaf"])),
        case("Patient?given=zoe", ids(&["p-zoe"])),
        case("Patient?given=ZO%C3%8B", ids(&["p-zoe"])),
        case("Patient?name=sean", ids(&["p-obrien"])),
        case("Patient?name=o%27b", ids(&["p-obrien"])),
        case("Patient?name=okafor", ids(&["p-zoe"])),
        case("Patient?name=gu%C3%B0r", ids(&["p-olaf"])),
        case("Patient?address-city=leeds", ids(&["p-smith"])),
        case("Patient?address=ls1%204", ids(&["p-smith"])),
        // Prefixes whose next character is punctuation ('z' + 1 = '{', '9' + 1 = ':'), which a
        // linguistic collation would ignore.
        case("Patient?address-postalcode=yo19", ids(&["p-olaf"])),
        case("Practitioner?name=alvarez", ids(&["pract-alvarez"])),
        case("Practitioner?name=jose", ids(&["pract-alvarez"])),
        case("Practitioner?name=%C3%81LV", ids(&["pract-alvarez"])),
        case(
            "Practitioner?name=dr",
            ids(&["pract-okafor", "pract-alvarez"]),
        ),
        case(
            "Practitioner?family=turner",
            corpus
                .ids("Practitioner")
                .into_iter()
                .filter(|id| id.starts_with("pract-0"))
                .collect(),
        ),
        case("Organization?name=riverside", ids(&["org-riverside"])),
        case("Organization?name=st%20mary", ids(&["org-stmarys"])),
        case("Location?name=ward", ids(&["loc-ward7"])),
        case("Location?address-city=LEEDS", ids(&["loc-ward7"])),
        // :exact is the whole string, case and accents included.
        case("Patient?family:exact=Smith", ids(&["p-smith"])),
        case("Patient?family:exact=smith", ids(&[])),
        case("Patient?family:exact=Smit", ids(&[])),
        case("Patient?given:exact=Zo%C3%AB", ids(&["p-zoe"])),
        case("Patient?given:exact=Zoe", ids(&[])),
        // :contains anywhere, ignoring case and accents.
        case(
            "Patient?family:contains=SON",
            ids(&["p-smithson", "p-davidson"]),
        ),
        case("Patient?family:contains=brie", ids(&["p-obrien"])),
        case("Patient?name:contains=afsd", ids(&["p-olaf"])),
        case("Patient?family:contains=_", ids(&[])),
        case("Patient?family:contains=%25", ids(&[])),
        case(
            "Organization?name:contains=PRACTICE",
            plus(
                &["org-northgate"],
                (1..=6).map(|i| format!("org-{i:02}")).collect(),
            ),
        ),
        // OR with commas, AND by repeating; an escaped comma is part of the value.
        case("Patient?family=smyth,okafor", ids(&["p-smyth", "p-zoe"])),
        case("Patient?family=smi&given=ann", ids(&["p-smithson"])),
        case("Patient?family=smi&family:exact=Smith", ids(&["p-smith"])),
        case("Patient?family=smyth%5C,okafor", ids(&[])),
    ];
    check(&app, "default", &cases).await;
}

async fn token_parameters(app: TestApp) {
    let corpus = Corpus::load(&app, "default").await;
    let patients = corpus.ids("Patient");
    let bulk_gender = |g: &str| corpus.bulk_patients_where(|p| p.gender == g);
    let bulk_not_male = corpus.bulk_patients_where(|p| p.gender != "male");
    let nhs = "https://fhir.nhs.uk/Id/nhs-number";
    let cases: Vec<Case> = vec![
        // NHS numbers: system|code, also with spaces (encoded either way) and the legacy system.
        case(
            format!("Patient?identifier={nhs}|{SMITH_NHS}"),
            ids(&["p-smith"]),
        ),
        case(
            format!("Patient?identifier={nhs}|943%20476%205919"),
            ids(&["p-smith"]),
        ),
        case(
            format!("Patient?identifier={nhs}|943+476+5919"),
            ids(&["p-smith"]),
        ),
        case(
            format!("Patient?identifier=http://fhir.nhs.net/Id/nhs-number|{SMITH_NHS}"),
            ids(&["p-smith"]),
        ),
        case(
            format!("Patient?identifier={nhs}|{}", nhs_number(9003)),
            ids(&["p-olaf"]),
        ),
        case(format!("Patient?identifier={nhs}|9434765918"), ids(&[])),
        // code in any system; |code without a system; system| any code.
        case(format!("Patient?identifier={SMITH_NHS}"), ids(&["p-smith"])),
        case("Patient?identifier=LOCAL-77", ids(&["p-zoe"])),
        case("Patient?identifier=|LOCAL-77", ids(&["p-zoe"])),
        case(format!("Patient?identifier=|{SMITH_NHS}"), ids(&[])),
        case(
            format!("Patient?identifier={nhs}|"),
            except(&patients, &["p-zoe", "p-obrien"]),
        ),
        case(
            "Patient?identifier=https://stmarys.invalid/mrn|MRN-0001",
            ids(&["p-smith"]),
        ),
        // :of-type on identifiers, :text on their type's text.
        case(
            "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|MRN-0001",
            ids(&["p-smith"]),
        ),
        case(
            format!(
                "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|{SMITH_NHS}"
            ),
            ids(&[]),
        ),
        case("Patient?identifier:text=HOSPITAL", ids(&["p-smith"])),
        // Codes, OR, :not (which also matches resources without the element).
        case(
            "Patient?gender=female",
            plus(&["p-smithson", "p-olaf", "p-zoe"], bulk_gender("female")),
        ),
        case(
            "Patient?gender=female,other",
            plus(&["p-smithson", "p-olaf", "p-zoe"], {
                let mut v = bulk_gender("female");
                v.extend(bulk_gender("other"));
                v
            }),
        ),
        case(
            "Patient?gender:not=male",
            plus(
                &["p-smithson", "p-olaf", "p-zoe", "p-davidson", "p-noname"],
                bulk_not_male,
            ),
        ),
        case("Patient?active=true", ids(&["p-smith", "p-smithson"])),
        case("Patient?active=false", ids(&["p-obrien"])),
        case("Patient?email=john.smith@example.org", ids(&["p-smith"])),
        case("Patient?telecom=email|john.smith@example.org", ids(&["p-smith"])),
        case("Patient?telecom=phone|john.smith@example.org", ids(&[])),
        // _tag
        case(
            "Patient?_tag=https://carerecord.invalid/tags|vip",
            ids(&["p-smith", "p-zoe"]),
        ),
        case("Patient?_tag=vip", ids(&["p-smith", "p-zoe"])),
        case(
            "Patient?_tag=https://carerecord.invalid/tags|",
            ids(&["p-smith", "p-smithson", "p-zoe"]),
        ),
        case(
            "Patient?_tag:not=https://carerecord.invalid/tags|vip",
            except(&patients, &["p-smith", "p-zoe"]),
        ),
        // Encounter status and class (a Coding).
        case(
            "Encounter?status=finished",
            plus(
                &["e-morning", "e-afternoon", "e-nextday", "e-long"],
                corpus.bulk_encounters_where(|e| e.status == "finished"),
            ),
        ),
        case(
            "Encounter?status=finished,cancelled",
            plus(
                &["e-morning", "e-afternoon", "e-nextday", "e-long", "e-2021"],
                corpus.bulk_encounters_where(|e| e.status == "finished" || e.status == "cancelled"),
            ),
        ),
        case(
            "Encounter?status:not=finished&status:not=cancelled",
            plus(
                &["e-open", "e-by-identifier"],
                corpus.bulk_encounters_where(|e| e.status == "in-progress"),
            ),
        ),
        case(
            "Encounter?class=http://terminology.hl7.org/CodeSystem/v3-ActCode|IMP",
            plus(
                &["e-nextday", "e-long"],
                corpus.bulk_encounters_where(|e| e.class == "IMP"),
            ),
        ),
        case("Encounter?class=|IMP", ids(&[])),
        case(
            "Encounter?status=finished&class=IMP",
            plus(
                &["e-nextday", "e-long"],
                corpus.bulk_encounters_where(|e| e.class == "IMP" && e.status == "finished"),
            ),
        ),
        case("Encounter?type:text=gp%20consult", ids(&["e-morning"])),
        // ServiceRequest codes (CodeableConcept): :text on display and on text.
        case(
            "ServiceRequest?code=http://snomed.info/sct|183519002",
            ids(&["sr-cardio"]),
        ),
        case(
            "ServiceRequest?code=http://snomed.info/sct|",
            plus(&["sr-cardio", "sr-derm"], corpus.bulk_referrals.clone()),
        ),
        case(
            "ServiceRequest?code:text=referral%20to",
            ids(&["sr-cardio", "sr-derm"]),
        ),
        case("ServiceRequest?code:text=PHYSIO", ids(&["sr-physio"])),
        case(
            "ServiceRequest?identifier=https://fhir.nhs.uk/Id/UBRN|000000000001",
            ids(&["sr-cardio"]),
        ),
        case("ServiceRequest?status=completed", ids(&["sr-physio"])),
        case("ServiceRequest?intent=plan", ids(&["sr-physio"])),
        case(
            "Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|RJ101",
            ids(&["org-stmarys"]),
        ),
        case("Practitioner?identifier=C1234567", ids(&["pract-okafor"])),
    ];
    check(&app, "default", &cases).await;
}

async fn date_parameters(app: TestApp) {
    let corpus = Corpus::load(&app, "default").await;
    let bulk_patients = corpus.bulk_patients_where(|_| true);
    let bulk_encounters = corpus.bulk_encounters_where(|_| true);
    let cases: Vec<Case> = vec![
        // Patient.birthdate (date) at year, month and day precision: smith 1980-02-29,
        // smithson 1980-03, smyth 1980, olaf 1979-12-31, zoe 1981-01-01, obrien 1965-06-15,
        // noname 1990-05-05, davidson none, bulk 2000-2009.
        case(
            "Patient?birthdate=1980",
            ids(&["p-smith", "p-smithson", "p-smyth"]),
        ),
        case("Patient?birthdate=1980-02", ids(&["p-smith"])),
        case("Patient?birthdate=1980-02-29", ids(&["p-smith"])),
        case("Patient?birthdate=eq1980-03", ids(&["p-smithson"])),
        case(
            "Patient?birthdate=ne1980",
            plus(
                &["p-olaf", "p-zoe", "p-obrien", "p-noname"],
                bulk_patients.clone(),
            ),
        ),
        case(
            "Patient?birthdate=gt1980-02-29",
            plus(
                &["p-smithson", "p-smyth", "p-zoe", "p-noname"],
                bulk_patients.clone(),
            ),
        ),
        case(
            "Patient?birthdate=lt1980-03",
            ids(&["p-smith", "p-smyth", "p-olaf", "p-obrien"]),
        ),
        case(
            "Patient?birthdate=ge1980-03",
            plus(
                &["p-smithson", "p-smyth", "p-zoe", "p-noname"],
                bulk_patients.clone(),
            ),
        ),
        case(
            "Patient?birthdate=le1980-02-29",
            ids(&["p-smith", "p-smyth", "p-olaf", "p-obrien"]),
        ),
        case(
            "Patient?birthdate=sa1980-02",
            plus(&["p-smithson", "p-zoe", "p-noname"], bulk_patients.clone()),
        ),
        case(
            "Patient?birthdate=eb1980-03",
            ids(&["p-smith", "p-olaf", "p-obrien"]),
        ),
        case(
            "Patient?birthdate=ap1980-03-01",
            ids(&["p-smith", "p-smithson", "p-smyth", "p-olaf", "p-zoe"]),
        ),
        case(
            "Patient?birthdate=1979-12-31,1981-01-01",
            ids(&["p-olaf", "p-zoe"]),
        ),
        case(
            "Patient?birthdate=ge1980&birthdate=lt1981",
            ids(&["p-smith", "p-smithson", "p-smyth"]),
        ),
        // dateTime precision against whole days, and a value with a time zone offset.
        case("Patient?birthdate=eq1980-02-29T12:00:00Z", ids(&[])),
        case(
            "Patient?birthdate=gt1980-02-29T12:00:00Z",
            plus(
                &["p-smith", "p-smithson", "p-smyth", "p-zoe", "p-noname"],
                bulk_patients.clone(),
            ),
        ),
        case(
            "Patient?birthdate=lt1980-02-29T12:00:00Z",
            ids(&["p-smith", "p-smyth", "p-olaf", "p-obrien"]),
        ),
        case(
            "Patient?birthdate=sa1980-02-29T23:00:00-02:00",
            plus(&["p-zoe", "p-noname"], bulk_patients.clone()),
        ),
        // Encounter.date (a Period): morning 2024-03-10 09:00-10:30Z, afternoon 14:00-15:00Z,
        // nextday 2024-03-11 08:00-09:00+01:00, long 2024-02-20..2024-03-15, open from
        // 2024-03-12T12:00Z, e-2021 2021-11-05, by-identifier none, bulk in 2019.
        case(
            "Encounter?date=2024-03-10",
            ids(&["e-morning", "e-afternoon"]),
        ),
        case(
            "Encounter?date=2024-03",
            ids(&["e-morning", "e-afternoon", "e-nextday"]),
        ),
        case(
            "Encounter?date=2024",
            ids(&["e-morning", "e-afternoon", "e-nextday", "e-long"]),
        ),
        case("Encounter?date=eq2024-03-10T09:00:00Z", ids(&[])),
        case(
            "Encounter?date=ne2024-03",
            plus(&["e-long", "e-open", "e-2021"], bulk_encounters.clone()),
        ),
        case(
            "Encounter?date=gt2024-03-10T12:00:00Z",
            ids(&["e-afternoon", "e-nextday", "e-long", "e-open"]),
        ),
        case(
            "Encounter?date=lt2024-03-10T12:00:00Z",
            plus(&["e-morning", "e-long", "e-2021"], bulk_encounters.clone()),
        ),
        case(
            "Encounter?date=ge2024-03-11",
            ids(&["e-nextday", "e-long", "e-open"]),
        ),
        case(
            "Encounter?date=ge2024-03-11T08:00:00%2B01:00",
            ids(&["e-nextday", "e-long", "e-open"]),
        ),
        case(
            "Encounter?date=le2024-03-10",
            plus(
                &["e-morning", "e-afternoon", "e-long", "e-2021"],
                bulk_encounters.clone(),
            ),
        ),
        case(
            "Encounter?date=sa2024-03-10T12:00:00Z",
            ids(&["e-afternoon", "e-nextday", "e-open"]),
        ),
        case(
            "Encounter?date=eb2024-03-10T12:00:00Z",
            plus(&["e-morning", "e-2021"], bulk_encounters.clone()),
        ),
        case(
            "Encounter?date=ap2024-03-10",
            ids(&["e-morning", "e-afternoon", "e-nextday", "e-long", "e-open"]),
        ),
        case(
            "Encounter?date=ge2024-03-10&date=le2024-03-10",
            ids(&["e-morning", "e-afternoon", "e-long"]),
        ),
        // A dateTime without a time zone is a valid search value (taken as UTC here).
        case(
            "Encounter?date=gt2024-03-10T12:00:00",
            ids(&["e-afternoon", "e-nextday", "e-long", "e-open"]),
        ),
        case("ServiceRequest?authored=2024-03-10", ids(&["sr-cardio"])),
        case(
            "ServiceRequest?authored=ge2024-03-10",
            ids(&["sr-cardio", "sr-derm"]),
        ),
    ];
    check(&app, "default", &cases).await;
}

async fn reference_parameters(app: TestApp) {
    Corpus::load(&app, "default").await;
    let base = app.base("default");
    let smyth_nhs = nhs_number(9002);
    let cases: Vec<Case> = vec![
        case(
            "Encounter?subject=Patient/p-smith",
            ids(&["e-morning", "e-afternoon"]),
        ),
        case(
            "Encounter?subject=p-smith",
            ids(&["e-morning", "e-afternoon"]),
        ),
        case(
            format!("Encounter?subject={base}/Patient/p-smith"),
            ids(&["e-morning", "e-afternoon"]),
        ),
        case(
            "Encounter?subject=Patient/p-smith/_history/1",
            ids(&["e-morning", "e-afternoon"]),
        ),
        case(
            "Encounter?subject:Patient=p-smith",
            ids(&["e-morning", "e-afternoon"]),
        ),
        case("Encounter?subject=Organization/p-smith", ids(&[])),
        case(
            "Encounter?subject=http://elsewhere.invalid/fhir/Patient/p-smith",
            ids(&[]),
        ),
        case("Encounter?patient=p-olaf", ids(&["e-long", "e-open"])),
        case(
            "Encounter?subject=Patient/p-smith,Patient/p-zoe",
            ids(&["e-morning", "e-afternoon", "e-2021"]),
        ),
        case(
            format!("Encounter?subject:identifier=https://fhir.nhs.uk/Id/nhs-number|{smyth_nhs}"),
            ids(&["e-by-identifier"]),
        ),
        case(
            format!("Encounter?subject:identifier={smyth_nhs}"),
            ids(&["e-by-identifier"]),
        ),
        case(
            format!(
                "Encounter?subject:identifier=http://fhir.nhs.net/Id/nhs-number|{}%20{}%20{}",
                &smyth_nhs[..3],
                &smyth_nhs[3..6],
                &smyth_nhs[6..]
            ),
            ids(&["e-by-identifier"]),
        ),
        case(
            "Encounter?service-provider=Organization/org-stmarys",
            ids(&["e-nextday", "e-long", "e-open"]),
        ),
        case(
            "Encounter?participant=Practitioner/pract-okafor",
            ids(&["e-morning", "e-afternoon"]),
        ),
        case("Encounter?practitioner=pract-alvarez", ids(&["e-nextday"])),
        case(
            "Encounter?location=Location/loc-ward7",
            ids(&["e-nextday", "e-long"]),
        ),
        case(
            "ServiceRequest?requester=PractitionerRole/role-okafor-riverside",
            ids(&["sr-derm"]),
        ),
        case(
            "ServiceRequest?requester:Practitioner=pract-okafor",
            ids(&["sr-cardio"]),
        ),
        case(
            "ServiceRequest?performer=org-stmarys",
            ids(&["sr-cardio", "sr-derm"]),
        ),
        case(
            "Patient?general-practitioner=Organization/org-riverside",
            ids(&["p-smith", "p-smithson", "p-zoe"]),
        ),
        case(
            "PractitionerRole?practitioner=pract-okafor",
            ids(&["role-okafor-riverside"]),
        ),
        case(
            "Location?organization=org-stmarys",
            ids(&["loc-ward7", "loc-clinic"]),
        ),
        case(
            "Encounter?subject=p-smith&service-provider=org-riverside&participant=pract-okafor",
            ids(&["e-morning", "e-afternoon"]),
        ),
    ];
    check(&app, "default", &cases).await;
}

async fn quantity_uri_and_common_parameters(app: TestApp) {
    let corpus = Corpus::load(&app, "default").await;
    let patients = corpus.ids("Patient");
    let ukcore = "https://fhir.hl7.org.uk/StructureDefinition/";
    let cases: Vec<Case> = vec![
        // Encounter.length (Duration): morning 90 min, afternoon 60, nextday 45, long 24 d,
        // e-2021 60, the others none.
        case("Encounter?length=60", ids(&["e-afternoon", "e-2021"])),
        case("Encounter?length=60.0", ids(&["e-afternoon", "e-2021"])),
        case(
            "Encounter?length=60|http://unitsofmeasure.org|min",
            ids(&["e-afternoon", "e-2021"]),
        ),
        case("Encounter?length=60||min", ids(&["e-afternoon", "e-2021"])),
        case("Encounter?length=24||d", ids(&["e-long"])),
        case(
            "Encounter?length=24|http://unitsofmeasure.org|min",
            ids(&[]),
        ),
        case("Encounter?length=gt60", ids(&["e-morning"])),
        case("Encounter?length=lt60", ids(&["e-nextday", "e-long"])),
        case(
            "Encounter?length=ge60",
            ids(&["e-morning", "e-afternoon", "e-2021"]),
        ),
        case("Encounter?length=le45", ids(&["e-nextday", "e-long"])),
        case(
            "Encounter?length=ne60",
            ids(&["e-morning", "e-nextday", "e-long"]),
        ),
        case("Encounter?length=sa60", ids(&["e-morning"])),
        case("Encounter?length=eb60", ids(&["e-nextday", "e-long"])),
        case("Encounter?length=ap60", ids(&["e-afternoon", "e-2021"])),
        case("Encounter?length=ap50", ids(&["e-nextday"])),
        case("Encounter?length=45,90", ids(&["e-morning", "e-nextday"])),
        case(
            "Encounter?length=gt45&length=lt90",
            ids(&["e-afternoon", "e-2021"]),
        ),
        // uri: _profile exact, :below, :above.
        case(
            format!("Patient?_profile={ukcore}UKCore-Patient"),
            ids(&["p-smith", "p-olaf"]),
        ),
        case(format!("Patient?_profile={ukcore}ukcore-patient"), ids(&[])),
        case(
            format!("Patient?_profile:below={ukcore}"),
            ids(&["p-smith", "p-olaf"]),
        ),
        case(
            format!("Patient?_profile:below={ukcore}UKCore-Enc"),
            ids(&[]),
        ),
        case(
            "Encounter?_profile:below=https://fhir.hl7.org.uk/",
            ids(&["e-morning"]),
        ),
        case(
            format!("Patient?_profile:above={ukcore}UKCore-Patient/v2"),
            ids(&["p-smith", "p-olaf"]),
        ),
        case(format!("Patient?_profile:above={ukcore}"), ids(&[])),
        case(
            "Patient?_source=urn:carerecord-test:default",
            patients.clone(),
        ),
        // _id
        case("Patient?_id=p-smith", ids(&["p-smith"])),
        case(
            "Patient?_id=p-smith,p-zoe,nobody",
            ids(&["p-smith", "p-zoe"]),
        ),
        case("Patient?_id=p-smith&_id=p-zoe", ids(&[])),
        case("Encounter?_id=p-smith", ids(&[])),
        case("Patient?_id=p-smith&family=smith", ids(&["p-smith"])),
    ];
    check(&app, "default", &cases).await;
}

async fn missing_on_every_type(app: TestApp) {
    let corpus = Corpus::load(&app, "default").await;
    let patients = corpus.ids("Patient");
    let encounters = corpus.ids("Encounter");
    let cases: Vec<Case> = vec![
        // string
        case("Patient?family:missing=true", ids(&["p-noname"])),
        case(
            "Patient?name:missing=false",
            except(&patients, &["p-noname"]),
        ),
        // token
        case("Patient?gender:missing=true", ids(&["p-davidson"])),
        case("Patient?identifier:missing=true", ids(&["p-obrien"])),
        case(
            "Patient?active:missing=false",
            ids(&["p-smith", "p-smithson", "p-obrien"]),
        ),
        case(
            "Patient?_tag:missing=true",
            except(&patients, &["p-smith", "p-smithson", "p-zoe"]),
        ),
        // date
        case("Patient?birthdate:missing=true", ids(&["p-davidson"])),
        case("Encounter?date:missing=true", ids(&["e-by-identifier"])),
        // reference
        case(
            "Patient?general-practitioner:missing=true",
            ids(&["p-obrien"]),
        ),
        case(
            "Encounter?service-provider:missing=true",
            ids(&["e-2021", "e-by-identifier"]),
        ),
        // quantity
        case(
            "Encounter?length:missing=false",
            ids(&["e-morning", "e-afternoon", "e-nextday", "e-long", "e-2021"]),
        ),
        case(
            "Encounter?length:missing=true",
            plus(
                &["e-open", "e-by-identifier"],
                corpus.bulk_encounters_where(|_| true),
            ),
        ),
        // uri
        case(
            "Patient?_profile:missing=false",
            ids(&["p-smith", "p-olaf"]),
        ),
        case(
            "Encounter?_profile:missing=true",
            except(&encounters, &["e-morning"]),
        ),
        // the server's own: every resource has an id and a lastUpdated
        case("Patient?_id:missing=false", patients.clone()),
        case("Patient?_id:missing=true", ids(&[])),
        case("Patient?_lastUpdated:missing=true", ids(&[])),
        // combined with other parameters
        case(
            "Patient?gender:missing=true&family=dav",
            ids(&["p-davidson"]),
        ),
    ];
    check(&app, "default", &cases).await;
}

async fn last_updated(app: TestApp) {
    let corpus = Corpus::load(&app, "default").await;
    let before: Vec<String> = corpus.ids("Patient");
    let last_before = app.get("/fhir/default/Patient/pat-060").await.json()["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut stamps = Vec::new();
    for id in ["late-1", "late-2", "late-3"] {
        std::thread::sleep(std::time::Duration::from_millis(5));
        let reply = app
            .put(
                &format!("/fhir/default/Patient/{id}"),
                &serde_json::json!({"resourceType": "Patient", "id": id, "gender": "other"}),
            )
            .await;
        assert_eq!(reply.status, 201);
        stamps.push(
            reply.json()["meta"]["lastUpdated"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert!(stamps[0] > last_before && stamps[1] > stamps[0] && stamps[2] > stamps[1]);
    let late = ids(&["late-1", "late-2", "late-3"]);
    let mut everyone = before.clone();
    everyone.extend(late.clone());
    let cases: Vec<Case> = vec![
        case(
            format!("Patient?_lastUpdated=gt{last_before}"),
            late.clone(),
        ),
        case(
            format!("Patient?_lastUpdated=le{last_before}"),
            before.clone(),
        ),
        case(
            format!("Patient?_lastUpdated=ge{}", stamps[0]),
            late.clone(),
        ),
        case(
            format!("Patient?_lastUpdated=lt{}", stamps[0]),
            before.clone(),
        ),
        case(
            format!("Patient?_lastUpdated={}", stamps[1]),
            ids(&["late-2"]),
        ),
        case(
            format!("Patient?_lastUpdated=ne{}", stamps[1]),
            except(&everyone, &["late-2"]),
        ),
        case(
            format!("Patient?_lastUpdated=sa{}", stamps[0]),
            ids(&["late-2", "late-3"]),
        ),
        case(
            format!("Patient?_lastUpdated=eb{}", stamps[2]),
            except(&everyone, &["late-3"]),
        ),
        case(
            format!("Patient?_lastUpdated={},{}", stamps[0], stamps[2]),
            ids(&["late-1", "late-3"]),
        ),
        case(
            format!(
                "Patient?_lastUpdated=gt{}&_lastUpdated=lt{}",
                stamps[0], stamps[2]
            ),
            ids(&["late-2"]),
        ),
        case("Patient?_lastUpdated=ge2000", everyone.clone()),
        case("Patient?_lastUpdated=lt2000-01-01", ids(&[])),
        case(
            format!("Patient?_lastUpdated=gt{last_before}&gender=other"),
            late.clone(),
        ),
    ];
    check(&app, "default", &cases).await;
}

async fn chains_and_reverse_chains(app: TestApp) {
    let corpus = Corpus::load(&app, "default").await;
    let bulk_with = |keep: &dyn Fn(&common::corpus::BulkEncounter) -> bool| -> Vec<String> {
        let mut subjects: Vec<String> = corpus
            .bulk_encounters
            .iter()
            .filter(|e| keep(e))
            .map(|e| e.subject.clone())
            .collect();
        subjects.sort();
        subjects.dedup();
        subjects
    };
    let cancelled_and_amb: Vec<String> = bulk_with(&|e| e.status == "cancelled")
        .into_iter()
        .filter(|p| bulk_with(&|e| e.class == "AMB").contains(p))
        .collect();
    let mut gps_of_cancelled: Vec<String> = corpus
        .bulk_patients
        .iter()
        .filter(|p| bulk_with(&|e| e.status == "cancelled").contains(&p.id))
        .map(|p| p.gp.clone())
        .collect();
    gps_of_cancelled.sort();
    gps_of_cancelled.dedup();
    let nhs = "https://fhir.nhs.uk/Id/nhs-number";
    let cases: Vec<Case> = vec![
        // Chains: ref:Type.param, one and two levels, with every kind of inner parameter.
        case(
            format!("Encounter?subject:Patient.identifier={nhs}|{SMITH_NHS}"),
            ids(&["e-morning", "e-afternoon"]),
        ),
        case(
            format!("Encounter?subject:Patient.identifier={nhs}|943%20476%205919"),
            ids(&["e-morning", "e-afternoon"]),
        ),
        case(
            "Encounter?subject:Patient.family=smi",
            ids(&["e-morning", "e-afternoon", "e-nextday"]),
        ),
        case(
            "Encounter?subject:Patient.family=smyth,okafor",
            ids(&["e-2021"]),
        ),
        case("Encounter?patient.family=okafor", ids(&["e-2021"])),
        // subject may name a Group too, but only Patients are stored here.
        case("Encounter?subject.family=okafor", ids(&["e-2021"])),
        case(
            "Encounter?subject:Patient.birthdate=1980",
            ids(&["e-morning", "e-afternoon", "e-nextday"]),
        ),
        case(
            "Encounter?subject:Patient._id=p-olaf",
            ids(&["e-long", "e-open"]),
        ),
        case(
            "Encounter?service-provider.name=st%20mary",
            ids(&["e-nextday", "e-long", "e-open"]),
        ),
        case("Encounter?location.name=ward", ids(&["e-nextday", "e-long"])),
        case(
            "ServiceRequest?requester:Practitioner.name=okafor",
            ids(&["sr-cardio"]),
        ),
        case(
            "ServiceRequest?requester:PractitionerRole.organization.name=riverside",
            ids(&["sr-derm"]),
        ),
        case(
            "ServiceRequest?requester:PractitionerRole.practitioner.name=jos%C3%A9",
            ids(&["sr-physio"]),
        ),
        case(
            "Encounter?subject:Patient.general-practitioner:Organization.name=riverside",
            ids(&["e-morning", "e-afternoon", "e-nextday", "e-2021"]),
        ),
        case(
            "Encounter?subject:Patient.general-practitioner:Organization.identifier=https://fhir.nhs.uk/Id/ods-organization-code|B82002",
            ids(&["e-long", "e-open"]),
        ),
        case(
            "Encounter?subject:Patient.family=smi&status=finished&class=IMP",
            ids(&["e-nextday"]),
        ),
        // Reverse chains: _has:Type:ref:param.
        case(
            "Patient?_has:Encounter:subject:status=finished",
            plus(
                &["p-smith", "p-smithson", "p-olaf"],
                bulk_with(&|e| e.status == "finished"),
            ),
        ),
        case(
            "Patient?_has:Encounter:patient:class=EMER",
            plus(&["p-olaf"], bulk_with(&|e| e.class == "EMER")),
        ),
        case(
            "Patient?_has:ServiceRequest:subject:code=http://snomed.info/sct|183519002",
            ids(&["p-smith"]),
        ),
        case(
            "Practitioner?_has:Encounter:participant:subject=Patient/p-smithson",
            ids(&["pract-alvarez"]),
        ),
        case(
            "Organization?_has:Patient:general-practitioner:family=smi",
            ids(&["org-riverside"]),
        ),
        case(
            "Organization?_has:Encounter:service-provider:date=2024-03",
            ids(&["org-riverside", "org-stmarys"]),
        ),
        case(
            "Patient?_has:Encounter:subject:status=cancelled&_has:Encounter:subject:class=AMB",
            plus(&["p-zoe"], cancelled_and_amb),
        ),
        case(
            "Organization?_has:Patient:general-practitioner:_has:Encounter:subject:status=cancelled",
            plus(&["org-riverside"], gps_of_cancelled),
        ),
        case(
            "Patient?_has:Encounter:subject:service-provider.name=riverside",
            ids(&["p-smith"]),
        ),
        case(
            "Encounter?subject:Patient._has:ServiceRequest:subject:status=completed",
            ids(&["e-nextday"]),
        ),
    ];
    check(&app, "default", &cases).await;
}

async fn indexes_follow_updates_and_deletes(app: TestApp) {
    Corpus::load(&app, "default").await;
    // A new version replaces the old version's index rows.
    let mut smith = app.get("/fhir/default/Patient/p-smith").await.json();
    smith["name"] = serde_json::json!([{"family": "Jones", "given": ["John"]}]);
    smith["birthDate"] = serde_json::json!("1981-07-01");
    assert_eq!(
        app.put("/fhir/default/Patient/p-smith", &smith)
            .await
            .status,
        200
    );
    let mut afternoon = app.get("/fhir/default/Encounter/e-afternoon").await.json();
    afternoon["status"] = serde_json::json!("entered-in-error");
    assert_eq!(
        app.put("/fhir/default/Encounter/e-afternoon", &afternoon)
            .await
            .status,
        200
    );
    // A deleted resource is found by nothing: not directly, not through a chain or _has, and
    // it is not included.
    assert_eq!(
        app.delete("/fhir/default/Patient/p-smithson").await.status,
        204
    );
    assert_eq!(
        app.delete("/fhir/default/Encounter/e-long").await.status,
        204
    );
    let cases: Vec<Case> = vec![
        case("Patient?family=smi", ids(&[])),
        case("Patient?family=jones", ids(&["p-smith"])),
        case("Patient?birthdate=1980-02-29", ids(&[])),
        case("Patient?birthdate=1981", ids(&["p-smith", "p-zoe"])),
        case(
            format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{SMITH_NHS}"),
            ids(&["p-smith"]),
        ),
        case(
            "Encounter?subject=p-smith&status=finished",
            ids(&["e-morning"]),
        ),
        case("Encounter?status=entered-in-error", ids(&["e-afternoon"])),
        case("Encounter?subject:Patient.family=smi", ids(&[])),
        case(
            "Encounter?subject:Patient.family=jones",
            ids(&["e-morning", "e-afternoon"]),
        ),
        case("Encounter?subject=p-smithson", ids(&["e-nextday"])),
        case("Patient?_has:Encounter:subject:class=IMP", {
            let mut v = ids(&[]);
            v.extend(
                Corpus::new("default")
                    .bulk_encounters
                    .iter()
                    .filter(|e| e.class == "IMP")
                    .map(|e| e.subject.clone())
                    .collect::<std::collections::BTreeSet<_>>(),
            );
            v
        }),
        case("Patient?_id=p-smithson", ids(&[])),
        case(
            "Encounter?date=2024",
            ids(&["e-morning", "e-afternoon", "e-nextday"]),
        ),
    ];
    check(&app, "default", &cases).await;
    let bundle = common::searching::searchset(
        &app,
        "/fhir/default/Patient?_id=p-olaf&_revinclude=Encounter:subject",
    )
    .await;
    assert_eq!(
        common::searching::entries(&bundle, "include"),
        ["Encounter/e-open"]
    );
    let bundle = common::searching::searchset(
        &app,
        "/fhir/default/Encounter?_id=e-nextday&_include=Encounter:subject",
    )
    .await;
    assert!(common::searching::entries(&bundle, "include").is_empty());
}

on_both_backends!(
    string_parameters,
    token_parameters,
    date_parameters,
    reference_parameters,
    quantity_uri_and_common_parameters,
    missing_on_every_type,
    last_updated,
    chains_and_reverse_chains,
    indexes_follow_updates_and_deletes,
);
