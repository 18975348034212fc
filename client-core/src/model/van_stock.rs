//! Van stock: a technician's van as a stock location.
//!
//! One `van_stock` record per van, owned by the technician who drives it (so
//! it reaches their devices and their team's managers). Its balance per
//! product is never stored: it is derived from two maps of movements keyed by
//! entry id, which only ever grow:
//!
//! - `replenishments`, written by the back office (a manager, an
//!   administrator, the server): parts put in the van, with the serial
//!   numbers of serialized parts;
//! - `consumptions`, written by the technician when they book a part used on
//!   an assignment "from the van": keyed by the assignment's part entry id,
//!   naming the assignment, the quantity and the serial.
//!
//! Movements made offline on two devices (the office replenishing while the
//! technician uses parts) are distinct map keys, so they merge without a
//! conflict, and every replica computes the same balance. A stored counter
//! would lose one of two concurrent edits; an Automerge counter would keep the
//! sum but not which serial went where or which job used it.
//!
//! Field work is never blocked by the stock: a part used from an empty van is
//! recorded all the same, and the balance goes negative (a serial the van
//! never received is listed as unknown) for the office to reconcile with a
//! replenishment. A technician may add consumptions but never change or
//! remove a movement ([`check_movements`], applied on the device and again on
//! the server to every push); the office may correct its own mistakes with a
//! replenishment of a negative quantity.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::types::{Actor, DeviceTime, Qty, RecordKind, RecordMeta, Role};
use super::{ModelError, Record, RecordDoc, TransitionError, ValidationError};
use crate::ids::RecordId;

/// Longest serial number accepted.
const MAX_SERIAL: usize = 128;

/// Parts the back office put in the van (or, with a negative quantity, took
/// back: a correction or a return to the warehouse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replenishment {
    /// The product.
    pub product_id: RecordId,
    /// Quantity put in (negative: taken out).
    pub qty: Qty,
    /// The serial numbers of a serialized part put in (or taken out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serials: Vec<String>,
    /// When.
    pub at: DeviceTime,
    /// A note for the technician (delivery number, reason of a correction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A part taken from the van for a job, keyed by the assignment's part entry id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumption {
    /// The product.
    pub product_id: RecordId,
    /// Quantity used (positive).
    pub qty: Qty,
    /// The serial number of a serialized part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The assignment the part was used on.
    pub assignment_id: RecordId,
    /// When.
    pub at: DeviceTime,
}

/// A technician's van.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VanStock {
    /// Ownership: `owner` is the technician who drives the van.
    pub meta: RecordMeta,
    /// The van's label (a plate number), set by the back office.
    #[serde(default)]
    pub name: String,
    /// What the back office put in, by entry id.
    #[serde(default)]
    pub replenishments: BTreeMap<RecordId, Replenishment>,
    /// What the technician used, by the assignment's part entry id.
    #[serde(default)]
    pub consumptions: BTreeMap<RecordId, Consumption>,
}

/// The stock of one product in a van.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// The product.
    pub product_id: RecordId,
    /// Put in minus used; negative when more was used than the van received
    /// (for the office to reconcile).
    pub qty: Qty,
    /// Serials in the van: received and not used, sorted.
    pub serials: Vec<String>,
    /// Serials used that the van never received (or used twice), sorted: to
    /// reconcile.
    pub unknown_serials: Vec<String>,
}

fn clean_serial(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn check_serial(field: String, s: &str) -> Result<(), ValidationError> {
    if s.trim().is_empty() || s.trim() != s {
        return Err(ValidationError::new(
            field,
            "a serial number is not blank and has no surrounding spaces",
        ));
    }
    if s.chars().count() > MAX_SERIAL {
        return Err(ValidationError::new(
            field,
            format!("a serial number has at most {MAX_SERIAL} characters"),
        ));
    }
    Ok(())
}

impl VanStock {
    /// An empty van of `meta.owner`.
    pub fn new(meta: RecordMeta, name: impl Into<String>) -> Self {
        Self {
            meta,
            name: name.into(),
            replenishments: BTreeMap::new(),
            consumptions: BTreeMap::new(),
        }
    }

    /// The balance of every product the van ever held or used, by product id.
    pub fn balances(&self) -> Vec<Balance> {
        #[derive(Default)]
        struct Acc {
            qty: i64,
            serials: BTreeMap<String, i64>,
        }
        let mut by: BTreeMap<RecordId, Acc> = BTreeMap::new();
        for r in self.replenishments.values() {
            let acc = by.entry(r.product_id).or_default();
            acc.qty = acc.qty.saturating_add(r.qty.raw());
            let sign = if r.qty.raw() < 0 { -1 } else { 1 };
            for s in &r.serials {
                *acc.serials.entry(s.clone()).or_insert(0) += sign;
            }
        }
        for c in self.consumptions.values() {
            let acc = by.entry(c.product_id).or_default();
            acc.qty = acc.qty.saturating_sub(c.qty.raw());
            if let Some(s) = &c.serial {
                *acc.serials.entry(s.clone()).or_insert(0) -= 1;
            }
        }
        by.into_iter()
            .map(|(product_id, acc)| Balance {
                product_id,
                qty: Qty(acc.qty),
                serials: acc
                    .serials
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(s, _)| s.clone())
                    .collect(),
                unknown_serials: acc
                    .serials
                    .iter()
                    .filter(|(_, n)| **n < 0)
                    .map(|(s, _)| s.clone())
                    .collect(),
            })
            .collect()
    }

    /// The balance of one product (zero for a product the van never held).
    pub fn balance_of(&self, product_id: RecordId) -> Qty {
        self.balances()
            .into_iter()
            .find(|b| b.product_id == product_id)
            .map_or(Qty(0), |b| b.qty)
    }
}

impl Record for VanStock {
    const KIND: RecordKind = RecordKind::VanStock;

    fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    fn validate(&self) -> Result<(), ValidationError> {
        for (id, r) in &self.replenishments {
            if r.qty.raw() == 0 {
                return Err(ValidationError::new(
                    format!("replenishments.{id}.qty"),
                    "a replenishment moves some quantity",
                ));
            }
            for (i, s) in r.serials.iter().enumerate() {
                check_serial(format!("replenishments.{id}.serials.{i}"), s)?;
            }
            let distinct: BTreeSet<&String> = r.serials.iter().collect();
            if distinct.len() != r.serials.len() {
                return Err(ValidationError::new(
                    format!("replenishments.{id}.serials"),
                    "a serial number is listed twice",
                ));
            }
            if !r.serials.is_empty()
                && i64::try_from(r.serials.len())
                    .ok()
                    .and_then(|n| n.checked_mul(Qty::SCALE))
                    != Some(r.qty.raw().abs())
            {
                return Err(ValidationError::new(
                    format!("replenishments.{id}.serials"),
                    "a serialized part moves one unit per serial number",
                ));
            }
        }
        for (id, c) in &self.consumptions {
            if c.qty.raw() <= 0 {
                return Err(ValidationError::new(
                    format!("consumptions.{id}.qty"),
                    "quantity must be positive",
                ));
            }
            if let Some(s) = &c.serial {
                check_serial(format!("consumptions.{id}.serial"), s)?;
                if c.qty != Qty::units(1) {
                    return Err(ValidationError::new(
                        format!("consumptions.{id}.qty"),
                        "a part with a serial number is one unit",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Puts parts in the van (the back office); returns the entry id. Serial
/// numbers are trimmed; a serialized part moves one unit per serial.
pub fn replenish(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    mut entry: Replenishment,
) -> Result<RecordId, ModelError> {
    if !actor.role.is_back_office() {
        return Err(TransitionError::precondition("the back office replenishes vans").into());
    }
    entry.serials = entry
        .serials
        .iter()
        .filter_map(|s| clean_serial(s))
        .collect();
    let id = RecordId::new();
    doc.update_by::<VanStock>(Some(actor.role), at, |v| {
        v.replenishments.insert(id, entry);
    })?;
    Ok(id)
}

/// Records a part taken from the van for a job, under the assignment's part
/// entry id `entry` (so the two records name each other). Never refused for
/// want of stock: the balance goes negative for the office to reconcile.
/// Refused for a technician who does not drive this van.
pub fn consume(
    doc: &mut RecordDoc,
    actor: &Actor,
    at: DeviceTime,
    entry: RecordId,
    mut used: Consumption,
) -> Result<(), ModelError> {
    let van: VanStock = doc.read()?;
    if actor.role == Role::Technician && actor.user != van.meta.owner {
        return Err(TransitionError::precondition(
            "a technician takes parts from their own van only",
        )
        .into());
    }
    if van.consumptions.contains_key(&entry) {
        return Err(ValidationError::new(
            format!("consumptions.{entry}"),
            "this part is already booked from the van",
        )
        .into());
    }
    used.serial = used.serial.as_deref().and_then(clean_serial);
    doc.update_by::<VanStock>(Some(actor.role), at, |v| {
        v.consumptions.insert(entry, used);
    })?;
    Ok(())
}

/// The van's movements only grow for a field user: a push (or an edit on the
/// device) by a technician that changes or removes a replenishment or a
/// consumption already there is refused. `before` is `None` for a new record.
pub fn check_movements(before: Option<&Json>, after: &Json, role: Role) -> Result<(), String> {
    if role.is_back_office() {
        return Ok(());
    }
    let Some(before) = before else {
        return Ok(());
    };
    for map in ["replenishments", "consumptions"] {
        let Some(old) = before.get(map).and_then(Json::as_object) else {
            continue;
        };
        let new = after.get(map).and_then(Json::as_object);
        for (id, entry) in old {
            if new.and_then(|n| n.get(id)) != Some(entry) {
                return Err(format!(
                    "a {role} may not change or remove a van's {map}; the back office corrects \
                     the stock with a replenishment"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
    use automerge::ActorId;

    fn van(owner: UserId) -> RecordDoc {
        let meta = RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner,
            team: TeamId::new(),
            territory: TerritoryId::new(),
        };
        RecordDoc::create(
            &VanStock::new(meta, "B-FS 42"),
            ActorId::random(),
            DeviceTime::utc(0),
        )
        .expect("create")
    }

    fn put(product: RecordId, units: i64, serials: &[&str]) -> Replenishment {
        Replenishment {
            product_id: product,
            qty: Qty::units(units),
            serials: serials.iter().map(|s| (*s).to_owned()).collect(),
            at: DeviceTime::utc(1),
            note: None,
        }
    }

    fn used(product: RecordId, serial: Option<&str>) -> Consumption {
        Consumption {
            product_id: product,
            qty: Qty::units(1),
            serial: serial.map(str::to_owned),
            assignment_id: RecordId::new(),
            at: DeviceTime::utc(2),
        }
    }

    #[test]
    fn the_balance_is_what_was_put_in_minus_what_was_used_and_may_go_negative() {
        let tech = Actor::on_device(UserId::new(), Role::Technician, DeviceId::new());
        let office = Actor::without_device(UserId::new(), Role::Manager);
        let mut doc = van(tech.user);
        let (pump, seal) = (RecordId::new(), RecordId::new());
        replenish(
            &mut doc,
            &office,
            DeviceTime::utc(1),
            put(pump, 2, &["P-1", " P-2 "]),
        )
        .expect("replenish");
        consume(
            &mut doc,
            &tech,
            DeviceTime::utc(2),
            RecordId::new(),
            used(pump, Some("P-2")),
        )
        .expect("used");
        consume(
            &mut doc,
            &tech,
            DeviceTime::utc(3),
            RecordId::new(),
            used(seal, None),
        )
        .expect("an empty van does not block the job");
        consume(
            &mut doc,
            &tech,
            DeviceTime::utc(4),
            RecordId::new(),
            used(pump, Some("P-9")),
        )
        .expect("an unknown serial is recorded");
        let v: VanStock = doc.read().expect("read");
        let b = v.balances();
        let pump_b = b.iter().find(|b| b.product_id == pump).expect("pump");
        assert_eq!(pump_b.qty, Qty::units(0));
        assert_eq!(pump_b.serials, vec!["P-1".to_owned()]);
        assert_eq!(pump_b.unknown_serials, vec!["P-9".to_owned()]);
        assert_eq!(v.balance_of(seal), Qty::units(-1));
    }

    #[test]
    fn only_the_office_replenishes_and_only_the_driver_takes_parts() {
        let tech = Actor::on_device(UserId::new(), Role::Technician, DeviceId::new());
        let other = Actor::on_device(UserId::new(), Role::Technician, DeviceId::new());
        let mut doc = van(tech.user);
        let p = RecordId::new();
        let err = replenish(&mut doc, &tech, DeviceTime::utc(1), put(p, 1, &[]))
            .expect_err("a technician does not replenish");
        assert!(err.to_string().contains("back office"), "{err}");
        let err = consume(
            &mut doc,
            &other,
            DeviceTime::utc(1),
            RecordId::new(),
            used(p, None),
        )
        .expect_err("not their van");
        assert!(err.to_string().contains("own van"), "{err}");
    }

    #[test]
    fn concurrent_movements_merge_without_loss() {
        let tech = Actor::on_device(UserId::new(), Role::Technician, DeviceId::new());
        let office = Actor::without_device(UserId::new(), Role::Admin);
        let mut phone = van(tech.user);
        let mut server = RecordDoc::from_automerge(phone.automerge().fork()).expect("fork");
        server.set_actor(ActorId::random());
        let p = RecordId::new();
        replenish(&mut server, &office, DeviceTime::utc(1), put(p, 5, &[])).expect("put");
        consume(
            &mut phone,
            &tech,
            DeviceTime::utc(1),
            RecordId::new(),
            used(p, None),
        )
        .expect("used");
        consume(
            &mut phone,
            &tech,
            DeviceTime::utc(2),
            RecordId::new(),
            used(p, None),
        )
        .expect("used");
        phone.merge(&mut server).expect("merge");
        let v: VanStock = phone.read().expect("read");
        assert_eq!(v.balance_of(p), Qty::units(3));
        assert!(phone.conflicts().expect("conflicts").is_empty());
    }

    #[test]
    fn a_serialized_replenishment_moves_one_unit_per_serial() {
        let office = Actor::without_device(UserId::new(), Role::Manager);
        let mut doc = van(UserId::new());
        let err = replenish(
            &mut doc,
            &office,
            DeviceTime::utc(1),
            put(RecordId::new(), 3, &["A"]),
        )
        .expect_err("3 units, 1 serial");
        assert!(err.to_string().contains("one unit per serial"), "{err}");
    }

    #[test]
    fn a_field_user_may_add_movements_but_not_change_them() {
        let p = RecordId::new().to_string();
        let before = serde_json::json!({"consumptions": {"a": {"product_id": p, "qty": 10000}}});
        let grown = serde_json::json!({"consumptions": {
            "a": {"product_id": p, "qty": 10000},
            "b": {"product_id": p, "qty": 10000},
        }});
        let shrunk = serde_json::json!({"consumptions": {}});
        let changed = serde_json::json!({"consumptions": {"a": {"product_id": p, "qty": 1}}});
        assert!(check_movements(Some(&before), &grown, Role::Technician).is_ok());
        assert!(check_movements(Some(&before), &shrunk, Role::Technician).is_err());
        assert!(check_movements(Some(&before), &changed, Role::Technician).is_err());
        assert!(check_movements(Some(&before), &shrunk, Role::Manager).is_ok());
        assert!(check_movements(None, &changed, Role::Technician).is_ok());
    }
}
