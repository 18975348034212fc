//! Test support shared by the server's integration tests and benchmarks.
//!
//! - [`PgCluster`]: a throwaway PostgreSQL cluster (the local `initdb`/`pg_ctl`),
//!   one per test binary, a fresh database per test.
//! - [`ServerProcess`], [`fieldsync`]: the real `fieldsync` binary as a child
//!   process; [`S3Server`]: a real S3-compatible store (moto) on loopback.
//! - [`World`]: the server (in this process, or as a child process) on SQLite
//!   or PostgreSQL ([`Backend`]), with a seeded organisation of [`Person`]s and
//!   [`Device`]s that are real `fieldsync-core` clients over a [`Faulty`]
//!   transport; [`Node`]: the server in this process on a loopback port.
//! - [`on_both_databases!`]: one scenario, a test on each database.
//! - [`FaultyProxy`]: a loopback HTTP proxy that resets, loses, truncates,
//!   duplicates and delays requests between devices and the server, seeded.
//! - [`Browser`]: headless chromium for the managers' pages; [`http`] and
//!   [`sign_in`] for the pages over plain HTTP.
//! - Small helpers: loopback ports and GETs, times, minted tokens, photos.
//!
//! Nothing here skips a test: a missing PostgreSQL, moto or binary fails it,
//! saying how to install what is missing. Everything the crate uses of the
//! server's API is in its `server` module.

mod backend;
mod bench;
mod blobs;
mod browser;
mod device;
mod faulty;
mod jwt;
mod macros;
mod net;
mod node;
mod pg;
mod process;
mod proxy;
mod rt;
mod s3;
mod server;
mod threads;
mod time;
mod world;

pub use backend::Backend;
pub use bench::{VISIT_EDITS, bench_rep, bench_size, bench_tiny, bench_visit, machine_gauge};
pub use blobs::{photo, sha256_hex};
pub use browser::{
    Browser, LOGIN_CSRF_COOKIE, Reply, SESSION_COOKIE, api, choose_label, cookie_pair, csrf_of,
    fill_login, fill_login_of, http, open, settled, sign_in, source_says, submit, text_says,
    type_into,
};
pub use device::{Device, fast_options};
pub use faulty::Faulty;
pub use jwt::{b64url, configured_kid, sign_jwt};
pub use net::{free_port, http_get, wait_healthy};
pub use node::Node;
pub use pg::PgCluster;
pub use process::{ServerProcess, fieldsync, server_binary};
pub use proxy::{FaultMix, FaultyProxy, ProxyCounts};
pub use rt::runtime;
pub use s3::S3Server;
pub use threads::in_parallel;
pub use time::{today, unix_now};
pub use world::{ORG, PASSWORD, Person, SECRET, World};
