//! Sizes of the benchmarks. `FIELDSYNC_BENCH_TINY=1`, which `cargo xtask test`
//! sets when it runs every bench once in a debug build, shrinks every workload
//! to a few records: proof that the bench still runs end to end, not a
//! measurement (`cargo xtask bench` measures, in a release build).

/// Whether this is a tiny run (`FIELDSYNC_BENCH_TINY` set, and not `0`).
pub fn bench_tiny() -> bool {
    std::env::var("FIELDSYNC_BENCH_TINY").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `full`, or `tiny` in a tiny run.
pub fn bench_size(full: usize, tiny: usize) -> usize {
    if bench_tiny() { tiny } else { full }
}
