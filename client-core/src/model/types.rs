//! Value types shared by every record: time on the device, positions, money,
//! quantities, roles and the ownership block that drives authorization and scope.
//!
//! Also the kinds of record ([`RecordKind`]) with the facts about each that the
//! device and the server both rely on ([`RecordKind::is_stateful`],
//! [`RecordKind::is_dated`], [`RecordKind::is_master_data`], one row per kind),
//! and `stable_names!`, which gives the enums stored by name (statuses,
//! outcomes, verdicts) their `ALL`, `FromStr` and `Display`. This module is the
//! bottom of the model: it imports none of the others.

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
    VanStock => "van_stock",
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a kind is, one row per kind (see the methods below for what each
/// column means and who relies on it).
#[derive(Clone, Copy)]
struct KindFacts {
    stateful: bool,
    dated: bool,
    master_data: bool,
    territory_wide: bool,
}

impl RecordKind {
    const fn facts(self) -> KindFacts {
        const fn row(
            stateful: bool,
            dated: bool,
            master_data: bool,
            territory_wide: bool,
        ) -> KindFacts {
            KindFacts {
                stateful,
                dated,
                master_data,
                territory_wide,
            }
        }
        use RecordKind::*;
        // A new kind must take a row here: the match has no catch-all.
        // row(stateful, dated, master data, territory wide)
        match self {
            Account => row(false, false, false, true),
            Contact => row(false, false, false, true),
            Product => row(false, false, true, true),
            PriceList => row(false, false, true, true),
            Visit => row(true, true, false, false),
            VisitReport => row(true, true, false, false),
            Order => row(true, true, false, false),
            ServiceJob => row(true, false, false, false),
            Assignment => row(true, true, false, false),
            ChecklistTemplate => row(false, false, true, true),
            ChecklistResponse => row(false, true, false, false),
            VanStock => row(false, false, false, false),
        }
    }

    /// Whether records of this kind have a `status` governed by a state
    /// machine, with a status history: visits, visit reports, orders, service
    /// jobs and assignments.
    ///
    /// Their status changes only through `RecordDoc::transition`, concurrent
    /// values resolve by the machine's precedence, and
    /// `RecordDoc::status_name` gives the effective status (it is `null` for
    /// every other kind). The server opens a conflict for a push that leaves
    /// such a record's status with concurrent values (the managers' conflicts
    /// queue), and a settlement names one of them
    /// (`RecordDoc::resolve_status_by_name`).
    pub const fn is_stateful(self) -> bool {
        self.facts().stateful
    }

    /// Whether records of this kind are dated: visits, visit reports, orders,
    /// assignments and checklist responses.
    ///
    /// A dated record reaches a device only while its date (its planned or
    /// scheduled start, else its parent visit's or job's, else when the server
    /// first stored it) lies in the download window of the user's role; the
    /// server cuts pulls and primes to that window and names the records that
    /// leave it. Every other kind (customers, the catalogue, service jobs)
    /// reaches its readers whatever its dates. The window limits downloads
    /// only: a device may push changes to any record it holds.
    pub const fn is_dated(self) -> bool {
        self.facts().dated
    }

    /// Whether records of this kind are master data: products, price lists
    /// and checklist templates, the catalogue every field user works from.
    ///
    /// The server lets everyone in the record's territory read it (besides its
    /// owner and team) and refuses a push that changes it unless the actor is
    /// back office ([`Role::is_back_office`]: a manager, an administrator or
    /// the server).
    pub const fn is_master_data(self) -> bool {
        self.facts().master_data
    }

    /// Whether everyone in a record's territory reads records of this kind:
    /// the catalogue (master data) and the customers — accounts and their
    /// contacts — so a rep's device holds every customer of the territory it
    /// may call on, not only those it has visited. Other kinds reach their
    /// owner, the owner's team's managers and the users they refer to.
    ///
    /// Unlike master data, reps may create and edit customers (a prospect met
    /// on the road); the territory only widens who reads them.
    pub const fn is_territory_wide(self) -> bool {
        self.facts().territory_wide
    }
}

/// Gives a unit enum whose values are stored by name (a status, an outcome)
/// its stable names, beside the enum's `#[serde(rename_all = "snake_case")]`:
/// an inherent `ALL` (every value, in declaration order), an inherent
/// `const fn as_str`, `FromStr` (an [`UnknownName`] for anything else) and
/// `Display`.
///
/// A state machine's status enum is given its names with `machine` first: its
/// `as_str` stays the `Status` trait's (callers name it through the trait), so
/// the inherent function is the crate's own `stable_name`, which the trait's
/// `as_str` returns.
///
/// The names are what documents, the wire, the server's tables and URLs hold,
/// so they never change; each use is pinned by a test (`assert_stable_names`)
/// that also checks that serde writes and reads the same names.
macro_rules! stable_names {
    (machine $ty:ident, $what:literal { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every status, in declaration order (what `Status::all` gives).
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The stable name (what `Status::as_str` gives).
            pub(crate) const fn stable_name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        $crate::model::types::stable_names!(@parse_and_show $ty, $what, stable_name {
            $($variant => $name),+
        });
    };
    ($ty:ident, $what:literal { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The stable name stored in documents, sent on the wire and kept
            /// in the server's tables.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        $crate::model::types::stable_names!(@parse_and_show $ty, $what, as_str {
            $($variant => $name),+
        });
    };
    (@parse_and_show $ty:ident, $what:literal, $name_of:ident {
        $($variant:ident => $name:literal),+
    }) => {
        impl ::std::str::FromStr for $ty {
            type Err = $crate::model::types::UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err($crate::model::types::UnknownName::new($what, s)),
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.$name_of())
            }
        }
    };
}
pub(crate) use stable_names;

/// Checks an enum given names by `stable_names!`: `ALL` lists exactly
/// `expected` in order, and each name round-trips through `FromStr`, `Display`
/// and serde.
#[cfg(test)]
pub(crate) fn assert_stable_names<T>(all: &[T], as_str: fn(T) -> &'static str, expected: &[&str])
where
    T: Copy
        + fmt::Debug
        + fmt::Display
        + PartialEq
        + FromStr<Err = UnknownName>
        + Serialize
        + serde::de::DeserializeOwned,
{
    let names: Vec<&str> = all.iter().map(|v| as_str(*v)).collect();
    assert_eq!(names, expected);
    for (value, name) in all.iter().zip(expected) {
        assert_eq!(name.parse::<T>(), Ok(*value), "{name} parses");
        assert_eq!(value.to_string(), *name, "{name} displays");
        assert_eq!(
            serde_json::to_value(value).ok(),
            Some(serde_json::Value::String((*name).to_owned())),
            "serde writes {name}"
        );
        assert_eq!(
            serde_json::from_value::<T>(serde_json::Value::String((*name).to_owned())).ok(),
            Some(*value),
            "serde reads {name}"
        );
    }
    assert!("no_such_name".parse::<T>().is_err());
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    use RecordKind::*;

    #[rstest]
    // (kind, stateful, dated, master data)
    #[case(Account, false, false, false, true)]
    #[case(Contact, false, false, false, true)]
    #[case(Product, false, false, true, true)]
    #[case(PriceList, false, false, true, true)]
    #[case(Visit, true, true, false, false)]
    #[case(VisitReport, true, true, false, false)]
    #[case(Order, true, true, false, false)]
    #[case(ServiceJob, true, false, false, false)]
    #[case(Assignment, true, true, false, false)]
    #[case(ChecklistTemplate, false, false, true, true)]
    #[case(ChecklistResponse, false, true, false, false)]
    #[case(VanStock, false, false, false, false)]
    fn each_kind_has_its_facts(
        #[case] kind: RecordKind,
        #[case] stateful: bool,
        #[case] dated: bool,
        #[case] master_data: bool,
        #[case] territory_wide: bool,
    ) {
        assert_eq!(
            (
                kind.is_stateful(),
                kind.is_dated(),
                kind.is_master_data(),
                kind.is_territory_wide()
            ),
            (stateful, dated, master_data, territory_wide)
        );
    }

    #[test]
    fn master_data_is_neither_stateful_nor_dated() {
        for kind in RecordKind::ALL {
            if kind.is_master_data() {
                assert!(!kind.is_stateful() && !kind.is_dated(), "{kind}");
                assert!(kind.is_territory_wide(), "{kind}: its territory reads it");
            }
        }
    }

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
