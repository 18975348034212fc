//! # fieldsync-ffi
//!
//! The uniffi bindings of `fieldsync-core` for Kotlin (Android), Swift (iOS) and
//! Python. This crate only adapts: flat records and enums, one flat error enum,
//! synchronous functions that apps call off the main thread.
//!
//! An app holds one [`FieldsyncClient`]: it opens the device store, logs in,
//! makes records through domain actions (check in, order lines, assignment
//! steps, checklists), lists what a field app shows, and syncs with a progress
//! [`SyncListener`] the app implements. Every failure is one [`FieldsyncError`].
//! docs/mobile.md shows it from Kotlin, Swift and Python.

uniffi::setup_scaffolding!();

mod client;
mod error;
mod screens;
mod types;
mod van;

pub use client::{FieldsyncClient, SyncListener};
pub use error::FieldsyncError;
pub use types::*;

/// The version of the Fieldsync core compiled into this library.
#[uniffi::export]
pub fn core_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exported_version_is_the_crate_version() {
        assert_eq!(super::core_version(), env!("CARGO_PKG_VERSION"));
    }

    fn offline_client() -> (tempfile::TempDir, std::sync::Arc<FieldsyncClient>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        let c = FieldsyncClient::open(
            path.display().to_string(),
            "http://127.0.0.1:9".into(),
            None,
        )
        .expect("open");
        (dir, c)
    }

    #[test]
    fn actions_before_login_say_so_and_bad_ids_are_invalid_arguments() {
        let (_dir, c) = offline_client();
        assert!(c.session().is_none());
        assert!(matches!(
            c.create_account("x".into(), None),
            Err(FieldsyncError::NotLoggedIn)
        ));
        assert!(matches!(
            c.visit("not-a-uuid".into()),
            Err(FieldsyncError::InvalidArgument { .. })
        ));
        assert!(matches!(
            c.order("0190a000-0000-7000-8000-000000000000".into()),
            Err(FieldsyncError::NotFound { .. })
        ));
        assert_eq!(c.pending_changes().expect("count"), 0);
    }

    #[test]
    fn an_unreachable_server_is_a_network_error_and_nothing_is_lost() {
        let (_dir, c) = offline_client();
        let err = c
            .login(
                "demo".into(),
                "rep1@demo.example".into(),
                "fieldsync-demo".into(),
                "test".into(),
                "0".into(),
            )
            .expect_err("nothing listens on port 9");
        assert!(matches!(err, FieldsyncError::Network { .. }), "{err}");
        assert!(matches!(c.sync(None), Err(FieldsyncError::NotLoggedIn)));
    }

    #[test]
    fn an_encrypted_store_needs_its_key_and_a_key_must_be_32_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db").display().to_string();
        let url = || "http://127.0.0.1:9".to_owned();
        let open = |key: Option<Vec<u8>>| FieldsyncClient::open(path.clone(), url(), key);

        let err = open(Some(vec![1; 16])).expect_err("short key");
        assert!(
            matches!(&err, FieldsyncError::InvalidArgument { detail } if detail.contains("32 bytes")),
            "{err}"
        );
        drop(open(Some(vec![1; 32])).expect("creates an encrypted store"));
        let err = open(Some(vec![2; 32])).expect_err("wrong key");
        assert!(
            matches!(&err, FieldsyncError::Encryption { detail } if detail.contains("wrong key")),
            "{err}"
        );
        let err = open(None).expect_err("no key");
        assert!(matches!(err, FieldsyncError::Encryption { .. }), "{err}");
        let c = open(Some(vec![1; 32])).expect("the right key");
        assert_eq!(c.pending_changes().expect("count"), 0);
    }
}
