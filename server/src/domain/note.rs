//! A change note: what the live channel tells the nodes and the devices
//! about a commit. Ids only (organisation, log position, pushing device, the
//! principals of the changed records), never record content; a notified device
//! pulls, and the pull applies the full scope rules.

use std::collections::BTreeSet;

use fieldsync_core::OrgId;
use serde::{Deserialize, Serialize};

/// Principals one note names; a push touching more is announced organisation-wide
/// (a PostgreSQL notification payload is limited to 8,000 bytes).
const MAX_PRINCIPALS: usize = 64;

/// Milliseconds since the epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A commit, announced to the devices it concerns. Ids only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// The organisation.
    pub org: OrgId,
    /// The highest log position of the commit.
    pub seq: i64,
    /// The device that pushed (it is not told about its own changes).
    #[serde(default)]
    pub device: Option<String>,
    /// Principals of the changed records; empty means every device of the organisation.
    #[serde(default)]
    pub principals: Vec<String>,
    /// When the commit happened (Unix milliseconds), for the feed-lag figure.
    #[serde(default)]
    pub at_ms: i64,
    /// Set when the note announces a revoked device instead of a commit: that
    /// device's live connections end at once.
    #[serde(default)]
    pub revoked: Option<String>,
    /// Set when the note announces a disabled user instead of a commit: the
    /// live connections of every device of that user end at once.
    #[serde(default)]
    pub disabled: Option<String>,
}

impl Note {
    /// A note for a commit touching records with these principals.
    pub fn new(org: OrgId, seq: i64, device: Option<String>, principals: BTreeSet<String>) -> Note {
        let principals = if principals.len() > MAX_PRINCIPALS {
            Vec::new()
        } else {
            principals.into_iter().collect()
        };
        Note {
            org,
            seq,
            device,
            principals,
            at_ms: now_ms(),
            revoked: None,
            disabled: None,
        }
    }

    /// Whether this note ends the live connection of `user` on `device`
    /// (the device was revoked, or the user disabled).
    pub fn ends(&self, user: &str, device: &str) -> bool {
        self.revoked.as_deref() == Some(device) || self.disabled.as_deref() == Some(user)
    }

    /// Whether a caller with these principals, on `device`, should hear of it.
    pub fn concerns(&self, org: OrgId, principals: &[String], device: &str) -> bool {
        self.revoked.is_none()
            && self.disabled.is_none()
            && self.org == org
            && self.device.as_deref() != Some(device)
            && (self.principals.is_empty()
                || self.principals.iter().any(|p| principals.contains(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_reaches_the_principals_it_names_but_not_its_own_device() {
        let org = OrgId::new();
        let note = Note::new(
            org,
            7,
            Some("dev-a".into()),
            ["u:1".to_owned(), "t:9".to_owned()].into_iter().collect(),
        );
        assert!(note.concerns(org, &["u:1".into()], "dev-b"));
        assert!(note.concerns(org, &["u:2".into(), "t:9".into()], "dev-b"));
        assert!(
            !note.concerns(org, &["u:1".into()], "dev-a"),
            "its own push"
        );
        assert!(!note.concerns(org, &["u:2".into()], "dev-b"));
        assert!(!note.concerns(OrgId::new(), &["u:1".into()], "dev-b"));
    }

    #[test]
    fn a_revocation_ends_its_device_and_a_disabling_every_device_of_its_user() {
        let org = OrgId::new();
        let mut revoked = Note::new(org, 0, None, BTreeSet::new());
        revoked.revoked = Some("dev-a".into());
        assert!(revoked.ends("ana", "dev-a"));
        assert!(!revoked.ends("ana", "dev-b"));
        assert!(!revoked.concerns(org, &["u:ana".into()], "dev-b"));
        let mut disabled = Note::new(org, 0, None, BTreeSet::new());
        disabled.disabled = Some("ana".into());
        assert!(disabled.ends("ana", "dev-a") && disabled.ends("ana", "dev-b"));
        assert!(!disabled.ends("ben", "dev-c"));
        assert!(!disabled.concerns(org, &["u:ben".into()], "dev-c"));
    }

    #[test]
    fn a_wide_push_is_announced_to_the_whole_organisation_and_fits_a_notification() {
        let org = OrgId::new();
        let many: BTreeSet<String> = (0..500).map(|i| format!("u:{:036}", i)).collect();
        let note = Note::new(org, 1, None, many);
        assert!(note.principals.is_empty());
        assert!(note.concerns(org, &["u:anyone".into()], "dev"));
        let few: BTreeSet<String> = (0..MAX_PRINCIPALS)
            .map(|_| format!("u:{}", uuid::Uuid::now_v7()))
            .collect();
        let payload = serde_json::to_string(&Note::new(org, i64::MAX, Some("x".repeat(36)), few))
            .expect("json");
        assert!(payload.len() < 8_000, "{} bytes", payload.len());
    }
}
