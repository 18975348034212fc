//! The check on small crates written to a temporary directory. The fixtures
//! need only parse, not compile.

use std::path::Path;

use anyhow::{Context, Result};

use super::{Report, Rule, Rules, Violation, check};

/// A cleanly layered crate, as (path under `src/`, text).
fn layered() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "lib.rs",
            "//! The crate root may import anything.
pub mod blob;
pub mod db;
pub mod domain;
pub mod http;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod service;
pub mod settings;
pub mod web;

pub use crate::service::visits::VisitService;

pub fn router() -> axum::Router {
    http::router().merge(crate::http::api_doc::routes())
}
",
        ),
        (
            "main.rs",
            "mod cli;\nuse fieldsync::router;\nfn main() { let _ = router(); cli::run(); }\n",
        ),
        // The binary's own module: not a module of the library, not checked.
        ("cli.rs", "pub fn run() {}\n"),
        ("domain/mod.rs", "pub mod visit;\npub use visit::Visit;\n"),
        (
            "domain/visit.rs",
            "/// A visit. [`crate::db::VisitRow`] is how it is stored (a doc link imports nothing).
#[derive(Debug, Clone)]
pub struct Visit {
    pub id: u64,
    pub tokio: bool,
}

impl Visit {
    pub(in crate::domain) fn check(&self) -> bool {
        let tokio = self.tokio;
        let sqlx = tokio;
        sqlx
    }
}

#[cfg(test)]
mod tests {
    use super::Visit;

    #[test]
    fn checks() {
        assert!(!Visit { id: 1, tokio: false }.check());
    }
}
",
        ),
        (
            "db/mod.rs",
            "pub mod visits;

use crate::domain::Visit;

#[derive(Debug, sqlx::FromRow)]
pub struct VisitRow {
    pub id: i64,
}

pub enum Database {
    Sqlite(sqlx::SqlitePool),
}

#[macro_export]
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Database::Sqlite($pool) => $body,
        }
    };
}

pub fn to_domain(row: &VisitRow) -> Visit {
    Visit { id: row.id as u64, tokio: false }
}
",
        ),
        (
            "db/visits.rs",
            "use super::{Database, VisitRow};
use crate::domain::visit::Visit;

pub async fn load(db: &Database) -> Vec<Visit> {
    let rows: Vec<VisitRow> = crate::on_pool!(db, pool => sqlx::query_as::<_, VisitRow>(\"select id from visits\")
        .fetch_all(pool)
        .await
        .unwrap_or_default());
    rows.iter().map(super::to_domain).collect()
}
",
        ),
        (
            "settings.rs",
            "use crate::domain::Visit;\n\npub struct Settings {\n    pub data_dir: std::path::PathBuf,\n}\n",
        ),
        ("metrics.rs", "use crate::settings::Settings;\n\npub struct Metrics;\n"),
        ("limits.rs", "use crate::{domain, settings::Settings};\n\npub struct Limits;\n"),
        (
            "live.rs",
            "use crate::{db::Database, metrics::Metrics, settings::Settings};

pub struct Hub {
    pub tx: tokio::sync::broadcast::Sender<u64>,
}
",
        ),
        (
            "blob.rs",
            "use crate::settings::Settings;\n\npub async fn put(_path: &object_store::path::Path) {}\n",
        ),
        ("service/mod.rs", "pub mod visits;\n\npub use visits::VisitService;\n"),
        (
            "service/visits.rs",
            "use crate::blob;
use crate::db::{self, Database};
use crate::domain::Visit;
use crate::live::Hub;

pub struct VisitService {
    db: Database,
    hub: Hub,
}

impl VisitService {
    pub async fn list(&self) -> Vec<Visit> {
        tokio::task::yield_now().await;
        tracing::info!(\"listing visits\");
        db::visits::load(&self.db).await
    }
}
",
        ),
        (
            "http/mod.rs",
            "pub mod api_doc;
pub mod error;
mod visits;

use self::api_doc::ApiDoc;

pub fn router() -> axum::Router {
    axum::Router::new()
        .route(\"/openapi.json\", axum::routing::get(ApiDoc::json))
        .merge(visits::routes())
}
",
        ),
        (
            "http/api_doc.rs",
            "use super::error::ErrorBody;

pub struct ApiDoc;

impl ApiDoc {
    pub fn json() -> String {
        String::new()
    }
}

pub fn routes() -> axum::Router {
    axum::Router::new()
}
",
        ),
        (
            "http/error.rs",
            "#[derive(Debug, serde::Serialize, utoipa::ToSchema)]\npub struct ErrorBody {\n    pub message: String,\n}\n",
        ),
        (
            "http/visits.rs",
            "use axum::{Json, extract::State};

use crate::service::VisitService;

#[utoipa::path(get, path = \"/v1/visits\", responses((status = 400, body = crate::http::error::ErrorBody)))]
pub async fn list(State(s): State<VisitService>) -> Json<Vec<u64>> {
    Json(s.list().await.iter().map(|v| v.id).collect())
}

pub fn routes() -> axum::Router {
    axum::Router::new()
}
",
        ),
        ("web/mod.rs", "mod inbox;\n\npub use inbox::page;\n"),
        (
            "web/inbox.rs",
            "use maud::{Markup, html};

use crate::domain;
use crate::service::VisitService;

pub async fn page(s: &VisitService) -> Markup {
    let visits: Vec<domain::Visit> = s.list().await;
    html! { p { (visits.len()) } }
}
",
        ),
    ]
}

/// `files` with `path` set to `text` (added or replaced).
fn with(
    mut files: Vec<(&'static str, &'static str)>,
    path: &'static str,
    text: &'static str,
) -> Vec<(&'static str, &'static str)> {
    files.retain(|(p, _)| *p != path);
    files.push((path, text));
    files
}

/// `files` without `path`.
fn without(
    mut files: Vec<(&'static str, &'static str)>,
    path: &str,
) -> Vec<(&'static str, &'static str)> {
    files.retain(|(p, _)| *p != path);
    files
}

/// Writes `files` under `src/` of a temporary directory and checks them with
/// the server's rules.
fn check_tree(files: &[(&str, &str)]) -> Result<Report> {
    check_tree_with(files, &Rules::server())
}

/// Writes `files` under `src/` of a temporary directory and checks them with `rules`.
fn check_tree_with(files: &[(&str, &str)], rules: &Rules) -> Result<Report> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    for (path, text) in files {
        let file = dir.path().join("src").join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, text)?;
    }
    check(dir.path(), Path::new("src"), rules)
}

/// The 1-based line of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(0, |i| i + 1)
}

fn of_rule(report: &Report, rule: Rule) -> Vec<&Violation> {
    report
        .violations
        .iter()
        .filter(|v| v.rule == rule)
        .collect()
}

/// The only violation of the report; fails the test, showing the report, if
/// there is not exactly one.
fn only_violation(report: &Report) -> &Violation {
    assert_eq!(
        report.violations.len(),
        1,
        "expected one violation:\n{report}"
    );
    &report.violations[0]
}

#[test]
fn a_cleanly_layered_tree_passes() -> Result<()> {
    let report = check_tree(&layered())?;
    assert!(report.passed(), "{report}");
    // main.rs and the module it declares are a separate crate.
    assert_eq!(report.modules, layered().len() - 2);
    assert!(!report.edges.is_empty());
    assert!(
        report.to_string().ends_with(" edges, 0 violations\n"),
        "{report}"
    );
    Ok(())
}

#[test]
fn a_cycle_between_two_siblings_is_reported() -> Result<()> {
    let a = "use super::b::B;\n\npub struct A;\n";
    let b = "pub struct B;\n\npub fn make() -> super::a::A {\n    super::a::A\n}\n";
    let files = with(
        layered(),
        "service/mod.rs",
        "pub mod a;\npub mod b;\npub mod visits;\n",
    );
    let files = with(with(files, "service/a.rs", a), "service/b.rs", b);
    let report = check_tree(&files)?;
    let cycle = only_violation(&report);
    assert_eq!(cycle.rule, Rule::Cycle);
    assert!(
        cycle
            .message
            .contains("import cycle crate::service::a -> crate::service::b -> crate::service::a"),
        "{report}"
    );
    assert!(
        cycle
            .message
            .contains("src/service/a.rs:1 imports crate::service::b"),
        "{report}"
    );
    assert!(
        cycle.message.contains(&format!(
            "src/service/b.rs:{} imports crate::service::a",
            line_of(b, "super::a::A {")
        )),
        "{report}"
    );
    assert_eq!((cycle.file.as_str(), cycle.line), ("src/service/a.rs", 1));
    Ok(())
}

#[test]
fn a_cycle_through_three_modules_is_reported_with_each_import() -> Result<()> {
    let files = with(
        layered(),
        "domain/mod.rs",
        "pub mod a;\npub mod b;\npub mod c;\npub mod visit;\n",
    );
    let files = with(
        files,
        "domain/a.rs",
        "use crate::domain::b::B;\npub struct A;\n",
    );
    let files = with(files, "domain/b.rs", "pub struct B(pub super::c::C);\n");
    let files = with(
        files,
        "domain/c.rs",
        "\npub struct C(Box<crate::domain::a::A>);\n",
    );
    let report = check_tree(&files)?;
    let cycle = only_violation(&report);
    assert_eq!(cycle.rule, Rule::Cycle);
    for expected in [
        "crate::domain::a -> crate::domain::b -> crate::domain::c -> crate::domain::a",
        "src/domain/a.rs:1 imports crate::domain::b",
        "src/domain/b.rs:1 imports crate::domain::c, written super::c::C",
        "src/domain/c.rs:2 imports crate::domain::a",
    ] {
        assert!(
            cycle.message.contains(expected),
            "no {expected:?} in:\n{report}"
        );
    }
    Ok(())
}

#[test]
fn a_cycle_through_a_parent_via_super_is_reported() -> Result<()> {
    // db -> db::visits is parent -> child and does not count, but
    // db::visits -> domain -> db closes a cycle through db::visits' `super`.
    let files = with(
        layered(),
        "domain/mod.rs",
        "pub mod visit;\npub use visit::Visit;\npub fn rows() -> crate::db::visits::Rows { todo!() }\n",
    );
    let report = check_tree(&files)?;
    let cycles = of_rule(&report, Rule::Cycle);
    assert_eq!(cycles.len(), 1, "{report}");
    assert!(
        cycles[0]
            .message
            .contains("crate::db -> crate::domain -> crate::db::visits -> crate::db"),
        "{report}"
    );
    Ok(())
}

#[test]
fn parent_to_child_edges_are_not_cycles() -> Result<()> {
    let files = with(
        layered(),
        "service/mod.rs",
        "pub mod visits;\n\npub use self::visits::VisitService;\n\npub struct Config;\n\npub fn list() { visits::VisitService::list(); crate::service::visits::f(); }\n",
    );
    let files = with(
        files,
        "service/visits.rs",
        "use super::Config;\nuse crate::service::Config as Again;\n\npub struct VisitService(Config);\n",
    );
    let report = check_tree(&files)?;
    assert!(report.passed(), "{report}");
    let edge = |from: &str, to: &str| {
        report
            .edges
            .iter()
            .any(|e| e.from.to_string() == from && e.to.to_string() == to)
    };
    assert!(edge("crate::service", "crate::service::visits"));
    assert!(edge("crate::service::visits", "crate::service"));
    Ok(())
}

#[test]
fn axum_in_a_domain_file_is_reported() -> Result<()> {
    let text = "use axum::Json;\n\npub struct Visit;\n";
    let report = check_tree(&with(layered(), "domain/visit.rs", text))?;
    let v = only_violation(&report);
    assert_eq!(v.rule, Rule::Crate);
    assert_eq!((v.file.as_str(), v.line), ("src/domain/visit.rs", 1));
    assert!(
        v.message.starts_with("domain uses axum (axum::Json): "),
        "{report}"
    );
    Ok(())
}

#[test]
fn a_leading_colon_crate_path_in_the_domain_is_reported() -> Result<()> {
    let text = "pub struct Visit;\n\npub fn handler() -> ::axum::Json<u8> {\n    todo!()\n}\n";
    let report = check_tree(&with(layered(), "domain/visit.rs", text))?;
    let v = only_violation(&report);
    assert_eq!((v.rule, v.line), (Rule::Crate, 3));
    assert!(
        v.message.starts_with("domain uses axum (axum::Json)"),
        "{report}"
    );
    Ok(())
}

#[test]
fn sqlx_query_inside_a_macro_body_in_a_service_file_is_reported() -> Result<()> {
    let text = "use crate::db::Database;

pub async fn count(db: &Database) -> i64 {
    tracing::info!(\"{:?}\", sqlx::query(\"select count(*) from visits\").sql());
    0
}
";
    let report = check_tree(&with(layered(), "service/visits.rs", text))?;
    let v = only_violation(&report);
    assert_eq!(v.rule, Rule::Crate);
    assert_eq!(v.line, line_of(text, "sqlx::query"));
    assert!(
        v.message.starts_with("service uses sqlx (sqlx::query): "),
        "{report}"
    );
    Ok(())
}

#[test]
fn a_sqlx_derive_and_a_sqlx_macro_in_a_service_file_are_reported() -> Result<()> {
    let text = "#[derive(sqlx::FromRow)]
pub struct Row {
    pub id: i64,
}

pub async fn one(pool: &Pool) -> i64 {
    sqlx::query_scalar!(\"select 1\").fetch_one(pool).await
}
";
    let report = check_tree(&with(layered(), "service/visits.rs", text))?;
    let found: Vec<(usize, bool)> = of_rule(&report, Rule::Crate)
        .iter()
        .map(|v| (v.line, v.message.contains("sqlx::")))
        .collect();
    assert_eq!(found, [(1, true), (7, true)], "{report}");
    assert!(
        report.violations[1]
            .message
            .contains("(sqlx::query_scalar!)"),
        "{report}"
    );
    Ok(())
}

#[test]
fn a_web_page_importing_an_http_module_is_reported() -> Result<()> {
    let text = "use crate::service::VisitService;\nuse crate::http::visits::list;\n";
    let report = check_tree(&with(layered(), "web/inbox.rs", text))?;
    let v = only_violation(&report);
    assert_eq!(v.rule, Rule::Layer);
    assert_eq!((v.file.as_str(), v.line), ("src/web/inbox.rs", 2));
    assert_eq!(
        v.message,
        "web imports http (crate::http::visits): pages call services, never HTTP handlers or the database"
    );
    assert!(
        report.to_string().starts_with(
            "src/web/inbox.rs:2: web imports http (crate::http::visits): pages call services"
        ),
        "{report}"
    );
    Ok(())
}

#[test]
fn importing_the_api_doc_from_outside_http_is_reported() -> Result<()> {
    let text = "pub fn docs() -> String {\n    crate::http::api_doc::ApiDoc::json()\n}\n";
    let report = check_tree(&with(layered(), "web/inbox.rs", text))?;
    let private = of_rule(&report, Rule::Private);
    assert_eq!(private.len(), 1, "{report}");
    assert_eq!(private[0].line, 2);
    assert!(
        private[0].message.starts_with(
            "crate::web::inbox imports crate::http::api_doc (crate::http::api_doc::ApiDoc::json), which only crate::http may import: "
        ),
        "{report}"
    );
    // It is a layer violation as well: web may not import http at all.
    assert_eq!(of_rule(&report, Rule::Layer).len(), 1, "{report}");
    Ok(())
}

#[test]
fn importing_the_api_doc_from_another_http_module_is_reported() -> Result<()> {
    let text = "use super::api_doc::ApiDoc;\n\npub fn routes() -> axum::Router {\n    axum::Router::new()\n}\n";
    let report = check_tree(&with(layered(), "http/visits.rs", text))?;
    let v = only_violation(&report);
    assert_eq!((v.rule, v.line), (Rule::Private, 1));
    assert!(
        v.message
            .contains("imports crate::http::api_doc (super::api_doc::ApiDoc)"),
        "{report}"
    );
    Ok(())
}

#[test]
fn a_grouped_crate_import_reports_each_forbidden_member() -> Result<()> {
    let text = "use crate::{
    db,
    http::error::ErrorBody,
    service::VisitService,
};
";
    let report = check_tree(&with(layered(), "web/inbox.rs", text))?;
    let found: Vec<(usize, &str)> = report
        .violations
        .iter()
        .map(|v| (v.line, v.message.split(" (").next().unwrap_or_default()))
        .collect();
    assert_eq!(
        found,
        [(2, "web imports db"), (3, "web imports http")],
        "{report}"
    );
    assert!(
        report.violations[1]
            .message
            .contains("(crate::http::error)")
    );
    Ok(())
}

#[test]
fn a_super_super_path_out_of_web_is_reported() -> Result<()> {
    let text = "use super::super::db::Database;

pub fn router() {
    super::super::http::router();
}
";
    let report = check_tree(&with(layered(), "web/inbox.rs", text))?;
    let messages: Vec<(usize, &str)> = report
        .violations
        .iter()
        .map(|v| (v.line, v.message.as_str()))
        .collect();
    assert_eq!(messages.len(), 2, "{report}");
    assert_eq!(messages[0].0, 1);
    assert!(
        messages[0]
            .1
            .starts_with("web imports db (crate::db, written super::super::db::Database): "),
        "{report}"
    );
    assert_eq!(messages[1].0, 4);
    assert!(
        messages[1]
            .1
            .starts_with("web imports http (crate::http, written super::super::http::router): "),
        "{report}"
    );
    Ok(())
}

#[test]
fn a_path_counts_for_the_longest_module_file_it_names() -> Result<()> {
    let to = |report: &Report, from: &str| -> Vec<String> {
        report
            .edges
            .iter()
            .filter(|e| e.from.to_string() == from)
            .map(|e| e.to.to_string())
            .collect()
    };
    // `body = crate::http::error::ErrorBody` in http/visits.rs' attribute, and
    // `db::visits::load` after `use crate::db::{self, Database}`.
    let report = check_tree(&layered())?;
    assert!(to(&report, "crate::http::visits").contains(&"crate::http::error".to_string()));
    assert!(to(&report, "crate::service::visits").contains(&"crate::db::visits".to_string()));
    assert!(to(&report, "crate::service::visits").contains(&"crate::db".to_string()));

    let report = check_tree(&without(layered(), "http/error.rs"))?;
    let targets = to(&report, "crate::http::visits");
    assert!(targets.contains(&"crate::http".to_string()), "{targets:?}");
    assert!(!targets.iter().any(|t| t.starts_with("crate::http::error")));
    Ok(())
}

#[test]
fn paths_in_attributes_are_imports() -> Result<()> {
    let text = "#[utoipa::path(get, path = \"/inbox\", responses((status = 400, body = crate::http::error::ErrorBody)))]
pub async fn page() {}
";
    let report = check_tree(&with(layered(), "web/inbox.rs", text))?;
    let v = only_violation(&report);
    assert_eq!((v.rule, v.line), (Rule::Layer, 1));
    assert!(
        v.message
            .starts_with("web imports http (crate::http::error)"),
        "{report}"
    );

    let text = "#[derive(serde::Serialize)]
pub struct Visit {
    #[serde(with = \"crate::db::codec\")]
    pub when: u64,
}
";
    let report = check_tree(&with(layered(), "domain/visit.rs", text))?;
    let v = only_violation(&report);
    assert_eq!((v.rule, v.line), (Rule::Layer, 3));
    assert!(
        v.message.starts_with("domain imports db (crate::db): "),
        "{report}"
    );
    Ok(())
}

#[test]
fn dollar_crate_in_a_macro_counts_for_the_module_that_defines_it() -> Result<()> {
    let text = "pub struct Visit;

#[macro_export]
macro_rules! visits {
    ($s:expr) => {
        $crate::settings::Settings::load($s)
    };
}
";
    let report = check_tree(&with(layered(), "domain/visit.rs", text))?;
    let v = only_violation(&report);
    assert_eq!((v.rule, v.line), (Rule::Layer, 6));
    assert!(
        v.message.starts_with(
            "domain imports settings (crate::settings, written $crate::settings::Settings::load): "
        ),
        "{report}"
    );
    Ok(())
}

#[test]
fn variables_fields_and_doc_links_are_not_imports() -> Result<()> {
    // layered() has `let tokio`, `let sqlx`, a field `tokio`, a doc link to
    // `crate::db`, `pub(in crate::domain)` and `use super::Visit` in an inline
    // test module (the file's own module) in domain/visit.rs.
    let report = check_tree(&layered())?;
    assert!(report.passed(), "{report}");
    let from_visit: Vec<String> = report
        .edges
        .iter()
        .filter(|e| e.from.to_string() == "crate::domain::visit")
        .map(|e| format!("{}:{} {}", e.file, e.line, e.to))
        .collect();
    assert!(from_visit.is_empty(), "{from_visit:?}");
    Ok(())
}

#[test]
fn a_top_level_module_in_no_layer_is_reported() -> Result<()> {
    let files = with(layered(), "accounts.rs", "pub struct Account;\n");
    let files = with(
        files,
        "service/visits.rs",
        "use crate::accounts::Account;\n",
    );
    let report = check_tree(&files)?;
    let unplaced = of_rule(&report, Rule::Unplaced);
    assert_eq!(unplaced.len(), 1, "{report}");
    assert_eq!(
        (unplaced[0].file.as_str(), unplaced[0].line),
        ("src/accounts.rs", 1)
    );
    assert!(
        unplaced[0]
            .message
            .starts_with("crate::accounts is in no layer: ")
    );
    let layer = of_rule(&report, Rule::Layer);
    assert_eq!(layer.len(), 1, "{report}");
    assert!(
        layer[0]
            .message
            .starts_with("service imports accounts, a module in no layer (crate::accounts)"),
        "{report}"
    );
    Ok(())
}

#[test]
fn a_file_that_does_not_parse_is_reported() -> Result<()> {
    let report = check_tree(&with(
        layered(),
        "domain/visit.rs",
        "pub struct Visit;\n\npub fn (\n",
    ))?;
    let v = only_violation(&report);
    assert_eq!(
        (v.rule, v.file.as_str()),
        (Rule::Source, "src/domain/visit.rs")
    );
    assert!(v.message.starts_with("does not parse"), "{report}");
    Ok(())
}

#[test]
fn the_summary_counts_modules_edges_and_violations_by_rule() -> Result<()> {
    let text = "use axum::Json;\nuse crate::db::Database;\n";
    let report = check_tree(&with(layered(), "domain/visit.rs", text))?;
    let shown = report.to_string();
    let summary = shown.lines().last().unwrap_or_default();
    // All but main.rs and the module it declares.
    let modules = layered().len() - 2;
    assert!(
        summary.starts_with(&format!("layers: {modules} modules scanned, ")),
        "{shown}"
    );
    assert!(
        summary.ends_with(" edges, 2 violations (1 layer, 1 crate)"),
        "{shown}"
    );
    Ok(())
}

/// The shared core, cleanly layered: ids -> model -> protocol -> store -> sync.
fn core() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "lib.rs",
            "pub mod ids;\npub mod model;\npub mod protocol;\npub mod store;\npub mod sync;\n",
        ),
        ("ids.rs", "pub struct RecordId(pub u128);\n"),
        ("model/mod.rs", "pub mod order;\npub mod totals;\n"),
        (
            "model/totals.rs",
            "use crate::ids::RecordId;\npub struct OrderLine { pub id: RecordId }\n",
        ),
        (
            "model/order.rs",
            "use super::totals::OrderLine;\npub struct Order { pub lines: Vec<OrderLine> }\n",
        ),
        (
            "protocol.rs",
            "use crate::model::order::Order;\npub fn encode(_: &Order) {}\n",
        ),
        (
            "store/mod.rs",
            "use crate::protocol::encode;\npub fn save() { let _ = rusqlite::Connection::open_in_memory(); }\n",
        ),
        (
            "sync/mod.rs",
            "use crate::store::save;\npub fn sync() { save(); let _ = ureq::get(\"http://localhost\"); }\n",
        ),
    ]
}

#[test]
fn the_core_layering_passes_a_clean_tree() -> Result<()> {
    let report = check_tree_with(&core(), &Rules::client_core())?;
    assert!(report.passed(), "{report}");
    Ok(())
}

#[test]
fn sqlite_in_the_shared_model_is_reported() -> Result<()> {
    let files = with(
        core(),
        "model/totals.rs",
        "use crate::ids::RecordId;\npub struct OrderLine { pub id: RecordId }\npub fn load() { let _ = rusqlite::Connection::open_in_memory(); }\n",
    );
    let report = check_tree_with(&files, &Rules::client_core())?;
    let v = only_violation(&report);
    assert_eq!(v.rule, Rule::Crate);
    assert!(v.message.contains("rusqlite"), "{report}");
    Ok(())
}

#[test]
fn a_cycle_inside_the_model_is_reported() -> Result<()> {
    let files = with(
        core(),
        "model/totals.rs",
        "use crate::ids::RecordId;\nuse super::order::Order;\npub struct OrderLine { pub id: RecordId }\npub fn of(_: &Order) {}\n",
    );
    let report = check_tree_with(&files, &Rules::client_core())?;
    let cycles = of_rule(&report, Rule::Cycle);
    assert_eq!(cycles.len(), 1, "{report}");
    assert!(
        cycles[0].message.contains("crate::model::order"),
        "{report}"
    );
    Ok(())
}

#[test]
fn the_device_store_calling_the_sync_client_is_reported() -> Result<()> {
    let files = with(
        core(),
        "store/mod.rs",
        "use crate::sync::sync;\npub fn save() { sync(); }\n",
    );
    let report = check_tree_with(&files, &Rules::client_core())?;
    assert!(!of_rule(&report, Rule::Layer).is_empty(), "{report}");
    Ok(())
}
