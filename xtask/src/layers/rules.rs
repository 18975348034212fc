//! The rules the check enforces, as data. [`Rules::server`] is the server's
//! table: the source of truth for which module sits in which layer and what it
//! may import (`ARCHITECTURE.md` describes the layers in prose).

/// External crates whose use the check records. A layer can forbid only crates
/// listed here.
const WATCHED_CRATES: &[&str] = &[
    "axum",
    "sqlx",
    "tokio",
    "maud",
    "hyper",
    "object_store",
    "reqwest",
    "tower",
    "utoipa",
    "rusqlite",
    "ureq",
    "zeroize",
];

/// What the check holds a crate's modules to.
#[derive(Debug, Clone)]
pub struct Rules {
    /// One row per group of top-level modules. A top-level module in no row is
    /// itself a violation: every module has a place in the layering.
    pub layers: Vec<LayerRule>,
    /// Modules that only some modules may import.
    pub private: Vec<PrivateRule>,
    /// External crates the check looks for (first path segments).
    pub watched_crates: Vec<&'static str>,
}

/// A row of the table: top-level modules of one layer and what they may use.
#[derive(Debug, Clone)]
pub struct LayerRule {
    /// The layer's name (`domain`, `infra`, ...), shown in reports and usable in
    /// other rows' `may_import`.
    pub layer: &'static str,
    /// Top-level modules (`domain` for `src/domain/` or `src/domain.rs`).
    pub modules: &'static [&'static str],
    /// Top-level modules, or layer names, whose items these modules may import.
    /// A module may always import its own top-level module and its ancestors.
    pub may_import: &'static [&'static str],
    /// External crates these modules must not use.
    pub forbidden_crates: &'static [&'static str],
    /// What to do instead of a forbidden crate-internal import.
    pub import_advice: &'static str,
    /// What to do instead of using a forbidden external crate.
    pub crate_advice: &'static str,
}

/// A module that only the listed modules may import.
#[derive(Debug, Clone)]
pub struct PrivateRule {
    /// Module path without `crate::` (`http::api_doc`); its descendants too.
    pub module: &'static str,
    /// Modules (exactly these files, without `crate::`) that may import it.
    pub importers: &'static [&'static str],
    /// What to do instead.
    pub advice: &'static str,
}

/// Shared by the infra, service, http and web rows.
const FORBID_WEB_SQL_HTML: &[&str] = &["axum", "sqlx", "maud"];

impl Rules {
    /// The server's layering (issue 14, "Server in layers"):
    /// domain -> db -> service -> http / web, with the infra modules (settings,
    /// metrics, limits, live, blob) between domain/db and the services.
    pub fn server() -> Rules {
        Rules {
            layers: vec![
                LayerRule {
                    layer: "domain",
                    modules: &["domain"],
                    may_import: &["domain"],
                    forbidden_crates: &[
                        "axum",
                        "sqlx",
                        "tokio",
                        "maud",
                        "hyper",
                        "object_store",
                        "reqwest",
                        "tower",
                    ],
                    import_advice: "the domain is the bottom layer and imports nothing else of the crate; \
                        move what it needs into domain, or let the caller pass it in",
                    crate_advice: "the domain is plain Rust without I/O, runtime or web framework; \
                        keep this in db, service or http and give the domain plain types",
                },
                LayerRule {
                    layer: "db",
                    modules: &["db"],
                    may_import: &["domain"],
                    forbidden_crates: &["axum", "maud"],
                    import_advice: "db stores and loads domain types and sees nothing above it; \
                        let the calling service pass what the query needs",
                    crate_advice: "db knows nothing of HTTP or HTML; return domain types or a db error \
                        and let http/web turn them into responses",
                },
                LayerRule {
                    layer: "infra",
                    modules: &["settings"],
                    may_import: &["domain"],
                    forbidden_crates: FORBID_WEB_SQL_HTML,
                    import_advice: "settings is read by every layer, so it imports only domain",
                    crate_advice: "settings only reads and checks configuration; \
                        the pieces that use it (db, http) own their crates",
                },
                LayerRule {
                    layer: "infra",
                    modules: &["metrics", "limits"],
                    may_import: &["domain", "settings"],
                    forbidden_crates: FORBID_WEB_SQL_HTML,
                    import_advice: "metrics and limits sit under the services and import only domain and settings; \
                        let the service or handler pass values in",
                    crate_advice: "metrics and limits keep counters and budgets; the HTTP glue (middleware, \
                        /metrics handler) belongs in http, the SQL in db",
                },
                LayerRule {
                    layer: "infra",
                    modules: &["live"],
                    may_import: &["domain", "db", "settings", "metrics"],
                    forbidden_crates: FORBID_WEB_SQL_HTML,
                    import_advice: "the live hub imports only domain, db, settings and metrics; \
                        services publish to it, never the other way round",
                    crate_advice: "the live hub listens through db (no SQL of its own) and knows nothing of \
                        HTTP; the SSE endpoint belongs in http",
                },
                LayerRule {
                    layer: "infra",
                    modules: &["blob"],
                    may_import: &["domain", "settings"],
                    forbidden_crates: FORBID_WEB_SQL_HTML,
                    import_advice: "blob stores imports only domain and settings; \
                        the service that owns attachments calls them",
                    crate_advice: "blob stores hold bytes; the attachment rows live in db and the upload \
                        endpoint in http",
                },
                LayerRule {
                    layer: "service",
                    modules: &["service"],
                    may_import: &[
                        "domain", "db", "settings", "metrics", "limits", "live", "blob",
                    ],
                    forbidden_crates: FORBID_WEB_SQL_HTML,
                    import_advice: "services use domain, db and the infra modules and never call HTTP \
                        handlers or pages; move the shared piece down into service, domain or db",
                    crate_advice: "services call db for storage and return domain results or service errors; \
                        SQL belongs in db, HTTP in http and HTML in web",
                },
                LayerRule {
                    layer: "http",
                    modules: &["http"],
                    may_import: &[
                        "service", "domain", "settings", "metrics", "limits", "live", "blob",
                    ],
                    forbidden_crates: &["sqlx", "maud"],
                    import_advice: "handlers call services, never the database or the managers' pages",
                    crate_advice: "handlers call services for data (SQL belongs in db) and answer JSON or CBOR \
                        (HTML belongs in web)",
                },
                LayerRule {
                    layer: "web",
                    modules: &["web"],
                    may_import: &[
                        "service", "domain", "settings", "metrics", "limits", "live", "blob",
                    ],
                    forbidden_crates: &["sqlx"],
                    import_advice: "pages call services, never HTTP handlers or the database",
                    crate_advice: "pages get their data from services; SQL belongs in db",
                },
            ],
            private: vec![PrivateRule {
                module: "http::api_doc",
                importers: &["http"],
                advice: "the OpenAPI description is http's own, assembled in http/mod.rs; \
                    put shared types in the service or domain layer, or ask http for the document",
            }],
            watched_crates: WATCHED_CRATES.to_vec(),
        }
    }

    /// The shared core's layering (`client-core/src`): ids -> model ->
    /// protocol -> store -> sync. The model and the protocol are what the
    /// server shares, so they do no I/O (no SQLite, no HTTP client); the store
    /// never talks to the network. The cycle rule holds inside `model` too.
    pub fn client_core() -> Rules {
        const DEVICE_IO: &[&str] = &["rusqlite", "ureq", "zeroize", "tokio", "axum", "sqlx"];
        Rules {
            layers: vec![
                LayerRule {
                    layer: "ids",
                    modules: &["ids"],
                    may_import: &[],
                    forbidden_crates: DEVICE_IO,
                    import_advice: "ids are the bottom of the core and import nothing else of it",
                    crate_advice: "ids are plain values",
                },
                LayerRule {
                    layer: "model",
                    modules: &["model"],
                    may_import: &["ids"],
                    forbidden_crates: DEVICE_IO,
                    import_advice: "the model is shared with the server and sees nothing above it; \
                        move what it needs into the model",
                    crate_advice: "the model does no I/O (the server builds it without the device \
                        runtime); storage belongs in store, the network in sync",
                },
                LayerRule {
                    layer: "protocol",
                    modules: &["protocol"],
                    may_import: &["ids", "model"],
                    forbidden_crates: DEVICE_IO,
                    import_advice: "the wire protocol is shared with the server and sees only the model",
                    crate_advice: "the protocol only encodes and decodes; I/O belongs in store and sync",
                },
                LayerRule {
                    layer: "fuzzing",
                    modules: &["fuzzing"],
                    may_import: &["ids", "model", "protocol"],
                    forbidden_crates: DEVICE_IO,
                    import_advice: "the fuzz checks exercise the shared model and protocol only",
                    crate_advice: "the fuzz checks run without the device runtime",
                },
                LayerRule {
                    layer: "store",
                    modules: &["store"],
                    may_import: &["ids", "model", "protocol"],
                    forbidden_crates: &["ureq", "tokio", "axum", "sqlx"],
                    import_advice: "the device store never talks to the network; the sync client \
                        drives it, not the other way round",
                    crate_advice: "the store is SQLite only; HTTP belongs in sync",
                },
                LayerRule {
                    layer: "sync",
                    modules: &["sync"],
                    may_import: &["ids", "model", "protocol", "store"],
                    forbidden_crates: &["axum", "sqlx"],
                    import_advice: "the sync client sits on top of the core",
                    crate_advice: "the sync client talks HTTP through its Transport",
                },
            ],
            private: Vec::new(),
            watched_crates: WATCHED_CRATES.to_vec(),
        }
    }

    /// The row of a top-level module.
    pub(super) fn row_of(&self, top: &str) -> Option<&LayerRule> {
        self.layers.iter().find(|r| r.modules.contains(&top))
    }

    /// Whether the modules of `row` may import the top-level module `top`.
    pub(super) fn allows(&self, row: &LayerRule, top: &str) -> bool {
        row.may_import.contains(&top)
            || self
                .row_of(top)
                .is_some_and(|target| row.may_import.contains(&target.layer))
    }

    /// Every top-level module the table places, for messages.
    pub(super) fn placed_modules(&self) -> Vec<&'static str> {
        self.layers
            .iter()
            .flat_map(|r| r.modules.iter().copied())
            .collect()
    }
}
