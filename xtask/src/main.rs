//! `cargo xtask`: the project's one entry point for checks and tests.
//!
//! `cargo xtask test` is the command in the README and the one CI runs
//! (`.ci/run`). It first makes sure every tool the tests need is installed,
//! installing what is missing from Debian's packages, npm or PyPI, then runs the
//! format check, clippy, the server's layering check ([`layers`]), a build of
//! the model without I/O, and every test suite. It prints what it does as it goes.
//!
//! Prerequisites are listed in one table ([`prerequisites`]); a suite that needs a
//! new tool adds a row there, so the README command stays the only one a newcomer
//! runs.

mod layers;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  test            install missing test prerequisites, then run fmt check, clippy and all tests
  test --no-lint  the same without the fmt and clippy checks
  test-bindings   only the binding tests: build the native library, the generator and the
                  server, then run the Python and Kotlin tests against a live server
  deps            only install the missing test prerequisites
  layers          check server/src against the layering rules (layers, forbidden crates,
                  private modules, import cycles); see xtask/src/layers/rules.rs
  bindings        generate the Kotlin, Swift and Python bindings into target/bindings
  bench           run the benchmarks (release builds) and print their tables
  soak [--minutes N] [--seeds N]
                  the long fault runs (release builds): the seeded simulation of devices
                  syncing through a faulty network, N seeds (default 10,000; a failing
                  seed is printed and replays alone, see client-core/tests/simulation.rs),
                  then the server killed 300 times under 16 syncing devices, 1,000 sync
                  rounds through a flaky proxy, PostgreSQL restarts, the app killed during
                  its syncs, and the soak: 1,000 devices editing with live connections for
                  N minutes (default 60), on both databases
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("test-bindings") => test_bindings(),
        Some("deps") => ensure_prerequisites(),
        Some("layers") => layering_check(&workspace_root()),
        Some("bench") => bench(),
        Some("soak") => soak(&args[1..]),
        Some("bindings") => generate_bindings(&workspace_root(), true).map(|_| ()),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn test(args: &[String]) -> Result<()> {
    let lint = !args.iter().any(|a| a == "--no-lint");
    let started = Instant::now();
    ensure_prerequisites()?;
    let root = workspace_root();
    if lint {
        step(
            "format check",
            cargo(&root, &["fmt", "--all", "--", "--check"]),
        )?;
        step(
            "clippy",
            cargo(
                &root,
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            ),
        )?;
    }
    // Cheap and independent of the lints, so they run with --no-lint too.
    layering_check(&root)?;
    step(
        "model builds without I/O (fieldsync-core --no-default-features)",
        cargo(
            &root,
            &[
                "check",
                "-p",
                "fieldsync-core",
                "--no-default-features",
                "--lib",
            ],
        ),
    )?;
    // Build every target once, with the feature set the test run uses (dev
    // dependencies included), so the tests, the native library and the
    // generator below all reuse the same compiled dependencies.
    step(
        "build every target",
        cargo(
            &root,
            &[
                "build",
                "--workspace",
                "--all-targets",
                "--features",
                BINDGEN_FEATURE,
            ],
        ),
    )?;
    step(
        "Rust tests (all crates)",
        cargo(
            &root,
            &[
                "test",
                "--workspace",
                "--no-fail-fast",
                "--features",
                BINDGEN_FEATURE,
            ],
        ),
    )?;
    // Every bench once, at a tiny size, from this debug build: a bench that
    // stops working fails here, not in a release run that nobody makes.
    let mut args = vec!["test", "--workspace", "--features", BINDGEN_FEATURE];
    let names = bench_names(&root)?;
    for name in &names {
        args.extend(["--bench", name.as_str()]);
    }
    let mut benches = cargo(&root, &args);
    benches.env("FIELDSYNC_BENCH_TINY", "1");
    step(
        &format!("every benchmark once at a tiny size ({})", names.join(", ")),
        benches,
    )?;
    binding_tests(&root)?;
    println!("xtask: all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// `cargo xtask test-bindings`: what the binding tests need from the full
/// run's build step (the cdylib, `uniffi-bindgen` and the `fieldsync`
/// server binary, in the same debug profile), then the tests themselves.
fn test_bindings() -> Result<()> {
    let started = Instant::now();
    ensure_prerequisites()?;
    let root = workspace_root();
    step(
        "build the native library, uniffi-bindgen and the server",
        cargo(
            &root,
            &["build", "--workspace", "--features", BINDGEN_FEATURE],
        ),
    )?;
    binding_tests(&root)?;
    println!("xtask: binding tests passed in {:.0?}", started.elapsed());
    Ok(())
}

/// The name of every bench target: the files of each member's `benches/`.
fn bench_names(root: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for member in ["client-core", "server", "bindings"] {
        let dir = root.join(member).join("benches");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading {}", dir.display()))?
                .path();
            if path.extension().is_some_and(|e| e == "rs")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                names.push(stem.to_owned());
            }
        }
    }
    names.sort();
    if names.is_empty() {
        bail!("no benches found under */benches");
    }
    Ok(names)
}

/// The server's and the core's layering (see `layers`), checked in-process
/// and printed like a step.
fn layering_check(root: &Path) -> Result<()> {
    for (name, src, rules) in [
        (
            "layering check (server/src)",
            "server/src",
            layers::Rules::server(),
        ),
        (
            "layering check (client-core/src)",
            "client-core/src",
            layers::Rules::client_core(),
        ),
    ] {
        println!("\nxtask: ==> {name}");
        let started = Instant::now();
        let report = layers::check(root, Path::new(src), &rules)?;
        print!("{report}");
        if !report.passed() {
            bail!(
                "{name} failed ({}; the rules are in xtask/src/layers/rules.rs)",
                layers::violations(report.violations.len())
            );
        }
        println!("xtask: <== {name} ok ({:.0?})", started.elapsed());
    }
    Ok(())
}

fn bench() -> Result<()> {
    let root = workspace_root();
    step(
        "device store benchmark",
        cargo(
            &root,
            &["bench", "-p", "fieldsync-core", "--bench", "store"],
        ),
    )?;
    step(
        "erasure benchmark (the rewrite's model costs)",
        cargo(
            &root,
            &["bench", "-p", "fieldsync-core", "--bench", "erase"],
        ),
    )?;
    step(
        "erasure benchmark: what erasing one contact costs the devices",
        cargo(
            &root,
            &["bench", "-p", "fieldsync-server", "--bench", "erasure"],
        ),
    )?;
    step(
        "the server's CPU per pushed record, step by step",
        cargo(
            &root,
            &["bench", "-p", "fieldsync-server", "--bench", "merge"],
        ),
    )?;
    // Starts a throwaway PostgreSQL cluster like the tests do.
    step(
        "end-to-end sync benchmark (SQLite and PostgreSQL)",
        cargo(
            &root,
            &["bench", "-p", "fieldsync-server", "--bench", "sync"],
        ),
    )?;
    step(
        "live channel benchmark (SQLite and PostgreSQL)",
        cargo(
            &root,
            &["bench", "-p", "fieldsync-server", "--bench", "live"],
        ),
    )?;
    step(
        "attachment upload benchmark (SQLite and PostgreSQL)",
        cargo(
            &root,
            &["bench", "-p", "fieldsync-server", "--bench", "attachments"],
        ),
    )?;
    step(
        "morning rush benchmark: 1,000 devices reconnecting (SQLite and PostgreSQL)",
        cargo(
            &root,
            &["bench", "-p", "fieldsync-server", "--bench", "rush"],
        ),
    )
}

/// `cargo xtask soak`: the fault runs at full length. `cargo xtask test` runs
/// the same code briefly (the simulation's default seed count).
fn soak(args: &[String]) -> Result<()> {
    const SOAK_USAGE: &str = "usage: cargo xtask soak [--minutes N] [--seeds N]";
    let (mut seeds, mut minutes) = (10_000_u64, 60_u64);
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let slot = match flag.as_str() {
            "--seeds" => &mut seeds,
            "--minutes" => &mut minutes,
            _ => bail!("{SOAK_USAGE}"),
        };
        let n = rest
            .next()
            .with_context(|| format!("{flag} takes a number\n{SOAK_USAGE}"))?;
        *slot = n
            .parse::<u64>()
            .with_context(|| format!("{flag} takes a number, not {n:?}"))?;
    }
    let root = workspace_root();
    let mut sim = cargo(
        &root,
        &[
            "test",
            "--release",
            "-p",
            "fieldsync-core",
            "--test",
            "simulation",
            "--",
            "--nocapture",
        ],
    );
    sim.env("FIELDSYNC_SIM_SEEDS", seeds.to_string());
    step(
        &format!("seeded simulation: {seeds} seeds of devices syncing through faults"),
        sim,
    )?;
    // The server's own fault scenarios at full length, on both databases.
    let mut faults = cargo(
        &root,
        &[
            "test",
            "--release",
            "-p",
            "fieldsync-server",
            "--test",
            "sync",
            "--",
            "--nocapture",
            "--test-threads",
            "1",
            "killed_mid_write",
            "flaky_network",
            "postgres_restart",
        ],
    );
    faults.env("FIELDSYNC_KILL_ROUNDS", "300");
    faults.env("FIELDSYNC_FLAKY_ROUNDS", "1000");
    step(
        "server kill loop (300 kills), flaky network (1,000 sync rounds), PostgreSQL restarts",
        faults,
    )?;
    // The long soak, one database after the other (each at its own steady
    // load): 1,000 devices, one edit every 10 s each, live connections open.
    let mut long = cargo(
        &root,
        &[
            "test",
            "--release",
            "-p",
            "fieldsync-server",
            "--test",
            "soak",
            "--",
            "--nocapture",
            "--test-threads",
            "1",
        ],
    );
    long.env("FIELDSYNC_SOAK_DEVICES", "1000");
    long.env("FIELDSYNC_SOAK_SECS", (minutes * 60).to_string());
    long.env("FIELDSYNC_SOAK_EDIT_EVERY_SECS", "10");
    step(
        &format!(
            "the app killed during its syncs; soak: 1,000 devices with live connections, \
             {minutes} minutes per database"
        ),
        long,
    )
}

fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args).current_dir(root);
    cmd
}

fn step(name: &str, mut cmd: Command) -> Result<()> {
    println!("\nxtask: ==> {name}");
    let started = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("could not start {name}"))?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    println!("xtask: <== {name} ok ({:.0?})", started.elapsed());
    Ok(())
}

/// Where the generated bindings go.
struct Bindings {
    dir: PathBuf,
    library: PathBuf,
}

/// Builds the native library and generates the Kotlin, Swift and Python bindings
/// from it with the workspace's own `uniffi-bindgen`.
fn generate_bindings(root: &Path, build: bool) -> Result<Bindings> {
    if build {
        step(
            "build the native library and uniffi-bindgen",
            cargo(
                root,
                &["build", "--workspace", "--features", BINDGEN_FEATURE],
            ),
        )?;
    }
    let target = target_dir(root);
    let library = target.join("debug").join("libfieldsync_ffi.so");
    let dir = target.join("bindings");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    for language in ["kotlin", "swift", "python"] {
        let mut cmd = Command::new(target.join("debug").join("uniffi-bindgen"));
        cmd.args(["generate", "--no-format", "-l", language, "-o"])
            .arg(dir.join(language))
            .arg(&library)
            .current_dir(root.join("bindings"));
        step(&format!("generate {language} bindings"), cmd)?;
    }
    println!("xtask: bindings are in {}", dir.display());
    Ok(Bindings { dir, library })
}

fn target_dir(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Runs the Python and Kotlin binding tests against the generated bindings and
/// the real native library.
/// Expects the library and the generator built by the test run's build step.
fn binding_tests(root: &Path) -> Result<()> {
    let b = generate_bindings(root, false)?;
    let lib_dir = b
        .library
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let server = LiveServer::start(root, &lib_dir.join("fieldsync"))?;
    let py = b.dir.join("python");
    std::fs::copy(&b.library, py.join("libfieldsync_ffi.so"))
        .context("copying the library next to the Python module")?;
    let mut python = Command::new("python3");
    python
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(root.join("bindings/tests/python"))
        .env("PYTHONPATH", &py)
        .envs(server.env())
        .current_dir(root);
    step("Python binding tests", python)?;

    let kotlinc = find_kotlinc().context("kotlinc not found after installing kotlin-compiler")?;
    let jar = b.dir.join("kotlin-tests.jar");
    let mut compile = Command::new(kotlinc);
    compile
        .arg("-nowarn")
        .arg("-include-runtime")
        .arg("-cp")
        .arg(JNA_JAR)
        .arg("-d")
        .arg(&jar);
    for dir in [b.dir.join("kotlin"), root.join("bindings/tests/kotlin")] {
        for file in kotlin_files(&dir)? {
            compile.arg(file);
        }
    }
    step("compile the Kotlin binding tests", compile)?;
    for main in kotlin_mains(&root.join("bindings/tests/kotlin"))? {
        let mut run = Command::new("java");
        run.arg(format!("-Djna.library.path={}", lib_dir.display()))
            .arg("-cp")
            .arg(format!("{}:{JNA_JAR}", jar.display()))
            .arg(&main)
            .envs(server.env())
            .current_dir(root);
        step(&format!("Kotlin binding test {main}"), run)?;
    }
    drop(server);
    Ok(())
}

/// A real `fieldsync serve` for the binding tests, on the embedded SQLite in a
/// fresh directory under `target/`, seeded with `fieldsync demo` (a manager,
/// reps and technicians with the password `fieldsync-demo`). Stopped on drop.
struct LiveServer {
    child: std::process::Child,
    url: String,
}

impl LiveServer {
    fn start(root: &Path, bin: &Path) -> Result<LiveServer> {
        let dir = root.join("target/binding-tests-server");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        let mut demo = Command::new(bin);
        demo.arg("demo")
            .arg("--data-dir")
            .arg(&dir)
            .env("FIELDSYNC_LOG", "warn");
        step("seed the demo organisation for the binding tests", demo)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
        println!("\nxtask: ==> start fieldsync serve on 127.0.0.1:{port}");
        let child = Command::new(bin)
            .arg("serve")
            // The demo's password is public: a plain `serve` refuses its database.
            .arg("--demo")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&dir)
            // Every binding test signs its devices in from this one address
            // within a minute or two: the per-address and per-account login
            // limits (a defence against password guessing) are off here.
            .arg("--logins-per-minute-per-address")
            .arg("0")
            .arg("--logins-per-minute")
            .arg("0")
            .env("FIELDSYNC_LOG", "warn")
            .spawn()
            .with_context(|| format!("could not start {}", bin.display()))?;
        let server = LiveServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while !healthy(port) {
            if started.elapsed() > std::time::Duration::from_secs(30) {
                bail!("fieldsync serve did not answer /healthz within 30 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        println!("xtask: <== server ready at {}", server.url);
        Ok(server)
    }

    /// What the tests read: the server and the demo logins.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FIELDSYNC_TEST_URL", self.url.clone()),
            ("FIELDSYNC_TEST_ORG", "demo".into()),
            ("FIELDSYNC_TEST_PASSWORD", "fieldsync-demo".into()),
        ]
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// The bindings crate's feature that builds the workspace-local `uniffi-bindgen`.
const BINDGEN_FEATURE: &str = "fieldsync-ffi/bindgen";

/// JNA as Debian's libjna-java installs it.
const JNA_JAR: &str = "/usr/share/java/jna.jar";

fn kotlin_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(kotlin_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "kt") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Each test file `FooTest.kt` has a top-level `main`, compiled to class `FooTestKt`.
fn kotlin_mains(dir: &Path) -> Result<Vec<String>> {
    Ok(kotlin_files(dir)?
        .iter()
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()))
        .filter(|s| s.ends_with("Test"))
        .map(|s| format!("{s}Kt"))
        .collect())
}

/// kotlinc from the npm package `kotlin-compiler` (its bin directory is not
/// linked onto PATH by npm), or any kotlinc on PATH.
fn find_kotlinc() -> Option<PathBuf> {
    on_path("kotlinc").or_else(|| {
        let out = Command::new("npm").args(["root", "-g"]).output().ok()?;
        let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let path = root.join("kotlin-compiler").join("bin").join("kotlinc");
        path.is_file().then_some(path)
    })
}

/// A tool the tests need, how to tell it is there, and how to install it.
struct Prerequisite {
    what: &'static str,
    present: fn() -> bool,
    /// Debian packages that provide it (installed with apt-get).
    apt: &'static [&'static str],
    /// npm packages that provide it (installed globally).
    npm: &'static [&'static str],
    /// PyPI packages that provide it (installed with `python3 -m pip`).
    pip: &'static [&'static str],
}

fn prerequisites() -> Vec<Prerequisite> {
    vec![
        Prerequisite {
            what: "OpenSSL headers and libcrypto (libssl-dev) for the SQLCipher device store",
            present: || {
                Path::new("/usr/include/openssl/evp.h").is_file()
                    || std::env::var_os("OPENSSL_DIR").is_some()
                    || std::env::var_os("OPENSSL_INCLUDE_DIR").is_some()
            },
            apt: &["libssl-dev"],
            npm: &[],
            pip: &[],
        },
        Prerequisite {
            what: "PostgreSQL server binaries (initdb, pg_ctl) for the PostgreSQL test clusters",
            present: || find_pg_bin("initdb").is_some() && find_pg_bin("pg_ctl").is_some(),
            apt: &["postgresql"],
            npm: &[],
            pip: &[],
        },
        Prerequisite {
            what: "python3 for the Python binding tests",
            present: || on_path("python3").is_some(),
            apt: &["python3"],
            npm: &[],
            pip: &[],
        },
        Prerequisite {
            what: "a Java runtime for the Kotlin binding tests",
            present: || on_path("java").is_some(),
            apt: &["default-jre-headless"],
            npm: &[],
            pip: &[],
        },
        Prerequisite {
            what: "JNA (Debian libjna-java) for the Kotlin binding tests",
            present: || Path::new(JNA_JAR).is_file(),
            apt: &["libjna-java"],
            npm: &[],
            pip: &[],
        },
        Prerequisite {
            what: "chromium and chromedriver for the managers' pages browser test",
            present: || on_path("chromium").is_some() && on_path("chromedriver").is_some(),
            apt: &["chromium", "chromium-driver"],
            npm: &[],
            pip: &[],
        },
        Prerequisite {
            what: "npm, to install the Kotlin compiler",
            present: || on_path("npm").is_some(),
            apt: &["npm"],
            npm: &[],
            pip: &[],
        },
        Prerequisite {
            what: "kotlinc (npm package kotlin-compiler) for the Kotlin binding tests",
            present: || find_kotlinc().is_some(),
            apt: &[],
            npm: &["kotlin-compiler@2.4.20"],
            pip: &[],
        },
        Prerequisite {
            what: "pip, to install moto",
            present: || python_ok(&["-m", "pip", "--version"]),
            apt: &["python3-pip"],
            npm: &[],
            pip: &[],
        },
        Prerequisite {
            what: "moto's S3-compatible server (PyPI moto[server]) for the attachment store tests",
            present: || python_ok(&["-c", "import moto.server, flask, flask_cors"]),
            apt: &[],
            npm: &[],
            pip: &["moto[server]==5.2.1"],
        },
    ]
}

/// Whether `python3 ARGS` runs and succeeds.
fn python_ok(args: &[&str]) -> bool {
    Command::new("python3")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_prerequisites() -> Result<()> {
    let missing: Vec<Prerequisite> = prerequisites()
        .into_iter()
        .filter(|p| !(p.present)())
        .collect();
    if missing.is_empty() {
        println!("xtask: test prerequisites are installed");
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().flat_map(|p| p.apt.iter().copied()).collect();
    for p in &missing {
        println!("xtask: missing: {}", p.what);
    }
    if !packages.is_empty() {
        // apt first: npm itself may be among the packages.
        let sudo = if is_root() { None } else { Some("sudo") };
        println!("xtask: installing Debian packages: {}", packages.join(" "));
        let mut update = privileged(sudo, "apt-get");
        update.args(["update", "-q"]);
        step("apt-get update", update)?;
        let mut install = privileged(sudo, "apt-get");
        install
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive");
        step("apt-get install", install)?;
    }
    let npm: Vec<&str> = missing.iter().flat_map(|p| p.npm.iter().copied()).collect();
    if !npm.is_empty() {
        let mut install = Command::new("npm");
        install
            .args(["install", "--global", "--no-fund", "--no-audit"])
            .args(&npm);
        step(&format!("npm install {}", npm.join(" ")), install)?;
    }
    let pip: Vec<&str> = missing.iter().flat_map(|p| p.pip.iter().copied()).collect();
    if !pip.is_empty() {
        let mut install = Command::new("python3");
        install.args(["-m", "pip", "install", "--quiet"]).args(&pip);
        if step(&format!("pip install {}", pip.join(" ")), install).is_err() {
            // Debian's own Python refuses installs outside a virtual environment
            // unless told that this is intended (PEP 668).
            let mut again = Command::new("python3");
            again
                .args(["-m", "pip", "install", "--quiet", "--break-system-packages"])
                .args(&pip);
            step(
                &format!("pip install {} (system Python)", pip.join(" ")),
                again,
            )?;
        }
    }
    let still: Vec<&str> = prerequisites()
        .into_iter()
        .filter(|p| !(p.present)())
        .map(|p| p.what)
        .collect();
    if !still.is_empty() {
        bail!("still missing after installing: {}", still.join(", "));
    }
    Ok(())
}

fn privileged(sudo: Option<&str>, program: &str) -> Command {
    match sudo {
        Some(s) => {
            let mut c = Command::new(s);
            c.arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// PostgreSQL's server binaries are on PATH on some systems and under
/// `/usr/lib/postgresql/<version>/bin` on Debian.
fn find_pg_bin(program: &str) -> Option<PathBuf> {
    on_path(program).or_else(|| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(program)))
            .filter(|p| p.is_file())
            .collect();
        dirs.sort();
        dirs.pop()
    })
}
