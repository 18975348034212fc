//! `/web/erasure`: erasure of personal data, for administrators
//! (`docs/privacy.md`). Two forms, erase a contact and erase a user, each
//! with the reason the erasure log keeps and a confirmation box the browser
//! requires ticked (it cannot be undone), and the erasure log below: who,
//! when, why, whose, which records — never an erased value.
//!
//! The forms POST with the session's CSRF token to `/web/erasure/contact` and
//! `/web/erasure/user` and call `service::erasure`, the use case of the JSON
//! API and the command line. The result is the page again with a notice; a
//! refusal is the page with the reason and the JSON API's status.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fieldsync_core::model::DeviceTime;
use fieldsync_core::{RecordId, UserId};
use maud::{Markup, html};
use serde::Deserialize;

use super::format;
use super::{WebError, WebForm, WebUser, page, status_of};
use crate::domain::{Error, Result};
use crate::service::erasure::{Erasure, ErasureEntry};
use crate::service::{self, Context};

/// A notice on the page: (ok, text).
type Notice = Option<(bool, String)>;

/// `GET /web/erasure`.
pub(super) async fn show(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
) -> std::result::Result<Response, WebError> {
    let log = service::erasure::log(&ctx, &web.caller, 200).await?;
    Ok(render(&web, &log, None).into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct EraseForm {
    csrf: Option<String>,
    id: String,
    reason: String,
    confirm: Option<String>,
}

/// `POST /web/erasure/contact`.
pub(super) async fn erase_contact(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebForm(form): WebForm<EraseForm>,
) -> std::result::Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let result = match (confirmed(&form), parse::<RecordId>("contact", &form.id)) {
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(()), Ok(id)) => {
            service::erasure::erase_contact(&ctx, &web.caller, id, &form.reason).await
        }
    };
    after(&ctx, &web, result.map(|e| done("contact", &e))).await
}

/// `POST /web/erasure/user`.
pub(super) async fn erase_user(
    State(ctx): State<Arc<Context>>,
    web: WebUser,
    WebForm(form): WebForm<EraseForm>,
) -> std::result::Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let result = match (confirmed(&form), parse::<UserId>("user", &form.id)) {
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(()), Ok(id)) => service::erasure::erase_user(&ctx, &web.caller, id, &form.reason).await,
    };
    after(&ctx, &web, result.map(|e| done("user", &e))).await
}

fn confirmed(form: &EraseForm) -> Result<()> {
    match form.confirm.as_deref() {
        Some("yes") => Ok(()),
        _ => Err(Error::BadRequest(
            "tick the box to confirm: an erasure cannot be undone".into(),
        )),
    }
}

fn parse<T: std::str::FromStr>(what: &str, id: &str) -> Result<T> {
    id.trim()
        .parse()
        .map_err(|_| Error::BadRequest(format!("{:?} is not a {what} id", id.trim())))
}

fn done(what: &str, e: &Erasure) -> String {
    format!(
        "The {what}'s data is erased: {} record(s) rewritten, {} attachment(s) deleted. \
         Devices follow at their next sync.",
        e.records.len(),
        e.attachments
    )
}

async fn after(
    ctx: &Context,
    web: &WebUser,
    result: Result<String>,
) -> std::result::Result<Response, WebError> {
    let (status, notice) = match result {
        Ok(text) => (StatusCode::OK, (true, text)),
        Err(e @ (Error::BadRequest(_) | Error::NotFound)) => {
            (status_of(e.kind()), (false, e.to_string()))
        }
        Err(e) => return Err(WebError::Domain(e)),
    };
    let log = service::erasure::log(ctx, &web.caller, 200).await?;
    Ok((status, render(web, &log, Some(notice))).into_response())
}

fn when(secs: i64) -> String {
    format::date_time(DeviceTime::utc(secs.saturating_mul(1_000)))
}

fn form(web: &WebUser, what: &str, label: &str, hint: &str) -> Markup {
    let id = format!("erase-{what}");
    html! {
        form #(id) method="post" action=(format!("/web/erasure/{what}")) {
            input type="hidden" name="csrf" value=(web.csrf);
            p {
                label for=(format!("{id}-id")) { (label) }
                br;
                input #(format!("{id}-id")) name="id" required size="40" aria-describedby=(format!("{id}-hint"));
                br;
                small #(format!("{id}-hint")) { (hint) }
            }
            p {
                label for=(format!("{id}-reason")) { "Reason (kept in the erasure log)" }
                br;
                input #(format!("{id}-reason")) name="reason" required maxlength="500" size="60";
            }
            p {
                input #(format!("{id}-confirm")) type="checkbox" name="confirm" value="yes" required;
                " "
                label for=(format!("{id}-confirm")) { "I understand this cannot be undone" }
            }
            button type="submit" { "Erase" }
        }
    }
}

fn render(web: &WebUser, log: &[ErasureEntry], notice: Notice) -> Markup {
    let body = html! {
        h1 { "Erasure of personal data" }
        @if let Some((ok, text)) = &notice {
            p #erasure-notice .notice.ok[*ok].error[!*ok] role="status" { (text) }
        }
        p {
            "Erasing rewrites every record holding the person's data, on the server and on "
            "every device at its next sync (history included), and deletes photos of them and "
            "signatures they drew. The records themselves stay. See docs/privacy.md."
        }
        section aria-labelledby="erase-contact-h" {
            h2 #erase-contact-h { "Erase a contact" }
            (form(web, "contact", "Contact id", "The contact's record id (Customers page, or the export)."))
        }
        section aria-labelledby="erase-user-h" {
            h2 #erase-user-h { "Erase a user" }
            (form(web, "user", "User id", "The user's id (People page). The account stays, pseudonymised and disabled."))
        }
        section aria-labelledby="erasure-log-h" {
            h2 #erasure-log-h { "Erasure log" }
            @if log.is_empty() {
                p { "No erasure yet." }
            } @else {
                table #erasure-log {
                    thead { tr { th { "When" } th { "Whose" } th { "Reason" } th { "Records" } th { "Attachments" } } }
                    tbody {
                        @for e in log {
                            tr {
                                td { (when(e.at)) }
                                td { (e.subject_kind) " " code { (e.subject_id) } }
                                td { (e.reason) }
                                td { (e.records.len()) }
                                td { (e.attachments) }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Erasure", Some(web.chrome()), body)
}
