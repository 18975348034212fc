//! Accounts (customers, outlets) with their locations.
//!
//! Master data: mostly read on the device. Locations are a map keyed by location
//! id inside the account document, so two sites added on two devices both survive.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::types::{GeoPoint, RecordKind, RecordMeta};
use super::visit::Site;
use super::{Record, ValidationError};
use crate::ids::RecordId;

/// A site of an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Name, e.g. "Main store".
    pub name: String,
    /// Postal address, one line.
    #[serde(default)]
    pub address: String,
    /// Coordinates, when geocoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coords: Option<GeoPoint>,
    /// Geofence radius for check-in verdicts, metres.
    pub geofence_radius_m: f64,
    /// Opening hours as text, e.g. "Mo-Fr 08:00-18:00".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opening_hours: Option<String>,
}

impl Location {
    /// The site for geofence verdicts.
    pub fn site(&self) -> Site {
        Site {
            coords: self.coords,
            radius_m: self.geofence_radius_m,
        }
    }
}

/// A customer account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Ownership: `owner` is the account manager.
    pub meta: RecordMeta,
    /// The customer's code in the organisation's other systems (ERP, CRM):
    /// the key a CSV import matches rows to accounts by. Set by the office.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Display name.
    pub name: String,
    /// Type, e.g. `outlet`, `distributor`, `customer`.
    pub account_type: String,
    /// `active`, `prospect`, `inactive`.
    pub account_status: String,
    /// The price list that applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_list_id: Option<RecordId>,
    /// Target days between visits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visit_frequency_days: Option<u32>,
    /// Sites by location id.
    #[serde(default)]
    pub locations: BTreeMap<RecordId, Location>,
}

impl Record for Account {
    const KIND: RecordKind = RecordKind::Account;

    fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.name.trim().is_empty() {
            return Err(ValidationError::new("name", "an account needs a name"));
        }
        for (id, l) in &self.locations {
            if l.coords.is_some_and(|c| !c.is_valid()) {
                return Err(ValidationError::new(
                    format!("locations.{id}.coords"),
                    "position is off the globe",
                ));
            }
            if !(l.geofence_radius_m.is_finite() && l.geofence_radius_m > 0.0) {
                return Err(ValidationError::new(
                    format!("locations.{id}.geofence_radius_m"),
                    "radius must be positive",
                ));
            }
        }
        Ok(())
    }
}
