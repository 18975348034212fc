//! Distances and the geofence verdict recorded at check-in and check-out.
//!
//! The verdict is recorded, never enforced: a rep with no signal or no GPS
//! still checks in, and the manager sees why the position could not be verified.

use serde::{Deserialize, Serialize};

use super::types::{GeoPoint, stable_names};

/// Mean Earth radius in metres (IUGG).
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance in metres (haversine).
pub fn distance_m(a: &GeoPoint, b: &GeoPoint) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lat2 - lat1;
    let dlng = (b.lng - a.lng).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlng / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Where a check-in or check-out happened relative to the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeofenceVerdict {
    /// Within the site's radius (allowing for the fix's accuracy).
    Inside,
    /// Farther than the radius plus the accuracy.
    Outside,
    /// The device had no usable position fix.
    UnverifiableOffline,
    /// The site has no coordinates to compare with.
    NoSiteCoords,
}

stable_names!(GeofenceVerdict, "geofence verdict" {
    Inside => "inside",
    Outside => "outside",
    UnverifiableOffline => "unverifiable_offline",
    NoSiteCoords => "no_site_coords",
});

/// The verdict and distance for a fix `at` against a site with `radius_m`.
///
/// A fix counts as inside when the circle of its accuracy touches the site's
/// circle: a rep standing at the door with a 30 m fix is not "outside".
pub fn geofence(
    at: Option<&GeoPoint>,
    site: Option<&GeoPoint>,
    radius_m: f64,
) -> (GeofenceVerdict, Option<f64>) {
    let Some(site) = site.filter(|s| s.is_valid()) else {
        return (GeofenceVerdict::NoSiteCoords, None);
    };
    let Some(at) = at.filter(|p| p.is_valid()) else {
        return (GeofenceVerdict::UnverifiableOffline, None);
    };
    let d = distance_m(at, site);
    let slack = at.accuracy_m.unwrap_or(0.0);
    let verdict = if d <= radius_m + slack {
        GeofenceVerdict::Inside
    } else {
        GeofenceVerdict::Outside
    };
    (verdict, Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_have_stable_names() {
        crate::model::types::assert_stable_names(
            GeofenceVerdict::ALL,
            GeofenceVerdict::as_str,
            &[
                "inside",
                "outside",
                "unverifiable_offline",
                "no_site_coords",
            ],
        );
    }

    fn p(lat: f64, lng: f64) -> GeoPoint {
        GeoPoint {
            lat,
            lng,
            accuracy_m: None,
        }
    }

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let d = distance_m(&p(0.0, 0.0), &p(1.0, 0.0));
        assert!((d - 111_195.0).abs() < 10.0, "{d}");
    }

    #[test]
    fn verdicts_cover_every_case() {
        let site = p(48.137, 11.575);
        assert_eq!(
            geofence(Some(&p(48.137, 11.575)), Some(&site), 100.0).0,
            GeofenceVerdict::Inside
        );
        assert_eq!(
            geofence(Some(&p(48.2, 11.575)), Some(&site), 100.0).0,
            GeofenceVerdict::Outside
        );
        assert_eq!(
            geofence(None, Some(&site), 100.0).0,
            GeofenceVerdict::UnverifiableOffline
        );
        assert_eq!(
            geofence(Some(&site), None, 100.0).0,
            GeofenceVerdict::NoSiteCoords
        );
        // 150 m away with a 60 m fix against a 100 m fence: inside.
        let near = GeoPoint {
            lat: 48.137 + 150.0 / 111_195.0,
            lng: 11.575,
            accuracy_m: Some(60.0),
        };
        assert_eq!(
            geofence(Some(&near), Some(&site), 100.0).0,
            GeofenceVerdict::Inside
        );
    }
}
