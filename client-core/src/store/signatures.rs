//! Customer signatures on the device: the image is kept as an attachment of
//! the signed record, and the signature written on the record is bound to the
//! content as this device holds it (`model::signature` says what is covered).

use super::{DeviceStore, StoreError};
use crate::ids::RecordId;
use crate::model::signature::{self, JobSummary, SignatureVerdict, Signer};
use crate::model::{Actor, Assignment, ChecklistResponse, DeviceTime, Order, ServiceJob};

impl DeviceStore {
    /// The job summary of an assignment as this device holds it: the
    /// assignment, its job and its checklist response (`None` when it names
    /// none or the device lacks it, which makes a signed hash differ).
    fn job_summary_parts(
        &self,
        assignment_id: RecordId,
    ) -> Result<(Assignment, ServiceJob, Option<ChecklistResponse>), StoreError> {
        let assignment: Assignment = self.read_stateful(assignment_id)?;
        let job: ServiceJob = self.read_stateful(assignment.job_id)?;
        let checklist = match assignment.checklist_response_id {
            Some(id) => match self.read::<ChecklistResponse>(id) {
                Ok(c) => Some(c),
                Err(StoreError::NotFound(_)) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        Ok((assignment, job, checklist))
    }

    /// Records the customer's signature on an assignment (one action), bound
    /// to the job summary as it is now. `signer.image_sha256` must name an
    /// attachment this device keeps (attach the drawn image first).
    pub fn sign_job(
        &self,
        assignment_id: RecordId,
        actor: &Actor,
        at: DeviceTime,
        signer: Signer,
    ) -> Result<(), StoreError> {
        self.attachment_info(&signer.image_sha256)?;
        let (_, job, checklist) = self.job_summary_parts(assignment_id)?;
        self.act(assignment_id, |doc| {
            signature::sign_job(doc, actor, at, &job, checklist.as_ref(), signer).map(|_| ())
        })
    }

    /// Whether the assignment's signature still matches its job summary.
    pub fn job_signature_verdict(
        &self,
        assignment_id: RecordId,
    ) -> Result<SignatureVerdict, StoreError> {
        let (assignment, job, checklist) = self.job_summary_parts(assignment_id)?;
        Ok(signature::job_verdict(&JobSummary {
            job: &job,
            assignment: &assignment,
            checklist: checklist.as_ref(),
        }))
    }

    /// Records the customer's signature on an order (one action), bound to its
    /// lines and totals as they are now.
    pub fn sign_order(
        &self,
        order_id: RecordId,
        actor: &Actor,
        at: DeviceTime,
        signer: Signer,
    ) -> Result<(), StoreError> {
        self.attachment_info(&signer.image_sha256)?;
        self.act(order_id, |doc| {
            signature::sign_order(doc, actor, at, signer).map(|_| ())
        })
    }

    /// Whether the order's signature still matches its lines and totals.
    pub fn order_signature_verdict(
        &self,
        order_id: RecordId,
    ) -> Result<SignatureVerdict, StoreError> {
        let order: Order = self.read_stateful(order_id)?;
        Ok(signature::order_verdict(&order))
    }
}
