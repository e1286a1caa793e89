//! Rebuilds the crate when anything under `assets/`, `prompts/` or `migrations/` changes,
//! including a file being added: rust-embed embeds a folder with one `include_bytes!` per file,
//! and sqlx's `migrate!` reads the migrations' folder at compile time, which on their own make
//! cargo watch only the files that existed at the last build.

fn main() {
    println!("cargo:rerun-if-changed=assets");
    println!("cargo:rerun-if-changed=../prompts");
    println!("cargo:rerun-if-changed=../migrations");
}
