//! The bridge between Automerge documents and `serde_json` values.
//!
//! Reading turns a map into a JSON object (text objects become strings, the
//! winning value of each key is taken). Writing compares a JSON object with the
//! document and emits operations only for what differs: an unchanged field costs
//! nothing and, more importantly, does not overwrite a concurrent edit made on
//! another device. Nested objects are diffed recursively, so two devices editing
//! two different order lines (entries of a map keyed by line id) both keep their
//! change. Strings held in a text object are updated with a character diff.
//!
//! JSON `null` and an absent key mean the same: the key is not in the document.

use std::collections::HashMap;

use automerge::{
    AutoCommit, ObjId, ObjType, ReadDoc, ScalarValue, TextEncoding, Value, hydrate,
    transaction::Transactable,
};
use serde_json::{Map, Number, Value as Json};

use super::ModelError;

/// How deep objects may nest in a record document. Our records nest four levels
/// (an order line's money); a pushed change can nest objects without end, and
/// reading recurses, so anything deeper is refused rather than overflowing the
/// stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// Reads object `obj` as JSON.
pub(crate) fn read_object(doc: &AutoCommit, obj: &ObjId) -> Result<Json, ModelError> {
    read_object_at(doc, obj, 0)
}

fn read_object_at(doc: &AutoCommit, obj: &ObjId, depth: usize) -> Result<Json, ModelError> {
    read_typed_at(doc, obj, doc.object_type(obj)?, depth)
}

/// Reads object `obj` of type `ty` (known from the value that holds it: a
/// lookup of its type in the document would cost as much as reading a key).
fn read_typed_at(
    doc: &AutoCommit,
    obj: &ObjId,
    ty: ObjType,
    depth: usize,
) -> Result<Json, ModelError> {
    if depth > MAX_DEPTH {
        return Err(ModelError::Malformed(format!(
            "objects nest deeper than {MAX_DEPTH} levels"
        )));
    }
    match ty {
        ObjType::Map | ObjType::Table => {
            let mut out = Map::new();
            for item in doc.map_range(obj, ..) {
                let id = item.id();
                let value = read_value_at(doc, Value::from(item.value), &id, depth)?;
                if !value.is_null() {
                    out.insert(item.key.to_string(), value);
                }
            }
            Ok(Json::Object(out))
        }
        ObjType::List => {
            let mut out = Vec::new();
            for item in doc.list_range(obj, ..) {
                let id = item.id();
                out.push(read_value_at(doc, Value::from(item.value), &id, depth)?);
            }
            Ok(Json::Array(out))
        }
        ObjType::Text => Ok(Json::String(doc.text(obj)?)),
    }
}

/// Reads one value (the object `id` when `value` is an object).
pub(crate) fn read_value(
    doc: &AutoCommit,
    value: Value<'_>,
    id: &ObjId,
) -> Result<Json, ModelError> {
    read_value_at(doc, value, id, 0)
}

fn read_value_at(
    doc: &AutoCommit,
    value: Value<'_>,
    id: &ObjId,
    depth: usize,
) -> Result<Json, ModelError> {
    match value {
        Value::Object(ty) => read_typed_at(doc, id, ty, depth + 1),
        Value::Scalar(s) => Ok(scalar_to_json(&s)),
    }
}

fn scalar_to_json(s: &ScalarValue) -> Json {
    match s {
        ScalarValue::Str(s) => Json::String(s.to_string()),
        ScalarValue::Int(i) | ScalarValue::Timestamp(i) => Json::Number((*i).into()),
        ScalarValue::Uint(u) => Json::Number((*u).into()),
        ScalarValue::F64(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        ScalarValue::Counter(c) => Json::Number(i64::from(c).into()),
        ScalarValue::Boolean(b) => Json::Bool(*b),
        // Bytes and values from a future Automerge are not part of any record type.
        ScalarValue::Bytes(_) | ScalarValue::Unknown { .. } | ScalarValue::Null => Json::Null,
    }
}

fn json_to_scalar(v: &Json) -> Option<ScalarValue> {
    Some(match v {
        Json::Null => ScalarValue::Null,
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                ScalarValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                ScalarValue::Uint(u)
            } else {
                ScalarValue::F64(n.as_f64()?)
            }
        }
        Json::Array(_) | Json::Object(_) => return None,
    })
}

fn scalar_equals(current: &ScalarValue, new: &Json) -> bool {
    match json_to_scalar(new) {
        Some(ScalarValue::F64(f)) => {
            matches!(current, ScalarValue::F64(c) if c.to_bits() == f.to_bits())
        }
        Some(s) => *current == s,
        None => false,
    }
}

/// Writes `new` into map `obj`, touching only what differs.
///
/// Keys in `skip` are left alone on both sides (they are managed by dedicated
/// operations, e.g. `status`). Top-level keys in `text_fields` are created as
/// text objects.
pub(crate) fn write_map(
    doc: &mut AutoCommit,
    obj: &ObjId,
    new: &Map<String, Json>,
    skip: &[&str],
    text_fields: &[&str],
) -> Result<(), ModelError> {
    for (key, value) in new {
        if skip.contains(&key.as_str()) {
            continue;
        }
        if value.is_null() {
            if doc.get(obj, key.as_str())?.is_some() {
                doc.delete(obj, key.as_str())?;
            }
            continue;
        }
        let current = doc.get(obj, key.as_str())?;
        match (current, value) {
            (Some((Value::Object(ObjType::Map), id)), Json::Object(inner)) => {
                write_map(doc, &id, inner, &[], &[])?;
            }
            (Some((Value::Object(ObjType::Text), id)), Json::String(s)) => {
                if doc.text(&id)? != *s {
                    doc.update_text(&id, s)?;
                }
            }
            (Some((Value::Object(ObjType::List), id)), Json::Array(_)) => {
                if read_object(doc, &id)? != *value {
                    create(doc, obj, key, value, false)?;
                }
            }
            (Some((Value::Scalar(s), _)), _) if scalar_equals(&s, value) => {}
            _ => create(doc, obj, key, value, text_fields.contains(&key.as_str()))?,
        }
    }
    let stale: Vec<String> = doc
        .keys(obj)
        .filter(|k| !skip.contains(&k.as_str()) && new.get(k).is_none_or(Json::is_null))
        .collect();
    for key in stale {
        doc.delete(obj, key.as_str())?;
    }
    Ok(())
}

/// Puts `value` at `key` of map `obj` as a new value or object tree.
pub(crate) fn create(
    doc: &mut AutoCommit,
    obj: &ObjId,
    key: &str,
    value: &Json,
    as_text: bool,
) -> Result<(), ModelError> {
    match value {
        Json::Object(inner) => {
            let id = doc.put_object(obj, key, ObjType::Map)?;
            write_map(doc, &id, inner, &[], &[])?;
        }
        Json::Array(items) => {
            let id = doc.put_object(obj, key, ObjType::List)?;
            for (i, item) in items.iter().enumerate() {
                insert(doc, &id, i, item)?;
            }
        }
        Json::String(s) if as_text => {
            let id = doc.put_object(obj, key, ObjType::Text)?;
            doc.splice_text(&id, 0, 0, s)?;
        }
        scalar => {
            let s = json_to_scalar(scalar)
                .ok_or_else(|| ModelError::Malformed(format!("cannot store {key}")))?;
            doc.put(obj, key, s)?;
        }
    }
    Ok(())
}

/// The value tree a new document's root starts from: what [`write_map`]
/// would write into an empty map, built in memory so that Automerge inserts
/// the whole tree as one batch (a fresh record's creation inserts every field
/// at once; put by put, each operation searches the columns it lands in, and
/// creating a record cost about 200 µs).
///
/// The document is the same as one written put by put: the same keys, values
/// and object types (strings of `text_fields` as text objects, `null` left
/// out of maps and kept in lists); only the order the operations are numbered
/// in differs, which nothing reads.
pub(crate) fn hydrate_map(
    new: &Map<String, Json>,
    skip: &[&str],
    text_fields: &[&str],
    encoding: TextEncoding,
) -> Result<HashMap<String, hydrate::Value>, ModelError> {
    let mut out = HashMap::with_capacity(new.len() + 3);
    for (key, value) in new {
        if value.is_null() || skip.contains(&key.as_str()) {
            continue;
        }
        let hydrated = match value {
            Json::Object(inner) => {
                hydrate::Value::Map(hydrate_map(inner, &[], &[], encoding)?.into())
            }
            Json::Array(items) => hydrate_list(items, encoding)?,
            Json::String(s) if text_fields.contains(&key.as_str()) => {
                hydrate::Value::Text(hydrate::Text::new(encoding, s))
            }
            scalar => hydrate::Value::Scalar(
                json_to_scalar(scalar)
                    .ok_or_else(|| ModelError::Malformed(format!("cannot store {key}")))?,
            ),
        };
        out.insert(key.clone(), hydrated);
    }
    Ok(out)
}

/// A list of [`hydrate_map`]'s tree, as [`insert`] writes it item by item.
fn hydrate_list(items: &[Json], encoding: TextEncoding) -> Result<hydrate::Value, ModelError> {
    let values = items
        .iter()
        .map(|item| {
            Ok(match item {
                Json::Object(inner) => {
                    hydrate::Value::Map(hydrate_map(inner, &[], &[], encoding)?.into())
                }
                Json::Array(inner) => hydrate_list(inner, encoding)?,
                scalar => {
                    hydrate::Value::Scalar(json_to_scalar(scalar).unwrap_or(ScalarValue::Null))
                }
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    Ok(hydrate::Value::List(values.into()))
}

fn insert(
    doc: &mut AutoCommit,
    list: &ObjId,
    index: usize,
    value: &Json,
) -> Result<(), ModelError> {
    match value {
        Json::Object(inner) => {
            let id = doc.insert_object(list, index, ObjType::Map)?;
            write_map(doc, &id, inner, &[], &[])?;
        }
        Json::Array(items) => {
            let id = doc.insert_object(list, index, ObjType::List)?;
            for (i, item) in items.iter().enumerate() {
                insert(doc, &id, i, item)?;
            }
        }
        scalar => {
            let s = json_to_scalar(scalar).unwrap_or(ScalarValue::Null);
            doc.insert(list, index, s)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::ROOT;
    use serde_json::json;

    fn obj(v: Json) -> Map<String, Json> {
        match v {
            Json::Object(m) => m,
            _ => unreachable!("test helper takes objects"),
        }
    }

    #[test]
    fn a_document_nested_a_hundred_thousand_deep_is_refused_not_a_stack_overflow() {
        let mut doc = AutoCommit::new();
        let mut obj = ROOT;
        for _ in 0..100_000 {
            obj = doc.put_object(&obj, "x", ObjType::Map).expect("nest");
        }
        doc.commit();
        let err = read_object(&doc, &ROOT).expect_err("too deep");
        assert!(err.to_string().contains("nest deeper"), "{err}");
        // Lists too, and exactly at the limit it still reads.
        let mut doc = AutoCommit::new();
        let mut obj = doc.put_object(ROOT, "l", ObjType::List).expect("list");
        for _ in 1..MAX_DEPTH {
            obj = doc.insert_object(&obj, 0, ObjType::List).expect("nest");
        }
        assert!(read_object(&doc, &ROOT).is_ok());
        doc.insert_object(&obj, 0, ObjType::List).expect("one more");
        assert!(read_object(&doc, &ROOT).is_err());
    }

    #[test]
    fn writing_the_same_object_twice_emits_no_operations() {
        let mut doc = AutoCommit::new();
        let v = obj(json!({"a": 1, "b": {"c": "x", "d": [1, 2]}, "f": 1.5, "t": true}));
        write_map(&mut doc, &ROOT, &v, &[], &[]).expect("write");
        doc.commit();
        write_map(&mut doc, &ROOT, &v, &[], &[]).expect("write again");
        assert_eq!(doc.pending_ops(), 0);
        assert_eq!(read_object(&doc, &ROOT).expect("read"), Json::Object(v));
    }

    #[test]
    fn concurrent_edits_of_different_fields_both_survive() {
        let mut a = AutoCommit::new();
        write_map(
            &mut a,
            &ROOT,
            &obj(json!({"x": 1, "y": 1, "lines": {}})),
            &[],
            &[],
        )
        .expect("write");
        a.commit();
        let mut b = a.fork();
        write_map(
            &mut a,
            &ROOT,
            &obj(json!({"x": 2, "y": 1, "lines": {"l1": {"q": 1}}})),
            &[],
            &[],
        )
        .expect("a");
        write_map(
            &mut b,
            &ROOT,
            &obj(json!({"x": 1, "y": 3, "lines": {"l2": {"q": 2}}})),
            &[],
            &[],
        )
        .expect("b");
        a.merge(&mut b).expect("merge");
        assert_eq!(
            read_object(&a, &ROOT).expect("read"),
            json!({"x": 2, "y": 3, "lines": {"l1": {"q": 1}, "l2": {"q": 2}}})
        );
    }

    #[test]
    fn text_fields_merge_character_edits() {
        let mut a = AutoCommit::new();
        write_map(
            &mut a,
            &ROOT,
            &obj(json!({"notes": "shelf empty"})),
            &[],
            &["notes"],
        )
        .expect("write");
        a.commit();
        let mut b = a.fork();
        write_map(
            &mut a,
            &ROOT,
            &obj(json!({"notes": "top shelf empty"})),
            &[],
            &["notes"],
        )
        .expect("a");
        write_map(
            &mut b,
            &ROOT,
            &obj(json!({"notes": "shelf empty, restocked"})),
            &[],
            &["notes"],
        )
        .expect("b");
        a.merge(&mut b).expect("merge");
        assert_eq!(
            read_object(&a, &ROOT).expect("read")["notes"],
            json!("top shelf empty, restocked")
        );
    }

    #[test]
    fn null_and_missing_keys_delete_but_skipped_keys_stay() {
        let mut doc = AutoCommit::new();
        write_map(
            &mut doc,
            &ROOT,
            &obj(json!({"a": 1, "b": 2, "status": "x"})),
            &[],
            &[],
        )
        .expect("write");
        write_map(&mut doc, &ROOT, &obj(json!({"a": null})), &["status"], &[]).expect("write");
        assert_eq!(
            read_object(&doc, &ROOT).expect("read"),
            json!({"status": "x"})
        );
    }

    /// Any JSON a record might serialise to, nested a few levels.
    fn any_json() -> impl proptest::strategy::Strategy<Value = Json> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|u| json!(u)),
            (-1e9f64..1e9).prop_map(|f| json!(f)),
            "[a-z é🙂]{0,12}".prop_map(Json::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
                proptest::collection::btree_map("[a-e]{1,2}", inner, 0..6)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A record's field: often a plain string (which a text field holds as
    /// text), else any JSON.
    fn field() -> impl proptest::strategy::Strategy<Value = Json> {
        use proptest::prelude::*;
        prop_oneof!["[a-z é]{0,8}".prop_map(Json::String), any_json()]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// A document started from [`hydrate_map`]'s tree is the document
        /// [`write_map`] writes put by put: it reads the same, keeps text
        /// fields as text, saves and loads, and takes the same later edit
        /// the same way.
        #[test]
        fn a_hydrated_start_is_the_document_written_put_by_put(
            first in proptest::collection::btree_map("[a-f]", field(), 0..6),
            then in proptest::collection::btree_map("[a-f]", field(), 0..6),
            texts in proptest::sample::subsequence(vec!["a", "b", "c"], 0..=3),
        ) {
            let first: Map<String, Json> = first.into_iter().collect();
            let then: Map<String, Json> = then.into_iter().collect();
            let skip = ["f"];
            let mut by_put = AutoCommit::new();
            write_map(&mut by_put, &ROOT, &first, &skip, &texts).expect("put by put");
            by_put.commit();
            let mut hydrated = AutoCommit::new();
            let root = hydrate_map(&first, &skip, &texts, hydrated.text_encoding()).expect("tree");
            hydrated.init_root_from_hydrate(&root.into()).expect("batch");
            hydrated.commit();
            let read = |doc: &AutoCommit| read_object(doc, &ROOT).expect("read");
            proptest::prop_assert_eq!(read(&hydrated), read(&by_put));
            for key in first.keys() {
                let kind = |doc: &AutoCommit| doc.get(&ROOT, key.as_str()).expect("get").map(|(v, _)| v.is_object());
                proptest::prop_assert_eq!(kind(&hydrated), kind(&by_put), "{}", key);
            }
            let mut loaded = AutoCommit::load(&hydrated.save()).expect("load");
            proptest::prop_assert_eq!(read(&loaded), read(&by_put));
            write_map(&mut by_put, &ROOT, &then, &skip, &texts).expect("edit by put");
            write_map(&mut loaded, &ROOT, &then, &skip, &texts).expect("edit hydrated");
            proptest::prop_assert_eq!(read(&loaded), read(&by_put));
        }
    }
}
