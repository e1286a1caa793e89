//! The `helpline` binary: a tiny `main` around [`console::cli::run`].

use std::process::ExitCode;

/// mimalloc instead of glibc's allocator: the request path allocates small buffers on several
/// threads, and glibc's arenas cost it about 8 % of the webhook throughput (BENCHMARKS.md).
/// Without the `mimalloc` feature, glibc's, which heap profilers see.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match console::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
