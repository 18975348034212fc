//! Browser sessions of the managers' pages over HTTP: the login page, the
//! session cookie, the CSRF tokens of forms, and the [`WebUser`] extractor
//! every page takes.
//!
//! Signing in, loading a session and signing out are `service::auth`'s
//! ([`start_web_session`](crate::service::auth::start_web_session),
//! [`web_session`](crate::service::auth::web_session),
//! [`end_web_session`](crate::service::auth::end_web_session)): a browser
//! sign-in registers a `web` device, so a manager's browser sessions are listed
//! and revoked with `/v1/devices` like their phones. What stays here is the
//! browser's side. The session is a random 32-byte token in an `HttpOnly`,
//! `SameSite=Strict` cookie scoped to `/web` (`Secure` when the request came
//! over TLS, as a terminating proxy reports in `X-Forwarded-Proto` or
//! `Forwarded`); the database keeps only its SHA-256. A session lasts
//! [`SESSION_SECS`] and ends at logout.
//!
//! Every form POST carries a CSRF token: for a session, the SHA-256 of the
//! session token under a fixed label (so it is known only to pages rendered for
//! that session and needs no storage); for the login form, a random token that
//! must match a short-lived cookie set with the form (double submit).
//! `SameSite=Strict` already keeps other sites' requests cookie-less; the token
//! is the second lock.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::domain::Caller;
use crate::service::{self, Context};

use super::{Chrome, WebError, WebForm, WebQuery, page, status_of};

/// The session cookie.
pub const SESSION_COOKIE: &str = "fieldsync_session";
/// The login form's CSRF cookie.
const LOGIN_CSRF_COOKIE: &str = "fieldsync_login_csrf";
/// How long a browser session (and its cookie) lasts.
pub const SESSION_SECS: i64 = service::auth::WEB_SESSION_SECS;
/// How long a login form stays valid.
const LOGIN_FORM_SECS: i64 = 3600;

/// The signed-in manager of a page request, with the CSRF token of their forms.
#[derive(Debug, Clone)]
pub struct WebUser {
    /// The user on the session's `web` device, as every API handler sees a
    /// caller (services acting on their behalf use [`Caller::on_behalf`]).
    pub caller: Caller,
    /// The CSRF token forms of this session carry.
    pub csrf: String,
}

impl WebUser {
    /// What the page layout shows of the user.
    pub fn chrome(&self) -> Chrome<'_> {
        Chrome {
            name: &self.caller.display_name,
            role: self.caller.role().as_str(),
            csrf: &self.csrf,
        }
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, presented: Option<&str>) -> Result<(), WebError> {
        match presented {
            Some(p) if constant_time_eq(p.as_bytes(), self.csrf.as_bytes()) => Ok(()),
            _ => Err(WebError::Csrf),
        }
    }
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The CSRF token of the session whose cookie token is `token`.
fn csrf_for(token: &str) -> String {
    hex::encode(Sha256::digest(
        format!("fieldsync-web-csrf:{token}").as_bytes(),
    ))
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
}

/// The value of cookie `name`, if the request sent it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Whether the request came over TLS, as a terminating proxy reports it.
fn over_tls(headers: &HeaderMap) -> bool {
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("proto=https"));
    proto || forwarded
}

/// A `Set-Cookie` value for `name` (an empty value with `max_age` 0 deletes it).
fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text =
        format!("{name}={value}; Path=/web; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    // Names are constants and values hex, so this always parses.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A local path to return to after login: `/web/...` only, never another site.
fn safe_next(next: Option<&str>) -> Option<String> {
    let next = next?;
    let ok = next.starts_with("/web/")
        && !next.starts_with("/web//")
        && next.len() <= 1_000
        && next
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'"' && b != b'<');
    ok.then(|| next.to_owned())
}

impl FromRequestParts<Arc<Context>> for WebUser {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &Arc<Context>,
    ) -> Result<Self, Self::Rejection> {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .filter(|_| parts.method == axum::http::Method::GET);
        let login = || WebError::LoginRequired {
            next: safe_next(next.as_deref()),
        };
        let token = cookie(&parts.headers, SESSION_COOKIE)
            .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(login)?
            .to_owned();
        let Some(caller) = service::auth::web_session(ctx, &token).await? else {
            return Err(login());
        };
        // Ids only: the request's log lines say who, never their name or email.
        let span = tracing::Span::current();
        if let Some(device) = caller.device() {
            span.record("device", tracing::field::display(device));
        }
        span.record("user", tracing::field::display(caller.user()));
        Ok(WebUser {
            csrf: csrf_for(&token),
            caller,
        })
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginQuery {
    next: Option<String>,
}

/// `GET /web/login`.
pub(super) async fn login_form(headers: HeaderMap, WebQuery(q): WebQuery<LoginQuery>) -> Response {
    login_page(&headers, q.next.as_deref(), "", "", None, StatusCode::OK)
}

/// The login form with a fresh CSRF pair, an error and the fields kept.
fn login_page(
    headers: &HeaderMap,
    next: Option<&str>,
    org: &str,
    email: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let csrf = random_token();
    let next = safe_next(next);
    let body: Markup = html! {
        section.login aria-labelledby="login-title" {
            h1 #login-title { "Sign in to review your team's work" }
            @if let Some(error) = error {
                p.notice.error role="alert" { (error) }
            }
            form method="post" action="/web/login" {
                input type="hidden" name="csrf" value=(csrf);
                @if let Some(next) = &next {
                    input type="hidden" name="next" value=(next);
                }
                label for="org" { "Organisation" }
                input #org name="org" type="text" required autocomplete="organization"
                    autocapitalize="none" value=(org);
                label for="email" { "Email" }
                input #email name="email" type="email" required autocomplete="username" value=(email);
                label for="password" { "Password" }
                input #password name="password" type="password" required autocomplete="current-password";
                button type="submit" { "Sign in" }
            }
            p.hint { "For managers and administrators. Reps and technicians use the mobile app." }
        }
    };
    let mut resp = (status, page("Sign in", None, body)).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, &csrf, LOGIN_FORM_SECS, over_tls(headers)),
    );
    resp
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    org: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

/// `POST /web/login`.
pub(super) async fn login(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    WebForm(form): WebForm<LoginForm>,
) -> Response {
    let again = |error: &str, status| {
        login_page(
            &headers,
            form.next.as_deref(),
            &form.org,
            &form.email,
            Some(error),
            status,
        )
    };
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(expected.as_bytes(), form.csrf.as_bytes()) {
        return again(
            "The sign-in form expired or was sent from elsewhere; please sign in again.",
            StatusCode::FORBIDDEN,
        );
    }
    match service::auth::start_web_session(&ctx, &form.org, &form.email, form.password.clone())
        .await
    {
        Ok(token) => {
            let secure = over_tls(&headers);
            let to = safe_next(form.next.as_deref()).unwrap_or_else(|| "/web/inbox".into());
            let mut resp = Redirect::to(&to).into_response();
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &token, SESSION_SECS, secure),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(LOGIN_CSRF_COOKIE, "", 0, secure),
            );
            resp
        }
        Err(e) => {
            e.log_if_server_error();
            again(&e.to_string(), status_of(e.kind()))
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct LogoutForm {
    csrf: Option<String>,
}

/// `POST /web/logout`: ends the session and revokes its device.
pub(super) async fn logout(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    web: WebUser,
    WebForm(form): WebForm<LogoutForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    service::auth::end_web_session(&ctx, &web.caller).await?;
    let mut resp = Redirect::to("/web/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, over_tls(&headers)),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_web_paths_are_followed_after_login() {
        assert_eq!(
            safe_next(Some("/web/reports/x?y=1")).as_deref(),
            Some("/web/reports/x?y=1")
        );
        for bad in [
            "https://evil.test/web/",
            "//evil.test/web/",
            "/web//evil.test",
            "/v1/reports",
            "/web/\\evil",
            "/web/a b",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad}");
        }
    }

    #[test]
    fn cookies_are_found_among_several_headers_and_pairs() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; fieldsync_session=abc"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn the_session_cookie_is_http_only_strict_and_secure_over_tls() {
        let plain = set_cookie(SESSION_COOKIE, "ab", 60, false);
        let plain = plain.to_str().expect("ascii");
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_tls(&h));
        let tls = set_cookie(SESSION_COOKIE, "ab", 60, over_tls(&h));
        assert!(tls.to_str().expect("ascii").ends_with("; Secure"));
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        let a = csrf_for("token-a");
        assert_eq!(a, csrf_for("token-a"));
        assert_ne!(a, csrf_for("token-b"));
        assert!(constant_time_eq(a.as_bytes(), a.as_bytes()));
        assert!(!constant_time_eq(a.as_bytes(), &a.as_bytes()[1..]));
    }
}
