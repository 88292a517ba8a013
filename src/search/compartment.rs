//! The Patient compartment (<https://hl7.org/fhir/R4/compartmentdefinition-patient.html>): which
//! search parameters link each resource type to a patient. Drives compartment search and
//! `$everything`.

use serde_json::Value;

use crate::fhir::ResourceType;

const DEFINITION: &str = include_str!("../../schema/compartmentdefinition-patient.json");

#[derive(Debug, Default)]
pub struct PatientCompartment {
    /// For each stored type in the compartment, the parameters that name the patient.
    members: Vec<(ResourceType, Vec<String>)>,
}

impl PatientCompartment {
    pub fn load() -> Self {
        let definition: Value = serde_json::from_str(DEFINITION).unwrap_or(Value::Null);
        let members = definition["resource"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let rtype = ResourceType::parse(r["code"].as_str()?)?;
                let params: Vec<String> = r["param"]
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
                (!params.is_empty()).then_some((rtype, params))
            })
            .collect();
        Self { members }
    }

    /// The parameters linking `rtype` to its patient; empty when `rtype` is not in the compartment.
    pub fn params(&self, rtype: ResourceType) -> &[String] {
        self.members
            .iter()
            .find(|(t, _)| *t == rtype)
            .map_or(&[], |(_, p)| p.as_slice())
    }

    /// The stored types in the compartment (besides Patient itself).
    pub fn member_types(&self) -> impl Iterator<Item = ResourceType> + '_ {
        self.members.iter().map(|(t, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encounters_and_referrals_are_in_the_compartment() {
        let c = PatientCompartment::load();
        assert!(c
            .params(ResourceType::Encounter)
            .contains(&"subject".to_owned()));
        assert!(c
            .params(ResourceType::ServiceRequest)
            .contains(&"subject".to_owned()));
        assert!(c.params(ResourceType::Organization).is_empty());
        assert!(c.params(ResourceType::Patient).contains(&"link".to_owned()));
    }
}
