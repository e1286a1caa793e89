//! The `helpline` binary: a tiny `main` around [`console::cli::run`].

use std::process::ExitCode;

fn main() -> ExitCode {
    match console::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
