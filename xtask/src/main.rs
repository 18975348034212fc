//! `cargo xtask`: the project's one entry point for checks and tests.
//!
//! `cargo xtask test` is the command in the README and the one CI runs
//! (`.ci/run`). It first makes sure every tool the tests need is installed,
//! installing what is missing from Debian's packages or npm, then runs the
//! format check, clippy, and every test suite. It prints what it does as it goes.
//!
//! Prerequisites are listed in one table ([`prerequisites`]); a suite that needs a
//! new tool adds a row there, so the README command stays the only one a newcomer
//! runs.

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
  deps            only install the missing test prerequisites
  bench           run the benchmarks (release builds) and print their tables
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("deps") => ensure_prerequisites(),
        Some("bench") => bench(),
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
    step(
        "Rust tests (all crates)",
        cargo(&root, &["test", "--workspace", "--no-fail-fast"]),
    )?;
    println!("xtask: all checks passed in {:.0?}", started.elapsed());
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

/// A tool the tests need, how to tell it is there, and how to install it.
struct Prerequisite {
    what: &'static str,
    present: fn() -> bool,
    /// Debian packages that provide it (installed with apt-get).
    apt: &'static [&'static str],
}

fn prerequisites() -> Vec<Prerequisite> {
    vec![Prerequisite {
        what: "PostgreSQL server binaries (initdb, pg_ctl) for the PostgreSQL test clusters",
        present: || find_pg_bin("initdb").is_some() && find_pg_bin("pg_ctl").is_some(),
        apt: &["postgresql"],
    }]
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
