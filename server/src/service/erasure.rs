//! Erasure of a person's data (GDPR Art. 17) and the export of what is held
//! about a contact (Art. 15), for administrators: the CLI (`fieldsync erase`,
//! `fieldsync export-person`), the JSON API and the pages call these.
//!
//! An erasure rewrites every record holding the person's data in one
//! transaction (`db::erasure::erase`, decided by `domain::erasure::plan`),
//! then deletes the person's attachments from the blob store. Devices follow
//! with their next ordinary sync: the rewrite is a new change-log row at a
//! new epoch (see `docs/protocol.md`, "Epochs").

use fieldsync_core::model::erase::Subject;
use fieldsync_core::model::{DeviceTime, RecordDoc, erase::scrub_text};
use fieldsync_core::{RecordId, UserId};
use serde::Serialize;
use uuid::Uuid;

use super::Context;
use crate::db::erasure as rows;
pub use crate::db::erasure::ErasureEntry;
use crate::domain::attachments::{BlobKey, Sha256Hex};
use crate::domain::caller::server_actor;
use crate::domain::erasure::{self, may_erase, pseudonym};
use crate::domain::{Caller, Error, Result};

/// What an erasure did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    /// The erasure log entry.
    pub id: Uuid,
    /// The records rewritten (ids).
    pub records: Vec<String>,
    /// How many attachments were deleted.
    pub attachments: usize,
}

/// Erases a contact's data everywhere: their record keeps its id, account and
/// owner, every other field goes (the name reads `[erased]`); records naming
/// them or whose history holds one of their values are rewritten with those
/// values scrubbed; photos of them and signatures they drew are deleted.
pub async fn erase_contact(
    ctx: &Context,
    caller: &Caller,
    contact: RecordId,
    reason: &str,
) -> Result<Erasure> {
    erase(ctx, caller, Subject::Contact(contact), reason).await
}

/// Erases a user's data (a rep who left): the GPS fixes of their records and
/// status events, their name and email in texts of those records. The account
/// stays, pseudonymised, disabled and signed out everywhere, so their visits
/// and orders remain attributed to one unnamed person.
pub async fn erase_user(
    ctx: &Context,
    caller: &Caller,
    user: UserId,
    reason: &str,
) -> Result<Erasure> {
    erase(ctx, caller, Subject::User(user), reason).await
}

async fn erase(ctx: &Context, caller: &Caller, subject: Subject, reason: &str) -> Result<Erasure> {
    may_erase(caller)?;
    let reason = erasure::reason(reason)?;
    let (user, pseudonymised) = match subject {
        Subject::User(id) => {
            let values = rows::user_values(&ctx.db, caller.org, id)
                .await?
                .ok_or(Error::NotFound)?;
            (Some(values.clone()), Some((values, pseudonym(id))))
        }
        Subject::Contact(_) => (None, None),
    };
    let (_, server) = server_actor(caller.org);
    let erased = {
        let _writer = ctx.gate.enter(&ctx.db).await;
        rows::erase(
            &ctx.db,
            caller.org,
            caller.actor.user,
            &subject,
            reason,
            pseudonymised,
            |candidates| {
                erasure::plan(
                    &subject,
                    candidates,
                    user.as_ref(),
                    &server,
                    DeviceTime::now_utc(),
                )
            },
        )
        .await?
    };
    for sha in &erased.attachments {
        let Some(sha256) = Sha256Hex::parse(sha) else {
            continue;
        };
        let key = BlobKey {
            org: caller.org,
            sha256,
        };
        if let Err(e) = ctx.blobs.delete(&key).await {
            // The row is gone, so nobody can download it; the bytes are
            // named in the log for the operator to remove.
            tracing::error!(sha256 = %sha, error = %e, "an erased attachment could not be deleted from the blob store");
        }
    }
    tracing::info!(
        erasure = %erased.id,
        records = erased.records.len(),
        attachments = erased.attachments.len(),
        "personal data erased"
    );
    Ok(Erasure {
        id: erased.id,
        records: erased.records.iter().map(ToString::to_string).collect(),
        attachments: erased.attachments.len(),
    })
}

/// The newest erasures of the caller's organisation (administrators only).
pub async fn log(ctx: &Context, caller: &Caller, limit: i64) -> Result<Vec<ErasureEntry>> {
    may_erase(caller)?;
    Ok(rows::log(&ctx.db, caller.org, limit.clamp(1, 1_000)).await?)
}

/// Everything held about one contact (GPDR Art. 15), as JSON: their record,
/// every record of their account that names them or holds one of their
/// values, and the attachments linked to their record (administrators only).
pub async fn export_contact(
    ctx: &Context,
    caller: &Caller,
    contact: RecordId,
) -> Result<serde_json::Value> {
    may_erase(caller)?;
    let candidates = rows::contact_records(&ctx.db, caller.org, contact).await?;
    let corrupt = |e: &dyn std::fmt::Display| Error::internal(format!("export: {e}"));
    let mut own = None;
    let mut values = Vec::new();
    let mut docs = Vec::new();
    for c in &candidates {
        let mut doc = RecordDoc::load(&c.doc).map_err(|e| corrupt(&e))?;
        if c.id == contact {
            let fields =
                fieldsync_core::model::erase::personal_fields(&doc, &Subject::Contact(contact))
                    .map_err(|e| corrupt(&e))?;
            values = doc.past_values(&fields).map_err(|e| corrupt(&e))?;
            own = Some(doc.to_json().map_err(|e| corrupt(&e))?);
        } else {
            docs.push((c.id, doc));
        }
    }
    let Some(own) = own else {
        return Err(Error::NotFound);
    };
    let mut related = Vec::new();
    for (id, doc) in docs {
        let json = doc.to_json().map_err(|e| corrupt(&e))?;
        let text = json.to_string();
        let names = json.get("contact_id").and_then(|v| v.as_str()) == Some(&contact.to_string())
            || scrub_text(&text, &values).is_some();
        if names {
            related.push(serde_json::json!({
                "id": id.to_string(),
                "kind": doc.kind().as_str(),
                "record": json,
            }));
        }
    }
    let attachments = rows::attachments_of(&ctx.db, caller.org, contact).await?;
    Ok(serde_json::json!({
        "contact": own,
        "values_in_history": values,
        "records": related,
        "attachments": attachments,
    }))
}
