//! A fence around Automerge calls that parse or apply bytes from elsewhere.
//!
//! Automerge 0.12 checks most malformed input and returns errors, but fuzzing
//! found inputs that reach `panic!`s and index errors inside it and its column
//! codec (`docs/fuzzing.md`): a document whose op columns are cut short, a
//! change that refers to an object the document does not hold. A pushed change
//! or a received document must never take a server worker or an app down, so
//! every call that takes outside bytes (`load`, `load_incremental`,
//! `Change::from_bytes`, `apply_changes`) runs through [`fenced`], which turns a
//! panic into an error. The document such a call was working on is dropped by
//! every caller (they work on a copy), so no half-applied state is kept.
//!
//! Some inputs do not panic but make Automerge expand a few bytes into billions
//! of rows; [`check_bounded`] reads the column headers first and refuses them.
//!
//! This needs `panic = "unwind"` (the default, and what every build of ours
//! uses). The process's panic hook still runs, so the panic is logged once on
//! stderr; [`inside_fence`] lets a hook that would abort (the fuzzers') tell a
//! fenced panic from a real one.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

thread_local! {
    /// How many fenced calls this thread is inside (they do not nest today, but
    /// a counter costs nothing and stays right if they do).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Whether the current thread is inside [`fenced`].
pub fn inside_fence() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

/// Runs `f`, turning a panic into `Err` with `what` and the panic's message.
pub(crate) fn fenced<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    DEPTH.with(|d| d.set(d.get() + 1));
    // `f` owns or borrows only what the caller drops on error.
    let result = catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get() - 1));
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        let message: String = message.chars().take(200).collect();
        format!("{what} failed inside Automerge on malformed input: {message}")
    })
}

/// Most rows one column of a chunk may hold once its runs are expanded. A real
/// record has a few thousand operations (a long visit note a few tens of
/// thousands); Automerge's run-length columns let a few bytes claim billions
/// of rows, which it would then expand in memory and time before noticing
/// anything wrong (fuzzing found such a 2 KB document).
pub(crate) const MAX_ROWS: u64 = 1 << 20;
/// Most bytes a deflated column or change may inflate to.
const MAX_INFLATED: u64 = 64 << 20;
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// Why [`check_bounded`] stopped reading.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The bytes do not follow the format: left to Automerge to refuse, with its
    /// own message.
    Malformed,
    /// A bound is exceeded, or the chunk is of a kind records never hold.
    Refused(String),
}

/// Refuses Automerge bytes (documents, changes, incremental saves; any number
/// of chunks) whose columns expand past [`MAX_ROWS`] rows or [`MAX_INFLATED`]
/// bytes, or that hold chunks other than documents and changes, reading only the run headers: linear in the input, allocating at most
/// [`MAX_INFLATED`] for a deflated part. Bytes it cannot parse pass, so
/// Automerge reports them.
pub(crate) fn check_bounded(bytes: &[u8]) -> Result<(), String> {
    match chunks(bytes) {
        Ok(()) | Err(Stop::Malformed) => Ok(()),
        Err(Stop::Refused(what)) => Err(what),
    }
}

/// Reads one change from outside bytes: bounded, and with Automerge's panics
/// turned into errors.
///
/// A change whose header's checksum is not its hash's first bytes is
/// refused ([`checksum_matches`]).
pub(crate) fn read_change(raw: &[u8]) -> Result<automerge::Change, String> {
    check_bounded(raw)?;
    let change = fenced("reading a change", || {
        automerge::Change::from_bytes(raw.to_vec())
    })?
    .map_err(|e| format!("not an Automerge change: {e}"))?;
    if !checksum_matches(raw, &change) {
        return Err("a change whose checksum does not match its contents".into());
    }
    Ok(change)
}

/// Whether the header of `raw`, the bytes `change` was read from, carries
/// the change's checksum (its hash's first four bytes; a compressed change's
/// header carries its uncompressed form's). Automerge applies a change whose
/// checksum is wrong, but refuses to load a file that holds it, and records
/// are stored and sent with their changes as they came (`model::stored`).
pub(crate) fn checksum_matches(raw: &[u8], change: &automerge::Change) -> bool {
    carries_checksum_of(raw, &change.hash())
}

/// Whether the chunk header of `raw` carries `hash`'s checksum (its first
/// four bytes).
fn carries_checksum_of(raw: &[u8], hash: &automerge::ChangeHash) -> bool {
    raw.get(4..8) == Some(&hash.0[..4])
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], Stop> {
        let n = usize::try_from(n).map_err(|_| Stop::Malformed)?;
        if n > self.0.len() {
            return Err(Stop::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn uleb(&mut self) -> Result<u64, Stop> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Stop::Malformed)
    }

    fn sleb(&mut self) -> Result<i64, Stop> {
        let mut value: i64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= i64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if shift < 57 && byte & 0x40 != 0 {
                    value |= -1i64 << (shift + 7);
                }
                return Ok(value);
            }
        }
        Err(Stop::Malformed)
    }

    /// A count-prefixed list of length-prefixed byte strings (actor ids).
    fn skip_actors(&mut self) -> Result<(), Stop> {
        for _ in 0..self.uleb()? {
            let len = self.uleb()?;
            self.take(len)?;
        }
        Ok(())
    }

    /// A count-prefixed list of 32-byte hashes.
    fn skip_hashes(&mut self) -> Result<(), Stop> {
        let n = self.uleb()?;
        self.take(n.checked_mul(32).ok_or(Stop::Malformed)?)?;
        Ok(())
    }

    /// Column metadata: (spec, data length) pairs.
    fn columns(&mut self) -> Result<Vec<(u64, u64)>, Stop> {
        let mut out = Vec::new();
        for _ in 0..self.uleb()? {
            out.push((self.uleb()?, self.uleb()?));
        }
        Ok(out)
    }
}

/// How many change chunks `bytes` (an Automerge file) holds after its last
/// document chunk (all of them when it has none): the changes appended to a
/// stored record since it was last compacted. Reads the chunk headers only;
/// `None` when they do not parse.
pub(crate) fn tail_changes(bytes: &[u8]) -> Option<usize> {
    let mut r = Reader(bytes);
    let mut tail = 0;
    while !r.0.is_empty() {
        if r.take(4).ok()? != MAGIC {
            return None;
        }
        r.take(4).ok()?; // checksum
        let kind = r.take(1).ok()?[0];
        let len = r.uleb().ok()?;
        r.take(len).ok()?;
        match kind {
            0 => tail = 0,
            1 | 2 => tail += 1,
            _ => return None,
        }
    }
    Some(tail)
}

/// Change `hash` as Automerge encodes it on commit: `bytes` as they are
/// when they are that change, inflated when they are it deflated
/// ([`automerge::Change::bytes`] deflates a large change). The header keeps
/// its checksum (a deflated change's is its plain form's), which must be
/// `hash`'s; the body is inflated within [`MAX_INFLATED`]. `None` for
/// anything else. (The device's outbox reads its stored changes with it.)
#[cfg_attr(not(feature = "device"), allow(dead_code))]
pub(crate) fn plain_change(bytes: Vec<u8>, hash: &automerge::ChangeHash) -> Option<Vec<u8>> {
    if !carries_checksum_of(&bytes, hash) {
        return None;
    }
    let mut r = Reader(&bytes);
    if r.take(4).ok()? != MAGIC {
        return None;
    }
    let checksum = r.take(4).ok()?;
    let kind = r.take(1).ok()?[0];
    let len = r.uleb().ok()?;
    let body = r.take(len).ok()?;
    if !r.0.is_empty() {
        return None;
    }
    match kind {
        1 => Some(bytes),
        2 => {
            let body = inflate(body).ok()?;
            let mut out = Vec::with_capacity(body.len() + 20);
            out.extend_from_slice(&MAGIC);
            out.extend_from_slice(checksum);
            out.push(1);
            let mut n = body.len() as u64;
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
            out.extend_from_slice(&body);
            Some(out)
        }
        _ => None,
    }
}

fn chunks(bytes: &[u8]) -> Result<(), Stop> {
    let mut r = Reader(bytes);
    while !r.0.is_empty() {
        if r.take(4)? != MAGIC {
            return Err(Stop::Malformed);
        }
        r.take(4)?; // checksum
        let kind = r.take(1)?[0];
        let len = r.uleb()?;
        let body = r.take(len)?;
        match kind {
            0 => document(body)?,
            1 => change(body)?,
            2 => change(&inflate(body)?)?,
            // Bundles (3) and later kinds: never written by Fieldsync, and
            // Automerge expands a bundle's columns as unboundedly (fuzzing found it).
            _ => {
                return Err(Stop::Refused(format!(
                    "an Automerge chunk of kind {kind}, which records never hold"
                )));
            }
        }
    }
    Ok(())
}

fn document(body: &[u8]) -> Result<(), Stop> {
    let mut r = Reader(body);
    r.skip_actors()?;
    r.skip_hashes()?;
    let change_cols = r.columns()?;
    let op_cols = r.columns()?;
    for (spec, len) in change_cols.into_iter().chain(op_cols) {
        column(spec, r.take(len)?)?;
    }
    Ok(())
}

fn change(body: &[u8]) -> Result<(), Stop> {
    let mut r = Reader(body);
    r.skip_hashes()?; // dependencies
    let actor = r.uleb()?;
    r.take(actor)?;
    r.uleb()?; // seq
    r.uleb()?; // start op
    r.sleb()?; // time
    let message = r.uleb()?;
    r.take(message)?;
    r.skip_actors()?;
    for (spec, len) in r.columns()? {
        column(spec, r.take(len)?)?;
    }
    Ok(())
}

fn inflate(data: &[u8]) -> Result<Vec<u8>, Stop> {
    // One inflater per thread, reset for each part: a new one allocates and
    // clears some 40 KB of state and window, which for the few hundred bytes
    // of a record's creation cost more than the inflating (a device reads one
    // such change per new record it pushes).
    INFLATER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut inflater) => inflate_with(&mut inflater, data, MAX_INFLATED),
        // Only if inflating ever nested on one thread: a fresh inflater.
        Err(_) => inflate_with(&mut flate2::Decompress::new(false), data, MAX_INFLATED),
    })
}

thread_local! {
    /// The thread's raw-deflate inflater, reused by [`inflate`].
    static INFLATER: std::cell::RefCell<flate2::Decompress> =
        std::cell::RefCell::new(flate2::Decompress::new(false));
}

/// Inflates raw deflate `data` with `inflater` (reset first), refusing more
/// than `limit` bytes out ([`MAX_INFLATED`]) and malformed or truncated input.
fn inflate_with(
    inflater: &mut flate2::Decompress,
    data: &[u8],
    limit: u64,
) -> Result<Vec<u8>, Stop> {
    inflater.reset(false);
    // Deflated Automerge columns and changes usually inflate two to four
    // times over.
    let mut out: Vec<u8> = Vec::with_capacity(data.len().saturating_mul(3).max(64));
    loop {
        let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
        let read = usize::try_from(in_before).map_err(|_| Stop::Malformed)?;
        let status = inflater
            .decompress_vec(
                data.get(read..).ok_or(Stop::Malformed)?,
                &mut out,
                flate2::FlushDecompress::Finish,
            )
            .map_err(|_| Stop::Malformed)?;
        if out.len() as u64 > limit {
            return Err(Stop::Refused(format!(
                "a compressed part inflates to more than {limit} bytes"
            )));
        }
        if status == flate2::Status::StreamEnd {
            return Ok(out);
        }
        if out.len() == out.capacity() {
            // Out of room: more, up to one byte past the limit (which tells
            // a part at the limit from one over it).
            let left = usize::try_from(limit + 1 - out.len() as u64).unwrap_or(usize::MAX);
            let room = out.capacity().min(left);
            out.reserve(room.max(1));
        } else if inflater.total_in() >= data.len() as u64
            || (inflater.total_in(), inflater.total_out()) == (in_before, out_before)
        {
            // Room left and no end of stream: the input was cut short, or
            // the inflater can make nothing more of it.
            return Err(Stop::Malformed);
        }
    }
}

/// Counts the rows of one column (spec: column id << 4 | deflate << 3 | type).
fn column(spec: u64, data: &[u8]) -> Result<(), Stop> {
    // Automerge's column decoder reads some data this reader does not (fuzzing
    // found one that it then expanded without bound), so column data that does
    // not parse here is refused rather than left to Automerge.
    column_rows(spec, data).map_err(|stop| match stop {
        Stop::Malformed => Stop::Refused("malformed Automerge column data".into()),
        refused => refused,
    })
}

fn column_rows(spec: u64, data: &[u8]) -> Result<(), Stop> {
    let inflated;
    let data = if spec & 0b1000 != 0 {
        inflated = inflate(data)?;
        &inflated[..]
    } else {
        data
    };
    let too_many = || {
        Stop::Refused(format!(
            "a column holds more than {MAX_ROWS} rows; the record is too large"
        ))
    };
    let mut r = Reader(data);
    let mut rows: u64 = 0;
    let mut add = |n: u64| -> Result<(), Stop> {
        rows = rows.saturating_add(n);
        if rows > MAX_ROWS {
            Err(too_many())
        } else {
            Ok(())
        }
    };
    match spec & 0b111 {
        // Raw values: their lengths are in the metadata column.
        7 => Ok(()),
        // Booleans: alternating run lengths.
        4 => {
            while !r.0.is_empty() {
                add(r.uleb()?)?;
            }
            Ok(())
        }
        // Run-length encoded: group (0), actor (1), integer (2), delta (3),
        // string (5), value metadata (6).
        kind => {
            let skip_value = |r: &mut Reader<'_>| -> Result<u64, Stop> {
                match kind {
                    3 => r.sleb().map(|_| 0),
                    5 => {
                        let len = r.uleb()?;
                        r.take(len).map(|_| 0)
                    }
                    // A group's value is how many rows its nested columns have.
                    0 => r.uleb(),
                    _ => r.uleb().map(|_| 0),
                }
            };
            while !r.0.is_empty() {
                let count = r.sleb()?;
                if count > 0 {
                    add(count.unsigned_abs())?;
                    let v = skip_value(&mut r)?;
                    add(v.saturating_mul(count.unsigned_abs()))?;
                } else if count < 0 {
                    add(count.unsigned_abs())?;
                    for _ in 0..count.unsigned_abs() {
                        let v = skip_value(&mut r)?;
                        add(v)?;
                    }
                } else {
                    add(r.uleb()?)?;
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::{AutoCommit, ROOT, transaction::Transactable};

    /// A change large enough for Automerge to deflate, and a small one.
    fn changes() -> (automerge::Change, automerge::Change) {
        let mut doc = AutoCommit::new();
        for i in 0..40 {
            doc.put(ROOT, format!("field {i}"), format!("value {i}"))
                .expect("put");
        }
        doc.commit();
        doc.put(ROOT, "one", 1).expect("put");
        doc.commit();
        let mut all = doc.get_changes(&[]).into_iter();
        let large = all.next().expect("large");
        let small = all.next().expect("small");
        (large, small)
    }

    #[test]
    fn a_deflated_change_inflates_to_its_plain_bytes() {
        let (mut large, mut small) = changes();
        let deflated = large.bytes().to_vec();
        assert_eq!(deflated.get(8), Some(&2), "Automerge deflated it");
        assert!(deflated.len() < large.raw_bytes().len());
        assert_eq!(
            plain_change(deflated, &large.hash()).as_deref(),
            Some(large.raw_bytes())
        );
        // A plain change passes as it is.
        let as_kept = small.bytes().to_vec();
        assert_eq!(as_kept, small.raw_bytes(), "too small to deflate");
        assert_eq!(
            plain_change(small.raw_bytes().to_vec(), &small.hash()).as_deref(),
            Some(small.raw_bytes())
        );
    }

    #[test]
    fn one_inflater_per_thread_inflates_part_after_part_and_refuses_bad_ones() {
        use std::io::Write;
        let deflate = |data: &[u8]| {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(data).expect("deflate");
            e.finish().expect("deflate")
        };
        // Text, and zeros that inflate a thousandfold (the output grows many
        // times over from its first guess).
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| i.to_string().into_bytes())
            .collect();
        let zeros = vec![0u8; 1 << 20];
        let mut inflater = flate2::Decompress::new(false);
        for _ in 0..2 {
            assert_eq!(
                inflate_with(&mut inflater, &deflate(&text), MAX_INFLATED),
                Ok(text.clone())
            );
            assert_eq!(
                inflate_with(&mut inflater, &deflate(&zeros), MAX_INFLATED),
                Ok(zeros.clone())
            );
            assert_eq!(
                inflate_with(&mut inflater, &deflate(b""), MAX_INFLATED),
                Ok(Vec::new())
            );
            // Cut short, or not deflate at all: malformed, and the next part
            // inflates as if nothing had happened.
            let whole = deflate(&text);
            assert_eq!(
                inflate_with(&mut inflater, &whole[..whole.len() / 2], MAX_INFLATED),
                Err(Stop::Malformed)
            );
            assert_eq!(
                inflate_with(&mut inflater, &[0xff; 64], MAX_INFLATED),
                Err(Stop::Malformed)
            );
            assert_eq!(
                inflate_with(&mut inflater, &[], MAX_INFLATED),
                Err(Stop::Malformed)
            );
        }
        // At the limit it inflates; one byte over, it is refused.
        let limit = zeros.len() as u64;
        assert_eq!(
            inflate_with(&mut inflater, &deflate(&zeros), limit),
            Ok(zeros.clone())
        );
        let over = vec![0u8; zeros.len() + 1];
        assert!(matches!(
            inflate_with(&mut inflater, &deflate(&over), limit),
            Err(Stop::Refused(_))
        ));
        // The thread's own inflater, through `inflate`, twice.
        assert_eq!(inflate(&deflate(&text)), Ok(text.clone()));
        assert_eq!(inflate(&deflate(&text)), Ok(text));
    }

    #[test]
    fn anything_but_one_change_is_not_a_plain_change() {
        let (mut large, small) = changes();
        let deflated = large.bytes().to_vec();
        let mut two = small.raw_bytes().to_vec();
        two.extend_from_slice(small.raw_bytes());
        let mut damaged = deflated.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        damaged.truncate(last);
        // Each named with the hash its header carries, if any.
        for (bytes, hash) in [
            (Vec::new(), large.hash()),
            (b"not automerge".to_vec(), large.hash()),
            (two, small.hash()),
            (damaged, large.hash()),
            (AutoCommit::new().save(), large.hash()),
        ] {
            assert_eq!(plain_change(bytes.clone(), &hash), None, "{bytes:?}");
        }
        // Another change than the one named.
        assert_eq!(plain_change(deflated, &small.hash()), None);
    }
}
