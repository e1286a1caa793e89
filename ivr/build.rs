//! Embeds every `prompts/<tag>/*.ftl` of the repository, so that a language added as data (a
//! folder of texts and a `[[languages]]` entry) is compiled in without a line of code.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let prompts = Path::new(&manifest).join("../prompts");
    println!("cargo:rerun-if-changed={}", prompts.display());
    let mut entries: Vec<(String, String, String)> = Vec::new();
    if let Ok(dirs) = std::fs::read_dir(&prompts) {
        for dir in dirs.flatten() {
            let path = dir.path();
            if !path.is_dir() {
                continue;
            }
            println!("cargo:rerun-if-changed={}", path.display());
            let tag = dir.file_name().to_string_lossy().into_owned();
            for file in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                let fp = file.path();
                if fp.extension().is_some_and(|e| e == "ftl") && fp.is_file() {
                    println!("cargo:rerun-if-changed={}", fp.display());
                    let name = file.file_name().to_string_lossy().into_owned();
                    let abs = fp.canonicalize().unwrap_or(fp).display().to_string();
                    entries.push((tag.clone(), name, abs));
                }
            }
        }
    }
    entries.sort();
    let mut out =
        String::from("/// The prompt texts compiled in: (language tag, file name, contents), in tag and file order.\n");
    let _ = writeln!(out, "pub const EMBEDDED_FTL: [(&str, &str, &str); {}] = [", entries.len());
    for (tag, name, abs) in &entries {
        let _ = writeln!(out, "    ({tag:?}, {name:?}, include_str!({abs:?})),");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_ftl.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}
