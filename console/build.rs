//! Rebuilds the crate when anything under `assets/` or `migrations/` changes, including a file
//! being added: rust-embed embeds the folder with one `include_bytes!` per file, and sqlx's
//! `migrate!` reads the migrations' folder at compile time, which on their own make cargo watch
//! only the files that existed at the last build.

fn main() {
    println!("cargo:rerun-if-changed=assets");
    println!("cargo:rerun-if-changed=../migrations");
}
