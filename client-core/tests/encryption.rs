//! Encryption at rest of the device store, on real files: what is on disk holds
//! no customer data, a wrong or missing key is a typed error that leaves the
//! file intact, and a store can be encrypted in place and rekeyed.
//!
//! The "no readable data" checks scan the raw bytes of the database file and of
//! its WAL for the customer's strings; each one runs against a plaintext store
//! too, where the same scan must find them, so the check is known to be able to
//! fail. (Only the account name and the visit notes serve as that control:
//! Automerge deflates a document's value column once it passes 256 bytes, so
//! the contact's name and email are not readable as such even in a plaintext
//! store. Compression is not protection; the encrypted store is scanned for
//! them all the same.)

#![cfg(feature = "device")]

use std::path::{Path, PathBuf};

use fieldsync_core::model::visit::Visit;
use fieldsync_core::model::{Account, Contact};
use fieldsync_core::{
    Actor, DeviceId, DeviceStore, DeviceTime, OrgId, RecordId, RecordMeta, Role, StoreError,
    StoreKey, StoreOptions, TeamId, TerritoryId, UserId,
};

const NAME: &str = "Zebra Pharmacy Ltd";
const CONTACT: &str = "Ottoline Quibbleworth";
const EMAIL: &str = "ottoline.quibbleworth@zebra-pharmacy.example";
const NOTES: &str = "Back door code 4471, ask for Ottoline";
const PLAIN_HEADER: &[u8] = b"SQLite format 3\0";

fn key(byte: u8) -> StoreKey {
    StoreKey::new([byte; StoreKey::LEN])
}

fn options(key: Option<StoreKey>) -> StoreOptions {
    StoreOptions {
        encryption_key: key,
        ..StoreOptions::default()
    }
}

struct Ids {
    account: RecordId,
    contact: RecordId,
    visit: RecordId,
}

/// An account, a contact and a visit with notes: the customer data to hide.
fn write_customer(store: &DeviceStore) -> Ids {
    let rep = Actor::on_device(UserId::new(), Role::Rep, DeviceId::new());
    let (org, team, territory) = (OrgId::new(), TeamId::new(), TerritoryId::new());
    let meta = || RecordMeta {
        id: RecordId::new(),
        org,
        owner: rep.user,
        team,
        territory,
    };
    let account = store
        .create(
            &Account {
                meta: meta(),
                name: NAME.into(),
                account_type: "outlet".into(),
                account_status: "active".into(),
                code: None,
                price_list_id: None,
                visit_frequency_days: None,
                locations: Default::default(),
            },
            DeviceTime::utc(1),
        )
        .expect("account");
    let contact = store
        .create(
            &Contact {
                meta: meta(),
                account_id: account,
                name: CONTACT.into(),
                role: Some("buyer".into()),
                phone: Some("+44 20 7946 0958".into()),
                email: Some(EMAIL.into()),
                marketing_consent: false,
                consent: None,
            },
            DeviceTime::utc(2),
        )
        .expect("contact");
    let start = 1_767_600_000_000;
    let visit = store
        .create_stateful(
            &Visit::planned(
                meta(),
                account,
                DeviceTime::utc(start),
                DeviceTime::utc(start + 3_600_000),
            ),
            &rep,
            DeviceTime::utc(3),
        )
        .expect("visit");
    store
        .update::<Visit>(visit, DeviceTime::utc(4), |v| v.notes = NOTES.into())
        .expect("notes");
    Ids {
        account,
        contact,
        visit,
    }
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// The raw bytes of the database file and, when there is one, its WAL.
fn files_on_disk(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![(
        "db".to_owned(),
        std::fs::read(path).expect("read the database file"),
    )];
    let wal = sidecar(path, "-wal");
    if wal.exists() {
        out.push(("wal".to_owned(), std::fs::read(wal).expect("read the WAL")));
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The customer strings found in `files` (name of file, string).
fn readable(files: &[(String, Vec<u8>)]) -> Vec<(String, &'static str)> {
    let mut found = Vec::new();
    for (name, bytes) in files {
        for s in [NAME, CONTACT, EMAIL, NOTES] {
            if contains(bytes, s) {
                found.push((name.clone(), s));
            }
        }
    }
    found
}

#[test]
fn an_encrypted_store_holds_no_readable_customer_data_in_its_file_or_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.db");
    let store = DeviceStore::open(&path, options(Some(key(1)))).expect("open");
    assert!(store.is_encrypted());
    write_customer(&store);

    // While open, the latest writes sit in the WAL.
    let open_files = files_on_disk(&path);
    assert!(
        open_files.iter().any(|(n, b)| n == "wal" && !b.is_empty()),
        "the store runs in WAL mode, so the WAL must be checked too"
    );
    assert_eq!(readable(&open_files), vec![], "while open");
    drop(store);

    // Closed: checkpointed into the database file.
    let closed_files = files_on_disk(&path);
    assert_eq!(readable(&closed_files), vec![], "after close");
    let db = &closed_files[0].1;
    assert!(db.len() >= 4096, "the data is in the file");
    assert!(
        !db.starts_with(PLAIN_HEADER),
        "an encrypted file has no SQLite header"
    );
}

#[test]
fn a_plaintext_store_shows_the_same_data_so_the_scan_can_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.db");
    let store = DeviceStore::open(&path, options(None)).expect("open");
    assert!(!store.is_encrypted());
    write_customer(&store);
    let open_files = files_on_disk(&path);
    let found = readable(&open_files);
    for s in [NAME, NOTES] {
        assert!(
            found.iter().any(|(_, f)| *f == s),
            "{s:?} should be readable in a plaintext store: {found:?}"
        );
    }
    drop(store);
    let closed_files = files_on_disk(&path);
    assert!(closed_files[0].1.starts_with(PLAIN_HEADER));
    let found = readable(&closed_files);
    for s in [NAME, NOTES] {
        assert!(found.contains(&("db".to_owned(), s)), "{s:?} in the file");
    }
}

#[test]
fn the_right_key_reads_everything_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.db");
    let ids = {
        let store = DeviceStore::open(&path, options(Some(key(1)))).expect("open");
        write_customer(&store)
    };
    let store = DeviceStore::open(&path, options(Some(key(1)))).expect("reopen");
    assert_eq!(
        store.read::<Account>(ids.account).expect("account").name,
        NAME
    );
    let contact = store.read::<Contact>(ids.contact).expect("contact");
    assert_eq!(
        (contact.name.as_str(), contact.email.as_deref()),
        (CONTACT, Some(EMAIL))
    );
    assert_eq!(
        store
            .read_stateful::<Visit>(ids.visit)
            .expect("visit")
            .notes,
        NOTES
    );
    assert_eq!(store.pending_changes().expect("outbox"), 4);
}

/// Every way of opening with the wrong key, while `path` is as `write` left it.
fn assert_refused_then_opens(path: &Path) {
    let before = std::fs::read(path).expect("read");
    assert!(matches!(
        DeviceStore::open(path, options(Some(key(2)))),
        Err(StoreError::WrongKey)
    ));
    assert!(matches!(
        DeviceStore::open(path, options(None)),
        Err(StoreError::KeyRequired)
    ));
    assert_eq!(
        std::fs::read(path).expect("read"),
        before,
        "refusals write nothing"
    );
    let store = DeviceStore::open(path, options(Some(key(1)))).expect("the right key still opens");
    assert_eq!(store.pending_changes().expect("outbox"), 4);
}

#[test]
fn a_wrong_or_missing_key_is_a_typed_error_and_leaves_the_file_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.db");
    {
        let store = DeviceStore::open(&path, options(Some(key(1)))).expect("open");
        write_customer(&store);
    }
    assert_refused_then_opens(&path);
    let err = DeviceStore::open(&path, options(Some(key(9)))).expect_err("wrong key");
    assert_eq!(
        err.to_string(),
        "the device store could not be decrypted: wrong key or not a Fieldsync store"
    );
    assert!(!err.retryable());
}

#[test]
fn a_wrong_key_while_another_connection_holds_a_live_wal_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.db");
    let writer = DeviceStore::open(&path, options(Some(key(1)))).expect("open");
    let ids = write_customer(&writer);
    let wal = std::fs::read(sidecar(&path, "-wal")).expect("wal");
    assert!(matches!(
        DeviceStore::open(&path, options(Some(key(2)))),
        Err(StoreError::WrongKey)
    ));
    assert_eq!(std::fs::read(sidecar(&path, "-wal")).expect("wal"), wal);
    assert_eq!(
        writer.read::<Account>(ids.account).expect("read").name,
        NAME
    );
    drop(writer);
    assert_refused_then_opens(&path);
}

#[test]
fn a_plaintext_store_opened_with_a_key_says_it_is_not_encrypted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.db");
    {
        let store = DeviceStore::open(&path, options(None)).expect("open");
        write_customer(&store);
    }
    let err = DeviceStore::open(&path, options(Some(key(1)))).expect_err("not encrypted");
    assert!(matches!(err, StoreError::NotEncrypted), "{err}");
    let store = DeviceStore::open(&path, options(None)).expect("still opens without a key");
    assert_eq!(store.pending_changes().expect("outbox"), 4);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_with_or_without_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.db");
    std::fs::write(&path, vec![0x5a; 8192]).expect("write");
    assert!(matches!(
        DeviceStore::open(&path, options(Some(key(1)))),
        Err(StoreError::WrongKey)
    ));
    assert!(matches!(
        DeviceStore::open(&path, options(None)),
        Err(StoreError::KeyRequired)
    ));
    assert_eq!(std::fs::read(&path).expect("read"), vec![0x5a; 8192]);
}

#[test]
fn a_plaintext_store_is_encrypted_in_place_with_everything_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.db");
    let (ids, actor) = {
        let store = DeviceStore::open(&path, options(None)).expect("open");
        (write_customer(&store), store.actor_id())
    };
    DeviceStore::encrypt_in_place(&path, &key(1)).expect("encrypt");
    assert!(!sidecar(&path, ".encrypting").exists());
    assert_eq!(readable(&files_on_disk(&path)), vec![]);
    assert!(matches!(
        DeviceStore::open(&path, options(None)),
        Err(StoreError::KeyRequired)
    ));
    let store = DeviceStore::open(&path, options(Some(key(1)))).expect("open with the key");
    assert_eq!(
        store.read::<Account>(ids.account).expect("account").name,
        NAME
    );
    assert_eq!(
        store
            .read_stateful::<Visit>(ids.visit)
            .expect("visit")
            .notes,
        NOTES
    );
    assert_eq!(store.pending_changes().expect("outbox"), 4);
    assert_eq!(store.actor_id(), actor, "sync metadata came along");
    drop(store);
    // Encrypting twice is refused rather than double-encrypting.
    assert!(matches!(
        DeviceStore::encrypt_in_place(&path, &key(1)),
        Err(StoreError::KeyRequired)
    ));
}

#[test]
fn rekey_moves_the_store_to_a_new_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("device.db");
    let ids = {
        let store = DeviceStore::open(&path, options(Some(key(1)))).expect("open");
        let ids = write_customer(&store);
        store.rekey(&key(3)).expect("rekey");
        // Still usable after the rekey, and later writes use the new key.
        store
            .update::<Account>(ids.account, DeviceTime::utc(5), |a| {
                a.account_status = "inactive".into()
            })
            .expect("edit after rekey");
        ids
    };
    assert!(matches!(
        DeviceStore::open(&path, options(Some(key(1)))),
        Err(StoreError::WrongKey)
    ));
    let store = DeviceStore::open(&path, options(Some(key(3)))).expect("new key");
    let account = store.read::<Account>(ids.account).expect("account");
    assert_eq!(
        (account.name.as_str(), account.account_status.as_str()),
        (NAME, "inactive")
    );
    drop(store);
    assert_eq!(readable(&files_on_disk(&path)), vec![]);

    let plain = DeviceStore::open(dir.path().join("plain.db"), options(None)).expect("plain");
    assert!(matches!(
        plain.rekey(&key(3)),
        Err(StoreError::NotEncrypted)
    ));
}
