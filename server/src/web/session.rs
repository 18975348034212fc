//! Browser sessions of the managers' pages: login, logout, the session cookie
//! and the CSRF tokens of forms.
//!
//! A browser login is a device login: it registers a device with platform
//! `web` (a fresh device id per login), so a manager's browser sessions are
//! listed and revoked with `/v1/devices` like their phones, and revoking the
//! device ends the session at its next request. The session itself is a random
//! 32-byte token in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/web`
//! (`Secure` when the request came over TLS, as a terminating proxy reports in
//! `X-Forwarded-Proto` or `Forwarded`); the database keeps only its SHA-256
//! (`web_sessions`). A session lasts [`SESSION_SECS`] and ends at logout.
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
use fieldsync_core::DeviceId;
use maud::{Markup, html};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::accounts;
use crate::auth::AuthUser;
use crate::db::{Database, DbError, now_secs, parse_uuid};
use crate::error::ApiError;
use crate::{AppState, on_pool};

use super::{Chrome, WebError, WebForm, WebQuery, page};

/// The session cookie.
pub const SESSION_COOKIE: &str = "fieldsync_session";
/// The login form's CSRF cookie.
const LOGIN_CSRF_COOKIE: &str = "fieldsync_login_csrf";
/// How long a browser session lasts (12 hours: a working day, then log in again).
pub const SESSION_SECS: i64 = 12 * 3600;
/// How long a login form stays valid.
const LOGIN_FORM_SECS: i64 = 3600;

/// The signed-in manager of a page request, with the CSRF token of their forms.
#[derive(Debug, Clone)]
pub struct WebUser {
    /// The user and the session's device, as every API handler sees a caller.
    pub user: AuthUser,
    /// The CSRF token forms of this session carry.
    pub csrf: String,
}

impl WebUser {
    /// What the page layout shows of the user.
    pub fn chrome(&self) -> Chrome<'_> {
        Chrome {
            name: &self.user.display_name,
            role: self.user.role.as_str(),
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

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
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

impl FromRequestParts<Arc<AppState>> for WebUser {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
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
        let Some((device, user)) = live_row(&state.db, &token)
            .await
            .map_err(|e| WebError::Api(ApiError::Unavailable(e)))?
        else {
            return Err(login());
        };
        state
            .limits
            .request(&device.to_string())
            .map_err(WebError::Api)?;
        let device = accounts::device_by_id(&state.db, device)
            .await
            .map_err(|e| WebError::Api(ApiError::Unavailable(e)))?
            .ok_or_else(login)?;
        let user = match crate::auth::live_session(&state.db, user, &device).await {
            Ok(u) => u,
            Err(ApiError::DeviceRevoked | ApiError::InvalidToken) => return Err(login()),
            Err(e) => return Err(WebError::Api(e)),
        };
        if !user.role.is_back_office() {
            return Err(WebError::Api(ApiError::Forbidden(
                "these pages are for managers and administrators".into(),
            )));
        }
        if let Err(e) = accounts::touch_device(&state.db, device.id).await {
            tracing::warn!(error = %e, "could not update the device's last-seen time");
        }
        tracing::Span::current()
            .record("device", tracing::field::display(device.id))
            .record("user", tracing::field::display(user.id));
        Ok(WebUser {
            csrf: csrf_for(&token),
            user: AuthUser {
                id: user.id,
                org: user.org,
                role: user.role,
                team: user.team,
                territory: user.territory,
                display_name: user.display_name,
                device: device.id,
                actor_id: device.actor_id,
            },
        })
    }
}

/// The device and user of a live session with this cookie token.
async fn live_row(
    db: &Database,
    token: &str,
) -> Result<Option<(DeviceId, fieldsync_core::UserId)>, DbError> {
    let row: Option<(String, String)> = on_pool!(db, |pool, _uuid| {
        sqlx::query_as(
            "SELECT CAST(device_id AS TEXT), CAST(user_id AS TEXT) FROM web_sessions \
             WHERE token_hash = $1 AND ended_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash(token))
        .bind(now_secs())
        .fetch_optional(pool)
        .await?
    });
    row.map(|(d, u)| {
        Ok((
            DeviceId::from_uuid(parse_uuid(&d)?),
            fieldsync_core::UserId::from_uuid(parse_uuid(&u)?),
        ))
    })
    .transpose()
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
    State(state): State<Arc<AppState>>,
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
    if form.org.len() > 63 || form.email.len() > 320 {
        return again(
            &ApiError::InvalidCredentials.to_string(),
            StatusCode::UNAUTHORIZED,
        );
    }
    if form.password.len() > accounts::MAX_PASSWORD_BYTES {
        return again(
            &ApiError::InvalidCredentials.to_string(),
            StatusCode::UNAUTHORIZED,
        );
    }
    match start_session(&state, &form).await {
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
            again(&e.to_string(), e.status())
        }
    }
}

/// Checks the credentials and the role, registers the browser as a `web`
/// device and stores the session; answers the cookie token.
async fn start_session(state: &AppState, form: &LoginForm) -> Result<String, ApiError> {
    state.limits.login(&form.org, &form.email)?;
    let user = accounts::find_login(&state.db, &form.org, &form.email)
        .await
        .map_err(ApiError::Unavailable)?;
    // Runs even without a user so the answer's timing reveals nothing.
    if !accounts::verify_password(form.password.clone(), user.as_ref()).await {
        return Err(ApiError::InvalidCredentials);
    }
    let user = user.ok_or(ApiError::InvalidCredentials)?;
    if user.disabled {
        return Err(ApiError::AccountDisabled);
    }
    if !user.role.is_back_office() {
        return Err(ApiError::Forbidden(
            "these pages are for managers and administrators; reps and technicians use the app"
                .into(),
        ));
    }
    let info = accounts::DeviceInfo {
        id: DeviceId::new(),
        platform: "web".into(),
        app_version: format!("web {}", env!("CARGO_PKG_VERSION")),
    };
    let device = accounts::register_device(&state.db, &user, &info)
        .await
        .map_err(|e| match e {
            accounts::AccountError::Db(e) => ApiError::Unavailable(e),
            other => ApiError::Internal(anyhow::Error::new(other)),
        })?;
    let token = random_token();
    let now = now_secs();
    on_pool!(&state.db, |pool, uuid| {
        sqlx::query(
            "INSERT INTO web_sessions (token_hash, device_id, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash(&token))
        .bind(uuid(*device.id.as_uuid()))
        .bind(uuid(*user.id.as_uuid()))
        .bind(now)
        .bind(now.saturating_add(SESSION_SECS))
        .execute(pool)
        .await
        .map_err(|e| ApiError::Unavailable(DbError::Sqlx(e)))?;
    });
    tracing::info!(user = %user.id, device = %device.id, "web login");
    Ok(token)
}

#[derive(Debug, Deserialize)]
pub(super) struct LogoutForm {
    csrf: Option<String>,
}

/// `POST /web/logout`: ends the session and revokes its device.
pub(super) async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    web: WebUser,
    WebForm(form): WebForm<LogoutForm>,
) -> Result<Response, WebError> {
    web.check_csrf(form.csrf.as_deref())?;
    let device = web.user.device;
    on_pool!(&state.db, |pool, uuid| {
        sqlx::query(
            "UPDATE web_sessions SET ended_at = $1 WHERE device_id = $2 AND ended_at IS NULL",
        )
        .bind(now_secs())
        .bind(uuid(*device.as_uuid()))
        .execute(pool)
        .await
        .map_err(|e| WebError::Api(ApiError::Unavailable(DbError::Sqlx(e))))?;
    });
    accounts::revoke_device(&state.db, device)
        .await
        .map_err(|e| WebError::Api(ApiError::Unavailable(e)))?;
    tracing::info!(user = %web.user.id, device = %device, "web logout");
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
