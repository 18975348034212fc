//! The catalogue: products and price lists (master data of a territory).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::types::{Money, RecordKind, RecordMeta};
use super::{Record, ValidationError};
use crate::ids::RecordId;

/// A product or spare part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Ownership.
    pub meta: RecordMeta,
    /// Stock-keeping unit.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Unit, e.g. `pcs`, `kg`.
    pub unit: String,
    /// Tracked by serial number.
    #[serde(default)]
    pub serialized: bool,
    /// A spare part used on service jobs.
    #[serde(default)]
    pub spare_part: bool,
    /// Sold or used currently.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

impl Record for Product {
    const KIND: RecordKind = RecordKind::Product;

    fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.sku.trim().is_empty() {
            return Err(ValidationError::new("sku", "a product needs a SKU"));
        }
        if self.name.trim().is_empty() {
            return Err(ValidationError::new("name", "a product needs a name"));
        }
        Ok(())
    }
}

/// A product's price on a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceItem {
    /// Unit price.
    pub unit_price: Money,
    /// Largest discount a rep may give without approval, in basis points.
    #[serde(default)]
    pub max_discount_bp: u32,
}

/// A price list, items keyed by product id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceList {
    /// Ownership.
    pub meta: RecordMeta,
    /// Name.
    pub name: String,
    /// Currency of every item.
    pub currency: String,
    /// Items by product id.
    #[serde(default)]
    pub items: BTreeMap<RecordId, PriceItem>,
    /// The default list of its territory (`meta.territory`): what an order
    /// at an account without a price list of its own is priced from. Set by
    /// the office; one list per territory (the server keeps it so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub territory_default: bool,
}

impl PriceList {
    /// The list an order at `account` is priced from when neither the order
    /// nor the account names one: the default list of the account's
    /// territory among `lists` (the lowest id, should two claim it).
    pub fn territory_default_for<'a>(
        account: &super::Account,
        lists: impl IntoIterator<Item = &'a PriceList>,
    ) -> Option<&'a PriceList> {
        lists
            .into_iter()
            .filter(|l| l.territory_default && l.meta.territory == account.meta.territory)
            .min_by_key(|l| l.meta.id)
    }
}

impl Record for PriceList {
    const KIND: RecordKind = RecordKind::PriceList;

    fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    fn validate(&self) -> Result<(), ValidationError> {
        for (id, item) in &self.items {
            if item.unit_price.currency != self.currency {
                return Err(ValidationError::new(
                    format!("items.{id}.unit_price"),
                    "price in another currency than the list",
                ));
            }
            if item.unit_price.minor < 0 {
                return Err(ValidationError::new(
                    format!("items.{id}.unit_price"),
                    "price cannot be negative",
                ));
            }
            if item.max_discount_bp > 10_000 {
                return Err(ValidationError::new(
                    format!("items.{id}.max_discount_bp"),
                    "discount is over 100 %",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OrgId, TeamId, TerritoryId, UserId};
    use crate::model::Account;

    fn meta(territory: TerritoryId) -> RecordMeta {
        RecordMeta {
            id: RecordId::new(),
            org: OrgId::new(),
            owner: UserId::new(),
            team: TeamId::new(),
            territory,
        }
    }

    fn list(territory: TerritoryId, default: bool) -> PriceList {
        PriceList {
            meta: meta(territory),
            name: "L".into(),
            currency: "EUR".into(),
            items: BTreeMap::new(),
            territory_default: default,
        }
    }

    #[test]
    fn an_account_without_a_list_takes_its_territorys_default() {
        let (here, there) = (TerritoryId::new(), TerritoryId::new());
        let account = Account {
            meta: meta(here),
            code: None,
            name: "Shop".into(),
            account_type: "outlet".into(),
            account_status: "active".into(),
            price_list_id: None,
            visit_frequency_days: None,
            locations: BTreeMap::new(),
        };
        let lists = [list(here, false), list(there, true), list(here, true)];
        let found = PriceList::territory_default_for(&account, &lists).expect("a default");
        assert_eq!(found.meta.id, lists[2].meta.id);
        assert!(PriceList::territory_default_for(&account, &lists[..2]).is_none());
    }
}
