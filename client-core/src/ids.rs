//! Identifier newtypes.
//!
//! Every id in Fieldsync is a UUIDv7 made where the thing is created (usually on the
//! device) and never remapped after sync. Each role gets its own type so a signature
//! says which id it wants; they all travel as their canonical hyphenated string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|_| InvalidId {
                    kind: stringify!($name),
                    value: s.chars().take(64).collect(),
                })
            }
        }
    };
}

/// A string that is not a valid id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind}")]
pub struct InvalidId {
    /// Which id type was expected.
    pub kind: &'static str,
    /// The offending text, cut to 64 characters.
    pub value: String,
}

id_type!(
    /// A business record (visit, order, job, ...) or a child entry of one (order line, part, ...).
    RecordId
);
id_type!(
    /// A person who logs in: rep, technician, manager or admin.
    UserId
);
id_type!(
    /// One installation of the app on one phone or tablet.
    DeviceId
);
id_type!(
    /// A customer organisation of Fieldsync (a tenant).
    OrgId
);
id_type!(
    /// A team inside an organisation (a manager and their reports).
    TeamId
);
id_type!(
    /// A sales or service territory.
    TerritoryId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_string_form() {
        let id = RecordId::new();
        let parsed: RecordId = id.to_string().parse().expect("parses");
        assert_eq!(id, parsed);
        let json = serde_json::to_string(&id).expect("serializes");
        assert_eq!(json, format!("\"{id}\""));
    }

    #[test]
    fn a_malformed_id_names_its_kind() {
        let err = "not-a-uuid".parse::<UserId>().expect_err("must fail");
        assert_eq!(err.to_string(), "\"not-a-uuid\" is not a valid UserId");
    }

    #[test]
    fn new_ids_are_time_ordered() {
        let a = RecordId::new();
        let b = RecordId::new();
        assert!(a < b);
    }
}
