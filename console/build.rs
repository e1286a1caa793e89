//! Rebuilds the crate when anything under `assets/` changes, including a file being added:
//! rust-embed embeds the folder with one `include_bytes!` per file, which on its own makes cargo
//! watch only the files that existed at the last build.

fn main() {
    println!("cargo:rerun-if-changed=assets");
}
