//! Contacts: people at an account. Personal data: they are subject to erasure.

use serde::{Deserialize, Serialize};

use super::types::{RecordKind, RecordMeta};
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
    /// Consent to be contacted for marketing.
    #[serde(default)]
    pub marketing_consent: bool,
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
        Ok(())
    }
}
