//! `helpline directory …`: import, export, generate and bench. Glue only (anyhow allowed): the
//! work is done by the modules beside this one.

use super::{datapackage, generate, import, store};
use crate::config::Settings;
use crate::db::Db;
use anyhow::Context;
use clap::Subcommand;
use ivr::geo::Gazetteer;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Replace the directory with an HSDS datapackage (folder or datapackage.json) or a flat
    /// one-row-per-service CSV. All or nothing: any bad row rejects the whole file, and every bad
    /// row is reported. With --partial: every valid row is imported, the invalid ones and the rows
    /// that depend on them are skipped, and the same report is printed with what was skipped.
    Import {
        path: PathBuf,
        /// Import the valid rows, skip the invalid ones and the rows that depend on them.
        #[arg(long)]
        partial: bool,
    },
    /// Write the directory as an HSDS tabular datapackage into a folder.
    Export { path: PathBuf },
    /// Write a deterministic demo directory as a datapackage (no database needed).
    Generate {
        #[arg(long, default_value_t = generate::DEFAULT_COUNT)]
        count: usize,
        #[arg(long, default_value_t = generate::DEFAULT_SEED)]
        seed: u64,
        out_dir: PathBuf,
    },
    /// Measure search latency and index memory at several sizes, against PostgreSQL full-text
    /// search with pg_trgm and a distance filter when --postgres is given.
    Bench(super::bench::BenchArgs),
}

/// Exit code of an import rejected for bad rows.
const EXIT_REJECTED: u8 = 1;

pub async fn run(cmd: DirectoryCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    match cmd {
        DirectoryCommand::Generate { count, seed, out_dir } => {
            let data = generate::generate(count, seed, Gazetteer::embedded());
            datapackage::write(&data, &out_dir)?;
            println!("wrote {count} services ({} rows) to {}", data.total_rows(), out_dir.display());
            Ok(ExitCode::SUCCESS)
        }
        DirectoryCommand::Bench(args) => super::bench::run(args).await,
        DirectoryCommand::Import { path, partial: true } => import_partial(&path, settings).await,
        DirectoryCommand::Import { path, partial: false } => {
            let started = Instant::now();
            let read = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || import::read_path(&path)).await?
            };
            let (kind, data) = match read {
                Ok(ok) => ok,
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    eprintln!(
                        "import rejected: {} problem(s) in {}; nothing was imported",
                        errors.len(),
                        path.display()
                    );
                    return Ok(ExitCode::from(EXIT_REJECTED));
                }
            };
            let db = connect(settings).await?;
            store::replace_all_as_import(
                &db,
                &data,
                &path.display().to_string(),
                crate::clock::Clock::now(&crate::clock::SystemClock),
            )
            .await
            .context("cannot store the directory")?;
            let secs = started.elapsed().as_secs_f64();
            let rows = data.total_rows();
            println!(
                "imported {} services ({rows} rows, {kind:?}) from {} in {secs:.2} s ({:.0} rows/s)",
                data.rows("service").len(),
                path.display(),
                rows as f64 / secs.max(1e-9)
            );
            Ok(ExitCode::SUCCESS)
        }
        DirectoryCommand::Export { path } => {
            let db = connect(settings).await?;
            let data = store::load_all(&db).await?;
            datapackage::write(&data, &path)?;
            let now = crate::clock::Clock::now(&crate::clock::SystemClock);
            super::editing::record_export(&db, &path.display().to_string(), data.rows("service").len(), now).await?;
            println!(
                "exported {} services ({} rows) to {}",
                data.rows("service").len(),
                data.total_rows(),
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `import --partial`: the complete report, what was skipped and cleared, then the import of the
/// rest. Exit 0 when something was imported, 1 when nothing could be read.
async fn import_partial(path: &std::path::Path, settings: &Settings) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let read = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || import::read_path_partial(&path)).await?
    };
    let (kind, salvaged) = match read {
        Ok(ok) => ok,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("import rejected: {} problem(s) in {}; nothing was imported", errors.len(), path.display());
            return Ok(ExitCode::from(EXIT_REJECTED));
        }
    };
    for e in &salvaged.problems {
        eprintln!("{e}");
    }
    for s in &salvaged.skipped {
        eprintln!("skipped: {s}");
    }
    for c in &salvaged.cleared {
        eprintln!("cleared: {}: column {} (the row is kept without it)", c.place(), c.column);
    }
    let data = &salvaged.dataset;
    let db = connect(settings).await?;
    store::replace_all_as_import(
        &db,
        data,
        &path.display().to_string(),
        crate::clock::Clock::now(&crate::clock::SystemClock),
    )
    .await
    .context("cannot store the directory")?;
    let secs = started.elapsed().as_secs_f64();
    let rows = data.total_rows();
    println!(
        "imported {} services ({rows} rows, {kind:?}) from {} in {secs:.2} s ({:.0} rows/s); partial: {} problem(s), {} row(s) skipped, {} value(s) cleared",
        data.rows("service").len(),
        path.display(),
        rows as f64 / secs.max(1e-9),
        salvaged.problems.len(),
        salvaged.skipped.len(),
        salvaged.cleared.len(),
    );
    Ok(ExitCode::SUCCESS)
}

async fn connect(settings: &Settings) -> anyhow::Result<Db> {
    let db = Db::connect(&settings.database_url).await?;
    db.migrate().await?;
    Ok(db)
}
