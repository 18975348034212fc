//! The managers' pages from a test: a headless chromium under chromedriver
//! ([`Browser`]) and plain HTTP without redirects ([`http`], [`sign_in`]) for
//! what a browser would hide (status codes, cookies, refusals).
//!
//! A missing chromium or chromedriver fails the test, saying how to install
//! them (`cargo xtask deps`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::{ORG, World, free_port};

/// Fills the login form the browser shows (the organisation, `email`,
/// `password`) and sends it; the caller then waits for the page it expects.
pub async fn fill_login(b: &Client, email: &str, password: &str) {
    fill_login_of(b, ORG, email, password).await;
}

/// [`fill_login`] for another organisation than the seeded one.
pub async fn fill_login_of(b: &Client, org: &str, email: &str, password: &str) {
    for (id, text) in [("org", org), ("email", email), ("password", password)] {
        b.find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("the login form's {id}: {e}"))
            .send_keys(text)
            .await
            .expect("type");
    }
    b.find(Locator::Css("form button[type=submit]"))
        .await
        .expect("the login button")
        .click()
        .await
        .expect("sign in");
}

/// A JSON API call with a bearer `token`: `GET`, or `POST` with `body` (an
/// empty body when `None`). Answers the status and the body as JSON (`Null`
/// when it is not JSON).
pub fn api(
    w: &World,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}{path}", w.base);
    let auth = format!("Bearer {token}");
    let resp = match (method, body) {
        ("GET", _) => agent.get(&url).header("authorization", &auth).call(),
        (_, Some(b)) => agent
            .post(&url)
            .header("authorization", &auth)
            .send_json(&b),
        (_, None) => agent.post(&url).header("authorization", &auth).send_empty(),
    }
    .expect("request");
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Opens `url` and returns its HTML once the browser shows that very page:
/// under load chromedriver can answer a navigation before the new document has
/// replaced the old one, and the old page's HTML would be read instead.
///
/// A navigation still in flight when `goto` is sent (the redirect after a
/// form, on a loaded machine) can replace the one asked for: the page is asked
/// for again every few seconds until it shows, for up to 30 s in all.
pub async fn open(b: &Client, url: &str) -> String {
    b.goto(url).await.expect("goto");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut asked = Instant::now();
    loop {
        let here = b.current_url().await.expect("url");
        let ready = b
            .execute("return document.readyState", vec![])
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned));
        if here.as_str() == url && ready.as_deref() == Some("complete") {
            return b.source().await.expect("source");
        }
        assert!(Instant::now() < deadline, "the browser did not open {url}");
        if here.as_str() != url && asked.elapsed() > Duration::from_secs(5) {
            b.goto(url).await.expect("goto");
            asked = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 10 s) until the page's HTML holds `expected`, and returns it:
/// after a click that posts a form, when the page before may already show the
/// element a `settled` would wait for (an earlier notice).
pub async fn source_says(b: &Client, expected: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let html = b.source().await.unwrap_or_default();
        if html.contains(expected) {
            return html;
        }
        assert!(
            Instant::now() < deadline,
            "the page never said {expected:?}: {html}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 10 s) until the page that a click opened shows `css`.
pub async fn settled(b: &Client, css: &str) {
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("the page did not show {css}: {e}"));
}

/// A headless chromium under chromedriver on a free port, with a fresh profile.
#[allow(missing_debug_implementations)] // a WebDriver session and a child process
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("screenshots")
}

impl Browser {
    pub fn start(w: &World) -> Browser {
        let missing = || {
            panic!(
                "this test needs Debian's chromium and chromedriver: run `cargo xtask deps` \
                 (or `apt-get install chromium chromium-driver`)"
            )
        };
        let chromium = on_path("chromium").unwrap_or_else(missing);
        let chromedriver = on_path("chromedriver").unwrap_or_else(missing);
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let probe: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        while probe.get(&format!("{url}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client =
            w.rt.block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&url),
            )
            .unwrap_or_else(|e| panic!("chromium did not start under chromedriver: {e}"));
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Saves the page as `target/screenshots/<name>-<label>.png`.
    pub async fn screenshot(&self, name: &str, label: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}-{label}.png")), png).expect("save screenshot");
    }

    pub fn close(mut self, w: &World) {
        let _ = w.rt.block_on(self.client.clone().close());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed assertion still stops chromedriver (and its chromium).
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Plain HTTP without following redirects: status, `Location`, `Set-Cookie`
/// values and the body.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The `Location` header.
    pub location: Option<String>,
    /// Every `Set-Cookie` value.
    pub cookies: Vec<String>,
    /// The body as text.
    pub body: String,
    /// The `Content-Security-Policy` header.
    pub csp: Option<String>,
}

pub fn http(w: &World, method: &str, path: &str, cookie: &str, form: &[(&str, &str)]) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let url = format!("{}{path}", w.base);
    let resp = if method == "GET" {
        agent.get(&url).header("cookie", cookie).call()
    } else {
        agent
            .post(&url)
            .header("cookie", cookie)
            .send_form(form.iter().copied())
    }
    .expect("request");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (location, csp) = (header("location"), header("content-security-policy"));
    let cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let status = resp.status().as_u16();
    let body = resp.into_body().read_to_string().expect("body");
    Reply {
        status,
        location,
        cookies,
        body,
        csp,
    }
}

/// The value of the first hidden `csrf` field of a page.
pub fn csrf_of(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("a form with a CSRF token") + marker.len();
    body[start..].split('"').next().expect("value").to_owned()
}

/// The session cookie, as named by default (`Secure`, `__Host-` prefix).
pub const SESSION_COOKIE: &str = "__Host-fieldsync_session";
/// The login form's CSRF cookie, as named by default.
pub const LOGIN_CSRF_COOKIE: &str = "__Host-fieldsync_login_csrf";

/// `name=value` of the `Set-Cookie` for `name`.
pub fn cookie_pair(a: &Reply, name: &str) -> String {
    a.cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("a {name} cookie in {:?}", a.cookies))
        .to_owned()
}

/// Signs in through the form; answers the session's `Cookie` header value.
pub fn sign_in(w: &World, who: &str, password: &str) -> Reply {
    let form = http(w, "GET", "/web/login", "", &[]);
    assert_eq!(form.status, 200);
    let csrf = csrf_of(&form.body);
    let login_cookie = cookie_pair(&form, LOGIN_CSRF_COOKIE);
    let email = format!("{who}@acme.test");
    http(
        w,
        "POST",
        "/web/login",
        &login_cookie,
        &[
            ("org", ORG),
            ("email", &email),
            ("password", password),
            ("csrf", &csrf),
        ],
    )
}

/// Types `text` into the field `css` (cleared first).
pub async fn type_into(b: &Client, css: &str, text: &str) {
    let field = b
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("the field {css}: {e}"));
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

/// Picks the option whose visible label is `label` in the select `css`.
pub async fn choose_label(b: &Client, css: &str, label: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("the select {css}: {e}"))
        .select_by_label(label)
        .await
        .unwrap_or_else(|e| panic!("{css} offers {label:?}: {e}"));
}

/// Clicks the submit button of the form `form` (a CSS selector).
pub async fn submit(b: &Client, form: &str) {
    b.find(Locator::Css(&format!("{form} button[type=submit]")))
        .await
        .unwrap_or_else(|e| panic!("{form}'s button: {e}"))
        .click()
        .await
        .expect("click");
}

/// Waits (10 s at most) until the element `css` shows `expected` in its text
/// (or, for a form field, its value); answers that text. The page an action
/// answers with replaces the one before, whose element may say something else.
pub async fn text_says(b: &Client, css: &str, expected: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(e) = b.find(Locator::Css(css)).await {
            let text = match e.prop("value").await {
                Ok(Some(v)) if !v.is_empty() => v,
                _ => e.text().await.unwrap_or_default(),
            };
            if text.contains(expected) {
                return text;
            }
        }
        assert!(Instant::now() < deadline, "{css} never said {expected:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
