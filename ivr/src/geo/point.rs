//! Points on the Earth and the great-circle distance between them.

use serde::{Deserialize, Serialize};

/// A WGS84 position in decimal degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lng: f64,
}

impl GeoPoint {
    /// Mean Earth radius (IUGG), in kilometres.
    pub const EARTH_RADIUS_KM: f64 = 6371.0088;

    pub fn new(lat: f64, lng: f64) -> Self {
        GeoPoint { lat, lng }
    }

    /// Great-circle distance by the haversine formula, in kilometres.
    pub fn distance_km(&self, other: &GeoPoint) -> f64 {
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlng = (other.lng - self.lng).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlng / 2.0).sin().powi(2);
        2.0 * Self::EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_distances() {
        let roma = GeoPoint::new(41.8931, 12.4828);
        let milano = GeoPoint::new(45.4669, 9.19);
        let d = roma.distance_km(&milano);
        assert!((470.0..485.0).contains(&d), "Roma-Milano {d}");
        assert!((d - milano.distance_km(&roma)).abs() < 1e-9);
        assert_eq!(roma.distance_km(&roma), 0.0);
        let antipode = GeoPoint::new(-41.8931, 12.4828 - 180.0);
        assert!((roma.distance_km(&antipode) - std::f64::consts::PI * GeoPoint::EARTH_RADIUS_KM).abs() < 1.0);
    }
}
