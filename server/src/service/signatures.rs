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
//! Which records carry a signature is `domain::attachments::signed`.

use fieldsync_core::model::signature::{self, JobSummary, SignatureVerdict};
use fieldsync_core::model::{Assignment, ChecklistResponse, Order, RecordDoc, ServiceJob};
use fieldsync_core::{OrgId, RecordId};

use crate::db::{Database, attachments, records};
use crate::domain::attachments::{Signed, signed};
use crate::domain::{Caller, Error, Result};

/// A stored document that cannot be read as its kind: a bug or damaged data.
fn unreadable(id: RecordId, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("record {id} cannot be read: {e}"))
}

/// A record's merged document within the organisation, whatever its scope.
async fn org_doc(db: &Database, org: OrgId, id: RecordId) -> Result<Option<RecordDoc>> {
    attachments::org_doc(db, org, id)
        .await?
        .map(|b| RecordDoc::load(&b).map_err(|e| unreadable(id, e)))
        .transpose()
}

/// The verdict on the signature of `record_id` (an order or an assignment) as
/// the server holds it now; `None` when the caller cannot read the record.
/// Another kind of record is refused (`bad_request`): it carries no signature.
pub async fn signature_verdict(
    db: &Database,
    caller: &Caller,
    record_id: RecordId,
) -> Result<Option<SignatureVerdict>> {
    let Some((kind, bytes)) = records::readable_doc(db, caller, record_id).await? else {
        return Ok(None);
    };
    let doc = RecordDoc::load(&bytes).map_err(|e| unreadable(record_id, e))?;
    match signed(kind)? {
        Signed::Order => {
            let order: Order = doc.read_stateful().map_err(|e| unreadable(record_id, e))?;
            Ok(Some(signature::order_verdict(&order)))
        }
        Signed::Assignment => {
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
    }
}
