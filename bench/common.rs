//! What the cluster and serving benchmarks share: the binary they run, a fresh work
//! directory and the generated TLD-like zone.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `quorumsign` binary built beside the benchmark.
pub fn qs_bin() -> PathBuf {
    std::env::current_exe()
        .expect("exe")
        .with_file_name("quorumsign")
}

/// `given`, or `name` under the temporary directory, emptied and made absolute.
pub fn fresh_work(given: Option<PathBuf>, name: &str) -> PathBuf {
    let work = given.unwrap_or_else(|| std::env::temp_dir().join(name));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    std::fs::canonicalize(&work).unwrap()
}

/// Writes the TLD-like zone `zone` of `count` delegations to `file`; returns its text.
pub fn generate_zone(qs: &Path, zone: &str, count: usize, file: &Path) -> Vec<u8> {
    let out = Command::new(qs)
        .args([
            "generate-zone",
            "--zone",
            zone,
            "--count",
            &count.to_string(),
        ])
        .output()
        .unwrap();
    std::fs::write(file, &out.stdout).unwrap();
    out.stdout
}
