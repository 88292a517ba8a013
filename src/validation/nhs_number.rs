//! The NHS number (DESIGN.md, "NHS rules"): 10 digits, Modulus 11 check digit, not all one digit.

use std::fmt;

/// The identifier system of NHS numbers.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// The legacy system, accepted on write and normalised to [`NHS_NUMBER_SYSTEM`].
pub const LEGACY_NHS_NUMBER_SYSTEM: &str = "http://fhir.nhs.net/Id/nhs-number";

/// A valid NHS number; only [`NhsNumber::parse`] builds one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NhsNumber(String);

/// Why a value is not an NHS number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    #[error("an NHS number is exactly 10 digits")]
    Format,
    #[error("an NHS number cannot be one digit repeated")]
    RepeatedDigit,
    #[error("the check digit is wrong (Modulus 11)")]
    CheckDigit,
}

impl NhsNumber {
    /// Parses a stored value: exactly 10 ASCII digits, nothing else.
    pub fn parse(value: &str) -> Result<Self, NhsNumberError> {
        let bytes = value.as_bytes();
        if bytes.len() != 10 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(NhsNumberError::Format);
        }
        if bytes.iter().all(|&b| b == bytes[0]) {
            return Err(NhsNumberError::RepeatedDigit);
        }
        let digit = |i: usize| u32::from(bytes[i] - b'0');
        let sum: u32 = (0..9).map(|i| digit(i) * (10 - i as u32)).sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => return Err(NhsNumberError::CheckDigit),
            c => c,
        };
        if check != digit(9) {
            return Err(NhsNumberError::CheckDigit);
        }
        Ok(Self(value.to_owned()))
    }

    /// Parses a value as a person may type it in a search (`943 476 5919`): spaces are removed.
    pub fn parse_lenient(value: &str) -> Result<Self, NhsNumberError> {
        let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        Self::parse(&compact)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether an identifier system is the NHS number's (current or legacy).
pub fn is_nhs_number_system(system: &str) -> bool {
    system == NHS_NUMBER_SYSTEM || system == LEGACY_NHS_NUMBER_SYSTEM
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_numbers() {
        assert!(NhsNumber::parse("9434765919").is_ok());
        assert!(NhsNumber::parse("9000000009").is_ok());
        // The UK Core baby example: the check digit should be 6.
        assert_eq!(
            NhsNumber::parse("9912003890"),
            Err(NhsNumberError::CheckDigit)
        );
        assert_eq!(
            NhsNumber::parse("9912003896").map(|n| n.0),
            Ok("9912003896".into())
        );
        assert_eq!(
            NhsNumber::parse("1111111111"),
            Err(NhsNumberError::RepeatedDigit)
        );
        assert_eq!(
            NhsNumber::parse("0000000000"),
            Err(NhsNumberError::RepeatedDigit)
        );
        for bad in [
            "943476591",
            "94347659190",
            "943 476 5919",
            "943476591X",
            "",
            "９４３４７６５９１９",
        ] {
            assert_eq!(NhsNumber::parse(bad), Err(NhsNumberError::Format), "{bad}");
        }
        assert!(NhsNumber::parse_lenient("943 476 5919").is_ok());
    }

    /// An independent, deliberately plain statement of the rule, to check the real one against.
    fn reference_check(value: &str) -> bool {
        let digits: Vec<u32> = value.chars().filter_map(|c| c.to_digit(10)).collect();
        if value.len() != 10 || digits.len() != 10 {
            return false;
        }
        if digits.iter().all(|d| *d == digits[0]) {
            return false;
        }
        let weights = [10, 9, 8, 7, 6, 5, 4, 3, 2];
        let mut total = 0;
        for (d, w) in digits.iter().zip(weights.iter()) {
            total += d * w;
        }
        let remainder = total % 11;
        let check = 11 - remainder;
        if check == 10 {
            return false;
        }
        let check = if check == 11 { 0 } else { check };
        check == digits[9]
    }

    #[test]
    fn agrees_with_an_independent_implementation_on_100_000_random_numbers() {
        // xorshift64*: deterministic, no dependency.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut valid = 0;
        for _ in 0..100_000 {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let n = state.wrapping_mul(0x2545_F491_4F6C_DD1D) % 10_000_000_000;
            let text = format!("{n:010}");
            let expected = reference_check(&text);
            assert_eq!(NhsNumber::parse(&text).is_ok(), expected, "{text}");
            valid += usize::from(expected);
        }
        // About 1 in 11 random numbers is valid; make sure both branches were exercised.
        assert!((8_000..10_500).contains(&valid), "{valid}");
    }
}
