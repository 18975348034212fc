//! Signature verdicts for the managers' pages: does the customer's signature
//! on an order or a job still match what the customer saw?
//!
//! The verdict comes from the shared model (`fieldsync_core::model::signature`,
//! built without the device runtime), computed on the server's merged copy of
//! the records, so the server and every device agree. A job signature is kept
//! on the technician's assignment and covers the job, the assignment and the
//! assignment's checklist response; the assignment is read in the caller's
//! scope, and the job and the checklist response it names are read from the
//! same organisation (they are part of what was signed, whoever may list them).

use fieldsync_core::model::signature::{self, JobSummary, SignatureVerdict};
use fieldsync_core::model::{Assignment, ChecklistResponse, Order, RecordDoc, ServiceJob};
use fieldsync_core::{OrgId, RecordId, RecordKind};

use crate::db::{Database, DbError};
use crate::on_pool;
use crate::store::{self, Caller};

/// Why no verdict could be given.
#[derive(Debug, thiserror::Error)]
pub enum VerdictError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The record is neither an order nor an assignment.
    #[error("a {0} carries no signature; ask about an order or an assignment")]
    NotSigned(RecordKind),
    /// A stored document could not be read as its kind.
    #[error("record {id} cannot be read: {detail}")]
    Unreadable {
        /// The record.
        id: RecordId,
        /// What failed.
        detail: String,
    },
}

fn unreadable(id: RecordId, e: impl std::fmt::Display) -> VerdictError {
    VerdictError::Unreadable {
        id,
        detail: e.to_string(),
    }
}

/// A record's merged document within the organisation, whatever its scope.
async fn org_doc(
    db: &Database,
    org: OrgId,
    id: RecordId,
) -> Result<Option<RecordDoc>, VerdictError> {
    let bytes: Option<Vec<u8>> = on_pool!(db, |pool, uuid| {
        sqlx::query_scalar("SELECT doc FROM records WHERE id = $1 AND org_id = $2")
            .bind(uuid(*id.as_uuid()))
            .bind(uuid(*org.as_uuid()))
            .fetch_optional(pool)
            .await
            .map_err(DbError::from)?
    });
    bytes
        .map(|b| RecordDoc::load(&b).map_err(|e| unreadable(id, e)))
        .transpose()
}

/// The verdict on the signature of `record_id` (an order or an assignment) as
/// the server holds it now; `None` when the caller cannot read the record.
pub async fn signature_verdict(
    db: &Database,
    caller: &Caller,
    record_id: RecordId,
) -> Result<Option<SignatureVerdict>, VerdictError> {
    let Some((kind, bytes)) = store::readable_doc(db, caller, record_id).await? else {
        return Ok(None);
    };
    let doc = RecordDoc::load(&bytes).map_err(|e| unreadable(record_id, e))?;
    match kind {
        RecordKind::Order => {
            let order: Order = doc.read_stateful().map_err(|e| unreadable(record_id, e))?;
            Ok(Some(signature::order_verdict(&order)))
        }
        RecordKind::Assignment => {
            let assignment: Assignment =
                doc.read_stateful().map_err(|e| unreadable(record_id, e))?;
            let job_id = assignment.job_id;
            let Some(job_doc) = org_doc(db, caller.org, job_id).await? else {
                // The job never reached the server: nothing to compare with.
                return Ok(Some(signature::verdict(
                    assignment.signature.as_ref(),
                    String::new(),
                )));
            };
            let job: ServiceJob = job_doc.read_stateful().map_err(|e| unreadable(job_id, e))?;
            let checklist = match assignment.checklist_response_id {
                Some(id) => match org_doc(db, caller.org, id).await? {
                    Some(d) => Some(
                        d.read::<ChecklistResponse>()
                            .map_err(|e| unreadable(id, e))?,
                    ),
                    None => None,
                },
                None => None,
            };
            Ok(Some(signature::job_verdict(&JobSummary {
                job: &job,
                assignment: &assignment,
                checklist: checklist.as_ref(),
            })))
        }
        other => Err(VerdictError::NotSigned(other)),
    }
}
