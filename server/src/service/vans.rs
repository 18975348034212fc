//! Van stock for the back office: reading a technician's van and filling it.
//!
//! A replenishment is an ordinary Automerge change to the van's record,
//! written on the manager's behalf through the push path a device uses
//! ([`super::sync::push_since`]), so the model's rules apply to it, the audit
//! trail names the manager, and the technician's device receives it with its
//! next sync. The first replenishment of a technician who has no van yet
//! creates it (owned by the technician, in their team and territory).

use fieldsync_core::model::van_stock::{self, Replenishment};
use fieldsync_core::model::{
    DeviceTime, Product, RecordDoc, RecordKind, RecordMeta, Role, VanStock,
};
use fieldsync_core::{RecordId, UserId};

use super::Context;
use crate::db::records;
use crate::db::vans as db_vans;
use crate::domain::plan as plan_rules;
use crate::domain::vans::{self, BalanceRow, VanView};
use crate::domain::{Caller, Error, Result};

/// What the office puts in (or, negative, takes out of) a van.
#[derive(Debug, Clone)]
pub struct NewReplenishment {
    /// The product.
    pub product: RecordId,
    /// The quantity, as text (`"2"`, `"1.5"`, `"-1"`).
    pub qty: String,
    /// The serial numbers of a serialized part, one per unit.
    pub serials: Vec<String>,
    /// A note for the technician.
    pub note: Option<String>,
}

/// The van of `technician`, as the caller may read it; `NotFound` when the
/// technician has none (or is out of the caller's scope).
pub async fn van(ctx: &Context, caller: &Caller, technician: UserId) -> Result<VanView> {
    vans::may_manage(caller.role())?;
    let (doc, _) = read_van(ctx, caller, technician)
        .await?
        .ok_or(Error::NotFound)?;
    view(ctx, caller, technician, &doc).await
}

/// Puts parts in the technician's van (creating the van on the first
/// replenishment); answers the van after it.
pub async fn replenish(
    ctx: &Context,
    caller: &Caller,
    technician: UserId,
    new: NewReplenishment,
) -> Result<VanView> {
    vans::may_manage(caller.role())?;
    let qty = vans::parse_qty(&new.qty)?;
    let serials: Vec<String> = new
        .serials
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let note = plan_rules::optional_text("note", new.note.as_deref())?;
    let writer = caller.on_behalf();
    let product = read_product(ctx, &writer, new.product)
        .await?
        .ok_or(Error::NotFound)?;
    vans::check_replenishment(&product, qty, &serials)?;
    let tech = super::plan::planned_people(ctx, caller)
        .await?
        .into_iter()
        .find(|p| p.id == technician)
        .ok_or(Error::NotFound)?;
    if tech.role != Role::Technician {
        return Err(Error::BadRequest(format!(
            "{} is not a technician: vans are technicians'",
            tech.name
        )));
    }
    let now = DeviceTime::now_utc();
    let (mut doc, before) = match read_van(ctx, &writer, technician).await? {
        Some((mut doc, _)) => {
            doc.set_actor(writer.actor_id.clone());
            let before = doc.heads();
            (doc, before)
        }
        None => {
            let no = |what: &str| {
                Error::BadRequest(format!("{} has no {what}: give them one first", tech.name))
            };
            let meta = RecordMeta {
                id: RecordId::new(),
                org: caller.org,
                owner: technician,
                team: tech.team.ok_or_else(|| no("team"))?,
                territory: tech.territory.ok_or_else(|| no("territory"))?,
            };
            let van = VanStock::new(meta, format!("{}'s van", tech.name));
            let doc = RecordDoc::create(&van, writer.actor_id.clone(), now)
                .map_err(|e| Error::Conflict(e.to_string()))?;
            (doc, Vec::new())
        }
    };
    van_stock::replenish(
        &mut doc,
        &writer.actor,
        now,
        Replenishment {
            product_id: new.product,
            qty,
            serials,
            at: now,
            note,
        },
    )
    .map_err(|e| Error::BadRequest(e.to_string()))?;
    let id = doc.id();
    super::sync::push_since(ctx, &writer, id, RecordKind::VanStock, &mut doc, &before).await?;
    // The stored van, with whatever the technician's device pushed meanwhile.
    match read_van(ctx, &writer, technician).await? {
        Some((stored, _)) => view(ctx, caller, technician, &stored).await,
        None => view(ctx, caller, technician, &doc).await,
    }
}

async fn read_van(
    ctx: &Context,
    writer: &Caller,
    technician: UserId,
) -> Result<Option<(RecordDoc, RecordId)>> {
    let Some(id) = db_vans::van_of(&ctx.db, writer.org, technician).await? else {
        return Ok(None);
    };
    match records::readable_doc(&ctx.db, writer, id).await? {
        Some((RecordKind::VanStock, bytes)) => {
            Ok(Some((RecordDoc::load(&bytes).map_err(stored)?, id)))
        }
        _ => Ok(None),
    }
}

async fn read_product(ctx: &Context, writer: &Caller, id: RecordId) -> Result<Option<Product>> {
    match records::readable_doc(&ctx.db, writer, id).await? {
        Some((RecordKind::Product, bytes)) => Ok(Some(
            RecordDoc::load(&bytes)
                .and_then(|d| d.read::<Product>())
                .map_err(stored)?,
        )),
        _ => Ok(None),
    }
}

async fn view(
    ctx: &Context,
    caller: &Caller,
    technician: UserId,
    doc: &RecordDoc,
) -> Result<VanView> {
    let van: VanStock = doc.read().map_err(stored)?;
    let writer = caller.on_behalf();
    let mut balances = Vec::new();
    for b in van.balances() {
        let product = read_product(ctx, &writer, b.product_id).await?;
        balances.push(BalanceRow::of(b, product.as_ref()));
    }
    balances.sort_by(|a, b| a.sku.cmp(&b.sku).then(a.product_id.cmp(&b.product_id)));
    Ok(VanView {
        van_id: doc.id().to_string(),
        technician: technician.to_string(),
        name: van.name,
        balances,
    })
}

/// A stored document that does not read: the server's fault, not the caller's.
fn stored(e: fieldsync_core::model::ModelError) -> Error {
    Error::internal(format!("a stored record does not load: {e}"))
}
