//! Versioned checklist templates end to end, on SQLite and PostgreSQL: a
//! published version is refused any change through the JSON API, through a
//! manager's own device and through a raw change pushed past the device's
//! checks; a new version follows a published one with the next number (a
//! forged number is refused); drafts are answered by nobody; publishing
//! version 2 leaves version 1 and the answers given to it intact and readable,
//! and new answers take version 2; the rep's device of the territory receives
//! the published versions; the CLI imports, publishes, lists and starts a new
//! version; and one Chromium test walks the `/web/templates` pages (a draft
//! with several question kinds and a show-if, publish, version 2).
//! Screenshots: `target/screenshots/templates-*.png`.

use std::collections::BTreeMap;

use fantoccini::Locator;
use fieldsync_core::RecordId;
use fieldsync_core::model::{
    Answer, AnswerValue, ChecklistResponse, ChecklistTemplate, DeviceTime, RecordDoc, RecordKind,
    latest_published,
};
use fieldsync_core::protocol::{PushOutcome, RejectCode};
use fieldsync_test_support::{
    Backend, Browser, Device, PASSWORD, SESSION_COOKIE, World, cookie_pair, csrf_of, http,
    on_both_databases, open, settled, sign_in, today,
};
use serde_json::{Value, json};

on_both_databases!(
    a_published_version_is_never_edited_through_any_interface,
    version_two_leaves_the_answers_to_version_one_intact,
    an_operator_imports_and_publishes_from_the_command_line,
);

/// A JSON call with `device`'s token (`PUT` included): status and body.
fn api(w: &World, device: &Device, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}{path}", w.base);
    let auth = format!("Bearer {}", device.access_token());
    let resp = match (method, body) {
        ("GET", _) => agent.get(&url).header("authorization", &auth).call(),
        ("PUT", Some(b)) => agent.put(&url).header("authorization", &auth).send_json(&b),
        (_, Some(b)) => agent
            .post(&url)
            .header("authorization", &auth)
            .send_json(&b),
        (_, None) => agent.post(&url).header("authorization", &auth).send_empty(),
    }
    .expect("request");
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A definition with a question of every kind, a choice and a show-if.
fn definition(name: &str) -> Value {
    json!({
        "name": name,
        "questions": [
            {"key": "leak", "text": "Any leak?", "kind": "yes_no", "required": true},
            {"key": "leak_photo", "text": "Photo of the leak", "kind": "photo", "required": true,
             "show_if_question": "leak", "show_if_equals": "yes"},
            {"key": "cause", "text": "Cause", "kind": "choice", "choices": ["Seal", "Pipe"]},
            {"key": "pressure", "text": "Pressure (bar)", "kind": "number"},
            {"key": "notes", "text": "Notes", "kind": "text"},
            {"key": "signoff", "text": "Customer sign-off", "kind": "signature"},
            {"key": "serial", "text": "Serial number", "kind": "barcode"},
        ]
    })
}

fn id_of(body: &Value) -> RecordId {
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id in {body}"))
        .parse()
        .expect("record id")
}

/// Creates and publishes a template through the API as `dev`'s user.
fn published(w: &World, dev: &Device, name: &str) -> RecordId {
    let (status, body) = api(w, dev, "POST", "/v1/templates", Some(definition(name)));
    assert_eq!(status, 200, "{body}");
    let id = id_of(&body);
    let (status, body) = api(w, dev, "POST", &format!("/v1/templates/{id}/publish"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "published");
    id
}

fn refused(outcome: &PushOutcome, code: RejectCode, what: &str) -> String {
    match outcome {
        PushOutcome::Rejected(r) => {
            assert_eq!(r.code, code, "{what}: {}", r.message);
            r.message.clone()
        }
        other => panic!("{what}: accepted ({other:?})"),
    }
}

fn template_on_server(w: &World, id: RecordId) -> ChecklistTemplate {
    w.server_doc(id)
        .expect("on the server")
        .read()
        .expect("a template")
}

fn answer(dev: &Device, value: AnswerValue) -> Answer {
    Answer {
        value,
        at: today(10),
        by: dev.person.id,
    }
}

fn a_published_version_is_never_edited_through_any_interface(w: World) {
    let mona = w.device("mona");
    let ana = w.device("ana");

    // A draft is edited freely, then published.
    let (status, body) = api(
        &w,
        &mona,
        "POST",
        "/v1/templates",
        Some(definition("Boiler")),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["version"].as_u64()),
        (Some("draft"), Some(1))
    );
    let id = id_of(&body);
    let mut edited = definition("Boiler service");
    edited["questions"][3]["required"] = json!(true);
    let (status, body) = api(
        &w,
        &mona,
        "PUT",
        &format!("/v1/templates/{id}"),
        Some(edited.clone()),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "Boiler service");
    // A rep does not manage templates.
    let (status, body) = api(
        &w,
        &ana,
        "POST",
        &format!("/v1/templates/{id}/publish"),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, body) = api(
        &w,
        &mona,
        "POST",
        &format!("/v1/templates/{id}/publish"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let at_publish = template_on_server(&w, id);
    assert!(at_publish.published);
    assert_eq!(at_publish.questions.len(), 7);

    // Through the API: 409 `template_published`, nothing written.
    let (status, body) = api(
        &w,
        &mona,
        "PUT",
        &format!("/v1/templates/{id}"),
        Some(definition("Renamed")),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "template_published");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("new version"),
        "{body}"
    );
    let (status, body) = api(
        &w,
        &mona,
        "POST",
        &format!("/v1/templates/{id}/publish"),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("template_published"))
    );
    assert_eq!(template_on_server(&w, id), at_publish);

    // Through the manager's own device: refused before it is stored.
    mona.sync();
    let on_device: ChecklistTemplate = mona.store().read(id).expect("the device has it");
    assert!(on_device.published);
    let err = mona
        .store()
        .update::<ChecklistTemplate>(id, today(11), |t| {
            t.questions.remove("notes");
        })
        .expect_err("a published version is not edited on the device");
    assert!(err.to_string().contains("questions"), "{err}");
    let err = mona
        .store()
        .update::<ChecklistTemplate>(id, today(11), |t| t.published = false)
        .expect_err("nor unpublished");
    assert!(err.to_string().contains("published"), "{err}");
    assert_eq!(mona.store().pending_changes().expect("outbox"), 0);

    // A raw change built past the device's checks: refused by the server.
    for (what, edit) in [
        (
            "questions",
            (|t: &mut ChecklistTemplate| {
                t.questions.remove("notes");
            }) as fn(&mut ChecklistTemplate),
        ),
        ("name", |t| t.name = "Forged".into()),
        ("published", |t| t.published = false),
        ("version", |t| t.version = 7),
    ] {
        let out = mona.push_forged(w.server_doc(id).expect("copy"), |doc| {
            doc.update::<ChecklistTemplate>(today(12), edit)
                .expect("raw edit");
        });
        let message = refused(&out, RejectCode::Forbidden, what);
        assert!(message.contains(what), "{what}: {message}");
    }
    // Tombstoning it would take it from the answers that name it: refused.
    let out = mona.push_forged(w.server_doc(id).expect("copy"), |doc| {
        doc.delete(today(12)).expect("tombstone");
    });
    refused(&out, RejectCode::Forbidden, "deleted");
    assert_eq!(
        template_on_server(&w, id),
        at_publish,
        "the server's copy is unchanged"
    );

    // Retiring is what a published version still allows.
    let (status, body) = api(
        &w,
        &mona,
        "POST",
        &format!("/v1/templates/{id}/retire"),
        None,
    );
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("retired")),
        "{body}"
    );

    // A version numbered out of turn, forged from scratch: refused.
    let mut skipping = at_publish.next_version(w.meta("mona"));
    skipping.version = 5;
    let mut doc = RecordDoc::create(&skipping, mona.actor_id(), today(13)).expect("doc");
    let message = refused(
        &mona.push_new(&mut doc),
        RejectCode::Validation,
        "version 5 after 1",
    );
    assert!(message.contains("version after 1 is 2"), "{message}");
    assert!(w.server_doc(skipping.meta.id).is_none());

    // Drafts are answered by nobody: a forged response to a draft is refused.
    let (_, draft) = api(
        &w,
        &mona,
        "POST",
        "/v1/templates",
        Some(definition("Draft only")),
    );
    let draft = id_of(&draft);
    ana.sync();
    let shop = w.account_on(&ana, "Shop");
    let visit = w.visit_on(&ana, shop);
    ana.sync();
    let response = ChecklistResponse {
        meta: w.meta("ana"),
        template_id: draft,
        template_version: 1,
        subject_id: visit,
        answers: BTreeMap::from([("leak".to_owned(), answer(&ana, AnswerValue::YesNo(false)))]),
        completed: false,
    };
    let mut doc = RecordDoc::create(&response, ana.actor_id(), today(14)).expect("doc");
    let message = refused(
        &ana.push_new(&mut doc),
        RejectCode::Validation,
        "an answer to a draft",
    );
    assert!(message.contains("draft"), "{message}");
    // Nor a draft made on a manager's device and answered in the same push.
    mona.sync();
    let draft_on_device = ChecklistTemplate {
        meta: w.meta("mona"),
        name: "Made offline".into(),
        version: 1,
        published: false,
        questions: at_publish.questions.clone(),
        family: None,
        supersedes: None,
        retired: false,
    };
    let offline = mona
        .store()
        .create(&draft_on_device, today(15))
        .expect("draft");
    let answered = mona
        .store()
        .create(
            &ChecklistResponse {
                meta: w.meta("mona"),
                template_id: offline,
                template_version: 1,
                ..response
            },
            today(15),
        )
        .expect("response");
    let report = mona.sync();
    assert_eq!(report.rejected, 1, "{report:?}");
    assert!(
        w.server_doc(offline).is_some(),
        "the draft itself is stored"
    );
    assert!(w.server_doc(answered).is_none(), "its answer is refused");
    let ledger = mona.store().rejections().expect("ledger");
    let entry = ledger
        .iter()
        .find(|r| r.record_id == answered)
        .expect("in the device's ledger");
    assert!(entry.message.contains("draft"), "{}", entry.message);
}

fn version_two_leaves_the_answers_to_version_one_intact(w: World) {
    let mona = w.device("mona");
    let ana = w.device("ana");
    let v1 = published(&w, &mona, "Shelf audit");

    // The rep's device of the territory receives the published version and
    // answers it on a visit.
    ana.sync();
    let on_device: ChecklistTemplate = ana.store().read(v1).expect("the rep has version 1");
    assert!(on_device.published);
    assert_eq!(on_device.version, 1);
    let shop = w.account_on(&ana, "Corner shop");
    let visit = w.visit_on(&ana, shop);
    let response = ChecklistResponse {
        meta: w.meta("ana"),
        template_id: v1,
        template_version: on_device.version,
        subject_id: visit,
        answers: BTreeMap::from([
            ("leak".to_owned(), answer(&ana, AnswerValue::YesNo(false))),
            (
                "cause".to_owned(),
                answer(&ana, AnswerValue::Choice("Seal".into())),
            ),
        ]),
        completed: true,
    };
    response.check_against(&on_device).expect("answers fit");
    let r1 = ana.store().create(&response, today(10)).expect("response");
    let report = ana.sync();
    assert_eq!(report.rejected, 0, "{report:?}");

    // Version 2: copied into a draft, a question added, published.
    let (status, body) = api(
        &w,
        &mona,
        "POST",
        &format!("/v1/templates/{v1}/new-version"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["version"].as_u64(), body["status"].as_str()),
        (Some(2), Some("draft"))
    );
    assert_eq!(body["family"], v1.to_string());
    assert_eq!(body["supersedes"], v1.to_string());
    let v2 = id_of(&body);
    // Only one next version at a time.
    let (status, _) = api(
        &w,
        &mona,
        "POST",
        &format!("/v1/templates/{v1}/new-version"),
        None,
    );
    assert_eq!(status, 409);
    let mut changed = definition("Shelf audit");
    changed["questions"]
        .as_array_mut()
        .expect("questions")
        .push(json!({"key": "facings", "text": "Facings on the shelf", "kind": "number", "required": true}));
    let (status, body) = api(
        &w,
        &mona,
        "PUT",
        &format!("/v1/templates/{v2}"),
        Some(changed),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = api(
        &w,
        &mona,
        "POST",
        &format!("/v1/templates/{v2}/publish"),
        None,
    );
    assert_eq!(status, 200, "{body}");

    // The family lists both; new work gets version 2.
    let (status, families) = api(&w, &mona, "GET", "/v1/templates", None);
    assert_eq!(status, 200);
    let family = families
        .as_array()
        .expect("families")
        .iter()
        .find(|f| f["family"] == v1.to_string())
        .expect("the family");
    assert_eq!(family["current"], v2.to_string());
    let versions: Vec<(u64, &str)> = family["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap_or(0),
                v["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(versions, [(2, "published"), (1, "published")]);

    // Version 1 and its answers are intact, on the server and on the device.
    let v1_on_server = template_on_server(&w, v1);
    assert_eq!((v1_on_server.version, v1_on_server.questions.len()), (1, 7));
    let (status, body) = api(&w, &mona, "GET", &format!("/v1/templates/{v1}"), None);
    assert_eq!(
        (status, body["questions"].as_array().map(Vec::len)),
        (200, Some(7))
    );
    let stored: ChecklistResponse = w.server_doc(r1).expect("response").read().expect("reads");
    assert_eq!((stored.template_id, stored.template_version), (v1, 1));
    assert_eq!(stored.answers.len(), 2);
    stored
        .check_against(&v1_on_server)
        .expect("still answers version 1");
    ana.sync();
    let v1_on_device: ChecklistTemplate = ana.store().read(v1).expect("version 1 stays");
    assert_eq!(v1_on_device, v1_on_server);
    let kept: ChecklistResponse = ana.store().read(r1).expect("the answers stay");
    assert_eq!(kept, stored);

    // New answers take version 2, the newest published on the device.
    let templates: Vec<ChecklistTemplate> = ana
        .store()
        .all_of(RecordKind::ChecklistTemplate)
        .expect("templates")
        .into_iter()
        .map(|p| ana.store().read(p.id).expect("template"))
        .collect();
    let latest = latest_published(v1, &templates)
        .expect("a published version")
        .clone();
    assert_eq!((latest.meta.id, latest.version), (v2, 2));
    let visit2 = w.visit_on(&ana, shop);
    let second = ChecklistResponse {
        meta: w.meta("ana"),
        template_id: latest.meta.id,
        template_version: latest.version,
        subject_id: visit2,
        answers: BTreeMap::from([
            ("leak".to_owned(), answer(&ana, AnswerValue::YesNo(false))),
            (
                "facings".to_owned(),
                answer(&ana, AnswerValue::Number(12.0)),
            ),
        ]),
        completed: true,
    };
    let r2 = ana.store().create(&second, today(11)).expect("response");
    let report = ana.sync();
    assert_eq!(report.rejected, 0, "{report:?}");
    let stored2: ChecklistResponse = w.server_doc(r2).expect("response").read().expect("reads");
    assert_eq!((stored2.template_id, stored2.template_version), (v2, 2));
    // An answer naming version 1's record with version 2's number is refused.
    let mixed = ChecklistResponse {
        meta: w.meta("ana"),
        template_version: 2,
        template_id: v1,
        ..second
    };
    let mut doc = RecordDoc::create(&mixed, ana.actor_id(), DeviceTime::utc(0)).expect("doc");
    refused(
        &ana.push_new(&mut doc),
        RejectCode::Validation,
        "version 1's record, number 2",
    );
}

fn cli_args(w: &World, command: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
    args.extend([
        "--org".to_owned(),
        fieldsync_test_support::ORG.to_owned(),
        "--as".to_owned(),
        "adam@acme.test".to_owned(),
        "--data-dir".to_owned(),
        w.settings.data_dir.to_str().expect("utf-8").to_owned(),
    ]);
    if let Some(url) = &w.settings.database_url {
        args.extend(["--database-url".to_owned(), url.clone()]);
    }
    args
}

fn an_operator_imports_and_publishes_from_the_command_line(w: World) {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("van-check.toml");
    std::fs::write(
        &file,
        r#"name = "Van check"

[[questions]]
key = "tyres"
text = "Tyres fine?"
kind = "yes_no"
required = true

[[questions]]
key = "tyre_photo"
text = "Photo of the worn tyre"
kind = "photo"
show_if_question = "tyres"
show_if_equals = "no"

[[questions]]
key = "fuel"
text = "Fuel level"
kind = "choice"
choices = ["full", "half", "low"]
"#,
    )
    .expect("write");
    let path = file.to_str().expect("utf-8");
    let out = fieldsync_test_support::fieldsync(
        &cli_args(&w, &["template", "import", path, "--publish"]),
        &[],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        printed.contains("Van check\tversion 1\tpublished\t3 question(s)"),
        "{printed}"
    );
    let id: RecordId = printed
        .split('\t')
        .next()
        .expect("id")
        .trim()
        .parse()
        .expect("an id first");
    let t = template_on_server(&w, id);
    assert!(t.published);
    assert_eq!(
        t.questions["tyre_photo"]
            .show_if
            .as_ref()
            .map(|s| s.equals.as_str()),
        Some("no")
    );

    // A bad definition changes nothing and says why.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"name": "Broken", "questions": [{"key": "q", "text": "?", "kind": "essay"}]}"#,
    )
    .expect("write");
    let out = fieldsync_test_support::fieldsync(
        &cli_args(&w, &["template", "import", bad.to_str().expect("utf-8")]),
        &[],
        None,
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("essay"),
        "{out:?}"
    );

    // The next version, published, and the listing.
    let id_arg = id.to_string();
    let out = fieldsync_test_support::fieldsync(
        &cli_args(&w, &["template", "new-version", "--id", &id_arg]),
        &[],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(printed.contains("version 2\tdraft"), "{printed}");
    let v2 = printed.split('\t').next().expect("id").trim().to_owned();
    let out = fieldsync_test_support::fieldsync(
        &cli_args(&w, &["template", "publish", "--id", &v2]),
        &[],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let out = fieldsync_test_support::fieldsync(&cli_args(&w, &["template", "list"]), &[], None);
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.contains("Van check\tversion 2\tpublished"),
        "{listed}"
    );
    assert!(
        listed.contains("Van check\tversion 1\tpublished"),
        "{listed}"
    );
    // The rep's device primed afterwards has both published versions.
    let ana = w.device("ana");
    ana.sync();
    let v2: RecordId = v2.parse().expect("id");
    for (version, id) in [(1, id), (2, v2)] {
        let t: ChecklistTemplate = ana.store().read(id).expect("on the device");
        assert_eq!((t.version, t.published), (version, true));
    }
}

#[test]
fn a_manager_makes_and_versions_a_template_on_the_pages() {
    let w = World::start(Backend::Sqlite);
    let browser = Browser::start(&w);
    let b = &browser.client;
    let base = &w.base;
    let (v1, v2) = w.rt.block_on(async {
        b.goto(&format!("{base}/web/templates"))
            .await
            .expect("goto");
        settled(b, "#login-title").await;
        fieldsync_test_support::fill_login(b, "mona@acme.test", PASSWORD).await;
        settled(b, "#templates-title").await;
        let html = b.source().await.expect("source");
        assert!(
            html.contains(r#"href="/web/templates" aria-current="page""#),
            "the nav link"
        );

        // A draft with four kinds of question, a choice and a show-if,
        // typed through the keyboard.
        type_into(b, "#t-name", "Fridge service").await;
        for (i, key, text, kind, choices, required, show_if) in [
            (0, "cold", "Cooling works?", "yes_no", "", true, None),
            (
                1,
                "temp",
                "Temperature (°C)",
                "number",
                "",
                false,
                Some(("cold", "no")),
            ),
            (
                2,
                "cause",
                "Cause",
                "choice",
                "Gas, Fan, Door seal",
                false,
                None,
            ),
            (3, "photo", "Photo of the unit", "photo", "", true, None),
        ] {
            type_into(b, &format!("#q{i}-key"), key).await;
            type_into(b, &format!("#q{i}-text"), text).await;
            choose(b, &format!("#q{i}-kind"), kind).await;
            if !choices.is_empty() {
                type_into(b, &format!("#q{i}-choices"), choices).await;
            }
            if required {
                b.find(Locator::Css(&format!("#q{i}-required")))
                    .await
                    .expect("required")
                    .send_keys(" ")
                    .await
                    .expect("tick");
            }
            if let Some((q, eq)) = show_if {
                type_into(b, &format!("#q{i}-show-if"), q).await;
                type_into(b, &format!("#q{i}-equals"), eq).await;
            }
        }
        submit(b, "#template-form").await;
        notice_says(b, "Draft saved").await;
        let html = b.source().await.expect("source");
        assert!(html.contains("cold = no"), "the show-if is shown");
        assert!(
            html.contains("Gas, Fan, Door seal"),
            "the choices are shown"
        );
        browser.screenshot("templates-draft", "sqlite").await;
        let v1 = current_id(b).await;

        // Publish: read-only from now on, with a "new version" button.
        submit(b, "#publish").await;
        notice_says(b, "Published").await;
        let html = b.source().await.expect("source");
        assert!(
            !html.contains("id=\"template-form\""),
            "no edit form once published"
        );
        assert!(html.contains("never edited"));

        // Version 2: a copy in a draft, published after an edit.
        submit(b, "#new-version").await;
        notice_says(b, "next version").await;
        let title = b
            .find(Locator::Id("template-title"))
            .await
            .expect("title")
            .text()
            .await
            .expect("text");
        assert!(title.contains("version 2"), "{title}");
        let v2 = current_id(b).await;
        type_into(b, "#q4-key", "door").await;
        type_into(b, "#q4-text", "Door closes?").await;
        submit(b, "#template-form").await;
        notice_says(b, "Draft saved").await;
        submit(b, "#publish").await;
        notice_says(b, "Published").await;
        let html = open(b, &format!("{base}/web/templates")).await;
        assert_eq!(
            html.matches("Fridge service").count(),
            2,
            "two versions listed"
        );
        assert!(html.contains("current"));
        browser.screenshot("templates-list", "sqlite").await;
        (v1, v2)
    });
    browser.close(&w);

    let t1 = template_on_server(&w, v1);
    assert_eq!((t1.version, t1.published, t1.questions.len()), (1, true, 4));
    assert_eq!(
        t1.questions["temp"]
            .show_if
            .as_ref()
            .map(|s| s.question.as_str()),
        Some("cold")
    );
    assert_eq!(t1.questions["cause"].choices, ["Gas", "Fan", "Door seal"]);
    assert!(t1.questions["cold"].required && !t1.questions["cause"].required);
    let t2 = template_on_server(&w, v2);
    assert_eq!((t2.version, t2.published, t2.questions.len()), (2, true, 5));
    assert_eq!((t2.family, t2.supersedes), (Some(v1), Some(v1)));
    // A posted edit of a published version (no form offers one) is refused
    // with the reason; a form without the session's token changes nothing.
    let session = cookie_pair(&sign_in(&w, "mona", PASSWORD), SESSION_COOKIE);
    let page = http(&w, "GET", &format!("/web/templates/{v1}"), &session, &[]);
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.body);
    let form = [
        ("csrf", csrf.as_str()),
        ("name", "Renamed"),
        ("q0_key", "cold"),
        ("q0_text", "Cold?"),
        ("q0_kind", "yes_no"),
    ];
    let reply = http(&w, "POST", &format!("/web/templates/{v1}"), &session, &form);
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert!(reply.body.contains("never edited"), "{}", reply.body);
    let reply = http(
        &w,
        "POST",
        &format!("/web/templates/{v1}/publish"),
        &session,
        &[],
    );
    assert_eq!(reply.status, 403);
    assert_eq!(template_on_server(&w, v1), t1, "nothing changed");
    // The audit names the manager for the server's changes.
    let mona = w.device("mona");
    let (status, trail) = api(&w, &mona, "GET", &format!("/v1/records/{v1}/audit"), None);
    assert_eq!(status, 200, "{trail}");
    assert!(
        trail.to_string().contains(&w.person("mona").id.to_string()),
        "{trail}"
    );
}

async fn current_id(b: &fantoccini::Client) -> RecordId {
    let url = b.current_url().await.expect("url");
    url.path()
        .trim_start_matches("/web/templates/")
        .parse()
        .unwrap_or_else(|_| panic!("a template page: {url}"))
}

async fn submit(b: &fantoccini::Client, form: &str) {
    b.find(Locator::Css(&format!("{form} button[type=submit]")))
        .await
        .unwrap_or_else(|e| panic!("{form}: {e}"))
        .click()
        .await
        .expect("click");
}

async fn notice_says(b: &fantoccini::Client, text: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(notice) = b.find(Locator::Id("template-notice")).await
            && let Ok(shown) = notice.text().await
            && shown.contains(text)
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page never said {text:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn choose(b: &fantoccini::Client, select: &str, value: &str) {
    b.find(Locator::Css(&format!("{select} option[value='{value}']")))
        .await
        .unwrap_or_else(|e| panic!("{select} offers {value}: {e}"))
        .click()
        .await
        .expect("choose");
}

async fn type_into(b: &fantoccini::Client, css: &str, text: &str) {
    let field = b.find(Locator::Css(css)).await.expect("field");
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}
