//! Session hygiene and abuse limits (issue #16, second round), each through
//! the real router on a loopback port with raw HTTP, on SQLite and on
//! PostgreSQL (`<scenario>::on_sqlite`, `::on_postgres`):
//!
//! - a reused refresh token revokes its device: the thief's fresh access token,
//!   the device's own and its live stream all end at once;
//! - disabling a user ends every live stream of theirs at once;
//! - a manager cannot revoke (or list) an administrator's devices;
//! - new devices per user and day are capped, and ended browser sessions are
//!   purged with their `web` devices;
//! - logins are limited per client address (30 emails from one address hit
//!   429), and `X-Forwarded-For` counts only from a trusted proxy;
//! - a client trickling its headers is disconnected, a slow request answers
//!   408, a stalled body fails, and the live channel outlives the request
//!   timeout;
//! - a connection opening with a live request is served outside hyper's
//!   connection (`http::direct`): refusals keep their error shape, odd heads
//!   are answered by hyper as before, a client that leaves frees its place
//!   under the per-device cap at once, and a stalled head is cut off.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fieldsync_core::DeviceId;
use fieldsync_test_support::{Backend, ORG, PASSWORD, World, on_both_databases};
use serde_json::{Value, json};

/// An answer: status and JSON body (`Null` when not JSON).
fn answer(resp: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn post(
    w: &World,
    path: &str,
    token: Option<&str>,
    body: &Value,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = ureq::post(format!("{}{path}", w.base));
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    answer(
        req.config()
            .http_status_as_error(false)
            .build()
            .send_json(body)
            .expect("answer"),
    )
}

fn get(w: &World, path: &str, token: &str) -> (u16, Value) {
    answer(
        ureq::get(format!("{}{path}", w.base))
            .header("authorization", format!("Bearer {token}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .expect("answer"),
    )
}

/// A login of `who` on a new device: status and body.
fn login_as(w: &World, email: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    login_on(w, email, DeviceId::new(), extra)
}

fn login_on(w: &World, email: &str, device: DeviceId, extra: &[(&str, &str)]) -> (u16, Value) {
    post(
        w,
        "/v1/auth/login",
        None,
        &json!({
            "org": ORG, "email": email, "password": PASSWORD,
            "device": {"id": device, "platform": "test", "app_version": "1.0.0"},
        }),
        extra,
    )
}

/// A signed-in session of seeded user `who` on a new device.
fn session(w: &World, who: &str) -> Value {
    let (status, body) = login_as(w, &format!("{who}@acme.test"), &[]);
    assert_eq!(status, 200, "{body}");
    body
}

fn token(session: &Value) -> &str {
    session["access_token"].as_str().expect("access token")
}

fn address(w: &World) -> String {
    w.base.trim_start_matches("http://").to_owned()
}

/// A `/v1/live` stream, read after its `hello`.
struct Live {
    reader: BufReader<TcpStream>,
}

impl Live {
    fn open(w: &World, token: &str) -> Live {
        let mut socket = TcpStream::connect(address(w)).expect("connect");
        write!(
            socket,
            "GET /v1/live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .expect("send");
        let mut reader = BufReader::new(socket);
        let mut line = String::new();
        reader.read_line(&mut line).expect("status line");
        assert!(
            line.starts_with("HTTP/1.1 200"),
            "live stream refused: {line}"
        );
        let started = Instant::now();
        loop {
            line.clear();
            reader.read_line(&mut line).expect("read");
            if line.starts_with("event: hello") {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no hello");
        }
        Live { reader }
    }

    /// Whether the stream ends (a `reconnect` event, or the connection
    /// closing) within `limit`.
    fn ends_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut line = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .expect("timeout");
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) => return true,
                Ok(_) if line.starts_with("event: reconnect") => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }
}

on_both_databases!(
    a_reused_refresh_token_revokes_the_device_its_access_tokens_and_live_streams,
    a_refresh_retried_after_a_lost_answer_keeps_the_device,
    a_disabled_user_loses_every_live_stream_at_once,
    a_manager_cannot_revoke_an_administrators_or_another_managers_device,
    ended_browser_sessions_are_purged_with_their_devices,
);

on_both_databases!(as_a_process: the_command_line_disables_a_user_and_ends_their_streams);

on_both_databases!(with run:
    new_devices_per_user_and_day_are_capped,
    thirty_emails_from_one_address_hit_the_login_limit,
    x_forwarded_for_counts_only_from_a_trusted_proxy,
    slow_clients_are_cut_off_but_the_live_channel_is_not,
    live_requests_on_their_own_socket_odd_heads_gone_and_slow_clients,
);

/// Starts a world tuned for the scenario (by its name), then runs it.
fn run<F: FnOnce(World)>(backend: Backend, scenario: F) {
    let name = std::any::type_name::<F>();
    let w = World::start_with(backend, |a| {
        if name.contains("new_devices") {
            a.new_devices_per_day = Some(3);
        }
        if name.contains("login_limit") {
            // The default: 20 per address and minute.
            a.logins_per_minute_per_address = None;
        }
        if name.contains("trusted_proxy") {
            a.logins_per_minute_per_address = None;
            a.trusted_proxies = Some(vec!["127.0.0.1".parse().expect("net")]);
        }
        if name.contains("slow_clients") {
            a.header_read_timeout_secs = Some(1);
            a.request_timeout_secs = Some(2);
            a.body_read_timeout_secs = Some(1);
        }
    });
    scenario(w);
}

fn a_reused_refresh_token_revokes_the_device_its_access_tokens_and_live_streams(w: World) {
    let phone = session(&w, "ana");
    let other = session(&w, "ana");
    let mut live = Live::open(&w, token(&phone));
    // Someone copied the refresh token, rotated it first and went on using
    // what they got.
    let (status, first) = post(
        &w,
        "/v1/auth/refresh",
        None,
        &json!({"refresh_token": phone["refresh_token"]}),
        &[],
    );
    assert_eq!(status, 200, "{first}");
    let (status, thief) = post(
        &w,
        "/v1/auth/refresh",
        None,
        &json!({"refresh_token": first["refresh_token"]}),
        &[],
    );
    assert_eq!(status, 200, "{thief}");
    assert_eq!(get(&w, "/v1/me", token(&thief)).0, 200);
    // The phone presents the same token again: a reuse.
    let (status, body) = post(
        &w,
        "/v1/auth/refresh",
        None,
        &json!({"refresh_token": phone["refresh_token"]}),
        &[],
    );
    assert_eq!((status, code(&body)), (401, "invalid_refresh_token"));
    // The live stream ends at once, and neither holder's access token works.
    assert!(
        live.ends_within(Duration::from_secs(5)),
        "the live stream ends at once"
    );
    for held in [token(&thief), token(&first), token(&phone)] {
        let (status, body) = get(&w, "/v1/me", held);
        assert_eq!((status, code(&body)), (401, "device_revoked"), "{body}");
    }
    let (status, _) = post(
        &w,
        "/v1/auth/refresh",
        None,
        &json!({"refresh_token": thief["refresh_token"]}),
        &[],
    );
    assert_eq!(
        status, 401,
        "the thief's refresh token died with the device"
    );
    // Ana's other device is untouched.
    assert_eq!(get(&w, "/v1/me", token(&other)).0, 200);
}

/// A phone on a bad network sends its refresh and never reads the answer,
/// then asks again with the same token: that is a retry, not a reuse. The
/// device keeps working (a revoked device wipes its store, unsynced work
/// included), and the successor it never read is revoked, so whoever might
/// hold it gets nothing from it.
fn a_refresh_retried_after_a_lost_answer_keeps_the_device(w: World) {
    let phone = session(&w, "ana");
    let refresh = |refresh_token: &Value| {
        post(
            &w,
            "/v1/auth/refresh",
            None,
            &json!({"refresh_token": refresh_token}),
            &[],
        )
    };
    let (status, lost) = refresh(&phone["refresh_token"]);
    assert_eq!(status, 200, "{lost}");
    let (status, retried) = refresh(&phone["refresh_token"]);
    assert_eq!(status, 200, "the retry is answered: {retried}");
    assert_ne!(retried["refresh_token"], lost["refresh_token"]);
    assert_eq!(
        get(&w, "/v1/me", token(&retried)).0,
        200,
        "the device works"
    );
    assert_eq!(get(&w, "/v1/me", token(&phone)).0, 200, "not revoked");
    let (status, body) = refresh(&lost["refresh_token"]);
    assert_eq!(
        (status, code(&body)),
        (401, "invalid_refresh_token"),
        "the unread successor was revoked"
    );
    assert_eq!(
        get(&w, "/v1/me", token(&retried)).0,
        200,
        "and presenting it revoked nothing"
    );
    // The new token rotates as usual; its predecessor, once its successor was
    // used, is a reuse again.
    let (status, next) = refresh(&retried["refresh_token"]);
    assert_eq!(status, 200, "{next}");
    let (status, again) = refresh(&next["refresh_token"]);
    assert_eq!(status, 200, "{again}");
    let (status, body) = refresh(&retried["refresh_token"]);
    assert_eq!((status, code(&body)), (401, "invalid_refresh_token"));
    let (status, body) = get(&w, "/v1/me", token(&again));
    assert_eq!((status, code(&body)), (401, "device_revoked"), "{body}");
}

fn a_disabled_user_loses_every_live_stream_at_once(w: World) {
    let (phone, tablet) = (session(&w, "ana"), session(&w, "ana"));
    let ben = session(&w, "ben");
    let mut streams = [
        Live::open(&w, token(&phone)),
        Live::open(&w, token(&tablet)),
    ];
    let mut bens = Live::open(&w, token(&ben));
    let ana = w.person("ana").id;
    let path = format!("/v1/users/{ana}/disable");
    // A manager may not; an administrator may not disable themselves.
    let mona = session(&w, "mona");
    let (status, body) = post(&w, &path, Some(token(&mona)), &json!({}), &[]);
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");
    let adam = session(&w, "adam");
    let own = format!("/v1/users/{}/disable", w.person("adam").id);
    assert_eq!(post(&w, &own, Some(token(&adam)), &json!({}), &[]).0, 409);
    assert_eq!(
        get(&w, "/v1/me", token(&phone)).0,
        200,
        "nothing changed yet"
    );

    let (status, body) = post(&w, &path, Some(token(&adam)), &json!({}), &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["disabled"], true);
    for (i, stream) in streams.iter_mut().enumerate() {
        assert!(
            stream.ends_within(Duration::from_secs(5)),
            "stream {i} of the disabled user ends at once"
        );
    }
    assert!(
        !bens.ends_within(Duration::from_millis(500)),
        "another user's stream goes on"
    );
    let (status, body) = get(&w, "/v1/me", token(&tablet));
    assert_eq!((status, code(&body)), (403, "account_disabled"));
    let (status, body) = login_as(&w, "ana@acme.test", &[]);
    assert_eq!((status, code(&body)), (403, "account_disabled"));
}

fn a_manager_cannot_revoke_an_administrators_or_another_managers_device(w: World) {
    let mona = session(&w, "mona");
    let adam = session(&w, "adam");
    let ana = session(&w, "ana");
    let revoke = |by: &Value, target: &Value| {
        post(
            &w,
            &format!(
                "/v1/devices/{}/revoke",
                target["device"]["id"].as_str().expect("id")
            ),
            Some(token(by)),
            &json!({}),
            &[],
        )
    };
    // Adam is in Mona's team, but above her: out of her reach, as if absent.
    let (status, body) = revoke(&mona, &adam);
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
    assert_eq!(get(&w, "/v1/me", token(&adam)).0, 200, "still signed in");
    let (status, _) = get(
        &w,
        &format!("/v1/devices?user={}", w.person("adam").id),
        token(&mona),
    );
    assert_eq!(status, 403, "nor may she list his devices");
    // A rep of her team she may; an administrator may revoke hers.
    assert_eq!(revoke(&mona, &ana).0, 200);
    assert_eq!(get(&w, "/v1/me", token(&ana)).0, 401);
    assert_eq!(revoke(&adam, &mona).0, 200);
    assert_eq!(get(&w, "/v1/me", token(&mona)).0, 401);
}

/// `fieldsync user disable` beside a running server (a child process that
/// read its signing key from `--jwt-secret-file`): on PostgreSQL the
/// disabling is announced to every node and the streams end at once; on
/// SQLite (no channel between processes) at the streams' next session check,
/// within 30 s.
fn the_command_line_disables_a_user_and_ends_their_streams(w: World) {
    let phone = session(&w, "ana");
    let mut live = Live::open(&w, token(&phone));
    let mut args = vec![
        "user".to_owned(),
        "disable".to_owned(),
        "--org".to_owned(),
        ORG.to_owned(),
        "--email".to_owned(),
        "Ana@Acme.test".to_owned(),
        "--data-dir".to_owned(),
        w.settings.data_dir.to_str().expect("utf-8 path").to_owned(),
    ];
    let postgres = w.settings.database_url.is_some();
    if let Some(url) = &w.settings.database_url {
        args.extend(["--database-url".to_owned(), url.clone()]);
    }
    let started = Instant::now();
    let out = fieldsync_test_support::fieldsync(&args, &[], None);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("ana@acme.test in acme") && said.contains("is disabled"),
        "{said}"
    );
    let limit = if postgres {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(40)
    };
    assert!(live.ends_within(limit), "the stream ends within {limit:?}");
    println!(
        "stream ended {:?} after the command started",
        started.elapsed()
    );
    let (status, body) = get(&w, "/v1/me", token(&phone));
    assert_eq!((status, code(&body)), (403, "account_disabled"));
    // And back.
    args[1] = "enable".to_owned();
    let out = fieldsync_test_support::fieldsync(&args, &[], None);
    assert!(out.status.success());
    assert_eq!(get(&w, "/v1/me", token(&phone)).0, 200);
}

/// Signs `who` in to the pages; answers the session cookie (`name=value`).
fn web_sign_in(w: &World, who: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let form = agent
        .get(format!("{}/web/login", w.base))
        .call()
        .expect("form");
    let csrf_cookie = set_cookie(&form, "__Host-fieldsync_login_csrf");
    let body = form.into_body().read_to_string().expect("body");
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("a csrf field") + marker.len();
    let csrf = body[start..].split('"').next().expect("value").to_owned();
    let email = format!("{who}@acme.test");
    let done = agent
        .post(format!("{}/web/login", w.base))
        .header("cookie", &csrf_cookie)
        .send_form([
            ("org", ORG),
            ("email", email.as_str()),
            ("password", PASSWORD),
            ("csrf", csrf.as_str()),
        ])
        .expect("login");
    assert_eq!(done.status().as_u16(), 303);
    set_cookie(&done, "__Host-fieldsync_session")
}

fn set_cookie(resp: &ureq::http::Response<ureq::Body>, name: &str) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("a {name} cookie"))
        .to_owned()
}

fn inbox_status(w: &World, cookie: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    agent
        .get(format!("{}/web/inbox", w.base))
        .header("cookie", cookie)
        .call()
        .expect("inbox")
        .status()
        .as_u16()
}

fn ended_browser_sessions_are_purged_with_their_devices(w: World) {
    let old = web_sign_in(&w, "mona");
    let web_devices = || w.scalar("SELECT COUNT(*) FROM devices WHERE platform = 'web'");
    assert_eq!(web_devices(), 1);
    // That sign-in is two days old: expired a day and a half ago.
    w.execute_sql(
        "UPDATE web_sessions SET created_at = created_at - 172800, expires_at = expires_at - 172800"
            .into(),
    );
    w.execute_sql(
        "UPDATE devices SET created_at = created_at - 172800 WHERE platform = 'web'".into(),
    );
    let fresh = web_sign_in(&w, "mona");
    let phone = session(&w, "mona");
    assert_eq!(web_devices(), 2);
    assert_eq!(inbox_status(&w, &old), 303, "expired: back to the login");
    assert_eq!(inbox_status(&w, &fresh), 200);

    let (sessions, devices) =
        w.rt.block_on(fieldsync_server::service::auth::remove_ended_web_sessions(
            &w.db,
        ))
        .expect("purge");
    assert_eq!((sessions, devices), (1, 1));
    assert_eq!(web_devices(), 1, "the fresh session's device stays");
    assert_eq!(w.scalar("SELECT COUNT(*) FROM web_sessions"), 1);
    assert_eq!(inbox_status(&w, &fresh), 200);
    assert_eq!(
        get(&w, "/v1/me", token(&phone)).0,
        200,
        "phones are not touched"
    );
    // Running again removes nothing more.
    let again =
        w.rt.block_on(fieldsync_server::service::auth::remove_ended_web_sessions(
            &w.db,
        ))
        .expect("purge");
    assert_eq!(again, (0, 0));
}

/// Runs with `new_devices_per_day = 3`.
fn new_devices_per_user_and_day_are_capped(w: World) {
    let first = DeviceId::new();
    assert_eq!(login_on(&w, "ana@acme.test", first, &[]).0, 200);
    for _ in 0..2 {
        assert_eq!(login_as(&w, "ana@acme.test", &[]).0, 200);
    }
    let (status, body) = login_as(&w, "ana@acme.test", &[]);
    assert_eq!((status, code(&body)), (429, "too_many_devices"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("3 new devices")),
        "{body}"
    );
    assert_eq!(
        w.scalar("SELECT COUNT(*) FROM devices"),
        3,
        "the refused login left no device"
    );
    // A device already registered signs in again; another user is not affected.
    assert_eq!(login_on(&w, "ana@acme.test", first, &[]).0, 200);
    assert_eq!(login_as(&w, "ben@acme.test", &[]).0, 200);
    // Browser sign-ins count too.
    for _ in 0..2 {
        web_sign_in(&w, "mona");
    }
    assert_eq!(login_as(&w, "mona@acme.test", &[]).0, 200);
    assert_eq!(login_as(&w, "mona@acme.test", &[]).0, 429);
}

fn thirty_emails_from_one_address_hit_the_login_limit(w: World) {
    let mut statuses = Vec::new();
    for i in 0..30 {
        // Each email once: the per-account limit never applies. The header is
        // ignored (no trusted proxy), so varying it does not help either.
        let forwarded = format!("198.51.100.{i}");
        let (status, body) = login_as(
            &w,
            &format!("nobody{i}@acme.test"),
            &[("x-forwarded-for", forwarded.as_str())],
        );
        if status == 429 {
            assert_eq!(code(&body), "rate_limited");
        }
        statuses.push(status);
    }
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(limited >= 10, "over the 20 per minute: {statuses:?}");
    assert!(
        statuses[..20].iter().all(|s| *s == 401),
        "the first 20 are answered: {statuses:?}"
    );
    // Even the right password waits its turn from that address, and so does
    // a browser sign-in.
    assert_eq!(login_as(&w, "ana@acme.test", &[]).0, 429);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let form = agent
        .get(format!("{}/web/login", w.base))
        .call()
        .expect("form");
    let csrf_cookie = set_cookie(&form, "__Host-fieldsync_login_csrf");
    let csrf = csrf_cookie.split('=').nth(1).expect("value").to_owned();
    let page = agent
        .post(format!("{}/web/login", w.base))
        .header("cookie", &csrf_cookie)
        .send_form([
            ("org", ORG),
            ("email", "mona@acme.test"),
            ("password", PASSWORD),
            ("csrf", csrf.as_str()),
        ])
        .expect("login");
    assert_eq!(page.status().as_u16(), 429);
}

/// Runs with `trusted_proxies = ["127.0.0.1"]`: the test client is the proxy.
fn x_forwarded_for_counts_only_from_a_trusted_proxy(w: World) {
    // Thirty clients behind the proxy, each its own address: none limited.
    for i in 0..30 {
        let forwarded = format!("203.0.113.{i}");
        let (status, _) = login_as(
            &w,
            &format!("nobody{i}@acme.test"),
            &[("x-forwarded-for", forwarded.as_str())],
        );
        assert_eq!(status, 401, "client {i}");
    }
    // One client forging what lies left of its real address: limited anyway.
    let mut limited = 0;
    for i in 0..30 {
        let forged = format!("10.9.9.{i}, 198.51.100.7");
        let (status, _) = login_as(
            &w,
            &format!("other{i}@acme.test"),
            &[("x-forwarded-for", forged.as_str())],
        );
        limited += usize::from(status == 429);
    }
    assert!(limited >= 10, "the real address is limited: {limited}");
}

/// Runs with header timeout 1 s, request timeout 2 s, body-read timeout 1 s.
fn slow_clients_are_cut_off_but_the_live_channel_is_not(w: World) {
    // Slow loris: the request line and headers, one byte every 200 ms.
    let started = Instant::now();
    let mut socket = TcpStream::connect(address(&w)).expect("connect");
    let request =
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut = false;
    for byte in request {
        if socket.write_all(&[*byte]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    if !cut {
        // Whatever was sent, the server has closed its side by now.
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let mut rest = Vec::new();
        let closed = match socket.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        };
        cut = closed && !String::from_utf8_lossy(&rest).contains("200 OK");
    }
    let took = started.elapsed();
    println!("slow loris disconnected after {took:?}");
    assert!(cut, "a client trickling its headers is disconnected");
    assert!(took < Duration::from_secs(10), "{took:?}");

    // A body trickled byte by byte: the request timeout answers 408.
    let body = json!({"org": ORG, "email": "ana@acme.test", "password": PASSWORD,
        "device": {"id": DeviceId::new(), "platform": "test", "app_version": "1"}})
    .to_string();
    let mut socket = TcpStream::connect(address(&w)).expect("connect");
    write!(
        socket,
        "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("headers");
    let started = Instant::now();
    for byte in body.as_bytes() {
        if socket.write_all(&[*byte]).is_err() || started.elapsed() > Duration::from_secs(6) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if socket_has_data(&socket) {
            break;
        }
    }
    let status = status_line(&mut socket);
    println!(
        "trickled body answered after {:?}: {status}",
        started.elapsed()
    );
    assert!(status.contains(" 408 "), "{status}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A body that stops: the body-read timeout fails it before the request timeout.
    let mut socket = TcpStream::connect(address(&w)).expect("connect");
    write!(
        socket,
        "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .expect("part of the body");
    let started = Instant::now();
    let status = status_line(&mut socket);
    println!(
        "stalled body answered after {:?}: {status}",
        started.elapsed()
    );
    assert!(status.contains(" 400 "), "{status}");
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "before the request timeout"
    );

    // The live channel outlives the request timeout.
    let ana = session(&w, "ana");
    let mut live = Live::open(&w, token(&ana));
    assert!(
        !live.ends_within(Duration::from_secs(4)),
        "the live stream is not cut by the 2 s request timeout"
    );
}

/// Whether the server already answered on `socket` (without blocking).
fn socket_has_data(socket: &TcpStream) -> bool {
    let mut one = [0u8; 1];
    socket.set_nonblocking(true).expect("nonblocking");
    let has = matches!(socket.peek(&mut one), Ok(n) if n > 0);
    socket.set_nonblocking(false).expect("blocking");
    has
}

/// The status line the server answers on `socket` (empty if it closed).
fn status_line(socket: &mut TcpStream) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(socket);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    line
}

/// Sends `request` on a fresh connection and reads the answer's head (status
/// line and lower-cased headers) and the first `want` bytes of its body
/// framing, whatever arrives within 10 s.
fn raw(w: &World, request: &str) -> (String, Vec<String>, BufReader<TcpStream>) {
    let mut socket = TcpStream::connect(address(w)).expect("connect");
    socket.write_all(request.as_bytes()).expect("send");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(socket);
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header");
        if line.trim_end().is_empty() {
            break;
        }
        headers.push(line.trim_end().to_ascii_lowercase());
    }
    (status.trim_end().to_owned(), headers, reader)
}

/// Reads body lines until one contains `needle` (or 10 s pass).
fn body_has(reader: &mut BufReader<TcpStream>, needle: &str) -> bool {
    let started = Instant::now();
    let mut line = String::new();
    while started.elapsed() < Duration::from_secs(10) {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line.contains(needle) => return true,
            Ok(_) => {}
        }
    }
    false
}

/// Runs with header timeout 1 s (see `run`).
fn live_requests_on_their_own_socket_odd_heads_gone_and_slow_clients(w: World) {
    let ana = session(&w, "ana");
    let bearer = token(&ana).to_owned();
    let live = |extra: &str| {
        format!(
            "GET /v1/live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\n\
             Accept: text/event-stream\r\n{extra}\r\n"
        )
    };

    // The direct path: an event stream, chunked, closed when it ends.
    let (status, headers, mut body) = raw(&w, &live(""));
    assert_eq!(status, "HTTP/1.1 200 OK");
    for expected in [
        "content-type: text/event-stream",
        "transfer-encoding: chunked",
        "connection: close",
    ] {
        assert!(
            headers.iter().any(|h| h == expected),
            "{expected}: {headers:?}"
        );
    }
    assert!(
        headers.iter().any(|h| h.starts_with("date: ")),
        "{headers:?}"
    );
    assert!(body_has(&mut body, "event: hello"));
    drop(body);

    // A refusal keeps the API's error shape.
    let (status, headers, mut body) = raw(
        &w,
        "GET /v1/live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer forged.token.here\r\n\r\n",
    );
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    assert!(
        headers
            .iter()
            .any(|h| h.starts_with("content-type: application/json")),
        "{headers:?}"
    );
    assert!(body_has(&mut body, "\"code\""), "a JSON error body");

    // Heads this path leaves to hyper are answered as before, from the bytes
    // already read: a body announced (hyper keeps the connection, so no
    // `connection: close`), and HTTP/1.0.
    let (status, headers, mut body) = raw(&w, &live("Content-Length: 0\r\n"));
    assert_eq!(status, "HTTP/1.1 200 OK", "{headers:?}");
    assert!(
        !headers.iter().any(|h| h == "connection: close"),
        "{headers:?}"
    );
    assert!(body_has(&mut body, "event: hello"));
    drop(body);
    let (status, _, mut body) = raw(&w, &live("").replacen("HTTP/1.1", "HTTP/1.0", 1));
    assert!(
        status.starts_with("HTTP/1.") && status.contains(" 200 "),
        "{status}"
    );
    assert!(body_has(&mut body, "event: hello"));
    drop(body);
    // A head too big for this path is hyper's too, answered in full.
    let padding = format!("X-Padding: {}\r\n", "a".repeat(9_000));
    let (status, _, mut body) = raw(&w, &live(&padding));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body_has(&mut body, "event: hello"));
    drop(body);

    // A device may hold four streams: one that closes frees its place at
    // once, so ten streams opened and dropped one after the other all get in.
    let mut device_streams = Vec::new();
    for _ in 0..3 {
        let (status, _, body) = raw(&w, &live(""));
        assert_eq!(status, "HTTP/1.1 200 OK");
        device_streams.push(body);
    }
    for round in 0..10 {
        let (status, _, mut body) = raw(&w, &live(""));
        assert_eq!(status, "HTTP/1.1 200 OK", "round {round}");
        assert!(body_has(&mut body, "event: hello"));
        drop(body);
        std::thread::sleep(Duration::from_millis(100));
    }
    // ... and with four held, a fifth is refused.
    let (_, _, held) = raw(&w, &live(""));
    device_streams.push(held);
    let (status, _, _) = raw(&w, &live(""));
    assert!(status.starts_with("HTTP/1.1 429"), "{status}");
    drop(device_streams);

    // A client that sends the live prefix and stops is cut off by the
    // header-read timeout (1 s here), like any slow head.
    let started = Instant::now();
    let mut socket = TcpStream::connect(address(&w)).expect("connect");
    socket
        .write_all(b"GET /v1/live HTTP/1.1\r\nHost: x\r\n")
        .expect("part");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut rest = Vec::new();
    let closed = socket.read_to_end(&mut rest).is_ok();
    assert!(
        closed && rest.is_empty(),
        "closed without an answer: {rest:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
