//! Italian geography the helpline needs to place a caller: municipalities (comuni), their postal
//! codes and telephone area codes, and distances between points.
//!
//! It exists apart from the engine because the services directory reuses it: everything here is
//! general (no menu knowledge) and read-only once loaded.

mod gazetteer;
mod point;

pub use gazetteer::{CapLocation, Comune, Gazetteer, GeoError, ProvinceGuess, Province};
pub use point::GeoPoint;
