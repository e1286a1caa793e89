//! Where the directory's memory goes, stage by stage, for N generated services (default 100,000):
//! the rows, the search records, the index and its parts (`DirectoryIndex::memory_report`), read
//! from `/proc/self/status`. Run with `MIMALLOC_PURGE_DELAY=0` so freed pages leave at once:
//! `cargo run --release -p console --example dirmem -- 100000` (BENCHMARKS.md, "Memory").
use console::directory::{documents::service_docs, generate, DirectoryIndex};
use ivr::geo::Gazetteer;
#[global_allocator]
static A: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse::<f64>().ok()).unwrap() / 1024.0
}
fn field(name: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find_map(|l| l.strip_prefix(name)?.split_whitespace().next()?.parse::<f64>().ok()).unwrap() / 1024.0
}
fn report(what: &str) {
    eprintln!("{what:40} rss {:8.1} MiB anon {:8.1} MiB hwm {:8.1} MiB", rss(), field("RssAnon:"), field("VmHWM:"));
}
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    report("start");
    let g = Gazetteer::embedded();
    report("gazetteer");
    reset_peak();
    let data = generate::generate(n, 1, g);
    report("dataset");
    reset_peak();
    let docs = service_docs(&data, g);
    report("dataset + docs");
    drop(data);
    report("docs");
    let clone = docs.clone();
    report("docs twice");
    drop(clone);
    reset_peak();
    let index = DirectoryIndex::build(docs).unwrap();
    report("index (incl docs)");
    for line in index.memory_report() {
        eprintln!("  {line}");
    }
    drop(index);
    report("dropped");
}
