//! The catalogue and the customers, administered: CSV import (dry run, all
//! or nothing), export, one-record saves, on SQLite and on PostgreSQL, with
//! real devices, real HTTP, the real `fieldsync` binary and (for the Import
//! page) a real headless chromium.
//!
//! - An administrator imports 200 products, a price list of them and 1,000
//!   accounts on it through the JSON API, each file in one all-or-nothing
//!   push, in a few seconds; a dry run writes nothing.
//! - A second accounts file with three bad lines is refused whole, with
//!   exactly those three errors (line, column, message); nothing is written.
//! - A rep's device in the territory then has the accounts, the products and
//!   the price list; the rep may not import (403) nor push a product edit of
//!   their own making (refused by the push).
//! - Re-importing updates by natural key (no duplicates); export → import
//!   round-trips through the command line with nothing changed.
//! - Contacts carry consent (granted or withdrawn, when, how) to the device.
//! - One record saved through the JSON API is an edit by key, audited under
//!   the administrator; a territory's default price list prices the order a
//!   rep submits at an account without a list of its own.
//! - On the Import page, an administrator uploads a file, sees its errors by
//!   line and column, then imports a good file and edits a product through
//!   the Catalogue page's form (screenshots `import-<db>-errors.png`,
//!   `import-<db>-done.png`); a manager reads the page without its forms and
//!   is refused a save and the Import page.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use fieldsync_core::model::order::{self, Order, OrderLine, OrderStatus};
use fieldsync_core::model::{
    Account, ConsentStatus, Contact, Money, PriceList, Product, Qty, RecordKind,
};
use fieldsync_core::protocol::PushOutcome;
use fieldsync_test_support::{
    Backend, Browser, Device, ORG, PASSWORD, SESSION_COOKIE, World, api, cookie_pair, csrf_of,
    fieldsync, fill_login, http, on_both_databases, open, settled, sign_in, source_says, text_says,
    today,
};
use serde_json::{Value, json};

on_both_databases!(import_export_and_sync);

#[test]
fn the_import_page_on_sqlite() {
    import_page(World::start(Backend::Sqlite), "sqlite");
}

#[test]
fn the_import_page_on_postgres() {
    import_page(World::start(Backend::Postgres), "postgres");
}

const ACCOUNTS: usize = 1_000;
const PRODUCTS: usize = 200;

fn products_csv() -> String {
    let mut csv = String::from("sku,name,unit,serialized,spare_part,active\n");
    for i in 0..PRODUCTS {
        let spare = if i % 10 == 0 { "yes" } else { "no" };
        csv.push_str(&format!("SKU-{i:04},Product {i},pcs,no,{spare},yes\n"));
    }
    csv
}

fn price_list_csv() -> String {
    let mut csv = String::from("price_list,currency,sku,unit_price,max_discount_percent\n");
    for i in 0..PRODUCTS {
        csv.push_str(&format!(
            "Retail 2027,EUR,SKU-{i:04},{}.{:02},10\n",
            1 + i,
            i % 100
        ));
    }
    csv
}

fn accounts_csv() -> String {
    let mut csv = String::from(
        "code,name,account_type,account_status,visit_frequency_days,price_list,owner,\
         location_name,address,lat,lng,geofence_radius_m\n",
    );
    for i in 0..ACCOUNTS {
        csv.push_str(&format!(
            "C{i:05},\"Shop {i}, Lisboa\",outlet,active,14,Retail 2027,ana@acme.test,\
             Main site,Rua {i},38.{i:04},-9.1,120\n"
        ));
    }
    csv
}

/// POSTs a CSV file to the import API as `token`.
fn import(w: &World, token: &str, kind: &str, csv: &str, dry_run: bool) -> (u16, Value) {
    api(
        w,
        token,
        "POST",
        &format!("/v1/admin/import/{kind}"),
        Some(json!({ "csv": csv, "dry_run": dry_run })),
    )
}

fn imported(w: &World, token: &str, kind: &str, csv: &str) -> Value {
    let started = Instant::now();
    let (code, report) = import(w, token, kind, csv, false);
    assert_eq!(code, 200, "{kind}: {report}");
    assert_eq!(report["ok"], true, "{report}");
    eprintln!(
        "imported {kind} ({} rows) in {:?}",
        report["rows"],
        started.elapsed()
    );
    report
}

fn records_of(w: &World, kind: &'static str) -> i64 {
    match kind {
        "account" => w.scalar("SELECT COUNT(*) FROM records WHERE kind = 'account'"),
        "product" => w.scalar("SELECT COUNT(*) FROM records WHERE kind = 'product'"),
        "price_list" => w.scalar("SELECT COUNT(*) FROM records WHERE kind = 'price_list'"),
        "contact" => w.scalar("SELECT COUNT(*) FROM records WHERE kind = 'contact'"),
        _ => unreachable!(),
    }
}

fn cli(w: &World, args: &[&str]) -> std::process::Output {
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    match &w.settings.database_url {
        Some(url) => all.extend(["--database-url".to_owned(), url.clone()]),
        None => all.extend([
            "--data-dir".to_owned(),
            w.settings.data_dir.display().to_string(),
        ]),
    }
    fieldsync(&all, &[], None)
}

fn import_export_and_sync(w: World) {
    let adam = w.device("adam");
    let admin = adam.access_token();
    let ana = w.device("ana");

    // A dry run counts what would be made and writes nothing.
    let (code, dry) = import(&w, &admin, "products", &products_csv(), true);
    assert_eq!(code, 200, "{dry}");
    assert_eq!(
        (dry["ok"].clone(), dry["created"].clone()),
        (json!(true), json!(PRODUCTS))
    );
    assert_eq!(records_of(&w, "product"), 0, "a dry run writes nothing");

    // The catalogue, then 1,000 accounts on its price list: each file one push.
    let started = Instant::now();
    let report = imported(&w, &admin, "products", &products_csv());
    assert_eq!(report["created"], PRODUCTS);
    let report = imported(&w, &admin, "price-list", &price_list_csv());
    assert_eq!(report["created"], 1);
    let report = imported(&w, &admin, "accounts", &accounts_csv());
    assert_eq!(report["created"], ACCOUNTS);
    let took = started.elapsed();
    eprintln!("200 products, a price list and 1,000 accounts in {took:?}");
    assert!(
        took < Duration::from_secs(20),
        "the imports took {took:?}; they should take a few seconds"
    );
    assert_eq!(records_of(&w, "product"), PRODUCTS as i64);
    assert_eq!(records_of(&w, "account"), ACCOUNTS as i64);

    // A second file with three bad lines is refused whole: exactly those
    // three errors, and nothing written (not even its good lines).
    let mut bad = String::from("code,name,account_status,price_list\n");
    for i in 0..20 {
        let line = i + 2;
        match line {
            5 => bad.push_str(&format!("N{i},,active,Retail 2027\n")),
            9 => bad.push_str(&format!("N{i},Shop,sleeping,Retail 2027\n")),
            14 => bad.push_str(&format!("N{i},Shop,active,Wholesale\n")),
            _ => bad.push_str(&format!("N{i},New shop {i},prospect,Retail 2027\n")),
        }
    }
    let log_before = w.log_len();
    let (code, report) = import(&w, &admin, "accounts", &bad, false);
    assert_eq!(code, 422, "{report}");
    assert_eq!(report["ok"], false);
    let errors: Vec<(u64, String, String)> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().expect("line"),
                e["column"].as_str().expect("column").to_owned(),
                e["message"].as_str().expect("message").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (5, "name".into(), "required: this cell is empty".into()),
            (
                9,
                "account_status".into(),
                "\"sleeping\" is not active, prospect or inactive".into()
            ),
            (
                14,
                "price_list".into(),
                "no price list called \"Wholesale\": import it first".into()
            ),
        ]
    );
    assert_eq!(report["error_count"], 3);
    assert_eq!(w.log_len(), log_before, "nothing was written");
    assert_eq!(records_of(&w, "account"), ACCOUNTS as i64);

    // Contacts with consent: granted, withdrawn, never asked.
    let contacts = "account_code,name,role,email,consent,consent_at,consent_how\n\
                    C00001,Rui Lopes,buyer,rui@shop.test,granted,2026-11-02,signed form\n\
                    C00001,Eva Reis,owner,,withdrawn,2026-11-20T15:30:00Z,phone call\n\
                    C00002,Zé Dias,,,,,\n";
    let report = imported(&w, &admin, "contacts", contacts);
    assert_eq!(report["created"], 3);

    // The rep may not import, nor see the administration's lists.
    let rep = ana.access_token();
    let (code, _) = import(&w, &rep, "products", &products_csv(), true);
    assert_eq!(code, 403, "a rep cannot import");
    assert_eq!(api(&w, &rep, "GET", "/v1/catalogue/products", None).0, 403);
    let mona = w.device("mona");
    let (code, _) = import(&w, &mona.access_token(), "products", &products_csv(), true);
    assert_eq!(
        code, 403,
        "a manager reads the catalogue but does not import"
    );
    let (code, listed) = api(
        &w,
        &mona.access_token(),
        "GET",
        "/v1/catalogue/products?q=SKU-019",
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(10),
        "SKU-0190..SKU-0199"
    );

    // The rep's device in the territory has the customers and the catalogue.
    ana.sync();
    let store = ana.store();
    assert_eq!(
        store.all_of(RecordKind::Account).expect("accounts").len(),
        ACCOUNTS
    );
    assert_eq!(
        store.all_of(RecordKind::Product).expect("products").len(),
        PRODUCTS
    );
    let lists = store.all_of(RecordKind::PriceList).expect("price lists");
    assert_eq!(lists.len(), 1);
    let list: PriceList = store.read(lists[0].id).expect("the price list");
    assert_eq!(
        (list.name.as_str(), list.items.len()),
        ("Retail 2027", PRODUCTS)
    );
    let account_ids = store.all_of(RecordKind::Account).expect("accounts");
    let some: Account = store.read(account_ids[0].id).expect("an account");
    assert_eq!(
        some.price_list_id,
        Some(list.meta.id),
        "on the imported list"
    );
    let site = some.locations.values().next().expect("a site");
    assert_eq!(site.geofence_radius_m, 120.0);

    // Consent reached the device with its evidence.
    let mut seen = Vec::new();
    for p in store.all_of(RecordKind::Contact).expect("contacts") {
        let c: Contact = store.read(p.id).expect("a contact");
        seen.push((
            c.name.clone(),
            c.consent.as_ref().map(|k| (k.status, k.how.clone())),
            c.marketing_consent,
        ));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            (
                "Eva Reis".to_owned(),
                Some((ConsentStatus::Withdrawn, "phone call".to_owned())),
                false
            ),
            (
                "Rui Lopes".to_owned(),
                Some((ConsentStatus::Granted, "signed form".to_owned())),
                true
            ),
            ("Zé Dias".to_owned(), None, false),
        ]
    );

    // A rep's hand-made edit of a product is refused by the push.
    let product_id = store.all_of(RecordKind::Product).expect("products")[0].id;
    let copy = w.server_doc(product_id).expect("the server's copy");
    let out = ana.push_forged(copy, |d| {
        d.update::<Product>(today(9), |p| p.name = "Cheaper".into())
            .expect("an edit");
    });
    assert!(
        matches!(out, PushOutcome::Rejected(_)),
        "a rep edits no product: {out:?}"
    );
    // Nor may a rep create one.
    let mut forged = fieldsync_core::model::RecordDoc::create(
        &Product {
            meta: w.meta("ana"),
            sku: "FAKE-1".into(),
            name: "Fake".into(),
            unit: "pcs".into(),
            serialized: false,
            spare_part: false,
            active: true,
        },
        ana.actor_id(),
        today(9),
    )
    .expect("a doc");
    assert!(matches!(
        ana.push_new(&mut forged),
        PushOutcome::Rejected(_)
    ));

    // Re-importing updates by natural key: one renamed product, no duplicate.
    let renamed = products_csv().replace("SKU-0007,Product 7,", "SKU-0007,Product seven,");
    let report = imported(&w, &admin, "products", &renamed);
    assert_eq!(
        (
            report["created"].clone(),
            report["updated"].clone(),
            report["unchanged"].clone()
        ),
        (json!(0), json!(1), json!(PRODUCTS - 1))
    );
    assert_eq!(records_of(&w, "product"), PRODUCTS as i64);

    // Export → import through the command line: nothing changes.
    let dir = tempfile::tempdir().expect("dir");
    for kind in ["products", "price-list", "accounts", "contacts"] {
        let path = dir.path().join(format!("{kind}.csv"));
        let path_s = path.display().to_string();
        let out = cli(&w, &["export", kind, "--org", ORG, "--output", &path_s]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&path).expect("the export");
        let expected_rows = match kind {
            "products" | "price-list" => PRODUCTS,
            "accounts" => ACCOUNTS,
            _ => 3,
        };
        assert_eq!(
            text.lines().count(),
            expected_rows + 1,
            "{kind}: header and rows"
        );
        let log_before = w.log_len();
        let out = cli(&w, &["import", kind, &path_s, "--org", ORG]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("created 0, updated 0"), "{kind}: {stdout}");
        assert_eq!(
            w.log_len(),
            log_before,
            "{kind}: the round trip changes nothing"
        );
    }
    assert!(
        std::fs::read_to_string(dir.path().join("products.csv"))
            .expect("products")
            .contains("SKU-0007,Product seven,pcs,no,no,yes")
    );

    // The command line lists every error by line and column and writes nothing.
    let bad_path = dir.path().join("bad.csv");
    std::fs::write(&bad_path, &bad).expect("write");
    let out = cli(
        &w,
        &[
            "import",
            "accounts",
            &bad_path.display().to_string(),
            "--org",
            ORG,
            "--dry-run",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 5, column name"), "{stderr}");
    assert!(stderr.contains("line 9, column account_status"), "{stderr}");
    assert!(stderr.contains("line 14, column price_list"), "{stderr}");

    // One record saved from a form's columns (the JSON API): an edit by key.
    let (code, saved) = api(
        &w,
        &admin,
        "POST",
        "/v1/admin/records/accounts",
        Some(json!({"code": "C00003", "name": "Shop three renamed", "price_list": "Retail 2027"})),
    );
    assert_eq!(code, 200, "{saved}");
    ana.sync();
    let id: fieldsync_core::RecordId = saved["id"].as_str().expect("id").parse().expect("an id");
    let a: Account = ana.store().read(id).expect("the account");
    assert_eq!(a.name, "Shop three renamed");
    assert_eq!(a.locations.len(), 1, "its site kept");
    let audit = api(&w, &admin, "GET", &format!("/v1/records/{id}/audit"), None);
    assert_eq!(audit.0, 200, "{}", audit.1);
    let adam_id = w.person("adam").id.to_string();
    let by: Vec<&str> = audit
        .1
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["user_id"].as_str())
        .collect();
    assert!(
        by.len() >= 2 && by.iter().all(|u| *u == adam_id),
        "the import and the edit are the administrator's: {by:?}"
    );

    // A territory's default price list prices orders at accounts without one.
    let (code, body) = api(
        &w,
        &admin,
        "POST",
        "/v1/admin/records/price-list",
        Some(
            json!({"price_list": "Territory list", "currency": "EUR", "sku": "SKU-0001",
                    "unit_price": "5.00", "max_discount_percent": "5", "territory_default": "yes"}),
        ),
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = api(
        &w,
        &admin,
        "POST",
        "/v1/admin/records/accounts",
        Some(json!({"code": "NOLIST", "name": "Shop without a list", "owner": "ana@acme.test"})),
    );
    assert_eq!(code, 200, "{body}");
    let nolist: fieldsync_core::RecordId = body["id"].as_str().expect("id").parse().expect("id");
    ana.sync();
    let sku1 = ana
        .store()
        .all_of(RecordKind::Product)
        .expect("products")
        .into_iter()
        .map(|p| ana.store().read::<Product>(p.id).expect("product"))
        .find(|p| p.sku == "SKU-0001")
        .expect("SKU-0001");
    let order = Order::new(w.meta("ana"), nolist, "EUR");
    let order_id = ana
        .store()
        .create_stateful(&order, &ana.actor, today(9))
        .expect("order");
    ana.store()
        .act(order_id, |d| {
            order::add_line(
                d,
                &ana.actor,
                today(9),
                OrderLine::new(sku1.meta.id, Qty::units(2), Money::new(999, "EUR")),
            )
            .map(|_| ())
        })
        .expect("line");
    ana.store()
        .act(order_id, |d| {
            order::submit(d, &ana.actor, today(10)).map(|_| ())
        })
        .expect("submit");
    ana.sync();
    let priced: Order = ana.store().read_stateful(order_id).expect("the order");
    assert_eq!(
        priced.status,
        OrderStatus::Confirmed,
        "priced from the territory's default list"
    );
    let line = priced.lines.values().next().expect("a line");
    assert_eq!(line.unit_price, Money::new(500, "EUR"));
    drop(mona);
}

fn import_page(w: World, db: &str) {
    let browser = Browser::start(&w);
    let b = &browser.client;
    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("products-bad.csv");
    std::fs::write(
        &bad,
        "sku,name,serialized\nA-1,Anvil,no\nA-2,,no\nA-3,Axe,maybe\nA-1,Again,no\n",
    )
    .expect("write");
    let good = dir.path().join("products.csv");
    std::fs::write(&good, "sku,name,serialized\nA-1,Anvil,no\nA-2,Axe,yes\n").expect("write");
    w.rt.block_on(async {
        open(b, &format!("{}/web/login", w.base)).await;
        fill_login(b, "adam@acme.test", PASSWORD).await;
        settled(b, "main h1").await;
        let html = open(b, &format!("{}/web/import", w.base)).await;
        assert!(html.contains("Import"), "{html}");
        // Upload the bad file: a dry run shows every error by line and column.
        b.find(Locator::Css("select#kind"))
            .await
            .expect("kind")
            .select_by_value("products")
            .await
            .expect("select");
        b.find(Locator::Css("input#file"))
            .await
            .expect("file input")
            .send_keys(&bad.display().to_string())
            .await
            .expect("choose file");
        wait_for_text(b, "textarea#csv", "A-3,Axe,maybe").await;
        b.find(Locator::Css("button#check"))
            .await
            .expect("check")
            .click()
            .await
            .expect("click");
        settled(b, "table.import-errors").await;
        let html = b.source().await.expect("source");
        for expected in [
            "<td>3</td><td>name</td>",
            "<td>4</td><td>serialized</td>",
            "<td>5</td><td>sku</td>",
        ] {
            assert!(html.contains(expected), "{expected} in {html}");
        }
        assert!(
            !html.contains("button id=\"confirm\""),
            "no import of a bad file"
        );
        browser.screenshot(&format!("import-{db}"), "errors").await;

        // The good file: checked, then imported.
        open(b, &format!("{}/web/import", w.base)).await;
        b.find(Locator::Css("select#kind"))
            .await
            .expect("kind")
            .select_by_value("products")
            .await
            .expect("select");
        b.find(Locator::Css("input#file"))
            .await
            .expect("file input")
            .send_keys(&good.display().to_string())
            .await
            .expect("choose file");
        wait_for_text(b, "textarea#csv", "A-2,Axe,yes").await;
        b.find(Locator::Css("button#check"))
            .await
            .expect("check")
            .click()
            .await
            .expect("click");
        settled(b, "button#confirm").await;
        let html = b.source().await.expect("source");
        assert!(html.contains("2 to create"), "{html}");
        b.find(Locator::Css("button#confirm"))
            .await
            .expect("confirm")
            .click()
            .await
            .expect("click");
        // The check's page shows an ok notice too: wait for the import's.
        text_says(b, "p.notice.ok", "Imported 2 products").await;
        let html = b.source().await.expect("source");
        assert!(html.contains("Imported 2 products"), "{html}");
        browser.screenshot(&format!("import-{db}"), "done").await;
        // The catalogue page lists them.
        let html = open(b, &format!("{}/web/catalogue", w.base)).await;
        assert!(html.contains("Anvil") && html.contains("A-2"), "{html}");
        // Its form edits a product by SKU (a one-row import).
        open(b, &format!("{}/web/catalogue?edit=A-2", w.base)).await;
        let name = b.find(Locator::Css("#f-name")).await.expect("name field");
        name.clear().await.expect("clear");
        name.send_keys("Axe, forged").await.expect("type");
        b.find(Locator::Css("#product-form button[type=submit]"))
            .await
            .expect("save")
            .click()
            .await
            .expect("click");
        let html = source_says(b, "Product saved.").await;
        assert!(
            html.contains("Product saved.") && html.contains("Axe, forged"),
            "{html}"
        );
    });
    assert_eq!(records_of(&w, "product"), 2);

    // A manager reads the pages without their forms, and may not save,
    // import or open the Import page.
    let session = cookie_pair(&sign_in(&w, "mona", PASSWORD), SESSION_COOKIE);
    let page = http(&w, "GET", "/web/catalogue", &session, &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Axe, forged"), "{}", page.body);
    assert!(!page.body.contains("product-form"), "no form for a manager");
    assert!(
        !page.body.contains("href=\"/web/import\""),
        "no Import link"
    );
    let csrf = csrf_of(&page.body);
    let save = http(
        &w,
        "POST",
        "/web/admin/save/products",
        &session,
        &[("csrf", &csrf), ("sku", "A-9"), ("name", "Not mine")],
    );
    assert_eq!(save.status, 403, "{}", save.body);
    assert_eq!(http(&w, "GET", "/web/import", &session, &[]).status, 403);
    let check = http(
        &w,
        "POST",
        "/web/import/check",
        &session,
        &[
            ("csrf", &csrf),
            ("kind", "products"),
            ("csv", "sku,name\nA-9,Nine\n"),
        ],
    );
    assert_eq!(check.status, 403);
    assert_eq!(records_of(&w, "product"), 2);
    let ana: Device = w.device("ana");
    ana.sync();
    assert_eq!(
        ana.store()
            .all_of(RecordKind::Product)
            .expect("products")
            .len(),
        2
    );
    browser.close(&w);
}

/// Waits until the element `css` holds `text` as its value (the page's
/// script read the chosen file into it).
async fn wait_for_text(b: &fantoccini::Client, css: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = b
            .find(Locator::Css(css))
            .await
            .expect("element")
            .prop("value")
            .await
            .expect("value")
            .unwrap_or_default();
        if value.contains(text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never held {text:?}: {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
