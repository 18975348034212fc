//! The technician's van and settling a field clash from the app.
//!
//! The van is a `van_stock` record the office fills (replenishments) and the
//! technician draws from: booking a part "from the van" (`add_part` with the
//! van's id) records the part on the assignment and a consumption in the van,
//! keyed by the same entry id, through the model's `van_stock::consume`. The
//! balance is derived from those movements (never a stored counter), so the
//! office's replenishments and the parts used offline merge without loss; an
//! empty van never blocks the job, its balance goes negative for the office.
//!
//! A clash is a field two devices wrote offline (a timer stopped on the phone
//! and on the tablet). `conflicts` lists them; `resolve_conflict` keeps one
//! value with the model's `RecordDoc::keep_value` (a status clash with
//! `resolve_status_by_name`, which only the back office may do), checked
//! against the write rules the server applies again.

use fieldsync_core::model::van_stock::{self, Consumption};
use fieldsync_core::model::{Actor, PartUsed, Product, RecordKind, Role, VanStock, rules};
use fieldsync_core::{Qty, RecordId};

use crate::client::{FieldsyncClient, now};
use crate::error::{FieldsyncError, parse_id};
use crate::types::{ConflictItem, VanBalanceItem, VanStockItem};

impl FieldsyncClient {
    /// The van `id`, if the device holds it and `actor` may take parts from it.
    pub(crate) fn usable_van(
        &self,
        actor: &Actor,
        id: RecordId,
    ) -> Result<RecordId, FieldsyncError> {
        let van: VanStock = self
            .store()
            .read(id)
            .map_err(|_| FieldsyncError::InvalidArgument {
                detail: format!("{id} is not a van on this device"),
            })?;
        if actor.role == Role::Technician && van.meta.owner != actor.user {
            return Err(FieldsyncError::Transition {
                reason: "a technician takes parts from their own van only".into(),
            });
        }
        Ok(id)
    }

    /// Records in the van what was booked on the assignment as `entry`.
    pub(crate) fn take_from_van(
        &self,
        actor: &Actor,
        van: RecordId,
        assignment: RecordId,
        entry: RecordId,
        part: &PartUsed,
    ) -> Result<(), FieldsyncError> {
        let used = Consumption {
            product_id: part.product_id,
            qty: part.qty,
            serial: part.serial.clone(),
            assignment_id: assignment,
            at: part.at,
        };
        self.store()
            .act(van, |d| van_stock::consume(d, actor, now(), entry, used))?;
        Ok(())
    }
}

#[uniffi::export]
impl FieldsyncClient {
    /// Adds a product to the territory's catalogue (managers and
    /// administrators: the write rules refuse it to field users, here and on
    /// the server); `serialized` parts are tracked by serial number in vans.
    pub fn create_product(
        &self,
        sku: String,
        name: String,
        unit: String,
        serialized: bool,
        spare_part: bool,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        if !rules::may_ever_write(RecordKind::Product, "sku", me.actor.role) {
            return Err(FieldsyncError::Transition {
                reason: format!("a {} may not add to the catalogue", me.actor.role),
            });
        }
        let p = Product {
            meta: self.meta(&me, None)?,
            sku: sku.trim().to_owned(),
            name: name.trim().to_owned(),
            unit: unit.trim().to_owned(),
            serialized,
            spare_part,
            active: true,
        };
        Ok(self.store().create(&p, now())?.to_string())
    }

    /// The caller's van with its balance per product (`None` when the office
    /// has not set one up yet: parts are then booked without a van).
    pub fn van_stock(&self) -> Result<Option<VanStockItem>, FieldsyncError> {
        let me = self.me()?;
        let Some(p) = self
            .store()
            .all_of(RecordKind::VanStock)?
            .into_iter()
            .filter(|p| !p.deleted && p.owner == Some(me.actor.user))
            .min_by_key(|p| p.id)
        else {
            return Ok(None);
        };
        let van: VanStock = self.store().read(p.id)?;
        let mut balances: Vec<VanBalanceItem> = van
            .balances()
            .into_iter()
            .map(|b| {
                let product: Option<Product> = self.store().read(b.product_id).ok();
                VanBalanceItem {
                    product_id: b.product_id.to_string(),
                    sku: product.as_ref().map(|p| p.sku.clone()).unwrap_or_default(),
                    name: product.map(|p| p.name).unwrap_or_default(),
                    quantity: b.qty.raw() as f64 / Qty::SCALE as f64,
                    serials: b.serials,
                    unknown_serials: b.unknown_serials,
                }
            })
            .collect();
        balances.sort_by(|a, b| a.sku.cmp(&b.sku).then(a.product_id.cmp(&b.product_id)));
        Ok(Some(VanStockItem {
            id: p.id.to_string(),
            name: van.name,
            balances,
        }))
    }

    /// Settles a clash on `field` of a record (as `conflicts` lists it) by
    /// keeping `keep`, one of its values as `conflicts` gives them (JSON
    /// text); answers the clashes left. A status clash is the back office's
    /// (a technician is refused with a transition error); any other field the
    /// caller may write in the record's status.
    #[uniffi::method(default(reason = None))]
    pub fn resolve_conflict(
        &self,
        record_id: String,
        field: String,
        keep: String,
        reason: Option<String>,
    ) -> Result<Vec<ConflictItem>, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("record", &record_id)?;
        let value: serde_json::Value =
            serde_json::from_str(&keep).map_err(|_| FieldsyncError::InvalidArgument {
                detail: format!("{keep:?} is not one of the values conflicts() lists"),
            })?;
        self.store().act(id, |d| {
            if field == "status" {
                let status = value.as_str().unwrap_or_default().to_owned();
                d.resolve_status_by_name(
                    &me.actor,
                    &status,
                    now(),
                    reason.unwrap_or_else(|| format!("kept {status}")),
                )
                .map(|_| ())
            } else {
                d.keep_value(me.actor.role, &field, &value, now())
                    .map(|_| ())
            }
        })?;
        self.conflicts(record_id)
    }
}
