//! Reading one source file: the paths into the crate it names and the external
//! crates it uses.
//!
//! Two passes over the same file. `syn` parses it (a file that does not parse is
//! reported) and gives every `use` tree, wherever it is (functions, inline
//! modules). Then the file's raw token stream is walked for the paths `syn`
//! leaves in places it does not look into: expressions, types, attributes
//! (`#[utoipa::path(body = crate::http::error::ErrorBody)]`, `#[derive(sqlx::FromRow)]`)
//! and macro bodies (`on_pool!`, `$crate::db::...` in `macro_rules!`). Both passes
//! find the `use` items; duplicates are merged by line. A path that starts with
//! a name imported from the crate (`db::visits::load` after `use crate::db;`)
//! is followed through that name.

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use syn::visit::{self, Visit};

/// A path into the crate, resolved against the module of the file that writes it.
#[derive(Debug, Clone)]
pub(super) struct CratePath {
    /// The path's segments below `crate` (`crate::db::Database` -> `db`,
    /// `Database`); the last ones may name items rather than modules.
    pub(super) absolute: Vec<String>,
    /// As written (`super::super::db::Database`, `$crate::db::Database`).
    pub(super) written: String,
    pub(super) line: usize,
    /// For a path that starts with a name a `use` brought in (`db::visits::f`
    /// after `use crate::db;`), what that name stands for.
    pub(super) via: Option<Vec<String>>,
}

/// A use of a watched external crate.
#[derive(Debug, Clone)]
pub(super) struct CrateUse {
    pub(super) krate: String,
    /// As written, up to its second segment (`sqlx::query!`, `axum::Json`).
    pub(super) written: String,
    pub(super) line: usize,
}

/// Everything one file names.
#[derive(Debug, Default)]
pub(super) struct FileRefs {
    pub(super) paths: Vec<CratePath>,
    pub(super) crates: Vec<CrateUse>,
}

/// Why a file could not be read.
#[derive(Debug)]
pub(super) struct SyntaxError {
    pub(super) line: usize,
    pub(super) message: String,
}

/// Reads the file `source` whose module is `module` (segments below `crate`).
pub(super) fn scan(
    source: &str,
    module: &[String],
    watched: &[&str],
) -> Result<FileRefs, SyntaxError> {
    let result = scan_tokens(source, module, watched);
    // The span-location table of this thread only grows; nothing refers to
    // this file's spans any more.
    proc_macro2::extra::invalidate_current_thread_spans();
    result
}

fn scan_tokens(source: &str, module: &[String], watched: &[&str]) -> Result<FileRefs, SyntaxError> {
    let file = syn::parse_file(source).map_err(|e| SyntaxError {
        line: e.span().start().line,
        message: e.to_string(),
    })?;
    let mut refs = Refs {
        watched,
        ..Refs::default()
    };
    UseVisitor {
        module: module.to_vec(),
        refs: &mut refs,
    }
    .visit_file(&file);

    let tokens: TokenStream =
        without_shebang(source)
            .parse()
            .map_err(|e: proc_macro2::LexError| SyntaxError {
                line: e.span().start().line,
                message: e.to_string(),
            })?;
    Walker {
        module: module.to_vec(),
        refs: &mut refs,
    }
    .walk(&flatten(tokens), false, false);
    Ok(refs.into_file_refs())
}

/// The source with a leading byte order mark dropped and a shebang line blanked
/// (so line numbers stay), as `syn::parse_file` reads it.
fn without_shebang(source: &str) -> String {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    if source.starts_with("#!") && !source.starts_with("#![") {
        match source.find('\n') {
            Some(end) => source[end..].to_string(),
            None => String::new(),
        }
    } else {
        source.to_string()
    }
}

/// Collects paths and crate uses, each once per line.
#[derive(Default)]
struct Refs<'w> {
    watched: &'w [&'w str],
    /// Names brought in by `use` from the crate, and what they stand for.
    aliases: BTreeMap<String, Vec<String>>,
    seen_paths: BTreeSet<(usize, Vec<String>)>,
    seen_crates: BTreeSet<(usize, String)>,
    out: FileRefs,
}

impl Refs<'_> {
    /// A path as written (`crate::a::b`, `super::x`, `axum::Json`), seen in
    /// `module` (the file's module plus any inline `mod x { }` around it).
    fn path(&mut self, module: &[String], segments: &[String], line: usize, leading_colon: bool) {
        let Some(first) = segments.first() else {
            return;
        };
        if leading_colon || !is_crate_root(first) {
            if self.watched.contains(&first.as_str()) {
                let written = segments.iter().take(2).cloned().collect::<Vec<_>>();
                self.external(first, &written.join("::"), line);
            }
            return;
        }
        if let Some(absolute) = resolve(module, segments)
            && self.seen_paths.insert((line, absolute.clone()))
        {
            self.out.paths.push(CratePath {
                absolute,
                written: segments.join("::"),
                line,
                via: None,
            });
        }
    }

    /// A path that starts with a name brought in by `use` (`segments[0]`).
    fn aliased(&mut self, segments: &[String], line: usize) {
        let Some((name, rest)) = segments.split_first() else {
            return;
        };
        let Some(target) = self.aliases.get(name) else {
            return;
        };
        let absolute: Vec<String> = target
            .iter()
            .chain(rest.iter().filter(|s| *s != "self"))
            .cloned()
            .collect();
        if self.seen_paths.insert((line, absolute.clone())) {
            self.out.paths.push(CratePath {
                absolute,
                written: segments.join("::"),
                line,
                via: Some(target.clone()),
            });
        }
    }

    fn external(&mut self, krate: &str, written: &str, line: usize) {
        if self.seen_crates.insert((line, krate.to_string())) {
            self.out.crates.push(CrateUse {
                krate: krate.to_string(),
                written: written.to_string(),
                line,
            });
        }
    }

    fn into_file_refs(self) -> FileRefs {
        self.out
    }
}

/// `crate`, `$crate`, `super` and `self`: the first segments of crate-internal paths.
fn is_crate_root(segment: &str) -> bool {
    matches!(segment, "crate" | "$crate" | "super" | "self")
}

/// The segments below `crate` that a path written in `module` names, or `None`
/// if it does not start at the crate (or climbs above it).
fn resolve(module: &[String], segments: &[String]) -> Option<Vec<String>> {
    let (first, rest) = segments.split_first()?;
    // `a::self` (from `use a::{self}`) is `a`.
    let rest = rest.iter().filter(|s| *s != "self");
    match first.as_str() {
        "crate" | "$crate" => Some(rest.cloned().collect()),
        "self" => Some(module.iter().chain(rest).cloned().collect()),
        "super" => {
            let mut base = module.to_vec();
            base.pop()?;
            let mut rest = rest.peekable();
            while rest.next_if(|s| *s == "super").is_some() {
                base.pop()?;
            }
            base.extend(rest.cloned());
            Some(base)
        }
        _ => None,
    }
}

/// The `syn` pass: every `use` item and `extern crate`.
struct UseVisitor<'r, 'w> {
    module: Vec<String>,
    refs: &'r mut Refs<'w>,
}

impl<'ast> Visit<'ast> for UseVisitor<'_, '_> {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        // `mod x;` only declares a module file; `mod x { ... }` is one level
        // deeper for `self::` and `super::`.
        if item.content.is_some() {
            self.module.push(item.ident.to_string());
            visit::visit_item_mod(self, item);
            self.module.pop();
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let mut leaves = Vec::new();
        use_leaves(&item.tree, &mut Vec::new(), None, &mut leaves);
        for leaf in leaves {
            let leading_colon = item.leading_colon.is_some();
            self.refs
                .path(&self.module, &leaf.segments, leaf.line, leading_colon);
            if let Some(name) = leaf.name
                && !leading_colon
                && let Some(absolute) = resolve(&self.module, &leaf.segments)
            {
                self.refs.aliases.insert(name, absolute);
            }
        }
    }

    fn visit_item_extern_crate(&mut self, item: &'ast syn::ItemExternCrate) {
        let name = item.ident.to_string();
        if self.refs.watched.contains(&name.as_str()) {
            self.refs
                .external(&name, &name, item.ident.span().start().line);
        }
    }
}

/// One path a `use` tree imports.
struct UseLeaf {
    segments: Vec<String>,
    /// The line of its first segment inside its innermost `{ }` group.
    line: usize,
    /// The name it brings into scope (none for a glob or `as _`).
    name: Option<String>,
}

/// The full paths a `use` tree imports.
fn use_leaves(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    line: Option<usize>,
    out: &mut Vec<UseLeaf>,
) {
    let line_of = |ident: &syn::Ident| line.unwrap_or_else(|| ident.span().start().line);
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_leaves(&p.tree, prefix, Some(line_of(&p.ident)), out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let segments = joined(prefix, &n.ident);
            out.push(UseLeaf {
                name: segments.last().cloned(),
                segments,
                line: line_of(&n.ident),
            });
        }
        syn::UseTree::Rename(r) => out.push(UseLeaf {
            segments: joined(prefix, &r.ident),
            line: line_of(&r.ident),
            name: (r.rename != "_").then(|| r.rename.to_string()),
        }),
        syn::UseTree::Glob(g) => out.push(UseLeaf {
            segments: prefix.clone(),
            line: line.unwrap_or_else(|| g.star_token.span.start().line),
            name: None,
        }),
        syn::UseTree::Group(g) => {
            for item in &g.items {
                use_leaves(item, prefix, None, out);
            }
        }
    }
}

/// `prefix::ident`, where `prefix::self` is `prefix`.
fn joined(prefix: &[String], ident: &syn::Ident) -> Vec<String> {
    let mut path = prefix.to_vec();
    if ident != "self" || path.is_empty() {
        path.push(ident.to_string());
    }
    path
}

/// A token, with `::` as one token and `$crate` as one identifier.
#[derive(Debug)]
enum Tok {
    Ident {
        name: String,
        line: usize,
    },
    PathSep,
    Punct {
        ch: char,
        line: usize,
    },
    Group {
        delimiter: Delimiter,
        toks: Vec<Tok>,
    },
    Literal {
        text: String,
        line: usize,
    },
}

impl Tok {
    fn is_punct(&self, c: char) -> bool {
        matches!(self, Tok::Punct { ch, .. } if *ch == c)
    }

    fn is_ident(&self, word: &str) -> bool {
        matches!(self, Tok::Ident { name, .. } if name == word)
    }
}

fn flatten(stream: TokenStream) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut trees = stream.into_iter().peekable();
    while let Some(tree) = trees.next() {
        match tree {
            TokenTree::Ident(ident) => out.push(Tok::Ident {
                name: ident.to_string(),
                line: ident.span().start().line,
            }),
            TokenTree::Punct(p) => {
                let next_is = |next: Option<&TokenTree>, c: char| matches!(next, Some(TokenTree::Punct(q)) if q.as_char() == c);
                if p.as_char() == ':' && p.spacing() == Spacing::Joint && next_is(trees.peek(), ':')
                {
                    trees.next();
                    out.push(Tok::PathSep);
                } else if p.as_char() == '$'
                    && matches!(trees.peek(), Some(TokenTree::Ident(i)) if i == "crate")
                {
                    trees.next();
                    out.push(Tok::Ident {
                        name: "$crate".into(),
                        line: p.span().start().line,
                    });
                } else {
                    out.push(Tok::Punct {
                        ch: p.as_char(),
                        line: p.span().start().line,
                    });
                }
            }
            TokenTree::Group(g) => out.push(Tok::Group {
                delimiter: g.delimiter(),
                toks: flatten(g.stream()),
            }),
            TokenTree::Literal(lit) => out.push(Tok::Literal {
                text: lit.to_string(),
                line: lit.span().start().line,
            }),
        }
    }
    out
}

/// Keywords after which `::` starts a path from the extern prelude (`use ::axum`)
/// rather than continuing one.
const KEYWORDS: &[&str] = &[
    "as", "async", "break", "const", "dyn", "else", "enum", "extern", "fn", "for", "if", "impl",
    "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "static", "struct",
    "trait", "type", "unsafe", "use", "where", "while", "yield",
];

/// The token pass.
struct Walker<'r, 'w> {
    module: Vec<String>,
    refs: &'r mut Refs<'w>,
}

impl Walker<'_, '_> {
    /// Walks one level of tokens. `in_attribute`: inside `#[...]`, where string
    /// literals may hold paths (`#[serde(with = "crate::x")]`). `use_group`: the
    /// inside of a `{ }` after `::`, whose items continue a path.
    fn walk(&mut self, toks: &[Tok], in_attribute: bool, use_group: bool) {
        let mut i = 0;
        while i < toks.len() {
            i = self.step(toks, i, in_attribute, use_group);
        }
    }

    /// Handles what starts at `toks[i]`; returns where to go on.
    fn step(&mut self, toks: &[Tok], i: usize, in_attribute: bool, use_group: bool) -> usize {
        let continues_path = i > 0 && matches!(toks[i - 1], Tok::PathSep)
            || use_group && (i == 0 || toks[i - 1].is_punct(','));
        let next_is_sep = matches!(toks.get(i + 1), Some(Tok::PathSep));
        match &toks[i] {
            // `mod x { ... }`
            Tok::Ident { name, .. } if name == "mod" => {
                if let (
                    Some(Tok::Ident { name: inner, .. }),
                    Some(Tok::Group {
                        delimiter,
                        toks: body,
                    }),
                ) = (toks.get(i + 1), toks.get(i + 2))
                    && *delimiter == Delimiter::Brace
                {
                    self.module.push(inner.clone());
                    self.walk(body, false, false);
                    self.module.pop();
                    return i + 3;
                }
            }
            // `pub(in crate::a)` restricts visibility; it imports nothing.
            Tok::Ident { name, .. } if name == "pub" => {
                if let Some(Tok::Group {
                    delimiter,
                    toks: inner,
                }) = toks.get(i + 1)
                    && *delimiter == Delimiter::Parenthesis
                    && inner.first().is_some_and(|t| t.is_ident("in"))
                {
                    return i + 2;
                }
            }
            Tok::Ident { name, .. } if is_crate_root(name) && next_is_sep && !continues_path => {
                let mut leaves = Vec::new();
                let end = read_path(toks, i, &[], &mut leaves);
                for (segments, line) in leaves {
                    self.refs.path(&self.module, &segments, line, false);
                }
                return end;
            }
            Tok::Ident { name, .. }
                if next_is_sep && !continues_path && self.refs.aliases.contains_key(name) =>
            {
                let mut leaves = Vec::new();
                let end = read_path(toks, i, &[], &mut leaves);
                for (segments, line) in leaves {
                    self.refs.aliased(&segments, line);
                }
                return end;
            }
            Tok::Ident { name, line } if next_is_sep && !continues_path => {
                let after_dot = i > 0 && toks[i - 1].is_punct('.');
                if self.refs.watched.contains(&name.as_str()) && !after_dot {
                    self.external_at(toks, i, *line);
                }
            }
            // `::axum::...`
            Tok::PathSep if starts_extern_path(toks, i) => {
                if let Some(Tok::Ident { name, line }) = toks.get(i + 1)
                    && self.refs.watched.contains(&name.as_str())
                {
                    self.external_at(toks, i + 1, *line);
                    return i + 2;
                }
            }
            // `#[...]` and `#![...]`
            Tok::Punct { ch: '#', .. } => {
                let open = if toks.get(i + 1).is_some_and(|t| t.is_punct('!')) {
                    i + 2
                } else {
                    i + 1
                };
                if let Some(Tok::Group {
                    delimiter,
                    toks: inner,
                }) = toks.get(open)
                    && *delimiter == Delimiter::Bracket
                {
                    // Doc comments are prose; intra-doc links import nothing.
                    if !inner.first().is_some_and(|t| t.is_ident("doc")) {
                        self.walk(inner, true, false);
                    }
                    return open + 1;
                }
            }
            Tok::Group {
                delimiter,
                toks: inner,
            } => {
                let group =
                    *delimiter == Delimiter::Brace && i > 0 && matches!(toks[i - 1], Tok::PathSep);
                self.walk(inner, in_attribute, group);
            }
            Tok::Literal { text, line } if in_attribute => {
                if let Some(segments) = path_in_string(text) {
                    self.refs.path(&self.module, &segments, *line, false);
                }
            }
            _ => {}
        }
        i + 1
    }

    /// A watched crate named at `toks[i]`: `krate::next`, with `!` for a macro.
    fn external_at(&mut self, toks: &[Tok], i: usize, line: usize) {
        let Some(Tok::Ident { name, .. }) = toks.get(i) else {
            return;
        };
        let mut written = name.clone();
        if let (Some(Tok::PathSep), Some(Tok::Ident { name: next, .. })) =
            (toks.get(i + 1), toks.get(i + 2))
        {
            written = format!("{written}::{next}");
            if toks.get(i + 3).is_some_and(|t| t.is_punct('!')) {
                written.push('!');
            }
        }
        self.refs.external(name, &written, line);
    }
}

/// Whether the `::` at `toks[i]` starts a path (`::axum::x`, `use ::tokio`,
/// `-> ::axum::Json`) rather than continuing one (`a::b`, `<T as U>::b`).
fn starts_extern_path(toks: &[Tok], i: usize) -> bool {
    let Some(prev) = i.checked_sub(1) else {
        return true;
    };
    match &toks[prev] {
        Tok::Ident { name, .. } => KEYWORDS.contains(&name.as_str()),
        // `->` and `=>` end in `>` too.
        Tok::Punct { ch: '>', .. } => prev
            .checked_sub(1)
            .is_some_and(|p| toks[p].is_punct('-') || toks[p].is_punct('=')),
        _ => true,
    }
}

/// Reads `a (:: b)* [:: { group } | :: *]` starting at the identifier
/// `toks[i]`, below `prefix`; pushes each full path with its line and returns
/// the index after it.
fn read_path(
    toks: &[Tok],
    i: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    let Some(Tok::Ident { name, line }) = toks.get(i) else {
        return i + 1;
    };
    let line = *line;
    let mut segments = prefix.to_vec();
    segments.push(name.clone());
    let mut j = i + 1;
    while matches!(toks.get(j), Some(Tok::PathSep)) {
        match toks.get(j + 1) {
            Some(Tok::Ident { name, .. }) => {
                segments.push(name.clone());
                j += 2;
            }
            Some(Tok::Group {
                delimiter: Delimiter::Brace,
                toks: inner,
            }) => {
                read_group(inner, &segments, out);
                return j + 2;
            }
            Some(Tok::Punct { ch: '*', .. }) => {
                out.push((segments, line));
                return j + 2;
            }
            // A turbofish (`::<T>`): the path so far is what it names.
            _ => {
                j += 1;
                break;
            }
        }
    }
    out.push((segments, line));
    j
}

/// The items of a use-tree group `{a, b::c, self, *, {d}}` below `prefix`.
fn read_group(toks: &[Tok], prefix: &[String], out: &mut Vec<(Vec<String>, usize)>) {
    for item in toks.split(|t| t.is_punct(',')) {
        match item.first() {
            Some(Tok::Ident { .. }) => {
                read_path(item, 0, prefix, out);
            }
            Some(Tok::Punct { ch: '*', line }) => out.push((prefix.to_vec(), *line)),
            Some(Tok::Group {
                delimiter: Delimiter::Brace,
                toks: inner,
            }) => read_group(inner, prefix, out),
            _ => {}
        }
    }
}

/// The path in a string literal that is nothing but a crate-internal path
/// (`"crate::util::as_rfc3339"`), as serde's `with = "..."` takes.
fn path_in_string(literal: &str) -> Option<Vec<String>> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    let segments: Vec<String> = inner.split("::").map(str::to_string).collect();
    let is_ident = |s: &String| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    (segments.len() >= 2
        && matches!(segments[0].as_str(), "crate" | "super" | "self")
        && segments.iter().all(is_ident))
    .then_some(segments)
}
