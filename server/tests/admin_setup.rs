//! A deployment set up from nothing, by an administrator on the web pages, on
//! SQLite and on PostgreSQL: `fieldsync org init` makes the organisation and
//! its administrator; in Chromium the administrator creates a territory, a
//! team, a manager and two reps (People), imports 200 products, a price list
//! and 1,000 accounts from CSV files (Import; a file with three bad lines is
//! refused whole, its three errors shown), and publishes a checklist template
//! (Templates). A rep's device primed afterwards holds the territory's
//! accounts, the catalogue, the price list and the template.

use fantoccini::{Client, Locator};
use fieldsync_core::model::{ChecklistTemplate, PriceList};
use fieldsync_core::store::{DeviceStore, StoreOptions};
use fieldsync_core::sync::{DeviceInfo, HttpTransport, LoginRequest, NoProgress, SyncClient};
use fieldsync_core::{DeviceId, RecordKind};
use fieldsync_test_support::{
    Browser, World, choose_label, fieldsync, fill_login_of, on_both_databases, open, settled,
    submit, text_says, type_into,
};

on_both_databases!(an_administrator_sets_up_an_organisation_on_the_pages);

const SLUG: &str = "coastal";
const ADMIN: &str = "admin@coastal.test";
const ADMIN_PASSWORD: &str = "a long admin passphrase";
const ACCOUNTS: usize = 1_000;
const PRODUCTS: usize = 200;

fn products_csv() -> String {
    let mut csv = String::from("sku,name,unit,serialized,spare_part,active,territory\n");
    for i in 0..PRODUCTS {
        csv.push_str(&format!("CS-{i:04},Product {i},pcs,no,no,yes,Algarve\n"));
    }
    csv
}

fn price_list_csv() -> String {
    let mut csv =
        String::from("price_list,currency,sku,unit_price,max_discount_percent,territory\n");
    for i in 0..PRODUCTS {
        csv.push_str(&format!(
            "Algarve 2027,EUR,CS-{i:04},{}.50,10,Algarve\n",
            2 + i
        ));
    }
    csv
}

/// The accounts, owned by the first rep, in the territory.
fn accounts_csv(rows: usize) -> String {
    let mut csv = String::from(
        "code,name,account_type,account_status,visit_frequency_days,price_list,owner,\
         territory,location_name,address,lat,lng,geofence_radius_m\n",
    );
    for i in 0..rows {
        csv.push_str(&format!(
            "AL{i:05},\"Loja {i}, Faro\",outlet,active,14,Algarve 2027,rita@coastal.test,\
             Algarve,Main site,Rua {i},37.{i:04},-7.9,120\n"
        ));
    }
    csv
}

/// Three bad lines among good ones (line 1 is the header): a missing name
/// on line 3, a radius that is no number on line 5, an owner nobody is on
/// line 7.
fn bad_accounts_csv() -> String {
    let good = accounts_csv(6);
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    lines[2] = lines[2].replace("\"Loja 1, Faro\"", "");
    lines[4] = lines[4].replace(",120", ",wide");
    lines[6] = lines[6].replace("rita@coastal.test", "nobody@coastal.test");
    lines.join("\n") + "\n"
}

/// Imports `csv` as `kind` on the Import page: the file is chosen, checked,
/// then imported; answers the page's result notice.
async fn import_file(b: &Client, base: &str, kind: &str, path: &std::path::Path) -> String {
    open(b, &format!("{base}/web/import")).await;
    b.find(Locator::Css("select#kind"))
        .await
        .expect("kind")
        .select_by_value(kind)
        .await
        .expect("select");
    b.find(Locator::Css("input#file"))
        .await
        .expect("file input")
        .send_keys(&path.display().to_string())
        .await
        .expect("choose file");
    // The page's script copies the file into the form.
    text_says(b, "textarea#csv", "\n").await;
    submit(b, "#import-form").await;
    settled(b, "button#confirm, table.import-errors").await;
    if b.find(Locator::Css("table.import-errors")).await.is_ok() {
        return b.source().await.expect("source");
    }
    b.find(Locator::Css("button#confirm"))
        .await
        .expect("confirm")
        .click()
        .await
        .expect("click");
    text_says(b, "p.notice.ok", "Imported").await
}

fn an_administrator_sets_up_an_organisation_on_the_pages(w: World) {
    let db = if w.settings.database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    // The organisation, from the command line, as an operator makes it.
    let mut args: Vec<String> = [
        "org",
        "init",
        "--name",
        "Coastal Foods",
        "--slug",
        SLUG,
        "--admin-email",
        ADMIN,
        "--admin-password-stdin",
        "--data-dir",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push(w.data_dir().to_str().expect("utf-8").to_owned());
    args.extend(w.database_args());
    let out = fieldsync(&args, &[], Some(&format!("{ADMIN_PASSWORD}\n")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().expect("dir");
    let file = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let products = file("products.csv", products_csv());
    let prices = file("price-list.csv", price_list_csv());
    let accounts = file("accounts.csv", accounts_csv(ACCOUNTS));
    let bad = file("accounts-bad.csv", bad_accounts_csv());

    let browser = Browser::start(&w);
    let b = &browser.client;
    let base = w.base.clone();
    let rep_password = w.rt.block_on(async {
        open(b, &format!("{base}/web/login")).await;
        fill_login_of(b, SLUG, ADMIN, ADMIN_PASSWORD).await;
        settled(b, "main h1").await;

        // People: a territory, a team, a manager and two reps.
        open(b, &format!("{base}/web/people")).await;
        type_into(b, "#n-territory", "Algarve").await;
        submit(b, "#add-territory").await;
        text_says(b, "#people-notice", "Territory Algarve created").await;
        type_into(b, "#n-team", "Sul").await;
        submit(b, "#add-team").await;
        text_says(b, "#people-notice", "Team Sul created").await;
        let mut passwords = Vec::new();
        for (email, role) in [
            ("marta@coastal.test", "manager"),
            ("rita@coastal.test", "rep"),
            ("rui@coastal.test", "rep"),
        ] {
            type_into(b, "#a-email", email).await;
            choose_label(b, "#a-role", role).await;
            choose_label(b, "#a-team", "Sul").await;
            choose_label(b, "#a-territory", "Algarve").await;
            submit(b, "#add-person").await;
            let notice = text_says(b, "#people-notice", email).await;
            let password = notice
                .split("safely): ")
                .nth(1)
                .map(|p| p.trim().to_owned())
                .unwrap_or_else(|| panic!("a temporary password in {notice:?}"));
            passwords.push(password);
        }
        browser.screenshot(&format!("setup-{db}"), "people").await;

        // Import: the catalogue, its price list, then the customers.
        let done = import_file(b, &base, "products", &products).await;
        assert!(done.contains("Imported 200 products"), "{done}");
        let done = import_file(b, &base, "price-list", &prices).await;
        assert!(done.contains("Imported"), "{done}");
        // A file with three bad lines is refused whole, each error shown.
        let page = import_file(b, &base, "accounts", &bad).await;
        for (line, column) in [(3, "name"), (5, "geofence_radius_m"), (7, "owner")] {
            assert!(
                page.contains(&format!("<td>{line}</td><td>{column}</td>")),
                "line {line}, {column} in {page}"
            );
        }
        assert!(!page.contains("id=\"confirm\""), "no import of a bad file");
        browser.screenshot(&format!("setup-{db}"), "errors").await;
        let done = import_file(b, &base, "accounts", &accounts).await;
        assert!(done.contains("Imported 1000 accounts"), "{done}");

        // Templates: a draft with a question, published.
        open(b, &format!("{base}/web/templates")).await;
        type_into(b, "#t-name", "Store audit").await;
        type_into(b, "#q0-key", "clean").await;
        type_into(b, "#q0-text", "Shelves clean?").await;
        b.find(Locator::Css("#q0-kind option[value='yes_no']"))
            .await
            .expect("yes/no")
            .click()
            .await
            .expect("choose");
        submit(b, "#template-form").await;
        text_says(b, "#template-notice", "Draft saved").await;
        submit(b, "#publish").await;
        text_says(b, "#template-notice", "Published").await;
        browser.screenshot(&format!("setup-{db}"), "template").await;
        passwords.remove(2)
    });
    browser.close(&w);
    let bad_accounts = w.scalar("SELECT COUNT(*) FROM records WHERE kind = 'account'");
    assert_eq!(bad_accounts as usize, ACCOUNTS, "nothing of the bad file");

    // Rui's phone, primed afterwards: the territory's accounts (Rita owns
    // them), the catalogue, the price list and the published template.
    let store_dir = tempfile::tempdir().expect("dir");
    let store =
        DeviceStore::open(store_dir.path().join("rui.db"), StoreOptions::default()).expect("store");
    let client = SyncClient::new(
        store,
        HttpTransport::new(&w.base, std::time::Duration::from_secs(60)),
        fieldsync_test_support::fast_options(),
    );
    client
        .login(&LoginRequest {
            org: SLUG.into(),
            email: "rui@coastal.test".into(),
            password: rep_password,
            device: DeviceInfo {
                id: DeviceId::new(),
                platform: "test".into(),
                app_version: "1.0.0".into(),
            },
        })
        .expect("the rep logs in with the temporary password");
    let report = client.sync(&NoProgress).expect("prime");
    let count = |kind| client.store().all_of(kind).expect("list").len();
    assert_eq!(count(RecordKind::Account), ACCOUNTS, "{report:?}");
    assert_eq!(count(RecordKind::Product), PRODUCTS);
    let lists = client.store().all_of(RecordKind::PriceList).expect("lists");
    assert_eq!(lists.len(), 1);
    let list: PriceList = client.store().read(lists[0].id).expect("price list");
    assert_eq!(
        (list.name.as_str(), list.items.len()),
        ("Algarve 2027", PRODUCTS)
    );
    let templates = client
        .store()
        .all_of(RecordKind::ChecklistTemplate)
        .expect("templates");
    assert_eq!(templates.len(), 1);
    let template: ChecklistTemplate = client.store().read(templates[0].id).expect("template");
    assert!(template.published && template.name == "Store audit");
}
