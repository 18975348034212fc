//! Encryption at rest of the device store (SQLCipher).
//!
//! The store is built on SQLCipher, which encrypts every page of the database
//! file and of its WAL with AES-256 (a random IV per page and an HMAC per page),
//! so the file on disk reads as random bytes, header included. Temporary tables
//! and sort spills stay in memory (`SQLITE_TEMP_STORE=2` in the bundled build),
//! so no plaintext goes to temporary files either.
//!
//! The app provides the key ([`StoreKey`], 32 random bytes it keeps in the
//! Android Keystore or the iOS Keychain). It is handed to SQLCipher as a *raw*
//! key (`PRAGMA key = "x'<64 hex digits>'"`), which skips SQLCipher's PBKDF2: the
//! key is already random, so stretching it would only slow every open by tens of
//! milliseconds. The key must be the first statement on a connection; [`apply`]
//! runs it, then [`verify`] reads the schema so that a wrong key fails at open,
//! with [`StoreError::WrongKey`], rather than on the first query.
//!
//! A wrong key never writes: SQLCipher cannot decrypt page 1, so SQLite never
//! learns the file is in WAL mode, never replays or checkpoints the WAL, and the
//! file stays as it was for the next open with the right key.
//!
//! Limits: the key's copies this crate makes (the bytes, the hex text, the
//! pragma's SQL) are zeroed when dropped, but SQLite's own copy of the SQL text
//! and SQLCipher's key schedule live in memory the crate does not control for as
//! long as the store is open.

use std::io::Read;
use std::path::Path;

use rusqlite::{Connection, ErrorCode};
use zeroize::Zeroizing;

use super::StoreError;

/// A key for the device store: 32 raw bytes (AES-256), zeroed when dropped.
///
/// Make it once per install from a secure random source and keep it in the
/// platform's key store; never derive it from something guessable. Its `Debug`
/// prints no key material.
#[derive(Clone)]
pub struct StoreKey(Zeroizing<[u8; StoreKey::LEN]>);

impl StoreKey {
    /// Length of a key in bytes.
    pub const LEN: usize = 32;

    /// A key from its 32 bytes.
    pub fn new(bytes: [u8; Self::LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A key from a slice, which must be exactly [`StoreKey::LEN`] bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() != Self::LEN {
            return Err(StoreError::KeyLength { found: bytes.len() });
        }
        let mut key = Zeroizing::new([0u8; Self::LEN]);
        key.copy_from_slice(bytes);
        Ok(Self(key))
    }

    /// The SQL that hands the key to SQLCipher under `pragma` (`key` or `rekey`).
    fn pragma(&self, pragma: &str) -> Zeroizing<String> {
        let hex = Zeroizing::new(hex::encode(self.0.as_slice()));
        Zeroizing::new(format!("PRAGMA {pragma} = \"x'{}'\";", hex.as_str()))
    }

    /// `ATTACH ... KEY` for [`super::DeviceStore::encrypt_in_place`].
    pub(super) fn attach_clause(&self) -> Zeroizing<String> {
        let hex = Zeroizing::new(hex::encode(self.0.as_slice()));
        Zeroizing::new(format!("KEY \"x'{}'\"", hex.as_str()))
    }
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(<redacted>)")
    }
}

/// Hands `key` to SQLCipher. Must run before anything else on `conn`.
pub(super) fn apply(conn: &Connection, key: &StoreKey) -> Result<(), StoreError> {
    conn.execute_batch(&key.pragma("key"))?;
    Ok(())
}

/// Changes the key of an open, encrypted database (every page is rewritten).
pub(super) fn rekey(conn: &Connection, key: &StoreKey) -> Result<(), StoreError> {
    conn.execute_batch(&key.pragma("rekey"))?;
    Ok(())
}

/// The first 16 bytes of every plaintext SQLite file.
const PLAIN_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Reads page 1, so that a file the connection cannot decrypt fails here with a
/// clear error instead of on the first query. `path` is `None` in memory.
pub(super) fn verify(
    conn: &Connection,
    path: Option<&Path>,
    keyed: bool,
) -> Result<(), StoreError> {
    let err = match conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    if err.sqlite_error_code() != Some(ErrorCode::NotADatabase) {
        return Err(err.into());
    }
    Err(match (keyed, path.is_some_and(is_plaintext)) {
        (true, true) => StoreError::NotEncrypted,
        (true, false) => StoreError::WrongKey,
        (false, _) => StoreError::KeyRequired,
    })
}

/// Whether the file at `path` starts like a plaintext SQLite database.
fn is_plaintext(path: &Path) -> bool {
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok_and(|()| &header == PLAIN_HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_must_be_32_bytes_and_its_debug_shows_none_of_them() {
        assert!(matches!(
            StoreKey::from_slice(&[7; 31]),
            Err(StoreError::KeyLength { found: 31 })
        ));
        assert!(matches!(
            StoreKey::from_slice(&[]),
            Err(StoreError::KeyLength { found: 0 })
        ));
        let key = StoreKey::from_slice(&[0xab; 32]).expect("32 bytes");
        let shown = format!("{key:?}");
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    }

    #[test]
    fn the_pragma_is_a_raw_hex_key() {
        let key = StoreKey::new([0x0f; 32]);
        assert_eq!(
            key.pragma("key").as_str(),
            format!("PRAGMA key = \"x'{}'\";", "0f".repeat(32))
        );
    }
}
