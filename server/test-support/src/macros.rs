//! `on_both_databases!`: one scenario, a test on each database.

/// Makes, for each scenario function, a module named after it with two tests,
/// `on_sqlite` and `on_postgres` (so `cargo test <scenario>` runs both).
///
/// Three shapes, by what the scenarios take:
///
/// - `on_both_databases!(a, b);`: each `fn a(w: World)` gets a
///   [`World::start`](crate::World::start) on that database;
/// - `on_both_databases!(as_a_process: a, b);`: likewise with
///   [`World::start_process`](crate::World::start_process) (the server runs as
///   a `fieldsync serve` child process, e.g. to SIGKILL it);
/// - `on_both_databases!(with run: a, b);`: each test calls the test file's own
///   `run(backend, a)` with the [`Backend`](crate::Backend), for scenarios
///   that need a set-up of their own.
///
/// Scenario functions are looked up in the module that invokes the macro.
#[macro_export]
macro_rules! on_both_databases {
    (as_a_process: $($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn on_sqlite() {
                super::$scenario($crate::World::start_process($crate::Backend::Sqlite));
            }
            #[test]
            fn on_postgres() {
                super::$scenario($crate::World::start_process($crate::Backend::Postgres));
            }
        }
    )*};
    (with $run:ident: $($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn on_sqlite() {
                super::$run($crate::Backend::Sqlite, super::$scenario);
            }
            #[test]
            fn on_postgres() {
                super::$run($crate::Backend::Postgres, super::$scenario);
            }
        }
    )*};
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn on_sqlite() {
                super::$scenario($crate::World::start($crate::Backend::Sqlite));
            }
            #[test]
            fn on_postgres() {
                super::$scenario($crate::World::start($crate::Backend::Postgres));
            }
        }
    )*};
}
