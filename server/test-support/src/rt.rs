//! A small async runtime for tests that are otherwise blocking.

/// A current-thread runtime with I/O and time, for a test's own async calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}
