//! What the evaluator knows of FHIR R4 types without a StructureDefinition: the data types a
//! choice element (`value[x]`) can take, and the few specialisations `is` must honour.

use serde_json::Value;

use super::temporal;

/// The FHIR type named by a choice-element suffix (`DateTime` → `dateTime`), for the R4 data
/// types an `[x]` element may take. Anything else is not a choice suffix, which keeps e.g.
/// `valueSet` from being read as a `value` of type "Set".
pub(crate) fn choice_type(suffix: &str) -> Option<&'static str> {
    Some(match suffix {
        "Base64Binary" => "base64Binary",
        "Boolean" => "boolean",
        "Canonical" => "canonical",
        "Code" => "code",
        "Date" => "date",
        "DateTime" => "dateTime",
        "Decimal" => "decimal",
        "Id" => "id",
        "Instant" => "instant",
        "Integer" => "integer",
        "Markdown" => "markdown",
        "Oid" => "oid",
        "PositiveInt" => "positiveInt",
        "String" => "string",
        "Time" => "time",
        "UnsignedInt" => "unsignedInt",
        "Uri" => "uri",
        "Url" => "url",
        "Uuid" => "uuid",
        "Address" => "Address",
        "Age" => "Age",
        "Annotation" => "Annotation",
        "Attachment" => "Attachment",
        "CodeableConcept" => "CodeableConcept",
        "Coding" => "Coding",
        "ContactDetail" => "ContactDetail",
        "ContactPoint" => "ContactPoint",
        "Contributor" => "Contributor",
        "Count" => "Count",
        "DataRequirement" => "DataRequirement",
        "Distance" => "Distance",
        "Dosage" => "Dosage",
        "Duration" => "Duration",
        "Expression" => "Expression",
        "HumanName" => "HumanName",
        "Identifier" => "Identifier",
        "Meta" => "Meta",
        "Money" => "Money",
        "ParameterDefinition" => "ParameterDefinition",
        "Period" => "Period",
        "Quantity" => "Quantity",
        "Range" => "Range",
        "Ratio" => "Ratio",
        "Reference" => "Reference",
        "RelatedArtifact" => "RelatedArtifact",
        "SampledData" => "SampledData",
        "Signature" => "Signature",
        "Timing" => "Timing",
        "TriggerDefinition" => "TriggerDefinition",
        "UsageContext" => "UsageContext",
        _ => return None,
    })
}

/// The type a FHIR type specialises, for the specialisations that matter to `is`/`as`.
fn parent_type(name: &str) -> Option<&'static str> {
    Some(match name {
        "code" | "id" | "markdown" => "string",
        "url" | "canonical" | "oid" | "uuid" => "uri",
        "positiveInt" | "unsignedInt" => "integer",
        "Age" | "Count" | "Distance" | "Duration" | "MoneyQuantity" | "SimpleQuantity" => {
            "Quantity"
        }
        "DomainResource" => "Resource",
        _ => return None,
    })
}

/// The resource types that are not DomainResources.
fn is_bare_resource(name: &str) -> bool {
    matches!(name, "Bundle" | "Binary" | "Parameters")
}

/// The System type a FHIR primitive maps to, so that `is(System.String)` holds for a `code`.
fn system_type(fhir: &str) -> Option<&'static str> {
    Some(match fhir {
        "string" | "code" | "id" | "markdown" | "uri" | "url" | "canonical" | "oid" | "uuid"
        | "base64Binary" | "xhtml" => "String",
        "boolean" => "Boolean",
        "integer" | "positiveInt" | "unsignedInt" => "Integer",
        "decimal" => "Decimal",
        "date" => "Date",
        "dateTime" | "instant" => "DateTime",
        "time" => "Time",
        _ => return None,
    })
}

/// Whether a value of FHIR type `actual` (a data type or a resource type) is a `wanted`.
pub(crate) fn fhir_type_is(actual: &str, wanted: &str, is_resource: bool) -> bool {
    if system_type(actual) == Some(wanted) {
        return true;
    }
    if is_resource {
        return actual == wanted
            || wanted == "Resource"
            || (wanted == "DomainResource" && !is_bare_resource(actual));
    }
    let mut current = Some(actual);
    let mut steps = 0;
    while let Some(t) = current {
        if t == wanted {
            return true;
        }
        steps += 1;
        if steps > 4 {
            break;
        }
        current = parent_type(t);
    }
    false
}

/// For a JSON value whose FHIR type is not known: whether it could be a `wanted`. A string
/// is taken to be any string-valued primitive, and a date/time type when its text has that
/// type's form; a boolean or number only its own kinds. Objects of unknown type match nothing.
pub(crate) fn untyped_json_is(value: &Value, wanted: &str) -> bool {
    match value {
        Value::String(s) => match wanted {
            "string" | "code" | "id" | "markdown" | "uri" | "url" | "canonical" | "oid"
            | "uuid" | "base64Binary" | "String" => true,
            "date" | "Date" => temporal::parse_date_time(s).is_some_and(|d| d.is_date()),
            "dateTime" | "DateTime" => temporal::parse_date_time(s).is_some(),
            "instant" => temporal::parse_date_time(s).is_some_and(|d| d.is_instant()),
            "time" | "Time" => temporal::parse_time(s).is_some(),
            _ => false,
        },
        Value::Bool(_) => matches!(wanted, "boolean" | "Boolean"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                match wanted {
                    "integer" | "Integer" | "decimal" | "Decimal" => true,
                    "unsignedInt" => i >= 0,
                    "positiveInt" => i > 0,
                    _ => false,
                }
            } else {
                matches!(wanted, "decimal" | "Decimal")
            }
        }
        _ => false,
    }
}
