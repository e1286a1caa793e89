//! The `helpline` binary: a tiny `main` around [`console::cli::run`].

use std::process::ExitCode;

/// mimalloc instead of glibc's allocator: the request path allocates small buffers on several
/// threads, and glibc's arenas cost it about 8 % of the webhook throughput (BENCHMARKS.md).
/// Without the `mimalloc` feature, glibc's, which heap profilers see.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    #[cfg(all(feature = "mimalloc", target_os = "linux"))]
    allocator::settle();
    match console::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// mimalloc's settings for a small server, applied the only way safe code can: mimalloc reads
/// its options from the environment when the process starts, before `main`, so `main` starts
/// the same binary again in place (`exec`: the same process id, arguments, files and terminal)
/// with them set. Measured (BENCHMARKS.md, "Memory"): a node with the 8,000 demo services idles
/// at 53 MiB instead of 160; the defaults keep every arena chunk committed once touched and
/// purge freed pages only a second later and only when a thread passes by, so a node keeps
/// most of its start-up peak for good.
///
/// Deployers keep the last word: when either variable is already set, nothing is changed.
#[cfg(all(feature = "mimalloc", target_os = "linux"))]
mod allocator {
    use std::os::unix::process::CommandExt;

    /// Arena memory committed as it is used rather than whole chunks at once; freed pages handed
    /// back at once.
    const SETTINGS: [(&str, &str); 2] = [("MIMALLOC_ARENA_EAGER_COMMIT", "0"), ("MIMALLOC_PURGE_DELAY", "0")];

    pub fn settle() {
        if SETTINGS.iter().any(|(name, _)| std::env::var_os(name).is_some()) {
            return;
        }
        let Ok(exe) = std::env::current_exe() else { return };
        let mut args = std::env::args_os();
        let Some(arg0) = args.next() else { return };
        // Returns only if the binary cannot be started again (replaced on disk by an upgrade):
        // then this process goes on with the allocator's defaults.
        let error = std::process::Command::new(exe).arg0(arg0).args(args).envs(SETTINGS).exec();
        eprintln!("note: the allocator's settings for a small server were not applied ({error})");
    }
}
