//! Narrative safety (txt-1, txt-2): the XHTML of `Narrative.div` must be a `div` in the XHTML
//! namespace with some content, and carry no active content — no scripts, no event handlers, no
//! embedded objects or forms, no `javascript:` URLs.

use std::sync::OnceLock;

use regex::Regex;

const FORBIDDEN_ELEMENT: &str = r"(?i)<\s*/?\s*(script|iframe|frame|frameset|object|embed|applet|form|input|button|select|textarea|style|link|meta|base|svg|math)\b";
const EVENT_HANDLER: &str = r#"(?i)<[^>]*\s(on[a-z]+|style|formaction)\s*="#;
const ACTIVE_URL: &str = r#"(?i)(href|src|action)\s*=\s*["']?\s*(javascript|vbscript|data)\s*:"#;
const TAG: &str = r"<[^>]*>";

struct Patterns {
    forbidden_element: Regex,
    event_handler: Regex,
    active_url: Regex,
    tag: Regex,
}

/// Compiled once; `None` only if a pattern above were invalid, which the tests rule out.
fn patterns() -> Option<&'static Patterns> {
    static PATTERNS: OnceLock<Option<Patterns>> = OnceLock::new();
    PATTERNS
        .get_or_init(|| {
            Some(Patterns {
                forbidden_element: Regex::new(FORBIDDEN_ELEMENT).ok()?,
                event_handler: Regex::new(EVENT_HANDLER).ok()?,
                active_url: Regex::new(ACTIVE_URL).ok()?,
                tag: Regex::new(TAG).ok()?,
            })
        })
        .as_ref()
}

/// Active content (a script or embedding element, or an event handler) in any text, named.
pub fn active_content(text: &str) -> Option<String> {
    let p = patterns()?;
    if let Some(found) = p.forbidden_element.find(text) {
        return Some(found.as_str().trim_start_matches('<').trim().to_owned());
    }
    p.event_handler
        .is_match(text)
        .then(|| "an event-handler attribute".to_owned())
}

/// Every problem with a narrative `div`, as messages naming the rule.
pub fn check(div: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let trimmed = div.trim_start();
    let opens_div = trimmed.starts_with("<div") || trimmed.starts_with("<xhtml:div");
    if !opens_div || !div.contains("http://www.w3.org/1999/xhtml") {
        problems.push("txt-1: the narrative must be an XHTML div in the namespace http://www.w3.org/1999/xhtml".to_owned());
    }
    let Some(p) = patterns() else {
        problems.push("txt-1: the narrative could not be checked".to_owned());
        return problems;
    };
    if let Some(found) = p.forbidden_element.find(div) {
        problems.push(format!(
            "txt-1: the narrative contains active or disallowed content ({})",
            found.as_str().trim_start_matches('<')
        ));
    }
    if p.event_handler.is_match(div) {
        problems.push("txt-1: the narrative contains event-handler or style attributes".to_owned());
    }
    if p.active_url.is_match(div) {
        problems.push("txt-1: the narrative contains a script URL".to_owned());
    }
    let text = p.tag.replace_all(div, "");
    if text.trim().is_empty() && !div.contains("<img") {
        problems.push("txt-2: the narrative must have some non-whitespace content".to_owned());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn safe_and_unsafe_narratives() {
        assert!(super::patterns().is_some());
        let ok = r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>Jane <b>Smith</b></p></div>"#;
        assert!(check(ok).is_empty(), "{:?}", check(ok));
        for bad in [
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script>x</div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">Hi</p></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><a href="javascript:alert(1)">x</a></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><iframe src="x"></iframe>y</div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml">   </div>"#,
            r#"<p xmlns="http://www.w3.org/1999/xhtml">x</p>"#,
            r#"<div>no namespace</div>"#,
        ] {
            assert!(!check(bad).is_empty(), "{bad} should be rejected");
        }
    }
}
