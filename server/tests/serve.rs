//! `fieldsync serve` and `fieldsync migrate`, as real processes, on SQLite and
//! on a throwaway PostgreSQL cluster.

use fieldsync_test_support::{PgCluster, ServerProcess, fieldsync, http_get};

#[test]
fn serve_on_sqlite_creates_the_data_dir_answers_healthz_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = ServerProcess::spawn(&data, &[]);
    let (code, body) = http_get(&format!("{}/healthz", server.base)).expect("healthz");
    assert_eq!(code, 200);
    assert!(body.contains("\"database\":\"sqlite\""), "{body}");
    let (code, body) = http_get(&format!("{}/no/such/page", server.base)).expect("404");
    assert_eq!(code, 404);
    assert!(body.contains("\"code\":\"not_found\""), "{body}");
    assert!(
        data.join("fieldsync.db").is_file(),
        "database created on first run"
    );
    let status = server.interrupt();
    assert!(status.success(), "clean exit on Ctrl-C: {status}");

    // A second start reuses the same database (migrations already applied).
    let again = ServerProcess::spawn(&data, &[]);
    assert!(again.interrupt().success());
    let out = fieldsync(
        &["migrate", "--data-dir", data.to_str().expect("utf-8 path")],
        &[],
        None,
    );
    assert!(out.status.success());
    let applied = format!("{} migrations applied", migration_count("sqlite"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&applied),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn serve_on_postgres_answers_healthz_and_stops_on_ctrl_c() {
    let pg = PgCluster::shared();
    let url = pg.new_database();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::spawn(dir.path(), &["--database-url", &url]);
    let (code, body) = http_get(&format!("{}/healthz", server.base)).expect("healthz");
    assert_eq!(code, 200);
    assert!(body.contains("\"database\":\"postgres\""), "{body}");
    assert!(server.interrupt().success());
}

#[test]
fn migrate_twice_is_a_no_op_and_two_nodes_migrating_at_once_both_succeed() {
    let pg = PgCluster::shared();
    let url = pg.new_database();
    let nodes: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || fieldsync(&["migrate", "--database-url", &url], &[], None))
        })
        .collect();
    for node in nodes {
        let out = node.join().expect("thread");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = fieldsync(&["migrate", "--database-url", &url], &[], None);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!(
        "postgres database is up to date ({} migrations applied)",
        migration_count("postgres")
    )));
}

/// The pull's queries over a range of the change log are planned for their
/// parameters on every run on PostgreSQL (sent unnamed, never kept as prepared
/// statements): a generic plan of the feed query joins every change of the
/// range to every record of the caller's scope (the soak's p99 went from 0.1 s
/// to 1 s). Other statements keep theirs.
#[test]
fn postgres_plans_the_pulls_range_queries_for_their_parameters_every_time() {
    use fieldsync_core::model::{Actor, Role};
    use fieldsync_core::protocol::PullRequest;
    use fieldsync_core::{DeviceId, OrgId, UserId};

    let url = PgCluster::shared().new_database();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // One connection: the statements it keeps are the pulls'.
        let db = fieldsync_server::Database::connect(&url, 1)
            .await
            .expect("connect");
        db.migrate().await.expect("migrate");
        let caller = fieldsync_server::Caller {
            actor: Actor::on_device(UserId::new(), Role::Rep, DeviceId::new()),
            org: OrgId::new(),
            team: None,
            territory: None,
            display_name: "Rep".into(),
            actor_id: automerge::ActorId::random(),
            window: None,
        };
        // More runs than PostgreSQL's five before it may switch to a generic plan.
        for cursor in 0..8 {
            let req = PullRequest {
                cursor,
                max_changes: 100,
                window: None,
                health: None,
                log: None,
                history: None,
            };
            fieldsync_server::db::records::pull(&db, &caller, &req)
                .await
                .expect("pull");
        }
        let fieldsync_server::Database::Postgres(pool) = &db else {
            panic!("a PostgreSQL URL opens PostgreSQL");
        };
        let kept: Vec<String> = sqlx::query_scalar("SELECT statement FROM pg_prepared_statements")
            .fetch_all(pool)
            .await
            .expect("prepared statements");
        assert!(
            kept.iter().any(|s| s.contains("MAX(seq) FROM change_log")),
            "the log head's query is kept: {kept:?}"
        );
        for range in [
            "FROM change_log l",
            "scope_revocations",
            "scope_changes",
            "granted_seq",
        ] {
            assert!(
                !kept.iter().any(|s| s.contains(range)),
                "a pull query with {range:?} was kept as a prepared statement: {kept:?}"
            );
        }
    });
}

#[test]
fn a_bad_database_url_is_a_clear_error_not_a_panic() {
    let out = fieldsync(
        &["migrate", "--database-url", "mysql://root:pw@localhost/x"],
        &[],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unsupported database URL"), "{err}");
    assert!(!err.contains("pw@"), "the password is not printed: {err}");
    assert!(!err.contains("panicked"));
}

#[tokio::test]
async fn the_in_process_router_serves_healthz_on_a_loopback_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = fieldsync_server::Settings {
        data_dir: dir.path().join("data"),
        db_max_connections: 4,
        ..fieldsync_server::Settings::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fieldsync_server::launch_with_tcp_listener(
        settings,
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    let url = format!("http://{addr}/healthz");
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(resp) = reqwest::get(&url).await {
            answer = Some((resp.status().as_u16(), resp.text().await.expect("body")));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (code, body) = answer.expect("server answered");
    assert_eq!(code, 200);
    assert!(body.contains("\"status\":\"ok\""));
    stop.send(()).expect("stop");
    server.await.expect("join").expect("clean shutdown");
}

#[test]
fn healthz_answers_503_with_the_error_shape_when_the_database_is_gone() {
    let pg = PgCluster::shared();
    let url = pg.new_database();
    let name = url.rsplit('/').next().expect("database name").to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::spawn(dir.path(), &["--database-url", &url]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use sqlx::Connection;
        let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to the test cluster");
        // The name was made by the harness, never from input.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .expect("drop the server's database");
    });
    let (code, body) = http_get(&format!("{}/healthz", server.base)).expect("healthz answers");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"code\":\"database_unavailable\""), "{body}");
    assert!(!body.contains(&name), "no internals in the body: {body}");
    assert!(server.interrupt().success());
}

/// How many migrations the repository holds for `dialect`.
fn migration_count(dialect: &str) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(dialect);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "sql"))
        .count()
}
