//! Rate limits: a device over its requests per minute and a login name over its
//! attempts per minute get 429 with `Retry-After`; the sync client waits and
//! carries on; other devices are unaffected.

use fieldsync_core::sync::NoProgress;
use fieldsync_test_support::{Backend, PASSWORD, World};

#[test]
fn limits_on_sqlite() {
    over_the_limit_answers_429_with_retry_after(Backend::Sqlite);
}

#[test]
fn limits_on_postgres() {
    over_the_limit_answers_429_with_retry_after(Backend::Postgres);
}

fn get_me(w: &World, token: &str) -> (u16, Option<String>, String) {
    let resp = ureq::get(format!("{}/v1/me", w.base))
        .header("authorization", format!("Bearer {token}"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .expect("answer");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        status,
        retry,
        resp.into_body().read_to_string().unwrap_or_default(),
    )
}

fn over_the_limit_answers_429_with_retry_after(backend: Backend) {
    let w = World::start_with(backend, |args| {
        args.requests_per_minute = Some(4);
        args.logins_per_minute = Some(3);
    });
    let phone = w.device("ana");
    let tablet = w.device("ben");
    let token = phone.access_token();
    let answers: Vec<_> = (0..6).map(|_| get_me(&w, &token)).collect();
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let limited: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert_eq!(ok, 4, "{answers:?}");
    assert_eq!(limited.len(), 2);
    let retry: u64 = limited[0]
        .1
        .as_deref()
        .and_then(|r| r.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(limited[0].2.contains("rate_limited"), "{}", limited[0].2);
    // Another device is not affected.
    let other = tablet.access_token();
    assert_eq!(get_me(&w, &other).0, 200);

    // Guessing passwords: the fourth attempt within a minute is refused
    // before the password is even checked.
    let login = |password: &str| {
        ureq::post(format!("{}/v1/auth/login", w.base))
            .config()
            .http_status_as_error(false)
            .build()
            .send_json(serde_json::json!({
                "org": "acme", "email": "carla@acme.test", "password": password,
                "device": {"id": uuid::Uuid::now_v7(), "platform": "test", "app_version": "1"}
            }))
            .expect("answer")
            .status()
            .as_u16()
    };
    let statuses: Vec<u16> = (0..4).map(|_| login("wrong password!")).collect();
    assert_eq!(statuses, vec![401, 401, 401, 429]);
    assert_eq!(login(PASSWORD), 429, "even the right password waits");

    // The sync client honours Retry-After and finishes (the tablet has budget left).
    let report = tablet.client.sync(&NoProgress).expect("sync");
    assert_eq!(report.rejected, 0);
}

/// Live streams are capped per device (4) and per user (16) on a node: one
/// token cannot hold hundreds of connections open until it expires.
#[test]
fn live_streams_are_capped_on_sqlite() {
    live_streams_are_capped_per_device_and_per_user(Backend::Sqlite);
}

#[test]
fn live_streams_are_capped_on_postgres() {
    live_streams_are_capped_per_device_and_per_user(Backend::Postgres);
}

fn live_streams_are_capped_per_device_and_per_user(backend: Backend) {
    let w = World::start(backend);
    let open = |token: &str| {
        ureq::get(format!("{}/v1/live", w.base))
            .header("authorization", format!("Bearer {token}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .expect("answer")
    };
    let mut held = Vec::new();
    let mut devices = Vec::new();
    for d in 0..4 {
        let device = w.device("ana");
        let token = device.access_token();
        for s in 0..4 {
            let resp = open(&token);
            assert_eq!(resp.status().as_u16(), 200, "device {d}, stream {s}");
            held.push(resp);
        }
        let refused = open(&token);
        assert_eq!(
            refused.status().as_u16(),
            429,
            "a fifth stream of device {d}"
        );
        let body = refused.into_body().read_to_string().unwrap_or_default();
        // The last device's fifth stream is over both caps.
        let cap = if d < 3 { "device" } else { "user" };
        assert!(
            body.contains("too_many_streams") && body.contains(cap),
            "{body}"
        );
        devices.push(device);
    }
    // Sixteen streams for the user: a fifth device gets none.
    let fifth = w.device("ana");
    let refused = open(&fifth.access_token());
    assert_eq!(refused.status().as_u16(), 429);
    let body = refused.into_body().read_to_string().unwrap_or_default();
    assert!(body.contains("user"), "{body}");
    // Another user is not affected.
    let ben = w.device("ben");
    assert_eq!(open(&ben.access_token()).status().as_u16(), 200);
    assert_eq!(held.len(), 16);
}
