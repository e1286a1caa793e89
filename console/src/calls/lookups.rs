//! What the engine's "nearest services" lookup is answered from. The services directory
//! implements [`NearbyServices`]; until a directory is loaded, [`NoDirectory`] answers "none", and
//! the engine offers the operator instead.

use chrono::{DateTime, Utc};
use ivr::domain::ServiceArea;
use ivr::engine::ServiceSummary;
use ivr::geo::GeoPoint;

/// The nearest services of an area around a point, `limit` of them from `offset`, and whether
/// more exist. Synchronous and fast: it runs inside the call's transaction.
pub trait NearbyServices: Send + Sync {
    fn nearest(
        &self,
        area: ServiceArea,
        near: GeoPoint,
        offset: u32,
        limit: u32,
        now: DateTime<Utc>,
    ) -> (Vec<ServiceSummary>, bool);
}

/// No directory: no services anywhere.
pub struct NoDirectory;

impl NearbyServices for NoDirectory {
    fn nearest(&self, _: ServiceArea, _: GeoPoint, _: u32, _: u32, _: DateTime<Utc>) -> (Vec<ServiceSummary>, bool) {
        (Vec::new(), false)
    }
}
