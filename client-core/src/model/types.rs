//! Value types shared by every record: time on the device, positions, money,
//! quantities, roles and the ownership block that drives authorization and scope.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, OrgId, RecordId, TeamId, TerritoryId, UserId};

/// When something happened, by the device's clock, with the device's time zone.
///
/// SLA and KPI figures use this time (what the technician saw), not the time
/// the server received the change; the server keeps its own receive time beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceTime {
    /// Milliseconds since the Unix epoch, UTC.
    pub at_ms: i64,
    /// The device's UTC offset at that moment, in minutes (e.g. +120 for CEST).
    pub tz_offset_min: i32,
}

impl DeviceTime {
    /// A UTC time (offset zero).
    pub const fn utc(at_ms: i64) -> Self {
        Self {
            at_ms,
            tz_offset_min: 0,
        }
    }

    /// The current system time, UTC.
    pub fn now_utc() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self::utc(ms)
    }
}

/// A GPS fix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    /// Latitude in degrees, -90..=90.
    pub lat: f64,
    /// Longitude in degrees, -180..=180.
    pub lng: f64,
    /// Horizontal accuracy radius in metres, when the device reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f64>,
}

impl GeoPoint {
    /// Whether the coordinates are on the globe.
    pub fn is_valid(&self) -> bool {
        self.lat.is_finite()
            && self.lng.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lng)
            && self.accuracy_m.is_none_or(|a| a.is_finite() && a >= 0.0)
    }
}

/// An amount of money in integer minor units (cents) of one currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Minor units: 1234 is 12.34 in a two-decimal currency.
    pub minor: i64,
    /// ISO 4217 code, e.g. "EUR".
    pub currency: String,
}

impl Money {
    /// `minor` units of `currency`.
    pub fn new(minor: i64, currency: impl Into<String>) -> Self {
        Self {
            minor,
            currency: currency.into(),
        }
    }
}

/// A quantity with exactly four decimal places, stored as an integer count of
/// ten-thousandths so every replica computes the same totals.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Qty(pub i64);

impl Qty {
    /// Ten-thousandths in one unit.
    pub const SCALE: i64 = 10_000;

    /// A whole number of units.
    pub const fn units(n: i64) -> Self {
        Self(n * Self::SCALE)
    }

    /// The raw ten-thousandths.
    pub const fn raw(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Qty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let scale = Self::SCALE.unsigned_abs();
        write!(f, "{sign}{}.{:04}", abs / scale, abs % scale)
    }
}

/// What a user may do. `Server` is the server acting on its own authority
/// (confirming orders, recording a manager's decision made in the web app).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Field sales representative.
    Rep,
    /// Service technician.
    Technician,
    /// Plans, dispatches and reviews for a team.
    Manager,
    /// Administers the organisation.
    Admin,
    /// The server itself.
    Server,
}

impl Role {
    /// The stable name used on the wire and in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Rep => "rep",
            Role::Technician => "technician",
            Role::Manager => "manager",
            Role::Admin => "admin",
            Role::Server => "server",
        }
    }

    /// Managers, admins and the server may act for the back office.
    pub const fn is_back_office(self) -> bool {
        matches!(self, Role::Manager | Role::Admin | Role::Server)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "rep" => Role::Rep,
            "technician" => Role::Technician,
            "manager" => Role::Manager,
            "admin" => Role::Admin,
            "server" => Role::Server,
            _ => return Err(UnknownName::new("role", s)),
        })
    }
}

/// A name (role, status, kind) that is not one of the known values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownName {
    /// What kind of name was expected.
    pub what: &'static str,
    /// The offending text, cut to 64 characters.
    pub value: String,
}

impl UnknownName {
    pub(crate) fn new(what: &'static str, value: &str) -> Self {
        Self {
            what,
            value: value.chars().take(64).collect(),
        }
    }
}

/// Who is making a change: the user, their role, and the device they use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The person.
    pub user: UserId,
    /// Their role, which decides which transitions they may make.
    pub role: Role,
    /// The device the change is made on; `None` for the server and the web app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
}

impl Actor {
    /// An actor on a device.
    pub fn on_device(user: UserId, role: Role, device: DeviceId) -> Self {
        Self {
            user,
            role,
            device: Some(device),
        }
    }

    /// An actor with no device (server, web app).
    pub fn without_device(user: UserId, role: Role) -> Self {
        Self {
            user,
            role,
            device: None,
        }
    }
}

/// The ownership block every business record carries. It drives both
/// authorization (who may write) and scope (which devices receive the record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordMeta {
    /// The record's id, made on the device that created it.
    pub id: RecordId,
    /// The tenant. Never changes.
    pub org: OrgId,
    /// The user responsible for the record (the rep of a visit, the technician of an assignment).
    pub owner: UserId,
    /// The owner's team when the record was made.
    pub team: TeamId,
    /// The territory the record belongs to.
    pub territory: TerritoryId,
}

macro_rules! record_kinds {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// Every kind of record Fieldsync syncs. One Automerge document per record.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum RecordKind {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl RecordKind {
            /// All kinds, in a fixed order.
            pub const ALL: &'static [RecordKind] = &[$(RecordKind::$variant),*];

            /// The stable name used in documents, on the wire and in the database.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(RecordKind::$variant => $name,)*
                }
            }
        }

        impl FromStr for RecordKind {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(RecordKind::$variant),)*
                    _ => Err(UnknownName::new("record kind", s)),
                }
            }
        }
    };
}

record_kinds! {
    Account => "account",
    Contact => "contact",
    Product => "product",
    PriceList => "price_list",
    Visit => "visit",
    VisitReport => "visit_report",
    Order => "order",
    ServiceJob => "service_job",
    Assignment => "assignment",
    ChecklistTemplate => "checklist_template",
    ChecklistResponse => "checklist_response",
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_print_with_four_places() {
        assert_eq!(Qty(12_345).to_string(), "1.2345");
        assert_eq!(Qty(-5).to_string(), "-0.0005");
        assert_eq!(Qty::units(3).to_string(), "3.0000");
    }

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for kind in RecordKind::ALL {
            assert_eq!(kind.as_str().parse::<RecordKind>(), Ok(*kind));
        }
        assert!("spaceship".parse::<RecordKind>().is_err());
    }

    #[test]
    fn geo_points_off_the_globe_are_invalid() {
        let ok = GeoPoint {
            lat: 48.1,
            lng: 11.5,
            accuracy_m: Some(8.0),
        };
        assert!(ok.is_valid());
        assert!(!GeoPoint { lat: 91.0, ..ok }.is_valid());
        assert!(
            !GeoPoint {
                lng: f64::NAN,
                ..ok
            }
            .is_valid()
        );
        assert!(
            !GeoPoint {
                accuracy_m: Some(-1.0),
                ..ok
            }
            .is_valid()
        );
    }
}
