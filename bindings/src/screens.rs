//! The rest of a field app's screens on [`FieldsyncClient`]: accounts and
//! their search, contacts, price lists, ad-hoc and cancelled visits, priced
//! orders and their rework, report observations and KPIs, checklists one
//! question at a time, running time, jobs, deleting and restoring.
//!
//! Every action is a client-core action (a model function such as
//! `visit::cancel` or `order::rework`, a transition through the state
//! machine, or an edit the write rules of `model::rules` check in the
//! store): the bindings add no rule of their own, so what the app refuses
//! is what the server would refuse. docs/mobile.md maps these calls to
//! screens.

use fieldsync_core::model::visit::{self, CheckPoint};
use fieldsync_core::model::{
    Account, Actor, Answer, Assignment, AssignmentStatus, ChecklistResponse, ChecklistTemplate,
    Contact, DeviceTime, JobStatus, KpiValue, ModelError, Order, PriceItem, PriceList, Product,
    Question, RecordKind, ServiceJob, ShowIf, TransitionRequest, ValidationError, Visit,
    VisitReport, VisitStatus, assignment, job, order, rules,
};
use fieldsync_core::store::StoreError;
use fieldsync_core::{Money, RecordId};

use crate::client::{FieldsyncClient, now};
use crate::error::{FieldsyncError, parse_id};
use crate::types::*;

/// How many search results at most when the app does not say.
const DEFAULT_LIMIT: u32 = 50;

fn date(what: &str, value: Option<String>) -> Result<Option<String>, FieldsyncError> {
    let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let b = value.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && digits(0..4)
        && digits(5..7)
        && digits(8..10);
    let month = value.get(5..7).and_then(|m| m.parse::<u8>().ok());
    let day = value.get(8..10).and_then(|d| d.parse::<u8>().ok());
    if !ok
        || !month.is_some_and(|m| (1..=12).contains(&m))
        || !day.is_some_and(|d| (1..=31).contains(&d))
    {
        return Err(FieldsyncError::InvalidArgument {
            detail: format!("{what} {value:?} is not a date (YYYY-MM-DD)"),
        });
    }
    Ok(Some(value))
}

impl From<ValidationError> for FieldsyncError {
    fn from(e: ValidationError) -> Self {
        ModelError::from(e).into()
    }
}

impl FieldsyncClient {
    /// Moves a job to the status its assignments on this device imply (the
    /// model's roll-up), when the device holds the job; a technician only
    /// ever moves it forward to `in_progress` here.
    pub(crate) fn roll_up_job(
        &self,
        job_id: RecordId,
        actor: &Actor,
    ) -> Result<(), FieldsyncError> {
        let Ok(current) = self.store().read_stateful::<ServiceJob>(job_id) else {
            return Ok(());
        };
        let statuses: Vec<AssignmentStatus> = self
            .store()
            .all_of(RecordKind::Assignment)?
            .into_iter()
            .filter(|p| p.parent_id == Some(job_id) && !p.deleted)
            .filter_map(|p| p.status.and_then(|s| s.parse().ok()))
            .collect();
        let target = job::rollup(current.status, &statuses);
        let forward = match actor.role {
            fieldsync_core::model::Role::Technician => target == JobStatus::InProgress,
            _ => target == JobStatus::Scheduled,
        };
        if forward && target != current.status {
            self.store().act(job_id, |d| {
                job::apply_rollup(d, actor, &statuses, now()).map(|_| ())
            })?;
        }
        Ok(())
    }

    fn account_item(&self, id: RecordId) -> Result<AccountItem, FieldsyncError> {
        Ok(AccountItem::of(&self.store().read::<Account>(id)?))
    }

    fn checklist_item(&self, id: RecordId) -> Result<ChecklistItem, FieldsyncError> {
        let r: ChecklistResponse = self.store().read(id)?;
        let t: ChecklistTemplate = self.store().read(r.template_id)?;
        Ok(ChecklistItem::of(&r, &t))
    }

    fn job_item(&self, id: RecordId) -> Result<JobItem, FieldsyncError> {
        let mut item = JobItem::of(&self.store().read_stateful::<ServiceJob>(id)?);
        item.read_only = self.store().is_reference(id);
        Ok(item)
    }

    /// The price list of an order: its own, else its account's, else the
    /// default list of the account's territory (as the server prices it).
    fn price_list_for(&self, o: &Order) -> Result<Option<PriceList>, FieldsyncError> {
        let list = match o.price_list_id {
            Some(l) => Some(l),
            None => {
                let account = self.store().read::<Account>(o.account_id)?;
                if account.price_list_id.is_none() {
                    let mut lists = Vec::new();
                    for p in self.store().all_of(RecordKind::PriceList)? {
                        lists.push(self.store().read::<PriceList>(p.id)?);
                    }
                    return Ok(PriceList::territory_default_for(&account, &lists).cloned());
                }
                account.price_list_id
            }
        };
        Ok(match list {
            Some(l) => Some(self.store().read::<PriceList>(l)?),
            None => None,
        })
    }
}

#[uniffi::export]
impl FieldsyncClient {
    // --- Accounts and search ---------------------------------------------------

    /// One account with its sites.
    pub fn account(&self, account_id: String) -> Result<AccountItem, FieldsyncError> {
        self.account_item(parse_id("account", &account_id)?)
    }

    /// Accounts whose name or customer code starts with `prefix` (case and
    /// accents do not matter; empty: every account), by name; at most `limit` (50 by
    /// default). Served from the device store's index: milliseconds on tens
    /// of thousands of accounts.
    #[uniffi::method(default(limit = None))]
    pub fn search_accounts(
        &self,
        prefix: String,
        limit: Option<u32>,
    ) -> Result<Vec<AccountItem>, FieldsyncError> {
        self.store()
            .search_accounts(&prefix, limit.unwrap_or(DEFAULT_LIMIT))?
            .into_iter()
            .map(|p| self.account_item(p.id))
            .collect()
    }

    /// Accounts with a site whose name or address contains `place` (a city,
    /// a street), by name; at most `limit` (50 by default).
    #[uniffi::method(default(limit = None))]
    pub fn accounts_at(
        &self,
        place: String,
        limit: Option<u32>,
    ) -> Result<Vec<AccountItem>, FieldsyncError> {
        self.store()
            .search_accounts_at(&place, limit.unwrap_or(DEFAULT_LIMIT))?
            .into_iter()
            .map(|p| self.account_item(p.id))
            .collect()
    }

    /// Products whose SKU or name starts with `prefix`, by SKU; at most
    /// `limit` (50 by default).
    #[uniffi::method(default(limit = None))]
    pub fn search_products(
        &self,
        prefix: String,
        limit: Option<u32>,
    ) -> Result<Vec<ProductItem>, FieldsyncError> {
        self.store()
            .search_products(&prefix, limit.unwrap_or(DEFAULT_LIMIT))?
            .into_iter()
            .map(|p| {
                let product: Product = self.store().read(p.id)?;
                Ok(ProductItem {
                    id: p.id.to_string(),
                    sku: product.sku,
                    name: product.name,
                    spare_part: product.spare_part,
                })
            })
            .collect()
    }

    /// An account's service jobs, newest first by SLA due time: the open ones
    /// and, for reference, the last few finished ones (`read_only`), so a
    /// technician or rep sees what was done there before.
    pub fn jobs_for_account(&self, account_id: String) -> Result<Vec<JobItem>, FieldsyncError> {
        self.store()
            .of_account(RecordKind::ServiceJob, parse_id("account", &account_id)?)?
            .into_iter()
            .map(|p| self.job_item(p.id))
            .collect()
    }

    /// An account's visits, newest first (what happened at the last visit):
    /// the user's own and, for reference (`read_only`), the last few finished
    /// ones of colleagues or from before the user's window.
    pub fn visits_for_account(&self, account_id: String) -> Result<Vec<VisitItem>, FieldsyncError> {
        self.store()
            .visits_for_account(parse_id("account", &account_id)?)?
            .into_iter()
            .map(|p| self.visit_item(p.id))
            .collect()
    }

    // --- Contacts --------------------------------------------------------------

    /// Adds a contact to an account; returns its id.
    pub fn create_contact(
        &self,
        account_id: String,
        contact: NewContact,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        let c = Contact {
            meta: self.meta(&me, None)?,
            account_id: parse_id("account", &account_id)?,
            name: contact.name,
            role: contact.role,
            phone: contact.phone,
            email: contact.email,
            marketing_consent: contact.marketing_consent,
            consent: None,
        };
        Ok(self.store().create(&c, now())?.to_string())
    }

    /// One contact.
    pub fn contact(&self, contact_id: String) -> Result<ContactItem, FieldsyncError> {
        let id = parse_id("contact", &contact_id)?;
        Ok(ContactItem::of(&self.store().read::<Contact>(id)?))
    }

    /// An account's contacts, by name.
    pub fn contacts_of(&self, account_id: String) -> Result<Vec<ContactItem>, FieldsyncError> {
        let mut out = self
            .store()
            .of_account(RecordKind::Contact, parse_id("account", &account_id)?)?
            .into_iter()
            .map(|p| Ok(ContactItem::of(&self.store().read::<Contact>(p.id)?)))
            .collect::<Result<Vec<_>, FieldsyncError>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    // --- Price lists -----------------------------------------------------------

    /// Every price list on the device (master data of the territory).
    pub fn price_lists(&self) -> Result<Vec<PriceListItem>, FieldsyncError> {
        self.store()
            .all_of(RecordKind::PriceList)?
            .into_iter()
            .filter(|p| !p.deleted)
            .map(|p| Ok(PriceListItem::of(&self.store().read::<PriceList>(p.id)?)))
            .collect()
    }

    /// The price of a product for an account, from the account's price list;
    /// `None` when the account has no list or the product is not on it.
    pub fn price_for(
        &self,
        account_id: String,
        product_id: String,
    ) -> Result<Option<PriceEntry>, FieldsyncError> {
        let account: Account = self.store().read(parse_id("account", &account_id)?)?;
        let product: RecordId = parse_id("product", &product_id)?;
        let Some(list) = account.price_list_id else {
            return Ok(None);
        };
        let list: PriceList = self.store().read(list)?;
        Ok(list.items.get(&product).map(|i| PriceEntry {
            product_id: product.to_string(),
            unit_price_minor: i.unit_price.minor,
            max_discount_bp: i.max_discount_bp,
        }))
    }

    /// Publishes a price list (managers); returns its id.
    pub fn create_price_list(
        &self,
        name: String,
        currency: String,
        items: Vec<PriceEntry>,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        let mut map = std::collections::BTreeMap::new();
        for i in items {
            map.insert(
                parse_id("product", &i.product_id)?,
                PriceItem {
                    unit_price: Money::new(i.unit_price_minor, currency.clone()),
                    max_discount_bp: i.max_discount_bp,
                },
            );
        }
        let list = PriceList {
            territory_default: false,
            meta: self.meta(&me, None)?,
            name,
            currency,
            items: map,
        };
        Ok(self.store().create(&list, now())?.to_string())
    }

    /// Sets (or clears) the price list that applies to an account (managers).
    pub fn set_account_price_list(
        &self,
        account_id: String,
        price_list_id: Option<String>,
    ) -> Result<(), FieldsyncError> {
        let id = parse_id("account", &account_id)?;
        let list = price_list_id
            .map(|l| parse_id("price list", &l))
            .transpose()?;
        self.store()
            .update::<Account>(id, now(), |a| a.price_list_id = list)?;
        Ok(())
    }

    // --- Visits ----------------------------------------------------------------

    /// Starts an unplanned visit at an account: created in progress with its
    /// check-in and the geofence verdict against the account's site.
    pub fn start_ad_hoc_visit(
        &self,
        account_id: String,
        fix: Option<GeoFix>,
    ) -> Result<VisitItem, FieldsyncError> {
        let me = self.me()?;
        let account: RecordId = parse_id("account", &account_id)?;
        self.store().read::<Account>(account)?;
        let site = self.site_of(account);
        let at = now();
        let gps = fix.map(Into::into);
        let point = CheckPoint::record(at, gps, site.coords.as_ref(), site.radius_m);
        let v = Visit::ad_hoc(self.meta(&me, None)?, account, point);
        let id = self.store().create_stateful(&v, &me.actor, at)?;
        self.visit_item(id)
    }

    /// Cancels a planned visit, or aborts one in progress (then `reason` is
    /// required: `Transition` without it).
    pub fn cancel_visit(
        &self,
        visit_id: String,
        reason: Option<String>,
    ) -> Result<VisitItem, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("visit", &visit_id)?;
        self.store()
            .act(id, |d| visit::cancel(d, &me.actor, now(), reason))?;
        self.visit_item(id)
    }

    /// Plans a cancelled or missed visit again (managers).
    pub fn replan_visit(&self, visit_id: String) -> Result<VisitItem, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("visit", &visit_id)?;
        self.store().transition::<Visit>(
            id,
            &me.actor,
            &TransitionRequest::new(VisitStatus::Planned, now()),
            |_| {},
        )?;
        self.visit_item(id)
    }

    /// Records the contact met (or clears it).
    pub fn set_visit_contact(
        &self,
        visit_id: String,
        contact_id: Option<String>,
    ) -> Result<VisitItem, FieldsyncError> {
        let id = parse_id("visit", &visit_id)?;
        let contact = contact_id.map(|c| parse_id("contact", &c)).transpose()?;
        self.store()
            .update::<Visit>(id, now(), |v| v.contact_id = contact)?;
        self.visit_item(id)
    }

    /// Suggests the next visit's date, `YYYY-MM-DD` (or clears it).
    pub fn set_next_visit_date(
        &self,
        visit_id: String,
        date_ymd: Option<String>,
    ) -> Result<VisitItem, FieldsyncError> {
        let id = parse_id("visit", &visit_id)?;
        let d = date("next visit date", date_ymd)?;
        self.store()
            .update::<Visit>(id, now(), |v| v.next_visit_date = d)?;
        self.visit_item(id)
    }

    // --- Orders ----------------------------------------------------------------

    /// Adds a line priced from the price list (the order's, else its
    /// account's), which the order then names; the server prices a
    /// submitted order from the same list. A discount over the list's
    /// maximum is allowed here and sends the order to a manager's approval.
    /// `Validation` when there is no list or the product is not on it.
    #[uniffi::method(default(discount_bp = None, discount_amount_minor = None))]
    pub fn add_priced_line(
        &self,
        order_id: String,
        product_id: String,
        quantity: f64,
        tax_rate_bp: u32,
        discount_bp: Option<u32>,
        discount_amount_minor: Option<i64>,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        let id: RecordId = parse_id("order", &order_id)?;
        let product: RecordId = parse_id("product", &product_id)?;
        let o: Order = self.store().read_stateful(id)?;
        let Some(list) = self.price_list_for(&o)? else {
            return Err(ValidationError::new(
                "price_list_id",
                "the account has no price list: ask the office, or enter the price",
            )
            .into());
        };
        let Some(item) = list.items.get(&product) else {
            return Err(ValidationError::new(
                "lines",
                format!("product {product} is not on the price list {}", list.name),
            )
            .into());
        };
        let mut line = fieldsync_core::model::OrderLine::new(
            product,
            crate::client::qty(quantity)?,
            item.unit_price.clone(),
        );
        line.tax_rate_bp = tax_rate_bp;
        line.discount_percent_bp = discount_bp;
        line.discount_amount_minor = discount_amount_minor;
        let list_id = list.meta.id;
        let at = now();
        let line_id = self.store().act(id, |d| {
            let line_id = order::add_line(d, &me.actor, at, line)?;
            let o: Order = d.read_stateful()?;
            if o.price_list_id.is_none() {
                d.update_by::<Order>(Some(me.actor.role), at, |o| o.price_list_id = Some(list_id))?;
            }
            Ok(line_id)
        })?;
        Ok(line_id.to_string())
    }

    /// Sets a line's discount: a percentage (basis points) and/or an amount
    /// in minor units (capped at the line's gross).
    pub fn set_line_discount(
        &self,
        order_id: String,
        line_id: String,
        discount_bp: Option<u32>,
        discount_amount_minor: Option<i64>,
    ) -> Result<OrderItem, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("order", &order_id)?;
        let line: RecordId = parse_id("line", &line_id)?;
        self.store().act(id, |d| {
            order::edit_line(d, &me.actor, now(), line, |l| {
                l.discount_percent_bp = discount_bp;
                l.discount_amount_minor = discount_amount_minor;
            })
        })?;
        self.order(order_id)
    }

    /// Sets where and when to deliver (`ship_to`: one of the account's
    /// sites; `delivery_date`: `YYYY-MM-DD`) and the order's notes.
    pub fn set_order_details(
        &self,
        order_id: String,
        ship_to: Option<String>,
        delivery_date: Option<String>,
        notes: Option<String>,
    ) -> Result<OrderItem, FieldsyncError> {
        let id = parse_id("order", &order_id)?;
        let o: Order = self.store().read_stateful(id)?;
        let ship_to: Option<RecordId> = ship_to.map(|s| parse_id("site", &s)).transpose()?;
        if let Some(site) = ship_to {
            let account: Account = self.store().read(o.account_id)?;
            if !account.locations.contains_key(&site) {
                return Err(FieldsyncError::InvalidArgument {
                    detail: format!("{site} is not a site of the order's account"),
                });
            }
        }
        let delivery = date("delivery date", delivery_date)?;
        self.store().update::<Order>(id, now(), |o| {
            o.ship_to = ship_to;
            o.delivery_date = delivery;
            o.notes = notes.filter(|n| !n.trim().is_empty());
        })?;
        self.order(order_id)
    }

    /// Cancels an order (a draft or a submitted one, by its rep).
    pub fn cancel_order(
        &self,
        order_id: String,
        reason: Option<String>,
    ) -> Result<OrderItem, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("order", &order_id)?;
        self.store()
            .act(id, |d| order::cancel(d, &me.actor, now(), reason))?;
        self.order(order_id)
    }

    /// Refuses a submitted or pending order with a reason (managers).
    pub fn reject_order(
        &self,
        order_id: String,
        reason: String,
    ) -> Result<OrderItem, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("order", &order_id)?;
        self.store()
            .act(id, |d| order::reject(d, &me.actor, now(), reason))?;
        self.order(order_id)
    }

    /// Takes a rejected order back to a draft to change and submit again.
    pub fn rework_order(&self, order_id: String) -> Result<OrderItem, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("order", &order_id)?;
        self.store()
            .act(id, |d| order::rework(d, &me.actor, now()))?;
        self.order(order_id)
    }

    /// Orders in a status (`pending_approval` is a manager's inbox, `rejected`
    /// the rep's to rework).
    pub fn orders_by_status(&self, status: String) -> Result<Vec<OrderItem>, FieldsyncError> {
        self.store()
            .by_status(RecordKind::Order, status.trim())?
            .into_iter()
            .map(|p| OrderItem::of(&self.store().read_stateful::<Order>(p.id)?))
            .collect()
    }

    /// The reasons an order's status changed, newest first (why the server
    /// sent it for approval, why a manager rejected it).
    pub fn order_status_reasons(&self, order_id: String) -> Result<Vec<String>, FieldsyncError> {
        let id = parse_id("order", &order_id)?;
        let mut history = self.store().doc(id)?.history().map_err(StoreError::from)?;
        history.reverse();
        Ok(history
            .into_iter()
            .filter_map(|e| e.reason.map(|r| format!("{}: {r}", e.to)))
            .collect())
    }

    // --- Reports ---------------------------------------------------------------

    /// Replaces a report's observations.
    pub fn set_report_observations(
        &self,
        report_id: String,
        observations: String,
    ) -> Result<ReportItem, FieldsyncError> {
        let id = parse_id("report", &report_id)?;
        self.store()
            .update::<VisitReport>(id, now(), |r| r.observations = observations)?;
        self.report(report_id)
    }

    /// Records a KPI measured on the visit: its target and what was found.
    pub fn set_kpi(&self, report_id: String, kpi: KpiItem) -> Result<ReportItem, FieldsyncError> {
        let id = parse_id("report", &report_id)?;
        let name = kpi.name.trim().to_owned();
        if name.is_empty() {
            return Err(FieldsyncError::InvalidArgument {
                detail: "a KPI needs a name".into(),
            });
        }
        self.store().update::<VisitReport>(id, now(), |r| {
            r.kpis.insert(
                name,
                KpiValue {
                    target: kpi.target,
                    actual: kpi.actual,
                    unit: kpi.unit,
                },
            );
        })?;
        self.report(report_id)
    }

    /// Removes a KPI from a report.
    pub fn remove_kpi(
        &self,
        report_id: String,
        name: String,
    ) -> Result<ReportItem, FieldsyncError> {
        let id = parse_id("report", &report_id)?;
        self.store().update::<VisitReport>(id, now(), |r| {
            r.kpis.remove(name.trim());
        })?;
        self.report(report_id)
    }

    // --- Checklists ------------------------------------------------------------

    /// Publishes a checklist template of any question kinds with required
    /// and show-if (managers); a change to a template is a new `version`.
    pub fn publish_checklist(
        &self,
        name: String,
        version: u32,
        questions: Vec<QuestionItem>,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        let mut map = std::collections::BTreeMap::new();
        for q in questions {
            let show_if = match (q.show_if_question, q.show_if_equals) {
                (Some(question), Some(equals)) => Some(ShowIf { question, equals }),
                (None, None) => None,
                _ => {
                    return Err(FieldsyncError::InvalidArgument {
                        detail: format!(
                            "question {}: show-if needs a question and an answer",
                            q.key
                        ),
                    });
                }
            };
            map.insert(
                q.key,
                Question {
                    position: q.position,
                    text: q.text,
                    kind: q.kind.into(),
                    choices: q.choices,
                    required: q.required,
                    show_if,
                },
            );
        }
        let t = ChecklistTemplate {
            meta: self.meta(&me, None)?,
            name,
            version,
            published: true,
            family: None,
            supersedes: None,
            retired: false,
            questions: map,
        };
        Ok(self.store().create(&t, now())?.to_string())
    }

    /// One checklist template.
    pub fn checklist_template(
        &self,
        template_id: String,
    ) -> Result<ChecklistTemplateItem, FieldsyncError> {
        let id = parse_id("template", &template_id)?;
        Ok(ChecklistTemplateItem::of(
            &self.store().read::<ChecklistTemplate>(id)?,
        ))
    }

    /// Published checklist templates that take new work (not retired), by
    /// name and version.
    pub fn checklist_templates(&self) -> Result<Vec<ChecklistTemplateItem>, FieldsyncError> {
        let mut out = Vec::new();
        for p in self.store().all_of(RecordKind::ChecklistTemplate)? {
            if p.deleted {
                continue;
            }
            let t: ChecklistTemplate = self.store().read(p.id)?;
            // Drafts are answered by nobody; retired versions take no new work.
            if t.published && !t.retired {
                out.push(ChecklistTemplateItem::of(&t));
            }
        }
        out.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        Ok(out)
    }

    /// Starts filling a template's current version (the newest published
    /// version of its family; a draft is refused) about a visit or an
    /// assignment (which records the response); answer it with
    /// `answer_question`, one at a time, then `complete_checklist`.
    pub fn start_checklist(
        &self,
        template_id: String,
        subject_id: String,
    ) -> Result<ChecklistItem, FieldsyncError> {
        let me = self.me()?;
        let template_id: RecordId = parse_id("template", &template_id)?;
        let subject: RecordId = parse_id("subject", &subject_id)?;
        let named: ChecklistTemplate = self.store().read(template_id)?;
        // New work gets the newest published version of the template's
        // family on this device (a job may name an older version); answers
        // already given keep the version they answered.
        let mut versions = Vec::new();
        for p in self.store().all_of(RecordKind::ChecklistTemplate)? {
            if !p.deleted {
                versions.push(self.store().read::<ChecklistTemplate>(p.id)?);
            }
        }
        let template = match fieldsync_core::model::latest_published(named.family_id(), &versions) {
            Some(t) => t.clone(),
            None => {
                named.answerable()?;
                named
            }
        };
        let template_id = template.meta.id;
        let r = ChecklistResponse {
            meta: self.meta(&me, None)?,
            template_id,
            template_version: template.version,
            subject_id: subject,
            answers: Default::default(),
            completed: false,
        };
        let at = now();
        let id = self.store().create(&r, at)?;
        let kind = self.store().doc(subject)?.kind();
        match kind {
            RecordKind::Assignment => self.store().update::<Assignment>(subject, at, |a| {
                a.checklist_response_id = Some(id);
                a.checklist_complete = false;
            })?,
            RecordKind::Visit => self.store().update::<Visit>(subject, at, |v| {
                v.checklist_response_ids.insert(id, true);
            })?,
            _ => {}
        }
        self.checklist_item(id)
    }

    /// Answers one question (replacing an earlier answer). `Validation` when
    /// the value does not fit the question's kind or choices, or the question
    /// is not in the template. The result says which questions the form
    /// shows now (show-if) and which required ones are still open.
    pub fn answer_question(
        &self,
        response_id: String,
        question: String,
        value: AnswerValueItem,
    ) -> Result<ChecklistItem, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("checklist", &response_id)?;
        let mut r: ChecklistResponse = self.store().read(id)?;
        let t: ChecklistTemplate = self.store().read(r.template_id)?;
        let at = now();
        let answer = Answer {
            value: value.into(),
            at,
            by: me.actor.user,
        };
        r.answers.insert(question.clone(), answer.clone());
        // The model's check of kinds and choices (and of required questions,
        // if the response is already complete).
        r.check_against(&t)?;
        self.store().update::<ChecklistResponse>(id, at, |r| {
            r.answers.insert(question, answer);
        })?;
        self.checklist_item(id)
    }

    /// Marks a checklist complete after the model's check: every answer fits
    /// its question and every shown required question is answered
    /// (`Validation` naming the open ones otherwise). An assignment records
    /// that its checklist is done.
    pub fn complete_checklist(&self, response_id: String) -> Result<ChecklistItem, FieldsyncError> {
        let id = parse_id("checklist", &response_id)?;
        let mut r: ChecklistResponse = self.store().read(id)?;
        let t: ChecklistTemplate = self.store().read(r.template_id)?;
        r.completed = true;
        r.check_against(&t)?;
        let at = now();
        self.store()
            .update::<ChecklistResponse>(id, at, |r| r.completed = true)?;
        if self
            .store()
            .read_stateful::<Assignment>(r.subject_id)
            .is_ok()
        {
            self.store().update::<Assignment>(r.subject_id, at, |a| {
                a.checklist_response_id = Some(id);
                a.checklist_complete = true;
            })?;
        }
        self.checklist_item(id)
    }

    /// One checklist response with what its form shows now.
    pub fn checklist(&self, response_id: String) -> Result<ChecklistItem, FieldsyncError> {
        self.checklist_item(parse_id("checklist", &response_id)?)
    }

    /// The checklists filled about a visit or an assignment.
    pub fn checklists_of(&self, subject_id: String) -> Result<Vec<ChecklistItem>, FieldsyncError> {
        let subject: RecordId = parse_id("subject", &subject_id)?;
        self.store()
            .all_of(RecordKind::ChecklistResponse)?
            .into_iter()
            .filter(|p| p.parent_id == Some(subject) && !p.deleted)
            .map(|p| self.checklist_item(p.id))
            .collect()
    }

    // --- Time ------------------------------------------------------------------

    /// Starts a running time entry now; stop it with `stop_time`.
    pub fn start_time(
        &self,
        assignment_id: String,
        kind: TimeKindItem,
    ) -> Result<String, FieldsyncError> {
        self.add_time(assignment_id, kind, now().at_ms, None)
    }

    /// Stops a running time entry (at `end_ms`, default now), with a note.
    #[uniffi::method(default(end_ms = None, note = None))]
    pub fn stop_time(
        &self,
        assignment_id: String,
        entry_id: String,
        end_ms: Option<i64>,
        note: Option<String>,
    ) -> Result<AssignmentItem, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("assignment", &assignment_id)?;
        let entry: RecordId = parse_id("time entry", &entry_id)?;
        let at = now();
        let end = end_ms.map_or(at, DeviceTime::utc);
        self.store().act(id, |d| {
            assignment::stop_time_entry(d, &me.actor, at, entry, end, note).map(|_| ())
        })?;
        self.assignment(assignment_id)
    }

    // --- Jobs ------------------------------------------------------------------

    /// One service job.
    pub fn job(&self, job_id: String) -> Result<JobItem, FieldsyncError> {
        self.job_item(parse_id("job", &job_id)?)
    }

    /// The jobs on this device (a technician's: those of their assignments),
    /// open ones first, then by SLA due time.
    pub fn jobs(&self) -> Result<Vec<JobItem>, FieldsyncError> {
        let mut out = self
            .store()
            .all_of(RecordKind::ServiceJob)?
            .into_iter()
            .filter(|p| !p.deleted)
            .map(|p| self.job_item(p.id))
            .collect::<Result<Vec<_>, _>>()?;
        let done = |j: &JobItem| j.status.parse::<JobStatus>().map_or(true, |s| !s.is_open());
        out.sort_by_key(|j| (done(j), j.sla_due_ms.unwrap_or(i64::MAX)));
        Ok(out)
    }

    /// Records how the job was resolved and whether it was fixed on the
    /// first visit, while the job is scheduled or in progress (technicians;
    /// the office at any time before it is closed).
    pub fn set_job_resolution(
        &self,
        job_id: String,
        resolution: String,
        first_time_fix: Option<bool>,
    ) -> Result<JobItem, FieldsyncError> {
        let id = parse_id("job", &job_id)?;
        self.store().update::<ServiceJob>(id, now(), |j| {
            j.resolution = Some(resolution);
            j.first_time_fix = first_time_fix;
        })?;
        self.job_item(id)
    }

    /// Completes a job in progress with its resolution (a technician who
    /// finished the work; the office may close it afterwards).
    pub fn complete_job(
        &self,
        job_id: String,
        resolution: String,
        first_time_fix: Option<bool>,
    ) -> Result<JobItem, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("job", &job_id)?;
        let at = now();
        self.store().transition::<ServiceJob>(
            id,
            &me.actor,
            &TransitionRequest::new(JobStatus::Completed, at),
            |j| {
                j.resolution = Some(resolution);
                j.first_time_fix = first_time_fix;
                j.completed_at = Some(at);
            },
        )?;
        self.job_item(id)
    }

    // --- Housekeeping ----------------------------------------------------------

    /// Deletes a record (a tombstone that syncs), when the write rules let
    /// the signed-in role delete it in its status (a planned visit, a draft
    /// order or report, a contact, ...); `Validation` with the rule's
    /// message otherwise, like any edit the rules refuse.
    pub fn delete_record(&self, record_id: String) -> Result<(), FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("record", &record_id)?;
        let doc = self.store().doc(id)?;
        let status = doc.status_name().map_err(StoreError::from)?;
        let status = status.as_str();
        if rules::may_write(doc.kind(), "deleted", status, me.actor.role) != Some(true) {
            let locked = rules::Locked::Field {
                kind: doc.kind(),
                field: "deleted",
                status: status.map(str::to_owned),
                role: me.actor.role,
            };
            return Err(ModelError::from(locked).into());
        }
        self.store().delete(id, now())?;
        Ok(())
    }

    /// Restores a refused edit (`rejections()`): its changes are applied
    /// again and sent with the next sync, for when the reason has gone (the
    /// office re-planned the visit, reopened the order). Checked against the
    /// write rules first; refused, nothing changes and the entry stays.
    /// Returns the record's id.
    pub fn restore_rejection(&self, seq: i64) -> Result<String, FieldsyncError> {
        Ok(self.store().restore_rejection(seq)?.to_string())
    }

    /// Dismisses a refused edit: the record stays as the server has it.
    pub fn dismiss_rejection(&self, seq: i64) -> Result<(), FieldsyncError> {
        Ok(self.store().resolve_rejection(seq)?)
    }
}

#[cfg(test)]
mod tests {
    use super::date;

    #[test]
    fn dates_are_year_month_day() {
        assert_eq!(
            date("d", Some(" 2026-01-12 ".into())).expect("ok"),
            Some("2026-01-12".into())
        );
        assert_eq!(date("d", Some("".into())).expect("blank is none"), None);
        for bad in [
            "2026-1-12",
            "12/01/2026",
            "2026-13-01",
            "2026-01-32",
            "2026-01-1x",
        ] {
            assert!(date("d", Some(bad.into())).is_err(), "{bad}");
        }
    }
}
