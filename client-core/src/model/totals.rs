//! Figures computed the same way on every device and on the server: order
//! totals, line totals, durations. The server recomputes every total a device
//! sends with these functions; the device shows the same numbers offline.
//!
//! The order line ([`OrderLine`]) is defined here, beside the one function
//! that prices it ([`order_totals`]): the `order` module holds lines and asks
//! for their figures, and nothing here needs the order itself, so imports go
//! one way (`order` names it at its old path too).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ValidationError;
use super::types::{DeviceTime, Money, Qty};
use crate::ids::RecordId;

/// One line of an order: what is ordered, at what price, discount and tax.
/// Its id is its key in the order's `lines` map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The product ordered.
    pub product_id: RecordId,
    /// Quantity (four decimals).
    pub qty: Qty,
    /// Unit price in the order's currency.
    pub unit_price: Money,
    /// Discount as a percentage, in basis points (1,000 = 10 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_percent_bp: Option<u32>,
    /// Discount as an amount in minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_amount_minor: Option<i64>,
    /// Tax rate in basis points (1,900 = 19 %).
    #[serde(default)]
    pub tax_rate_bp: u32,
    /// Free text (e.g. the product's name at the time of the order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl OrderLine {
    /// A line with no discount and no tax.
    pub fn new(product_id: RecordId, qty: Qty, unit_price: Money) -> Self {
        Self {
            product_id,
            qty,
            unit_price,
            discount_percent_bp: None,
            discount_amount_minor: None,
            tax_rate_bp: 0,
            description: None,
        }
    }
}

/// Whole minutes from `start` to `end` (negative spans count as zero).
/// Device times are compared in UTC; the offsets only matter for display.
pub fn duration_minutes(start: DeviceTime, end: DeviceTime) -> i64 {
    (end.at_ms - start.at_ms).max(0) / 60_000
}

/// The figures of one order line, in minor units of the order's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineTotals {
    /// Quantity × unit price.
    pub gross: i64,
    /// The line's discount.
    pub discount: i64,
    /// Gross less discount.
    pub net: i64,
    /// Tax on the net amount.
    pub tax: i64,
    /// Net plus tax.
    pub total: i64,
}

/// The figures of a whole order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTotals {
    /// ISO 4217 currency of every amount.
    pub currency: String,
    /// Per line, by line id.
    pub lines: BTreeMap<RecordId, LineTotals>,
    /// Sum of the lines' gross amounts.
    pub gross: i64,
    /// Sum of the lines' discounts.
    pub discount: i64,
    /// Sum of the lines' net amounts.
    pub net: i64,
    /// Sum of the lines' tax.
    pub tax: i64,
    /// Grand total.
    pub total: i64,
}

/// `value × numerator / denominator`, rounded half away from zero, in i128 so
/// no intermediate overflows.
fn mul_div_round(value: i128, numerator: i128, denominator: i128) -> i128 {
    let product = value * numerator;
    let q = product / denominator;
    let r = product % denominator;
    if 2 * r.abs() >= denominator.abs() {
        q + product.signum() * denominator.signum()
    } else {
        q
    }
}

fn to_i64(v: i128, field: &str) -> Result<i64, ValidationError> {
    i64::try_from(v).map_err(|_| ValidationError::new(field, "amount is too large"))
}

/// Computes every figure of an order from its lines: the one function the device
/// (for display) and the server (authoritatively) both use.
///
/// Per line: `gross = qty × unit price` (quantity in ten-thousandths), the discount
/// is a percentage of gross (basis points) or a fixed amount capped at gross,
/// `net = gross − discount`, `tax = net × tax rate` (basis points), `total = net + tax`.
/// Each step rounds half away from zero to minor units. Order figures are sums of
/// line figures, so the lines always add up to the total shown.
pub fn order_totals<'a>(
    currency: &str,
    lines: impl IntoIterator<Item = (&'a RecordId, &'a OrderLine)>,
) -> Result<OrderTotals, ValidationError> {
    let mut out = OrderTotals {
        currency: currency.to_owned(),
        lines: BTreeMap::new(),
        gross: 0,
        discount: 0,
        net: 0,
        tax: 0,
        total: 0,
    };
    for (id, line) in lines {
        let field = |f: &str| format!("lines.{id}.{f}");
        if line.unit_price.currency != currency {
            return Err(ValidationError::new(
                field("unit_price"),
                format!(
                    "price is in {}, the order is in {currency}",
                    line.unit_price.currency
                ),
            ));
        }
        let gross = mul_div_round(
            i128::from(line.qty.raw()),
            i128::from(line.unit_price.minor),
            10_000,
        );
        let discount = match (line.discount_percent_bp, line.discount_amount_minor) {
            (Some(_), Some(_)) => {
                return Err(ValidationError::new(
                    field("discount"),
                    "give a percentage or an amount, not both",
                ));
            }
            (Some(bp), None) => mul_div_round(gross, i128::from(bp), 10_000),
            (None, Some(amount)) => i128::from(amount).min(gross),
            (None, None) => 0,
        };
        let net = gross - discount;
        let tax = mul_div_round(net, i128::from(line.tax_rate_bp), 10_000);
        let totals = LineTotals {
            gross: to_i64(gross, &field("gross"))?,
            discount: to_i64(discount, &field("discount"))?,
            net: to_i64(net, &field("net"))?,
            tax: to_i64(tax, &field("tax"))?,
            total: to_i64(net + tax, &field("total"))?,
        };
        let add = |acc: i64, v: i64| {
            acc.checked_add(v)
                .ok_or_else(|| ValidationError::new("total", "order total is too large"))
        };
        out.gross = add(out.gross, totals.gross)?;
        out.discount = add(out.discount, totals.discount)?;
        out.net = add(out.net, totals.net)?;
        out.tax = add(out.tax, totals.tax)?;
        out.total = add(out.total, totals.total)?;
        out.lines.insert(*id, totals);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::too_many_arguments)] // one rstest column per figure keeps the table readable
mod tests {
    use super::*;
    use rstest::rstest;

    fn line(qty: Qty, price: i64) -> OrderLine {
        OrderLine::new(RecordId::new(), qty, Money::new(price, "EUR"))
    }

    #[rstest]
    #[case::plain(Qty::units(3), 1_250, None, None, 0, 3_750, 0, 3_750)]
    #[case::percent_discount(Qty::units(2), 1_000, Some(1_000), None, 0, 2_000, 200, 1_800)]
    #[case::amount_discount(Qty::units(2), 1_000, None, Some(150), 0, 2_000, 150, 1_850)]
    #[case::amount_capped_at_gross(Qty::units(1), 100, None, Some(500), 0, 100, 100, 0)]
    #[case::tax(Qty::units(1), 1_000, None, None, 1_900, 1_000, 0, 1_190)]
    #[case::fractional_qty_rounds_half_away(Qty(15_000), 333, None, None, 0, 500, 0, 500)]
    #[case::discount_then_tax(Qty::units(4), 2_499, Some(1_250), None, 700, 9_996, 1_250, 9_358)]
    fn line_figures(
        #[case] qty: Qty,
        #[case] price: i64,
        #[case] pct: Option<u32>,
        #[case] amount: Option<i64>,
        #[case] tax_bp: u32,
        #[case] gross: i64,
        #[case] discount: i64,
        #[case] total: i64,
    ) {
        let mut l = line(qty, price);
        l.discount_percent_bp = pct;
        l.discount_amount_minor = amount;
        l.tax_rate_bp = tax_bp;
        let id = RecordId::new();
        let t = order_totals("EUR", [(&id, &l)]).expect("valid");
        assert_eq!(
            (
                t.lines[&id].gross,
                t.lines[&id].discount,
                t.lines[&id].total
            ),
            (gross, discount, total)
        );
        assert_eq!(t.total, total);
    }

    #[test]
    fn order_figures_are_sums_of_line_figures() {
        let (a, b) = (RecordId::new(), RecordId::new());
        let mut la = line(Qty::units(1), 999);
        la.tax_rate_bp = 1_900;
        let lb = line(Qty(3_333), 1_001);
        let t = order_totals("EUR", [(&a, &la), (&b, &lb)]).expect("valid");
        assert_eq!(t.total, t.lines.values().map(|l| l.total).sum::<i64>());
        assert_eq!(t.net + t.tax, t.total);
    }

    #[test]
    fn a_price_in_another_currency_is_refused() {
        let id = RecordId::new();
        let l = OrderLine::new(RecordId::new(), Qty::units(1), Money::new(100, "USD"));
        let err = order_totals("EUR", [(&id, &l)]).expect_err("mismatch");
        assert!(err.message.contains("USD"));
    }

    #[test]
    fn overflowing_amounts_are_an_error_not_a_panic() {
        let id = RecordId::new();
        let l = line(Qty(i64::MAX), i64::MAX);
        assert!(order_totals("EUR", [(&id, &l)]).is_err());
        let (a, b) = (RecordId::new(), RecordId::new());
        let big = line(Qty::units(1), i64::MAX);
        assert!(order_totals("EUR", [(&a, &big), (&b, &big)]).is_err());
    }

    #[test]
    fn durations_never_go_negative() {
        use crate::model::DeviceTime;
        assert_eq!(
            duration_minutes(DeviceTime::utc(0), DeviceTime::utc(90 * 60_000)),
            90
        );
        assert_eq!(
            duration_minutes(DeviceTime::utc(60_000), DeviceTime::utc(0)),
            0
        );
    }
}
