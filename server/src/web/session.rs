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
//! `SameSite=Strict` cookie; the database keeps only its SHA-256. A session
//! lasts [`SESSION_SECS`] and ends at logout.
//!
//! **Cookies are `Secure` by default**, named with the `__Host-` prefix
//! (`__Host-fieldsync_session`), which browsers accept only with `Secure`,
//! `Path=/` and no `Domain`: the cookie travels only over HTTPS, to this host
//! only, and no sibling subdomain or plain-HTTP page can set or overwrite it.
//! It no longer depends on a proxy header saying the request came over TLS
//! (a header anyone can send). For trying the pages over plain HTTP the
//! setting `[web] secure_cookies = false` (or `serve --demo`) names them
//! `fieldsync_session` with `Path=/web` and no `Secure`.
//!
//! Every form POST carries a CSRF token: for a session, the SHA-256 of the
//! session token under a fixed label (so it is known only to pages rendered for
//! that session and needs no storage); for the login form, a random token that
//! must match a short-lived cookie set with the form (double submit).
//! `SameSite=Strict` already keeps other sites' requests cookie-less; the token
//! is the second lock.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::domain::Caller;
use crate::domain::address::client_address;
use crate::service::{self, Context};

use super::{Chrome, WebError, WebForm, WebQuery, page, status_of};

/// The session cookie (over plain HTTP; [`Cookies::session`] names it).
pub const SESSION_COOKIE: &str = "fieldsync_session";
/// The login form's CSRF cookie (over plain HTTP).
const LOGIN_CSRF_COOKIE: &str = "fieldsync_login_csrf";
/// The prefix browsers hold to `Secure`, `Path=/` and no `Domain`.
const HOST_PREFIX: &str = "__Host-";

/// How this node's cookies are named and flagged (`[web] secure_cookies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cookies {
    secure: bool,
}

impl Cookies {
    fn of(ctx: &Context) -> Cookies {
        Cookies {
            secure: ctx.secure_cookies,
        }
    }

    fn name(self, base: &str) -> String {
        if self.secure {
            format!("{HOST_PREFIX}{base}")
        } else {
            base.to_owned()
        }
    }

    /// The session cookie's name.
    fn session(self) -> String {
        self.name(SESSION_COOKIE)
    }

    /// The login form's CSRF cookie's name.
    fn login_csrf(self) -> String {
        self.name(LOGIN_CSRF_COOKIE)
    }

    /// A `Set-Cookie` value for `name` (an empty value with `max_age` 0 deletes it).
    fn set(self, name: &str, value: &str, max_age: i64) -> HeaderValue {
        let text = if self.secure {
            // What `__Host-` requires: Secure, Path=/ and no Domain.
            format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}; Secure")
        } else {
            format!("{name}={value}; Path=/web; HttpOnly; SameSite=Strict; Max-Age={max_age}")
        };
        // Names are constants and values hex, so this always parses.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}
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

/// The address a page request comes from (the per-address login limit):
/// the peer, or what a trusted proxy reports (`domain::address`).
fn client_addr(ctx: &Context, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    peer.map(|p| client_address(p, forwarded, &ctx.trusted_proxies))
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
        let token = cookie(&parts.headers, &Cookies::of(ctx).session())
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
pub(super) async fn login_form(
    State(ctx): State<Arc<Context>>,
    WebQuery(q): WebQuery<LoginQuery>,
) -> Response {
    login_page(
        Cookies::of(&ctx),
        q.next.as_deref(),
        "",
        "",
        None,
        StatusCode::OK,
    )
}

/// The login form with a fresh CSRF pair, an error and the fields kept.
fn login_page(
    cookies: Cookies,
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
        cookies.set(&cookies.login_csrf(), &csrf, LOGIN_FORM_SECS),
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
    extensions: Extensions,
    headers: HeaderMap,
    WebForm(form): WebForm<LoginForm>,
) -> Response {
    let cookies = Cookies::of(&ctx);
    let again = |error: &str, status| {
        login_page(
            cookies,
            form.next.as_deref(),
            &form.org,
            &form.email,
            Some(error),
            status,
        )
    };
    let expected = cookie(&headers, &cookies.login_csrf()).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(expected.as_bytes(), form.csrf.as_bytes()) {
        return again(
            "The sign-in form expired or was sent from elsewhere; please sign in again.",
            StatusCode::FORBIDDEN,
        );
    }
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|p| p.0.ip());
    let from = client_addr(&ctx, peer, &headers);
    match service::auth::start_web_session(
        &ctx,
        from,
        &form.org,
        &form.email,
        form.password.clone(),
    )
    .await
    {
        Ok(token) => {
            let to = safe_next(form.next.as_deref()).unwrap_or_else(|| "/web/inbox".into());
            let mut resp = Redirect::to(&to).into_response();
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                cookies.set(&cookies.session(), &token, SESSION_SECS),
            );
            h.append(
                header::SET_COOKIE,
                cookies.set(&cookies.login_csrf(), "", 0),
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
    web: WebUser,
    WebForm(form): WebForm<LogoutForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    service::auth::end_web_session(&ctx, &web.caller).await?;
    let cookies = Cookies::of(&ctx);
    let mut resp = Redirect::to("/web/login").into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, cookies.set(&cookies.session(), "", 0));
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
    fn the_session_cookie_is_secure_with_the_host_prefix_unless_turned_off() {
        let secure = Cookies { secure: true };
        assert_eq!(secure.session(), "__Host-fieldsync_session");
        let set = secure.set(&secure.session(), "ab", 60);
        let set = set.to_str().expect("ascii");
        assert_eq!(
            set,
            "__Host-fieldsync_session=ab; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure"
        );
        assert!(!set.contains("Domain"));
        let plain = Cookies { secure: false };
        assert_eq!(plain.session(), "fieldsync_session");
        let set = plain.set(&plain.session(), "ab", 60);
        let set = set.to_str().expect("ascii");
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(set.contains("Path=/web") && !set.contains("Secure"));
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
