//! Erasure of a person's data (GDPR Art. 17), the pure part: who may erase,
//! and which records are rewritten and how (see
//! `docs/adr/0005-erasure-by-rewrite.md` and `docs/privacy.md`).
//!
//! Given the records that may hold the person's data (`db::erasure` loads
//! them: for a contact, the contact and the records of its account and their
//! children; for a user, the records the user owns or ever changed), [`plan`]
//! decides each one with the shared model (`fieldsync_core::model::erase`):
//!
//! - the person's **fields** in the record (`personal_fields`: the contact's
//!   own fields, an erased user's GPS fixes), and the signature of a record
//!   whose signer ever was the person (name, role, and the image, which is
//!   deleted from the blob store);
//! - the person's **values**: every name, phone and email the contact ever
//!   had (harvested from every state of its history), or the user's name and
//!   email; a record whose history ever held one of them in any text is
//!   rewritten with those texts scrubbed.
//!
//! A record holding neither is left alone. Each rewritten record is a new
//! document of one change by the server, at the next epoch.

use automerge::ActorId;
use fieldsync_core::RecordId;
use fieldsync_core::UserId;
use fieldsync_core::model::erase::{FieldPath, Scrub, Subject, personal_fields, scrub_text};
use fieldsync_core::model::{DeviceTime, RecordDoc, RecordKind, Role};
use serde_json::Value as Json;

use super::{Caller, Error, Result};

/// Longest reason an erasure may be given.
pub const MAX_REASON_CHARS: usize = 500;

/// Only administrators erase, read the erasure log and export a person's data.
pub fn may_erase(caller: &Caller) -> Result<()> {
    match caller.role() {
        Role::Admin | Role::Server => Ok(()),
        _ => Err(Error::Forbidden(
            "only administrators erase and export personal data".into(),
        )),
    }
}

/// The reason an erasure is given (the erasure log keeps it): required, at
/// most [`MAX_REASON_CHARS`].
pub fn reason(text: &str) -> Result<&str> {
    let reason = text.trim();
    if reason.is_empty() {
        return Err(Error::BadRequest(
            "give the reason for the erasure (it is kept in the erasure log)".into(),
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(Error::BadRequest(format!(
            "the reason is at most {MAX_REASON_CHARS} characters"
        )));
    }
    Ok(reason)
}

/// A record that may hold the person's data, as stored.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The record.
    pub id: RecordId,
    /// Its stored document.
    pub doc: Vec<u8>,
}

/// One record's rewrite.
#[derive(Debug)]
pub struct Rewrite {
    /// The record.
    pub id: RecordId,
    /// The new document (`save()` bytes): one change by the server.
    pub doc: Vec<u8>,
    /// That change: (hash, raw bytes), the record's only change-log row.
    pub change: (Vec<u8>, Vec<u8>),
    /// The field paths taken out (told to devices; never the values).
    pub erased: Vec<FieldPath>,
    /// The attachments of this record that are the person's (a signature
    /// image they drew; for an erased contact's own record, the caller adds
    /// the files linked to it alone).
    pub attachments: Vec<String>,
}

/// What an erasure does.
#[derive(Debug, Default)]
pub struct Plan {
    /// The records rewritten.
    pub rewrites: Vec<Rewrite>,
}

/// What identifies an erased user in texts: their name and email.
#[derive(Debug, Clone)]
pub struct UserValues {
    /// Display name.
    pub name: String,
    /// Email.
    pub email: String,
}

/// Decides every candidate. For a contact, the contact's own record must be
/// among them (else not found); for a user, `user` gives the values to scrub.
pub fn plan(
    subject: &Subject,
    candidates: &[Candidate],
    user: Option<&UserValues>,
    server: &ActorId,
    at: DeviceTime,
) -> Result<Plan> {
    let corrupt = |e: &dyn std::fmt::Display| Error::internal(format!("erasure: {e}"));
    let mut docs: Vec<(RecordId, RecordDoc)> = Vec::with_capacity(candidates.len());
    for c in candidates {
        let doc = RecordDoc::load(&c.doc).map_err(|e| corrupt(&e))?;
        docs.push((c.id, doc));
    }
    // The person's values, from every state of their own record's history.
    let mut values: Vec<String> = match subject {
        Subject::Contact(id) => {
            let Some((_, contact)) = docs
                .iter_mut()
                .find(|(d, doc)| d == id && doc.kind() == RecordKind::Contact)
            else {
                return Err(Error::NotFound);
            };
            let fields = personal_fields(contact, subject).map_err(|e| corrupt(&e))?;
            contact.past_values(&fields).map_err(|e| corrupt(&e))?
        }
        Subject::User(_) => user
            .map(|u| vec![u.name.clone(), u.email.clone()])
            .unwrap_or_default(),
    };
    values.retain(|v| {
        v.trim().chars().count() >= fieldsync_core::model::erase::MIN_SCRUB_VALUE_CHARS
    });
    values.sort();
    values.dedup();
    // Longest first: a value inside another (a name inside an email) must
    // not break the longer one before it is found.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));

    let mut out = Plan::default();
    for (id, mut doc) in docs {
        let mut fields = personal_fields(&doc, subject).map_err(|e| corrupt(&e))?;
        // Every text the record ever held, to find the person's values in
        // its history (a name typed in a note and edited away since).
        let history = doc.past_values(&[Vec::new()]).map_err(|e| corrupt(&e))?;
        let named = history.iter().any(|t| scrub_text(t, &values).is_some());
        // A signature whose signer was the person: name, role and image go.
        let mut attachments = Vec::new();
        let signer = doc
            .past_values(&[vec!["signature".to_owned(), "signer_name".to_owned()]])
            .map_err(|e| corrupt(&e))?;
        if signer.iter().any(|s| scrub_text(s, &values).is_some()) {
            for key in ["signer_name", "signer_role"] {
                fields.push(vec!["signature".to_owned(), key.to_owned()]);
            }
            if let Ok(json) = doc.to_json()
                && let Some(sha) = json
                    .pointer("/signature/image_sha256")
                    .and_then(Json::as_str)
            {
                attachments.push(sha.to_owned());
            }
        }
        fields.sort();
        fields.dedup();
        if fields.is_empty() && !named {
            continue;
        }
        let scrub = Scrub {
            fields: fields.clone(),
            values: values.clone(),
        };
        let mut rewritten = doc
            .rewritten(&scrub, server.clone(), at)
            .map_err(|e| corrupt(&e))?;
        let changes = rewritten.changes_since(&[]);
        let [change] = changes.as_slice() else {
            return Err(corrupt(&"a rewrite is not one change"));
        };
        let change = (change.hash().0.to_vec(), change.raw_bytes().to_vec());
        out.rewrites.push(Rewrite {
            id,
            doc: rewritten.save(),
            change,
            erased: fields,
            attachments,
        });
    }
    Ok(out)
}

/// The name an erased user's account keeps: a pseudonym from their id, so
/// their visits and orders stay attributed to one (unnamed) person.
pub fn pseudonym(user: UserId) -> (String, String) {
    let short: String = user.to_string().chars().take(8).collect();
    (
        format!("Former user {short}"),
        format!("erased-{user}@invalid"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::push::tests::{caller, meta};
    use fieldsync_core::model::{Contact, Order};
    use fieldsync_core::{OrgId, TeamId};

    #[test]
    fn only_administrators_erase_and_only_with_a_reason() {
        let (org, team) = (OrgId::new(), TeamId::new());
        assert!(may_erase(&caller(Role::Manager, org, team)).is_err());
        assert!(may_erase(&caller(Role::Rep, org, team)).is_err());
        assert!(may_erase(&caller(Role::Admin, org, team)).is_ok());
        assert!(reason("  ").is_err());
        assert!(reason(&"x".repeat(MAX_REASON_CHARS + 1)).is_err());
        assert_eq!(reason(" Art. 17 request ").ok(), Some("Art. 17 request"));
    }

    #[test]
    fn the_contact_and_an_order_they_signed_are_rewritten_and_others_left_alone() {
        let (org, team) = (OrgId::new(), TeamId::new());
        let owner = UserId::new();
        let account = RecordId::new();
        let contact = Contact {
            meta: meta(owner, org, team),
            account_id: account,
            name: "Quentin Blorvax".into(),
            role: None,
            phone: Some("+44 7700 900123".into()),
            email: None,
            marketing_consent: false,
            consent: None,
        };
        let cid = contact.meta.id;
        let at = DeviceTime::utc(1);
        let mut c = RecordDoc::create(&contact, ActorId::random(), at).expect("contact");
        let mut order = Order::new(meta(owner, org, team), account, "EUR");
        order.notes = Some("call quentin blorvax before delivery".into());
        let oid = order.meta.id;
        let mut o = RecordDoc::create(&order, ActorId::random(), at).expect("order");
        let other = Order::new(meta(owner, org, team), account, "EUR");
        let mut x = RecordDoc::create(&other, ActorId::random(), at).expect("order");
        let candidates: Vec<Candidate> = [(cid, &mut c), (oid, &mut o), (other.meta.id, &mut x)]
            .into_iter()
            .map(|(id, d)| Candidate { id, doc: d.save() })
            .collect();
        let plan = plan(
            &Subject::Contact(cid),
            &candidates,
            None,
            &ActorId::random(),
            at,
        )
        .expect("plan");
        let ids: Vec<RecordId> = plan.rewrites.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![cid, oid]);
        for r in &plan.rewrites {
            let bytes = &r.doc;
            assert!(
                !bytes.windows(7).any(|w| w.eq_ignore_ascii_case(b"blorvax")),
                "{}",
                r.id
            );
        }
        let missing = super::plan(
            &Subject::Contact(RecordId::new()),
            &candidates,
            None,
            &ActorId::random(),
            at,
        );
        assert!(matches!(missing, Err(Error::NotFound)));
    }
}
