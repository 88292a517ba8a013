//! Lists the conformance resources in `fhir-profiles/` so they are compiled into the binary:
//! adding a profile, extension, value set or code system there is a data change, not code.

use std::path::PathBuf;
use std::{env, fs};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let dir = root.join("fhir-profiles");
    println!("cargo:rerun-if-changed=fhir-profiles");
    // The migrations are embedded by `embed_migrations!`; a new one must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    let mut out = String::from("&[\n");
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        out.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("]\n");
    fs::write(PathBuf::from(env::var("OUT_DIR")?).join("profiles.rs"), out)?;
    Ok(())
}
