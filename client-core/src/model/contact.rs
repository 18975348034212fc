//! Contacts: people at an account. Personal data: they are subject to erasure.
//!
//! Consent to be contacted is recorded with its evidence: granted or
//! withdrawn, when, and how (a paper form, a call, the app). Documents made
//! before consent was recorded this way have no `consent` key and load with
//! none ("not asked"); `marketing_consent` stays for them and for old apps.

use serde::{Deserialize, Serialize};

use super::types::{DeviceTime, RecordKind, RecordMeta};
use super::{Record, ValidationError};
use crate::ids::RecordId;

/// A person at a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Ownership.
    pub meta: RecordMeta,
    /// Their account.
    pub account_id: RecordId,
    /// Full name.
    pub name: String,
    /// Role at the customer, e.g. "buyer".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Consent to be contacted for marketing (kept in step with `consent`
    /// by [`Contact::record_consent`]; read by apps that predate it).
    #[serde(default)]
    pub marketing_consent: bool,
    /// The contact's last consent decision with its evidence; `None`: never asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
}

/// Whether a contact agreed to be contacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    /// They agreed.
    Granted,
    /// They took their agreement back (or refused).
    Withdrawn,
}

impl ConsentStatus {
    /// The name used in documents, CSV files and forms.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::Granted => "granted",
            ConsentStatus::Withdrawn => "withdrawn",
        }
    }
}

impl std::str::FromStr for ConsentStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "granted" => Ok(ConsentStatus::Granted),
            "withdrawn" => Ok(ConsentStatus::Withdrawn),
            other => Err(format!("{other:?} is not a consent: granted or withdrawn")),
        }
    }
}

/// A consent decision and its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// Granted or withdrawn.
    pub status: ConsentStatus,
    /// When the contact said so.
    pub at: DeviceTime,
    /// How it was collected, e.g. "signed form", "phone call".
    pub how: String,
}

impl Contact {
    /// Records a consent decision, keeping `marketing_consent` in step.
    pub fn record_consent(&mut self, consent: Consent) {
        self.marketing_consent = consent.status == ConsentStatus::Granted;
        self.consent = Some(consent);
    }
}

impl Record for Contact {
    const KIND: RecordKind = RecordKind::Contact;

    fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.name.trim().is_empty() {
            return Err(ValidationError::new("name", "a contact needs a name"));
        }
        if self.email.as_deref().is_some_and(|e| !e.contains('@')) {
            return Err(ValidationError::new("email", "not an email address"));
        }
        if self
            .consent
            .as_ref()
            .is_some_and(|c| c.how.trim().is_empty())
        {
            return Err(ValidationError::new(
                "consent.how",
                "say how consent was collected, e.g. \"signed form\"",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OrgId, TeamId, TerritoryId, UserId};
    use crate::model::RecordDoc;

    #[test]
    fn a_contact_saved_before_consent_loads_as_never_asked_and_records_it_later() {
        // A document as an app that predates `consent` wrote it.
        let old = serde_json::json!({
            "meta": {
                "id": RecordId::new(), "org": OrgId::new(), "owner": UserId::new(),
                "team": TeamId::new(), "territory": TerritoryId::new(),
            },
            "account_id": RecordId::new(),
            "name": "Rui",
            "marketing_consent": true,
        });
        let mut contact: Contact = serde_json::from_value(old).expect("an old contact loads");
        assert_eq!(contact.consent, None);
        assert!(contact.marketing_consent);
        let mut doc = RecordDoc::create(&contact, automerge::ActorId::random(), DeviceTime::utc(0))
            .expect("create");
        contact.record_consent(Consent {
            status: ConsentStatus::Withdrawn,
            at: DeviceTime::utc(5),
            how: "phone call".into(),
        });
        doc.update::<Contact>(DeviceTime::utc(6), |c| *c = contact.clone())
            .expect("record it");
        let read: Contact = doc.read().expect("read");
        assert!(!read.marketing_consent, "kept in step");
        assert_eq!(
            read.consent.map(|c| (c.status, c.how)),
            Some((ConsentStatus::Withdrawn, "phone call".to_owned()))
        );
        let empty = Consent {
            status: ConsentStatus::Granted,
            at: DeviceTime::utc(7),
            how: " ".into(),
        };
        let mut bad = read_back(&doc);
        bad.consent = Some(empty);
        assert!(bad.validate().is_err(), "consent says how it was collected");
    }

    fn read_back(doc: &RecordDoc) -> Contact {
        doc.read().expect("read")
    }
}
