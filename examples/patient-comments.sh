#!/usr/bin/env bash
# The patient's voice, end to end, against a running server (`cargo run --release -- serve`):
# a GP feed sends a referral; the patient adds a preference and a correction request to it; the
# clinician's $everything shows both, with their Provenance.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-http://127.0.0.1:8080/fhir/default}
# CARERECORD may name a built binary (default: cargo run --release).
token() { ${CARERECORD:-cargo run --quiet --release --} token --system default "$@"; }
J='Content-Type: application/fhir+json'

FEEDER=$(token --role feeder --sub gp-system)
curl -sf -X POST "$BASE" -H "$J" -H "Authorization: Bearer $FEEDER" -d @examples/gp-referral-transaction.json >/dev/null
PATIENT=$(curl -sf "$BASE/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919" -H "Authorization: Bearer $FEEDER" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')
REFERRAL=$(curl -sf "$BASE/ServiceRequest?identifier=https://fhir.nhs.uk/Id/UBRN|000000070000" -H "Authorization: Bearer $FEEDER" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')

# The patient signs in (NHS login would issue this token) and adds two comments to the referral.
ME=$(token --role patient --sub "Patient/$PATIENT")
for comment in \
  '{"resourceType":"Parameters","parameter":[{"name":"text","valueString":"I can only attend appointments on Tuesdays"},{"name":"category","valueCode":"preference"},{"name":"focus","valueString":"ServiceRequest.occurrence"}]}' \
  '{"resourceType":"Parameters","parameter":[{"name":"text","valueString":"The referral says I smoke; I stopped in 2019"},{"name":"category","valueCode":"correction-request"}]}'; do
  curl -sf -X POST "$BASE/ServiceRequest/$REFERRAL/\$add-comment" -H "$J" -H "Authorization: Bearer $ME" -d "$comment" \
    | python3 -c 'import json,sys; p=json.load(sys.stdin)["parameter"]; print("added comment", p[0]["valueString"], "with", p[1]["valueReference"]["reference"])'
done

# The clinician's view of the record.
DOCTOR=$(token --role clinician --sub Practitioner/dr-khan)
curl -sf "$BASE/Patient/$PATIENT/\$everything" -H "Authorization: Bearer $DOCTOR" | python3 -c '
import json, sys
bundle = json.load(sys.stdin)
for entry in bundle["entry"]:
    r = entry["resource"]
    if r["resourceType"] == "ServiceRequest":
        for ext in r.get("extension", []):
            parts = {p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in ext["extension"]}
            print("comment:", parts["category"], "-", parts["text"], "(", parts["status"], ")")
    if r["resourceType"] == "Provenance":
        print("provenance:", r["activity"]["coding"][0]["code"], r["target"][0]["reference"], "by", r["agent"][0]["who"]["reference"])
'
