//! The served OpenAPI description matches the router: every JSON API route in
//! the server's source is described, every described operation is served, and
//! an operation is marked as needing a token exactly when the real server
//! answers 401 without one.

use std::collections::BTreeSet;
use std::path::Path;

use fieldsync_test_support::ServerProcess;

/// `(METHOD, path)` of every `.route("…", get(…).post(…))` in the server's source.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    let mut files = Vec::new();
    collect_rs(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(!files.is_empty(), "no sources found");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(\"") {
            let after = &rest[at + ".route(\"".len()..];
            let Some(end) = after.find('"') else { break };
            let path = after[..end].to_owned();
            // The rest of the `.route(` call: up to its closing parenthesis.
            let mut depth = 1usize;
            let mut call_end = after.len();
            for (i, c) in after.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            call_end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let call = &after[end..call_end];
            for method in ["get", "post", "put", "delete", "patch"] {
                let needle = format!("{method}(");
                let mut from = 0;
                while let Some(pos) = call[from..].find(&needle) {
                    let abs = from + pos;
                    let before = call[..abs].chars().last();
                    if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        found.insert((method.to_uppercase(), path.clone()));
                    }
                    from = abs + needle.len();
                }
            }
            rest = &after[call_end..];
        }
    }
    found
}

fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Routes of the JSON API: `/v1/…` and the health check. Pages and `/metrics`
/// (OpenMetrics text for Prometheus) are not part of it.
fn is_api(path: &str) -> bool {
    path.starts_with("/v1/") || path == "/healthz"
}

fn request(method: &str, url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = match method {
        "GET" => agent.get(url).call(),
        "POST" => agent.post(url).send_empty(),
        "PUT" => agent.put(url).send_empty(),
        "DELETE" => agent.delete(url).call(),
        "PATCH" => agent.patch(url).send_empty(),
        other => panic!("unexpected method {other}"),
    }
    .expect("an answer");
    let status = resp.status().as_u16();
    (
        status,
        resp.into_body().read_to_string().unwrap_or_default(),
    )
}

#[test]
fn the_description_covers_exactly_the_served_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::spawn(dir.path(), &[]);

    let (status, body) = request("GET", &format!("{}/v1/openapi.json", server.base));
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        doc["components"]["securitySchemes"]["bearer"].is_object(),
        "the bearer scheme is described"
    );
    // It also reads back as an OpenAPI document.
    let _: utoipa::openapi::OpenApi = serde_json::from_value(doc.clone()).expect("OpenAPI");

    let mut described = Vec::new();
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            assert!(
                op["responses"]
                    .as_object()
                    .is_some_and(|r| r.keys().any(|k| k.starts_with('2'))),
                "{method} {path} describes its success answer"
            );
            described.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    assert!(described.len() >= 20, "{} operations", described.len());

    // Every API route in the source is described.
    let served = routes_in_source();
    assert!(
        served
            .iter()
            .any(|(m, p)| m == "POST" && p == "/v1/sync/push"),
        "the source scan finds routes: {served:?}"
    );
    let described_keys: BTreeSet<(String, String)> = described
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    let undocumented: Vec<_> = served
        .iter()
        .filter(|(_, p)| is_api(p))
        .filter(|r| !described_keys.contains(*r))
        .collect();
    assert!(
        undocumented.is_empty(),
        "routes served but not in the OpenAPI description: {undocumented:?}"
    );

    // Every described operation is served, and says truthfully whether it
    // needs a token: asked without one, the real server answers 401 exactly
    // for those.
    for (method, path, op) in &described {
        let concrete = path
            .replace("{id}", "0190f5d2-3c4b-7a1e-9f00-000000000001")
            .replace("{record_id}", "0190f5d2-3c4b-7a1e-9f00-000000000001")
            .replace("{sha256}", &"ab".repeat(32))
            .replace("{idx}", "0")
            .replace("{kind}", "products");
        assert!(!concrete.contains('{'), "a path parameter left in {path}");
        let (status, body) = request(method, &format!("{}{concrete}", server.base));
        assert!(
            status != 404 && status != 405,
            "{method} {path} is described but not served: {status} {body}"
        );
        let needs_token = op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
        assert_eq!(
            status == 401,
            needs_token,
            "{method} {path}: answered {status} without a token, described as needing one: {needs_token}"
        );
    }
}
