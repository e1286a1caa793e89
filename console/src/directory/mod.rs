//! The services directory: the services foreign citizens are referred to, kept in the
//! database as Open Referral HSDS 3.0 tables and searched from an in-memory index that follows
//! every change.
//!
//! Architecture invariant: the database is the source of truth. The index is rebuilt from it and
//! swapped whole; every write bumps `dir_meta.version`, and each server polls that version, so an
//! import made by the CLI or by another node reaches every index without a restart.
//!
//! Entry points: [`Directory`] (a cheap handle; the HTTP API's state is [`DirectoryState`]): [`Directory::search`] (`SearchQuery` +
//! the injected clock's `now` → `SearchResponse`; synchronous, the one search behind both
//! `GET /api/services/search` and the console socket's `search`, whose parameters both become a
//! `SearchQuery` through [`SearchParams`]) and [`Directory::nearest_services`] (the IVR);
//! [`routes`] (HTTP), [`cli`] (`helpline directory …`).

pub mod bench;
pub mod builder;
pub mod cli;
pub mod datapackage;
pub mod dataset;
pub mod documents;
pub mod editing;
pub mod eval;
pub mod flat_csv;
pub mod generate;
pub mod http;
pub mod import;
pub mod index;
pub mod opening;
pub mod partial;
pub mod review;
pub mod schema;
pub mod search;
pub mod store;

pub use dataset::{Dataset, RowError};
pub use http::routes;
pub use http::{SearchError, SearchParams};
pub use index::DirectoryIndex;
pub use search::{nearest_services, search, SearchHit, SearchQuery, SearchResponse, ServiceSummary};

use crate::clock::Clock;
use crate::db::{Db, DbError};
use chrono::{DateTime, Utc};
use ivr::domain::ServiceArea;
use ivr::geo::{Gazetteer, GeoPoint};
use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What the directory's HTTP API needs.
pub struct DirectoryState {
    pub directory: Directory,
    /// "Open now" is decided at this clock's time.
    pub clock: Arc<dyn Clock>,
}

/// How often a server checks whether the directory changed elsewhere.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Why a directory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Index(#[from] index::IndexError),
    #[error("the index build was interrupted: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("the index build's thread: {0}")]
    Thread(String),
}

/// The directory: its database and the current index. Cheap to clone.
#[derive(Clone)]
pub struct Directory {
    db: Db,
    current: Arc<RwLock<Arc<DirectoryIndex>>>,
    version: Arc<AtomicI64>,
    refreshing: Arc<tokio::sync::Mutex<()>>,
    /// The services with an open flag, as last read (every refresh, and after each flag here).
    flagged: Arc<RwLock<Arc<HashSet<String>>>>,
}

impl Directory {
    /// Builds the index from what the database holds.
    pub async fn open(db: Db) -> Result<Directory, DirectoryError> {
        let dir = Directory {
            db,
            current: Arc::new(RwLock::new(Arc::new(DirectoryIndex::empty()?))),
            version: Arc::new(AtomicI64::new(-1)),
            refreshing: Arc::new(tokio::sync::Mutex::new(())),
            flagged: Arc::new(RwLock::new(Arc::new(HashSet::new()))),
        };
        dir.refresh().await?;
        Ok(dir)
    }

    /// The index now. Keep the `Arc` for the length of one search, not longer.
    pub fn index(&self) -> Arc<DirectoryIndex> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Rebuilds the index when the stored version differs from the indexed one. Returns whether
    /// it rebuilt.
    pub async fn refresh(&self) -> Result<bool, DirectoryError> {
        let _one_at_a_time = self.refreshing.lock().await;
        self.refresh_flags().await?;
        let stored = store::version(&self.db).await?;
        if stored == self.version.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.install(None, stored).await?;
        Ok(true)
    }

    /// Reads which services have an open flag (cheap: the open flags' index).
    pub async fn refresh_flags(&self) -> Result<(), DirectoryError> {
        let set = Arc::new(editing::flagged_services(&self.db).await?);
        match self.flagged.write() {
            Ok(mut g) => *g = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        Ok(())
    }

    fn flagged(&self) -> Arc<HashSet<String>> {
        match self.flagged.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Builds the index of `data`, or of the rows streamed from the database when `None` (the
    /// stored directory at `version`), and swaps it in.
    async fn install(&self, data: Option<Dataset>, version: i64) -> Result<(), DirectoryError> {
        let started = std::time::Instant::now();
        // A thread of its own, which ends with the build, rather than the runtime's blocking pool:
        // the allocator (mimalloc) gives a thread's freed pages back when the thread ends, and a
        // pooled thread idles for 10 s first, holding the build's transient buffers
        // (BENCHMARKS.md, "Memory"). The stored rows reach it one at a time: the records are made
        // as they come, never the whole directory's rows at once.
        let stream = data.is_none();
        let (rows_tx, mut rows) = tokio::sync::mpsc::channel(1024);
        // Set once every row is sent: a channel closed without it is a read that failed.
        let complete = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let read_all = complete.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("directory-index".into())
            .spawn(move || {
                let mut docs = documents::DocsBuilder::new(Gazetteer::embedded());
                match data {
                    Some(data) => {
                        for (t, table) in data.tables.iter().enumerate() {
                            for r in table {
                                docs.add(t, r);
                            }
                        }
                    }
                    None => {
                        while let Some((t, r)) = rows.blocking_recv() {
                            docs.add(t, &r);
                        }
                        if !read_all.load(Ordering::Acquire) {
                            // The read failed: nothing to build.
                            return;
                        }
                    }
                }
                let _ = tx.send(DirectoryIndex::build(docs.finish()));
            })
            .map_err(|e| DirectoryError::Thread(e.to_string()))?;
        if stream {
            // The channel's bound keeps the reader at most 1,024 rows ahead of the builder.
            store::stream_all(&self.db, &rows_tx).await?;
            complete.store(true, Ordering::Release);
        }
        drop(rows_tx);
        let index = rx.await.map_err(|_| DirectoryError::Thread("the index build panicked".into()))??;
        let services = index.len();
        let old = match self.current.write() {
            Ok(mut g) => std::mem::replace(&mut *g, Arc::new(index)),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), Arc::new(index)),
        };
        self.version.store(version, Ordering::Release);
        // The index replaced (once the searches holding it end) and the build's buffers: back to
        // the system, not kept by the allocator.
        drop(old);
        crate::metrics::release_freed_memory();
        tracing::info!(services, version, ms = started.elapsed().as_millis() as u64, "directory index built");
        Ok(())
    }

    /// Replaces the whole directory (validated data) and swaps in its index before returning.
    pub async fn replace(&self, data: &Dataset) -> Result<(), DirectoryError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let version = store::replace_all(&self.db, data).await?;
        self.install(Some(data.clone()), version).await
    }

    /// Loads the demo directory when the database holds no service. Returns whether it did.
    pub async fn seed_demo_if_empty(&self) -> Result<bool, DirectoryError> {
        if store::service_count(&self.db).await? > 0 {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        let data = tokio::task::spawn_blocking(|| {
            generate::generate(generate::DEFAULT_COUNT, generate::DEFAULT_SEED, Gazetteer::embedded())
        })
        .await?;
        self.replace(&data).await?;
        tracing::info!(
            services = generate::DEFAULT_COUNT,
            ms = started.elapsed().as_millis() as u64,
            "demo directory loaded into an empty database"
        );
        Ok(true)
    }

    /// Follows the stored version: polls it every [`WATCH_INTERVAL`] and rebuilds on change,
    /// until shutdown.
    pub fn start_following(&self, tasks: &crate::tasks::Tasks) {
        let dir = self.clone();
        tasks.spawn_every("directory follower", WATCH_INTERVAL, move || {
            let dir = dir.clone();
            async move {
                if let Err(e) = dir.refresh().await {
                    tracing::warn!(error = %e, "directory refresh failed");
                }
            }
        });
    }

    /// Runs a search on the current index, "open now" and today's hours judged at `now` (from
    /// the injected clock, `state.clock.now()`).
    pub fn search(&self, q: &SearchQuery, now: DateTime<Utc>) -> SearchResponse {
        let mut r = search::search(&self.index(), q, now);
        let flagged = self.flagged();
        if !flagged.is_empty() {
            for h in &mut r.hits {
                h.reported = flagged.contains(&h.id);
            }
        }
        r
    }

    /// The IVR's lookup: the nearest services of `area` to `point`, nearest first.
    pub fn nearest_services(
        &self,
        area: ServiceArea,
        point: GeoPoint,
        offset: usize,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Vec<ServiceSummary> {
        search::nearest_services(&self.index(), area, point, offset, limit, now)
    }

    /// One service as the IVR reads it back (its distance unknown: 0), today's hours at `now`;
    /// `None` when it is no longer in the directory. For the services sent by text message.
    pub fn service_summary(&self, id: &str, now: DateTime<Utc>) -> Option<ServiceSummary> {
        let index = self.index();
        let d = index.get(id)?;
        Some(ServiceSummary {
            id: d.id.clone(),
            name: d.name.clone(),
            address: d.address.to_string(),
            town: d.town.to_string(),
            phone: d.phone.clone(),
            hours_today: d.hours.today_text(now),
            distance_km: 0.0,
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

#[cfg(test)]
mod tests;

/// The IVR's "nearest services" lookup, answered from the in-memory index.
impl crate::calls::NearbyServices for Directory {
    fn nearest(
        &self,
        area: ServiceArea,
        near: GeoPoint,
        offset: u32,
        limit: u32,
        now: DateTime<Utc>,
    ) -> (Vec<ivr::engine::ServiceSummary>, bool) {
        // One more than asked tells whether a next page exists.
        let mut found = self.nearest_services(area, near, offset as usize, limit as usize + 1, now);
        let has_more = found.len() > limit as usize;
        found.truncate(limit as usize);
        let services = found
            .into_iter()
            .map(|s| ivr::engine::ServiceSummary {
                id: s.id,
                name: s.name,
                address: (!s.address.is_empty()).then_some(s.address),
                town: s.town,
                phone: s.phone,
                hours_today: (!s.hours_today.is_empty()).then_some(s.hours_today),
                distance_km: s.distance_km,
            })
            .collect();
        (services, has_more)
    }
}
