//! `/web/catalogue` (products and price lists), `/web/customers` (accounts
//! with their sites, contacts with consent) and `/web/import` (CSV upload,
//! the dry run's errors by line and column, then the import), for
//! administrators; managers read the lists. Every action is
//! `service::catalogue`'s, the same as the JSON API's and the command line's.
//!
//! The forms of the two list pages are one row of the kind's CSV file (the
//! same columns, checks and natural keys as an import), posted to
//! `/web/admin/save/{kind}`. The Import page sends the file's text in a
//! form field: without JavaScript the administrator pastes it; with it,
//! choosing a file fills the field (`app.js`), so nothing but a plain form
//! post reaches the server.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{WebError, WebForm, WebQuery, WebUser, format, page, status_of};
use crate::domain::catalogue::{ImportKind, RowError, columns};
use crate::domain::{Error, ErrorKind};
use crate::service::catalogue::{
    AccountView, ContactView, ImportReport, PriceListView, ProductView,
};
use crate::service::{self, Context};

/// The list pages' query string.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ListParams {
    /// Search text.
    q: Option<String>,
    /// The key of the record whose form is filled in (SKU, account code, contact id).
    edit: Option<String>,
    /// What the last action did, shown once.
    done: Option<String>,
    /// Why the last action was refused, shown once.
    error: Option<String>,
}

fn notice(p: &ListParams) -> Markup {
    html! {
        @if let Some(d) = &p.done { p.notice.ok role="status" { (d) } }
        @if let Some(e) = &p.error { p.notice.error role="alert" { (e) } }
    }
}

fn is_admin(web: &WebUser) -> bool {
    matches!(
        web.caller.role(),
        fieldsync_core::model::Role::Admin | fieldsync_core::model::Role::Server
    )
}

fn search(action: &str, q: Option<&str>, label: &str) -> Markup {
    html! {
        form.filters method="get" action=(action) role="search" {
            div.field {
                label for="q" { (label) }
                input #q type="search" name="q" value=[q];
            }
            div.actions { button type="submit" { "Search" } a href=(action) { "Clear" } }
        }
    }
}

/// A text field of a save form.
fn field(name: &str, label: &str, value: Option<&str>, required: bool) -> Markup {
    let id = format!("f-{name}");
    html! {
        div.field {
            label for=(id) { (label) @if required { " (required)" } }
            input id=(id) type="text" name=(name) value=[value] required[required];
        }
    }
}

/// A yes/no select of a save form.
fn yes_no(name: &str, label: &str, value: bool) -> Markup {
    let id = format!("f-{name}");
    html! {
        div.field {
            label for=(id) { (label) }
            select id=(id) name=(name) {
                option value="yes" selected[value] { "Yes" }
                option value="no" selected[!value] { "No" }
            }
        }
    }
}

fn export_links(kinds: &[(ImportKind, &str)]) -> Markup {
    html! {
        p {
            "Download as CSV (the columns an import reads): "
            @for (i, (kind, label)) in kinds.iter().enumerate() {
                @if i > 0 { " · " }
                a href=(format!("/web/export-csv/{}", kind.as_str())) download { (label) }
            }
        }
    }
}

/// `GET /web/catalogue`: products and price lists, with their forms.
pub(super) async fn catalogue(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebQuery(p): WebQuery<ListParams>,
) -> Result<Response, WebError> {
    let products = service::catalogue::products(&ctx, &web.caller, p.q.as_deref()).await?;
    let lists = service::catalogue::price_lists(&ctx, &web.caller).await?;
    let editing = p
        .edit
        .as_deref()
        .and_then(|sku| products.iter().find(|x| x.sku == sku));
    let body = html! {
        h1 { "Catalogue" }
        (notice(&p))
        (search("/web/catalogue", p.q.as_deref(), "Search products (SKU or name)"))
        (export_links(&[(ImportKind::Products, "products"), (ImportKind::PriceList, "price lists")]))
        h2 { "Products" }
        (products_table(&products, is_admin(&web)))
        @if is_admin(&web) { (product_form(&web, editing)) }
        h2 { "Price lists" }
        @if lists.is_empty() { p.empty { "No price list yet: import one or set a price below." } }
        @for l in &lists { (price_list(l)) }
        @if is_admin(&web) { (price_form(&web, &lists)) }
    };
    Ok(page("Catalogue", Some(web.chrome()), body).into_response())
}

fn products_table(products: &[ProductView], admin: bool) -> Markup {
    html! {
        @if products.is_empty() {
            p.empty { "No product matches." }
        } @else {
            div.table-wrap { table.products {
                caption.count { (format::count(products.len() as u64, "product", "products")) }
                thead { tr {
                    th scope="col" { "SKU" } th scope="col" { "Name" } th scope="col" { "Unit" }
                    th scope="col" { "Serialized" } th scope="col" { "Spare part" }
                    th scope="col" { "Active" } th scope="col" { "Territory" }
                    @if admin { th scope="col" { span.visually-hidden { "Actions" } } }
                } }
                tbody { @for x in products { tr {
                    td { (x.sku) } td { (x.name) } td { (x.unit) }
                    td { (yes(x.serialized)) } td { (yes(x.spare_part)) } td { (yes(x.active)) }
                    td { (x.territory) }
                    @if admin { td { a href=(format!("/web/catalogue?edit={}#product-form", format::query_escape(&x.sku))) { "Edit " span.visually-hidden { (x.sku) } } } }
                } } }
            } }
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn product_form(web: &WebUser, p: Option<&ProductView>) -> Markup {
    html! {
        form #product-form method="post" action="/web/admin/save/products" {
            input type="hidden" name="csrf" value=(web.csrf);
            fieldset {
                legend { @if p.is_some() { "Edit the product" } @else { "New product (or update one by its SKU)" } }
                (field("sku", "SKU", p.map(|x| x.sku.as_str()), true))
                (field("name", "Name", p.map(|x| x.name.as_str()), true))
                (field("unit", "Unit", Some(p.map_or("pcs", |x| x.unit.as_str())), false))
                (yes_no("serialized", "Tracked by serial number", p.is_some_and(|x| x.serialized)))
                (yes_no("spare_part", "Spare part", p.is_some_and(|x| x.spare_part)))
                (yes_no("active", "Active (sold now)", p.is_none_or(|x| x.active)))
                (field("territory", "Territory (empty: yours)", p.map(|x| x.territory.as_str()), false))
                button type="submit" { "Save product" }
            }
        }
    }
}

fn price_list(l: &PriceListView) -> Markup {
    html! {
        details.price-list {
            summary {
                strong { (l.name) } " · " (l.currency) " · " (l.territory) " · "
                (format::count(l.items.len() as u64, "item", "items")) " · "
                (format::count(l.accounts as u64, "account", "accounts"))
                @if l.territory_default { " · " span.badge { "default of its territory" } }
            }
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "SKU" } th scope="col" { "Product" }
                    th scope="col" { "Unit price" } th scope="col" { "Max. discount %" }
                } }
                tbody { @for i in &l.items { tr {
                    td { (i.sku) } td { (i.product) }
                    td.num { (i.unit_price) " " (l.currency) } td.num { (i.max_discount_percent) }
                } } }
            } }
        }
    }
}

fn price_form(web: &WebUser, lists: &[PriceListView]) -> Markup {
    html! {
        form #price-form method="post" action="/web/admin/save/price-list" {
            input type="hidden" name="csrf" value=(web.csrf);
            fieldset {
                legend { "Set a price (a new list is made when the name is new)" }
                div.field {
                    label for="f-price_list" { "Price list (required)" }
                    input #f-price_list type="text" name="price_list" list="price-lists" required;
                    datalist #price-lists { @for l in lists { option value=(l.name) {} } }
                }
                (field("currency", "Currency, e.g. EUR", Some(lists.first().map_or("EUR", |l| l.currency.as_str())), true))
                (field("sku", "Product SKU", None, true))
                (field("unit_price", "Unit price, e.g. 12.50", None, true))
                (field("max_discount_percent", "Max. discount % without approval", Some("0"), false))
                div.field {
                    label for="f-territory_default" { "Default list of its territory (for accounts without their own)" }
                    select #f-territory_default name="territory_default" {
                        option value="" { "Leave as it is" }
                        option value="yes" { "Yes" }
                        option value="no" { "No" }
                    }
                }
                button type="submit" { "Save price" }
            }
        }
    }
}

/// `GET /web/customers`: accounts and contacts, with their forms.
pub(super) async fn customers(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebQuery(p): WebQuery<ListParams>,
) -> Result<Response, WebError> {
    let accounts = service::catalogue::accounts(&ctx, &web.caller, p.q.as_deref()).await?;
    let contacts = service::catalogue::contacts(&ctx, &web.caller, p.q.as_deref()).await?;
    let lists = service::catalogue::price_lists(&ctx, &web.caller).await?;
    let editing = p.edit.as_deref().and_then(|code| {
        accounts
            .iter()
            .find(|a| !a.code.is_empty() && a.code == code)
    });
    let contact = p
        .edit
        .as_deref()
        .and_then(|id| contacts.iter().find(|c| c.id == id));
    let admin = is_admin(&web);
    let body = html! {
        h1 { "Customers" }
        (notice(&p))
        (search("/web/customers", p.q.as_deref(), "Search accounts and contacts (code, name, email)"))
        (export_links(&[(ImportKind::Accounts, "accounts"), (ImportKind::Contacts, "contacts")]))
        h2 { "Accounts" }
        (accounts_table(&accounts, admin))
        @if admin { (account_form(&web, editing, &lists)) }
        h2 { "Contacts" }
        (contacts_table(&contacts, admin))
        @if admin { (contact_form(&web, contact)) }
    };
    Ok(page("Customers", Some(web.chrome()), body).into_response())
}

fn accounts_table(accounts: &[AccountView], admin: bool) -> Markup {
    html! {
        @if accounts.is_empty() {
            p.empty { "No account matches." }
        } @else {
            div.table-wrap { table.accounts {
                caption.count { (format::count(accounts.len() as u64, "account", "accounts")) }
                thead { tr {
                    th scope="col" { "Code" } th scope="col" { "Name" } th scope="col" { "Type" }
                    th scope="col" { "Status" } th scope="col" { "Price list" } th scope="col" { "Owner" }
                    th scope="col" { "Territory" } th scope="col" { "Sites (geofence)" }
                    @if admin { th scope="col" { span.visually-hidden { "Actions" } } }
                } }
                tbody { @for a in accounts { tr {
                    td { (a.code) } td { (a.name) } td { (a.account_type) } td { (a.account_status) }
                    td { (a.price_list.as_deref().unwrap_or("—")) } td { (a.owner) } td { (a.territory) }
                    td { @for s in &a.sites { div { (s.name) " (" (s.geofence_radius_m) " m)" @if !s.address.is_empty() { ", " (s.address) } } } }
                    @if admin { td { @if !a.code.is_empty() {
                        a href=(format!("/web/customers?edit={}#account-form", format::query_escape(&a.code))) { "Edit " span.visually-hidden { (a.name) } }
                    } } }
                } } }
            } }
        }
    }
}

fn account_form(web: &WebUser, a: Option<&AccountView>, lists: &[PriceListView]) -> Markup {
    let site = a.and_then(|a| a.sites.first());
    let current = a.and_then(|a| a.price_list.clone());
    let num = |v: Option<f64>| v.map(|x| x.to_string());
    html! {
        form #account-form method="post" action="/web/admin/save/accounts" {
            input type="hidden" name="csrf" value=(web.csrf);
            fieldset {
                legend { @if a.is_some() { "Edit the account" } @else { "New account (or update one by its code)" } }
                (field("code", "Code", a.map(|x| x.code.as_str()), true))
                (field("name", "Name", a.map(|x| x.name.as_str()), true))
                (field("account_type", "Type", Some(a.map_or("customer", |x| x.account_type.as_str())), false))
                div.field {
                    label for="f-account_status" { "Status" }
                    select #f-account_status name="account_status" {
                        @for s in ["active", "prospect", "inactive"] {
                            option value=(s) selected[a.is_some_and(|x| x.account_status == s)] { (s) }
                        }
                    }
                }
                (field("visit_frequency_days", "Days between visits", a.and_then(|x| x.visit_frequency_days).map(|d| d.to_string()).as_deref(), false))
                div.field {
                    label for="f-price_list" { "Price list" }
                    select #f-price_list name="price_list" {
                        option value="" { "None" }
                        @for l in lists { option value=(l.name) selected[current.as_deref() == Some(l.name.as_str())] { (l.name) " (" (l.currency) ")" } }
                    }
                }
                (field("owner", "Owner's email (empty: you)", a.map(|x| x.owner.as_str()), false))
                (field("territory", "Territory (empty: the owner's)", a.map(|x| x.territory.as_str()), false))
                (field("location_name", "Site name", site.map(|s| s.name.as_str()), false))
                (field("address", "Site address", site.map(|s| s.address.as_str()), false))
                (field("lat", "Latitude", num(site.and_then(|s| s.lat)).as_deref(), false))
                (field("lng", "Longitude", num(site.and_then(|s| s.lng)).as_deref(), false))
                (field("geofence_radius_m", "Geofence radius (m)", num(site.map(|s| s.geofence_radius_m)).as_deref(), false))
                button type="submit" { "Save account" }
            }
        }
    }
}

fn contacts_table(contacts: &[ContactView], admin: bool) -> Markup {
    html! {
        @if contacts.is_empty() {
            p.empty { "No contact matches." }
        } @else {
            div.table-wrap { table.contacts {
                caption.count { (format::count(contacts.len() as u64, "contact", "contacts")) }
                thead { tr {
                    th scope="col" { "Account" } th scope="col" { "Name" } th scope="col" { "Role" }
                    th scope="col" { "Email" } th scope="col" { "Phone" } th scope="col" { "Consent" }
                    @if admin { th scope="col" { span.visually-hidden { "Actions" } } }
                } }
                tbody { @for c in contacts { tr {
                    td { (c.account) @if !c.account_code.is_empty() { " (" (c.account_code) ")" } }
                    td { (c.name) } td { (c.role.as_deref().unwrap_or("")) }
                    td { (c.email.as_deref().unwrap_or("")) } td { (c.phone.as_deref().unwrap_or("")) }
                    td { @match &c.consent {
                        Some(k) => { span class=(format!("badge {}", k.status)) { (k.status) } " " (k.at) ", " (k.how) }
                        None => { span.empty { "not asked" } }
                    } }
                    @if admin { td { @if !c.account_code.is_empty() {
                        a href=(format!("/web/customers?edit={}#contact-form", c.id)) { "Edit " span.visually-hidden { (c.name) } }
                    } } }
                } } }
            } }
        }
    }
}

fn contact_form(web: &WebUser, c: Option<&ContactView>) -> Markup {
    let consent = c.and_then(|c| c.consent.as_ref());
    html! {
        form #contact-form method="post" action="/web/admin/save/contacts" {
            input type="hidden" name="csrf" value=(web.csrf);
            fieldset {
                legend { @if c.is_some() { "Edit the contact" } @else { "New contact (or update one by account and name)" } }
                (field("account_code", "Account code", c.map(|x| x.account_code.as_str()), true))
                (field("name", "Full name", c.map(|x| x.name.as_str()), true))
                (field("role", "Role, e.g. buyer", c.and_then(|x| x.role.as_deref()), false))
                (field("phone", "Phone", c.and_then(|x| x.phone.as_deref()), false))
                (field("email", "Email", c.and_then(|x| x.email.as_deref()), false))
                div.field {
                    label for="f-consent" { "Consent to be contacted" }
                    select #f-consent name="consent" {
                        option value="" { "Leave as recorded" }
                        option value="granted" selected[consent.is_some_and(|k| k.status == "granted")] { "Granted" }
                        option value="withdrawn" selected[consent.is_some_and(|k| k.status == "withdrawn")] { "Withdrawn" }
                    }
                }
                (field("consent_at", "When (YYYY-MM-DD)", consent.map(|k| k.at.as_str()), false))
                (field("consent_how", "How, e.g. signed form", consent.map(|k| k.how.as_str()), false))
                button type="submit" { "Save contact" }
            }
        }
    }
}

/// `POST /web/admin/save/{kind}`: one record from a form (a row of the
/// kind's CSV file); back to its page with what happened.
pub(super) async fn save(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(kind): Path<String>,
    WebForm(form): WebForm<BTreeMap<String, String>>,
) -> Result<Response, WebError> {
    web.check_csrf(form.get("csrf").map(String::as_str))?;
    let kind: ImportKind = kind.parse()?;
    let back = match kind {
        ImportKind::Products | ImportKind::PriceList => "/web/catalogue",
        ImportKind::Accounts | ImportKind::Contacts => "/web/customers",
    };
    let what = match kind {
        ImportKind::Products => "Product saved.",
        ImportKind::PriceList => "Price saved.",
        ImportKind::Accounts => "Account saved.",
        ImportKind::Contacts => "Contact saved.",
    };
    match service::catalogue::save(&ctx, &web.caller, kind, &form).await {
        Ok(_) => Ok(Redirect::to(&format!(
            "{back}?done={}",
            format::query_escape(&format!(
                "{what} Devices in its territory get it with their next sync."
            ))
        ))
        .into_response()),
        Err(e @ (Error::BadRequest(_) | Error::Conflict(_))) => Ok(Redirect::to(&format!(
            "{back}?error={}",
            format::query_escape(&e.to_string())
        ))
        .into_response()),
        Err(e) => Err(e.into()),
    }
}

/// `GET /web/export-csv/{kind}`: the CSV download of a kind.
pub(super) async fn export(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    Path(kind): Path<String>,
) -> Result<Response, WebError> {
    let kind: ImportKind = kind.trim_end_matches(".csv").parse()?;
    let csv = service::catalogue::export(&ctx, &web.caller, kind).await?;
    let mut resp = csv.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}.csv\"", kind.as_str()))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// The Import page's form.
#[derive(Debug, Deserialize)]
pub(super) struct ImportForm {
    csrf: Option<String>,
    kind: Option<String>,
    csv: Option<String>,
}

/// `GET /web/import`: choose the kind and the file.
pub(super) async fn import_page(web: WebUser) -> Result<Response, WebError> {
    crate::domain::catalogue::may_administer(
        web.caller.role(),
        crate::domain::catalogue::Administering::Writing,
    )?;
    Ok(page(
        "Import",
        Some(web.chrome()),
        import_body(&web, ImportKind::Accounts, "", None),
    )
    .into_response())
}

/// `POST /web/import/check`: the dry run; its errors, or the confirm form.
pub(super) async fn import_check(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebForm(form): WebForm<ImportForm>,
) -> Result<Response, WebError> {
    run(&ctx, &web, form, true).await
}

/// `POST /web/import/run`: the import itself (after a dry run).
pub(super) async fn import_run(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebForm(form): WebForm<ImportForm>,
) -> Result<Response, WebError> {
    run(&ctx, &web, form, false).await
}

async fn run(
    ctx: &Context,
    web: &WebUser,
    form: ImportForm,
    dry_run: bool,
) -> Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let kind: ImportKind = form.kind.as_deref().unwrap_or("").parse()?;
    let csv = form.csv.unwrap_or_default();
    if csv.trim().is_empty() {
        let body = import_body(
            web,
            kind,
            "",
            Some(Err("Choose a file (or paste its text) first.".into())),
        );
        return Ok((
            StatusCode::BAD_REQUEST,
            page("Import", Some(web.chrome()), body),
        )
            .into_response());
    }
    let report =
        service::catalogue::import(ctx, &web.caller, kind, csv.as_bytes(), dry_run).await?;
    let status = if report.ok {
        StatusCode::OK
    } else {
        status_of(ErrorKind::Unprocessable)
    };
    let body = import_body(web, kind, &csv, Some(Ok(report)));
    Ok((status, page("Import", Some(web.chrome()), body)).into_response())
}

fn import_body(
    web: &WebUser,
    kind: ImportKind,
    csv: &str,
    outcome: Option<Result<ImportReport, String>>,
) -> Markup {
    html! {
        h1 { "Import" }
        p {
            "Import accounts, contacts, products or price lists from a CSV file (UTF-8, a header line first). "
            "A check lists every error by line and column and writes nothing; the import writes all rows or none, "
            "and devices receive them with their next sync. Importing a file again updates by its key "
            "(account code, product SKU, price list name and SKU, account code and contact name)."
        }
        @match &outcome {
            Some(Err(message)) => { p.notice.error role="alert" { (message) } }
            Some(Ok(r)) if !r.ok => {
                p.notice.error role="alert" {
                    (format::count(r.error_count as u64, "error", "errors")) " in the file: nothing was written. "
                    "Fix them and check the file again."
                }
                div.table-wrap { table.import-errors {
                    caption { "Errors by line and column" @if r.error_count > r.errors.len() { " (the first " (r.errors.len()) ")" } }
                    thead { tr { th scope="col" { "Line" } th scope="col" { "Column" } th scope="col" { "Error" } } }
                    tbody { @for e in &r.errors { (error_row(e)) } }
                } }
            }
            Some(Ok(r)) if r.dry_run => {
                p.notice.ok role="status" {
                    "The file is good: " (format::count(r.rows as u64, "row", "rows")) "; records: "
                    (r.created) " to create, " (r.updated) " to update, " (r.unchanged) " unchanged."
                }
                form method="post" action="/web/import/run" {
                    input type="hidden" name="csrf" value=(web.csrf);
                    input type="hidden" name="kind" value=(kind.as_str());
                    input type="hidden" name="csv" value=(csv);
                    button #confirm type="submit" { "Import " (format::count(r.rows as u64, "row", "rows")) }
                    " "
                    a href="/web/import" { "Cancel" }
                }
            }
            Some(Ok(r)) => {
                p.notice.ok role="status" {
                    "Imported " (r.rows) " " (row_noun(kind)) "; records: " (r.created) " created, " (r.updated) " updated, "
                    (r.unchanged) " unchanged, in " (r.millis) " ms. Devices receive them with their next sync."
                }
                p { a href=(list_page(kind)) { "See them" } " · " a href="/web/import" { "Import another file" } }
            }
            None => {}
        }
        @if !matches!(&outcome, Some(Ok(r)) if r.ok) {
            form #import-form method="post" action="/web/import/check" {
                input type="hidden" name="csrf" value=(web.csrf);
                div.field {
                    label for="kind" { "The file holds" }
                    select #kind name="kind" {
                        @for k in ImportKind::ALL {
                            option value=(k.as_str()) selected[k == kind] { (kind_noun(k)) }
                        }
                    }
                }
                div.field {
                    label for="file" { "CSV file" }
                    input #file type="file" accept=".csv,text/csv" aria-describedby="file-hint";
                    p.hint #file-hint { "Choosing a file fills the text below; without JavaScript, paste the file's text there." }
                }
                div.field {
                    label for="csv" { "The file's text" }
                    textarea #csv name="csv" rows="10" spellcheck="false" { (csv) }
                }
                button #check type="submit" { "Check the file" }
            }
            h2 { "Columns" }
            @for k in ImportKind::ALL {
                details {
                    summary { (kind_noun(k)) }
                    table {
                        thead { tr { th scope="col" { "Column" } th scope="col" { "Required" } th scope="col" { "What it holds" } } }
                        tbody { @for c in columns(k) { tr { td { code { (c.name) } } td { (yes(c.required)) } td { (c.help) } } } }
                    }
                }
            }
        }
    }
}

fn error_row(e: &RowError) -> Markup {
    html! { tr { td { (e.line) } td { (e.column) } td { (e.message) } } }
}

fn kind_noun(kind: ImportKind) -> &'static str {
    match kind {
        ImportKind::Accounts => "accounts",
        ImportKind::Contacts => "contacts",
        ImportKind::Products => "products",
        ImportKind::PriceList => "price lists",
    }
}

/// What each row of a file of `kind` is.
fn row_noun(kind: ImportKind) -> &'static str {
    match kind {
        ImportKind::PriceList => "price-list items",
        other => kind_noun(other),
    }
}

fn list_page(kind: ImportKind) -> &'static str {
    match kind {
        ImportKind::Products | ImportKind::PriceList => "/web/catalogue",
        ImportKind::Accounts | ImportKind::Contacts => "/web/customers",
    }
}
