//! # fieldsync-ffi
//!
//! The uniffi bindings of `fieldsync-core` for Kotlin (Android), Swift (iOS) and
//! Python. This crate only adapts: flat records and enums, one flat error enum,
//! synchronous functions that apps call off the main thread. The exported app
//! API (store, records, domain actions, sync) arrives with the bindings issue; for
//! now the crate exports the core's version so the build and the scaffolding are
//! exercised from the start.

uniffi::setup_scaffolding!();

/// The version of the Fieldsync core compiled into this library.
#[uniffi::export]
pub fn core_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_exported_version_is_the_crate_version() {
        assert_eq!(super::core_version(), env!("CARGO_PKG_VERSION"));
    }
}
