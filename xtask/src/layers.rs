//! `cargo xtask layers`: the server's layering, checked.
//!
//! The server is built in layers (`ARCHITECTURE.md` describes them): `domain`
//! (plain types and rules, no I/O) -> `db` (storage) -> `service` (what the
//! server does) -> `http` (the JSON/CBOR API) and `web` (the managers' pages),
//! with the infra modules `settings`, `metrics`, `limits`, `live` and `blob`
//! between `domain`/`db` and the services. A layer imports only the layers
//! below it, so the domain can be tested and reused without a database or a web
//! framework, storage can change without touching handlers, and the pages and
//! the API share one set of services instead of calling each other. Rules like
//! these erode one convenient `use` at a time, so a check holds them:
//!
//! - **layers**: a module imports only the top-level modules its row of the
//!   table allows (always its own top-level module and its ancestors);
//! - **external crates**: a module does not use the crates its row forbids
//!   (`sqlx` outside `db`, `axum` outside `http`/`web`, ...);
//! - **private modules**: `http::api_doc` is imported by `http` itself only;
//! - **no cycles**: no import cycle between module files. An edge from a module
//!   to its own descendants (a `mod.rs` using or re-exporting its children)
//!   does not count; every other edge does, `super::` ones included;
//! - every top-level module has a row in the table.
//!
//! The table in [`rules`] ([`Rules::server`]) is the source of truth; change
//! the layering there, not by exempting files.
//!
//! The crate root (`lib.rs`) may import anything, and `main.rs` with the
//! modules it declares (and `src/bin/`) are separate crates, not checked. An import is any path that names the
//! crate: `use` trees (`use crate::a::{b, c}`, `use super::x`, `pub use`), and
//! paths in code, attributes and macro bodies (`crate::db::f()`,
//! `#[utoipa::path(body = crate::http::error::ErrorBody)]`, `$crate::db::...`
//! in a `macro_rules!`, which counts for the module that defines the macro).
//! A path counts as an import of the longest module file it names:
//! `crate::http::error::ErrorBody` is `crate::http::error` if
//! `http/error.rs` exists, else `crate::http`. Inline `mod x { }` and
//! `#[path]` are not separate modules.

mod cycles;
mod rules;
mod scan;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use rules::Rules;

/// A module path: the segments below `crate` (empty for the crate root).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModulePath(Vec<String>);

impl ModulePath {
    fn parse(path: &str) -> ModulePath {
        ModulePath(
            path.split("::")
                .filter(|s| !s.is_empty() && *s != "crate")
                .map(str::to_string)
                .collect(),
        )
    }

    /// The top-level module (`http` for `crate::http::error`); `None` for the root.
    fn top(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }

    /// Whether `self` is `other` or below it.
    fn is_within(&self, other: &ModulePath) -> bool {
        self.0.starts_with(&other.0)
    }
}

impl fmt::Display for ModulePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("crate")?;
        for segment in &self.0 {
            write!(f, "::{segment}")?;
        }
        Ok(())
    }
}

/// One import: a path in the file of `from` that names the module `to`.
#[derive(Debug, Clone)]
pub struct Edge {
    pub from: ModulePath,
    pub to: ModulePath,
    /// The importing file, as shown in reports.
    pub file: String,
    pub line: usize,
    /// The path as written (`super::super::db::Database`).
    pub written: String,
}

/// Which rule a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// An import the importing module's layer does not allow.
    Layer,
    /// A use of an external crate the module's layer forbids.
    Crate,
    /// An import of a private module from outside.
    Private,
    /// An import cycle.
    Cycle,
    /// A top-level module the table does not place.
    Unplaced,
    /// A file that does not parse, or two files for one module.
    Source,
}

impl Rule {
    fn name(self) -> &'static str {
        match self {
            Rule::Layer => "layer",
            Rule::Crate => "crate",
            Rule::Private => "private",
            Rule::Cycle => "cycle",
            Rule::Unplaced => "unplaced",
            Rule::Source => "source",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub file: String,
    pub line: usize,
    pub rule: Rule,
    /// What is wrong and what to do, on one line.
    pub message: String,
}

/// What the check found.
#[derive(Debug)]
pub struct Report {
    /// Module files read.
    pub modules: usize,
    /// Every import, once per line and target module.
    pub edges: Vec<Edge>,
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Distinct (importer, imported) module pairs.
    fn module_edges(&self) -> usize {
        self.edges
            .iter()
            .map(|e| (&e.from, &e.to))
            .collect::<BTreeSet<_>>()
            .len()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for v in &self.violations {
            writeln!(f, "{}:{}: {}", v.file, v.line, v.message)?;
        }
        let mut by_rule: BTreeMap<Rule, usize> = BTreeMap::new();
        for v in &self.violations {
            *by_rule.entry(v.rule).or_default() += 1;
        }
        write!(
            f,
            "layers: {} modules scanned, {} edges, {}",
            self.modules,
            self.module_edges(),
            violations(self.violations.len())
        )?;
        if !by_rule.is_empty() {
            let counts: Vec<String> = by_rule
                .iter()
                .map(|(rule, n)| format!("{n} {}", rule.name()))
                .collect();
            write!(f, " ({})", counts.join(", "))?;
        }
        writeln!(f)
    }
}

/// `1 violation`, `2 violations`.
pub fn violations(n: usize) -> String {
    if n == 1 {
        "1 violation".into()
    } else {
        format!("{n} violations")
    }
}

/// A module file of the crate.
#[derive(Debug)]
struct ModuleFile {
    module: ModulePath,
    path: PathBuf,
    /// `server/src/web/inbox.rs`
    shown: String,
}

/// Checks the crate whose sources are in `root.join(src)` against `rules`;
/// files are shown as `src/...`, relative to `root` (`server/src/web/inbox.rs`).
pub fn check(root: &Path, src: &Path, rules: &Rules) -> Result<Report> {
    let (files, mut violations) = module_files(&root.join(src), src)?;
    let known: BTreeSet<&ModulePath> = files.iter().map(|f| &f.module).collect();

    let mut edges = Vec::new();
    let mut crate_uses = Vec::new();
    let mut seen = BTreeSet::new();
    let mut scanned = 0;
    for file in &files {
        let source = match std::fs::read_to_string(&file.path) {
            Ok(source) => source,
            // Moved away since the directory was listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.path.display())),
        };
        scanned += 1;
        let refs = match scan::scan(&source, &file.module.0, &rules.watched_crates) {
            Ok(refs) => refs,
            Err(e) => {
                violations.push(Violation {
                    file: file.shown.clone(),
                    line: e.line,
                    rule: Rule::Source,
                    message: format!(
                        "does not parse ({}): fix it so the check can read its imports",
                        e.message
                    ),
                });
                continue;
            }
        };
        for path in refs.paths {
            let to = longest_module(&known, &path.absolute);
            // `Database::Sqlite` after `use crate::db::Database;` is the same
            // import again; `db::visits::f` after `use crate::db;` is a new one.
            let again = path
                .via
                .as_ref()
                .is_some_and(|via| longest_module(&known, via) == to);
            if !again
                && to != file.module
                && seen.insert((file.module.clone(), to.clone(), path.line))
            {
                edges.push(Edge {
                    from: file.module.clone(),
                    to,
                    file: file.shown.clone(),
                    line: path.line,
                    written: path.written,
                });
            }
        }
        crate_uses.extend(refs.crates.into_iter().map(|u| (file, u)));
    }

    violations.extend(unplaced_modules(&files, rules));
    violations.extend(edges.iter().filter_map(|e| layer_violation(e, rules)));
    violations.extend(edges.iter().filter_map(|e| private_violation(e, rules)));
    violations.extend(crate_uses.iter().filter_map(|(file, u)| {
        let row = rules.row_of(file.module.top()?)?;
        row.forbidden_crates
            .contains(&u.krate.as_str())
            .then(|| Violation {
                file: file.shown.clone(),
                line: u.line,
                rule: Rule::Crate,
                message: format!(
                    "{} uses {} ({}): {}",
                    importer(&file.module, row),
                    u.krate,
                    u.written,
                    row.crate_advice
                ),
            })
    }));
    violations.extend(cycle_violations(&files, &edges));
    violations.sort_by(|a, b| {
        (&a.file, a.line, a.rule, &a.message).cmp(&(&b.file, b.line, b.rule, &b.message))
    });
    Ok(Report {
        modules: scanned,
        edges,
        violations,
    })
}

/// The top-level modules `main.rs` declares (`mod cli;`): files of the
/// binary crate, like `main.rs` itself.
fn binary_modules(dir: &Path) -> Vec<String> {
    let Ok(main) = std::fs::read_to_string(dir.join("main.rs")) else {
        return Vec::new();
    };
    main.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';').map(str::trim)
        })
        .map(str::to_owned)
        .collect()
}

/// Every `.rs` file under `dir` but the binary crate's (`main.rs`, the modules
/// it declares, `bin/`), with its module path, in path order; and a violation
/// for each module with two files.
fn module_files(dir: &Path, shown: &Path) -> Result<(Vec<ModuleFile>, Vec<Violation>)> {
    let mut relative = Vec::new();
    rust_files(dir, Path::new(""), &mut relative)?;
    relative.sort();
    let of_binary = binary_modules(dir);
    let mut files: Vec<ModuleFile> = Vec::new();
    let mut violations = Vec::new();
    let mut by_module: BTreeMap<ModulePath, String> = BTreeMap::new();
    for rel in relative {
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let Some((file_name, dirs)) = parts.split_last() else {
            continue;
        };
        let stem = file_name.trim_end_matches(".rs");
        let binary = dirs.is_empty() && (stem == "main" || of_binary.iter().any(|m| m == stem))
            || dirs
                .first()
                .is_some_and(|d| d == "bin" || of_binary.contains(d));
        if binary {
            continue;
        }
        let mut module = dirs.to_vec();
        if !(dirs.is_empty() && stem == "lib" || stem == "mod") {
            module.push(stem.to_string());
        }
        let module = ModulePath(module);
        let shown = format!("{}/{}", shown.display(), parts.join("/"));
        if let Some(other) = by_module.get(&module) {
            violations.push(Violation {
                file: shown.clone(),
                line: 1,
                rule: Rule::Source,
                message: format!("{module} is also {other}: keep one file per module"),
            });
            continue;
        }
        by_module.insert(module.clone(), shown.clone());
        files.push(ModuleFile {
            module,
            path: dir.join(&rel),
            shown,
        });
    }
    Ok((files, violations))
}

/// The `.rs` files under `dir.join(rel)`, as paths relative to `dir`.
fn rust_files(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let at = dir.join(rel);
    for entry in std::fs::read_dir(&at).with_context(|| format!("reading {}", at.display()))? {
        let entry = entry.with_context(|| format!("reading {}", at.display()))?;
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        let rel = rel.join(entry.file_name());
        if kind.is_dir() {
            rust_files(dir, &rel, out)?;
        } else if rel.extension().is_some_and(|e| e == "rs") {
            out.push(rel);
        }
    }
    Ok(())
}

/// The longest prefix of `path` that is a module file; the root if none is.
fn longest_module(known: &BTreeSet<&ModulePath>, path: &[String]) -> ModulePath {
    (0..=path.len())
        .rev()
        .map(|n| ModulePath(path[..n].to_vec()))
        .find(|m| known.contains(m))
        .unwrap_or(ModulePath(Vec::new()))
}

/// `web`, or `metrics (infra)` where the layer's name is not the module's.
fn importer(module: &ModulePath, row: &rules::LayerRule) -> String {
    let top = module.top().unwrap_or("crate");
    if top == row.layer {
        top.to_string()
    } else {
        format!("{top} ({})", row.layer)
    }
}

/// `crate::http::review`, plus how it was written where that is not obvious.
fn target(edge: &Edge) -> String {
    let to = edge.to.to_string();
    if edge.written.starts_with(&to) {
        to
    } else {
        format!("{to}, written {}", edge.written)
    }
}

fn layer_violation(edge: &Edge, rules: &Rules) -> Option<Violation> {
    let from_top = edge.from.top()?;
    // The root, or an ancestor, or the same top-level module.
    let to_top = edge.to.top()?;
    if from_top == to_top {
        return None;
    }
    let row = rules.row_of(from_top)?;
    if rules.allows(row, to_top) {
        return None;
    }
    let unplaced = if rules.row_of(to_top).is_none() {
        ", a module in no layer"
    } else {
        ""
    };
    Some(Violation {
        file: edge.file.clone(),
        line: edge.line,
        rule: Rule::Layer,
        message: format!(
            "{} imports {to_top}{unplaced} ({}): {}",
            importer(&edge.from, row),
            target(edge),
            row.import_advice
        ),
    })
}

fn private_violation(edge: &Edge, rules: &Rules) -> Option<Violation> {
    // The crate root may import anything.
    edge.from.top()?;
    rules.private.iter().find_map(|rule| {
        let private = ModulePath::parse(rule.module);
        let importers: Vec<ModulePath> = rule
            .importers
            .iter()
            .map(|m| ModulePath::parse(m))
            .collect();
        let allowed = !edge.to.is_within(&private)
            || edge.from.is_within(&private)
            || importers.contains(&edge.from);
        let names: Vec<String> = importers.iter().map(ModulePath::to_string).collect();
        (!allowed).then(|| Violation {
            file: edge.file.clone(),
            line: edge.line,
            rule: Rule::Private,
            message: format!(
                "{} imports {private} ({}), which only {} may import: {}",
                edge.from,
                edge.written,
                names.join(", "),
                rule.advice
            ),
        })
    })
}

/// One violation per top-level module in no row of the table.
fn unplaced_modules(files: &[ModuleFile], rules: &Rules) -> Vec<Violation> {
    let mut tops: BTreeMap<&str, &ModuleFile> = BTreeMap::new();
    for file in files {
        if let Some(top) = file.module.top() {
            let entry = tops.entry(top).or_insert(file);
            // Prefer the module's own file to a child's.
            if file.module.0.len() < entry.module.0.len() {
                *entry = file;
            }
        }
    }
    let placed = rules.placed_modules();
    tops.into_iter()
        .filter(|(top, _)| rules.row_of(top).is_none())
        .map(|(top, file)| Violation {
            file: file.shown.clone(),
            line: 1,
            rule: Rule::Unplaced,
            message: format!(
                "crate::{top} is in no layer: move it into one of {} (or add a row to the rules in xtask/src/layers/rules.rs)",
                placed.join(", ")
            ),
        })
        .collect()
}

/// One violation per strongly connected component of the module graph, with
/// a shortest cycle through its first module as the example.
fn cycle_violations(files: &[ModuleFile], edges: &[Edge]) -> Vec<Violation> {
    let modules: Vec<&ModulePath> = files.iter().map(|f| &f.module).collect();
    let index: BTreeMap<&ModulePath, usize> =
        modules.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    // The first import from each module to each other one, parent -> descendant
    // edges left out.
    let mut first: BTreeMap<(usize, usize), &Edge> = BTreeMap::new();
    for edge in edges.iter().filter(|e| !e.to.is_within(&e.from)) {
        if let (Some(&a), Some(&b)) = (index.get(&edge.from), index.get(&edge.to)) {
            first
                .entry((a, b))
                .and_modify(|e| {
                    if edge.line < e.line {
                        *e = edge;
                    }
                })
                .or_insert(edge);
        }
    }
    let mut succ = vec![Vec::new(); modules.len()];
    for &(a, b) in first.keys() {
        succ[a].push(b);
    }
    cycles::tangles(&succ)
        .into_iter()
        .filter_map(|component| {
            let start = *component.iter().min_by_key(|&&i| modules[i])?;
            let members: BTreeSet<usize> = component.iter().copied().collect();
            let cycle = cycles::shortest_cycle(&succ, &members, start);
            let steps: Vec<&Edge> = cycle
                .iter()
                .zip(cycle.iter().cycle().skip(1))
                .filter_map(|(&a, &b)| first.get(&(a, b)).copied())
                .collect();
            let opening = steps.first()?;
            let mut names: Vec<String> = cycle.iter().map(|&i| modules[i].to_string()).collect();
            names.push(modules[start].to_string());
            let evidence: Vec<String> = steps
                .iter()
                .map(|e| format!("{}:{} imports {}", e.file, e.line, target(e)))
                .collect();
            let tangled = if component.len() > cycle.len() {
                let all: Vec<String> = component.iter().map(|&i| modules[i].to_string()).collect();
                format!("; {} modules are tangled: {}", all.len(), all.join(", "))
            } else {
                String::new()
            };
            Some(Violation {
                file: opening.file.clone(),
                line: opening.line,
                rule: Rule::Cycle,
                message: format!(
                    "import cycle {} ({}{tangled}): break it by moving what both sides need into the lower module (or a new one below both), or by passing it in",
                    names.join(" -> "),
                    evidence.join("; ")
                ),
            })
        })
        .collect()
}
