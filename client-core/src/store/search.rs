//! Search keys: what the field app's search boxes look up without opening a
//! document. Accounts by name prefix and by place (their sites' addresses),
//! products by SKU prefix or name prefix.
//!
//! The keys are columns of the `records` row (`search_name`, `search_code`,
//! `search_place`, schema v6; accounts' codes since v7), written in the same transaction as the
//! document, like the projection columns. They are device-only: the server
//! searches its own tables, so the shared [`crate::model::Projection`] stays
//! as it is. Only accounts and products have keys; every other row keeps
//! `NULL`, which the partial indexes skip.
//!
//! A key is the text folded for matching ([`fold`]): lower case, Latin
//! accents dropped ("São João" is found by "sao jo"), runs of whitespace as
//! one space. Accounts are found by name or by their customer code, products
//! by name or SKU. A prefix search is a range scan of the `(kind, search_name)`
//! (or `search_code`) index: `key >= prefix AND key < prefix + U+10FFFF` (UTF-8 sorts by code
//! point), so 20,000 accounts answer in well under a millisecond
//! (`benches/store.rs`, `docs/benchmarks.md`).

use rusqlite::{Transaction, params};

use crate::model::{Account, Product, RecordDoc, RecordKind};

use super::StoreError;

/// The search keys of one record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct SearchKeys {
    name: Option<String>,
    code: Option<String>,
    place: Option<String>,
}

/// Whether records of `kind` have search keys.
pub(super) fn indexed(kind: RecordKind) -> bool {
    matches!(kind, RecordKind::Account | RecordKind::Product)
}

/// The keys of a record (all `None` for kinds that are not searched, or a
/// document that does not read as its kind).
pub(super) fn keys_of(doc: &RecordDoc) -> SearchKeys {
    match doc.kind() {
        RecordKind::Account => match doc.read::<Account>() {
            Ok(a) => {
                let mut places: Vec<String> = a
                    .locations
                    .values()
                    .flat_map(|l| [fold(&l.name), fold(&l.address)])
                    .filter(|s| !s.is_empty())
                    .collect();
                places.sort();
                places.dedup();
                SearchKeys {
                    name: Some(fold(&a.name)),
                    code: a.code.as_deref().map(fold).filter(|c| !c.is_empty()),
                    place: (!places.is_empty()).then(|| places.join("\n")),
                }
            }
            Err(_) => SearchKeys::default(),
        },
        RecordKind::Product => match doc.read::<Product>() {
            Ok(p) => SearchKeys {
                name: Some(fold(&p.name)),
                code: Some(fold(&p.sku)),
                place: None,
            },
            Err(_) => SearchKeys::default(),
        },
        _ => SearchKeys::default(),
    }
}

/// Writes the record's search keys (only for searched kinds; a no-op for the
/// rest, so visits and orders pay nothing).
pub(super) fn write(tx: &Transaction<'_>, doc: &RecordDoc) -> Result<(), StoreError> {
    if !indexed(doc.kind()) {
        return Ok(());
    }
    let k = keys_of(doc);
    tx.prepare_cached(
        "UPDATE records SET search_name = ?2, search_code = ?3, search_place = ?4 \
         WHERE id = ?1 AND (search_name IS NOT ?2 OR search_code IS NOT ?3 OR search_place IS NOT ?4)",
    )?
    .execute(params![doc.id().to_string(), k.name, k.code, k.place])?;
    Ok(())
}

/// Text folded for matching: lower case, common Latin accents dropped,
/// whitespace runs as one space, trimmed.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.trim().chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        for lower in c.to_lowercase() {
            out.push(unaccent(lower));
        }
    }
    out
}

fn unaccent(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
        'ç' | 'ć' | 'č' => 'c',
        'ď' => 'd',
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' => 'i',
        'ł' => 'l',
        'ñ' | 'ń' | 'ň' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => 'o',
        'ř' => 'r',
        'ś' | 'š' | 'ş' => 's',
        'ť' | 'ţ' => 't',
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => 'u',
        'ý' | 'ÿ' => 'y',
        'ź' | 'ż' | 'ž' => 'z',
        other => other,
    }
}

/// The exclusive upper bound of a prefix range: every key starting with
/// `prefix` sorts below it.
pub(super) fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_owned();
    end.push(char::MAX);
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_drops_case_accents_and_extra_spaces() {
        assert_eq!(fold("  São   JOÃO\tda Praça "), "sao joao da praca");
        assert_eq!(fold("Café Zürich"), "cafe zurich");
        assert_eq!(fold(""), "");
        assert!(prefix_end("caf").as_str() > "cafe zurich");
        assert!(prefix_end("caf").as_str() > "caf");
        assert!(prefix_end("caf").as_str() < "cag");
    }
}
