//! Van stock in the back office: who fills a technician's van, what a
//! replenishment must say, and the van as the office reads it.
//!
//! The van itself and its balances are the shared model's
//! (`fieldsync_core::model::van_stock`): a record owned by the technician
//! whose balances are derived from movements, so the office's replenishments
//! and the parts the technician used offline merge without loss. A part used
//! from an empty van is recorded on the device all the same; the office reads
//! it here as a negative balance (and unknown serials) and reconciles it with
//! a replenishment.

use fieldsync_core::model::{Balance, Product, Qty, Role};
use serde::Serialize;

use super::{Error, Result};

/// Most serial numbers one replenishment carries.
pub const MAX_SERIALS: usize = 500;

/// The back office (managers, administrators) fills vans.
pub fn may_manage(role: Role) -> Result<()> {
    if role.is_back_office() {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "only managers and administrators manage vans".into(),
        ))
    }
}

/// A quantity of whole or decimal units as the API takes it (`"2"`, `"1.5"`,
/// up to four decimals), non-zero: negative takes parts back out.
pub fn parse_qty(text: &str) -> Result<Qty> {
    let bad = || Error::BadRequest(format!("{text:?} is not a quantity (e.g. 2 or 1.5)"));
    let t = text.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 4
        || whole.len() > 9
    {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let frac: i64 = format!("{frac:0<4}").parse().map_err(|_| bad())?;
    let raw = whole * Qty::SCALE + frac;
    if raw == 0 {
        return Err(Error::BadRequest(
            "a replenishment moves some quantity".into(),
        ));
    }
    Ok(Qty(if neg { -raw } else { raw }))
}

/// What a replenishment of `product` must say: a serialized part comes with
/// one serial number per unit, any other part with none.
pub fn check_replenishment(product: &Product, qty: Qty, serials: &[String]) -> Result<()> {
    if serials.len() > MAX_SERIALS {
        return Err(Error::BadRequest(format!(
            "a replenishment carries at most {MAX_SERIALS} serial numbers"
        )));
    }
    let units = i64::try_from(serials.len()).unwrap_or(i64::MAX);
    match (product.serialized, serials.is_empty()) {
        (true, true) => Err(Error::BadRequest(format!(
            "{} is serialized: give the serial number of each unit",
            product.sku
        ))),
        (false, false) => Err(Error::BadRequest(format!(
            "{} is not serialized: give no serial numbers",
            product.sku
        ))),
        (true, false) if units.checked_mul(Qty::SCALE) != Some(qty.raw().abs()) => {
            Err(Error::BadRequest(format!(
                "{} serial numbers for a quantity of {qty}: one per unit",
                serials.len()
            )))
        }
        _ => Ok(()),
    }
}

/// One product's stock in a van.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BalanceRow {
    /// The product.
    pub product_id: String,
    /// Its SKU (empty when the product is out of the caller's scope).
    pub sku: String,
    /// Its name.
    pub name: String,
    /// Put in minus used, four decimals; negative when the technician used
    /// more than the van received (to reconcile).
    pub qty: String,
    /// Serial numbers in the van.
    pub serials: Vec<String>,
    /// Serial numbers used that the van never received (to reconcile).
    pub unknown_serials: Vec<String>,
}

impl BalanceRow {
    /// The row of `b`, named by its product when known.
    pub fn of(b: Balance, product: Option<&Product>) -> Self {
        BalanceRow {
            product_id: b.product_id.to_string(),
            sku: product.map(|p| p.sku.clone()).unwrap_or_default(),
            name: product.map(|p| p.name.clone()).unwrap_or_default(),
            qty: b.qty.to_string(),
            serials: b.serials,
            unknown_serials: b.unknown_serials,
        }
    }

    /// Whether the office has something to reconcile on this row.
    pub fn needs_reconciling(&self) -> bool {
        self.qty.starts_with('-') || !self.unknown_serials.is_empty()
    }
}

/// A technician's van as the office reads it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VanView {
    /// The van stock record.
    pub van_id: String,
    /// The technician who drives it.
    pub technician: String,
    /// Its label.
    pub name: String,
    /// Stock per product, by SKU.
    pub balances: Vec<BalanceRow>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_core::model::RecordMeta;
    use fieldsync_core::{OrgId, RecordId, TeamId, TerritoryId, UserId};

    fn product(serialized: bool) -> Product {
        Product {
            meta: RecordMeta {
                id: RecordId::new(),
                org: OrgId::new(),
                owner: UserId::new(),
                team: TeamId::new(),
                territory: TerritoryId::new(),
            },
            sku: "PUMP-1".into(),
            name: "Pump".into(),
            unit: "pcs".into(),
            serialized,
            spare_part: true,
            active: true,
        }
    }

    #[test]
    fn quantities_parse_exactly_and_refuse_nonsense() {
        assert_eq!(parse_qty("2").ok(), Some(Qty::units(2)));
        assert_eq!(parse_qty(" 1.5 ").ok(), Some(Qty(15_000)));
        assert_eq!(parse_qty("-1").ok(), Some(Qty::units(-1)));
        for bad in [
            "",
            "0",
            "0.0000",
            "1.23456",
            "abc",
            "1e3",
            ".5",
            "--1",
            "9999999999",
        ] {
            assert!(parse_qty(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_serialized_part_comes_with_one_serial_per_unit() {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(check_replenishment(&product(true), Qty::units(2), &s(&["A", "B"])).is_ok());
        assert!(check_replenishment(&product(true), Qty::units(-1), &s(&["A"])).is_ok());
        assert!(check_replenishment(&product(true), Qty::units(2), &s(&["A"])).is_err());
        assert!(check_replenishment(&product(true), Qty::units(1), &[]).is_err());
        assert!(check_replenishment(&product(false), Qty::units(1), &s(&["A"])).is_err());
        assert!(check_replenishment(&product(false), Qty(5_000), &[]).is_ok());
    }

    #[test]
    fn only_the_back_office_manages_vans() {
        assert!(may_manage(Role::Manager).is_ok());
        assert!(may_manage(Role::Admin).is_ok());
        assert!(may_manage(Role::Technician).is_err());
        assert!(may_manage(Role::Rep).is_err());
    }
}
