//! `qs-bench-keys`: how long listing a keystore with thousands of keys takes.
//!
//! SIDN's 4000 keys made OpenDNSSEC's key tooling unusable (shared/seeds/003). This makes
//! `--count` ECDSA P-256 keys for one zone in a soft keystore (BIND key files, the format
//! `dnssec-keygen` writes) and times `quorumsign keys list` over it as a child process
//! (process start, reading and parsing every `.key`/`.private`, printing), `--runs` times;
//! it prints the median against the 200 ms target, and `ls` of the same directory as the
//! floor any tool reading it pays.
//!
//! ```sh
//! cargo build --release && target/release/qs-bench-keys --count 4000
//! ```

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use clap::Parser;
use quorumsign::hsm::Keystore;

/// Target: listing 4000 keys, ms.
const TARGET_MS: f64 = 200.0;

#[derive(Parser)]
struct Opts {
    #[arg(long, default_value_t = 4000)]
    count: usize,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The quorumsign binary (default: beside this one).
    #[arg(long)]
    quorumsign: Option<PathBuf>,
}

fn median_ms(cmd: &mut dyn FnMut() -> Command, runs: usize) -> Result<(f64, usize), String> {
    let mut t = Vec::new();
    let mut lines = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let out = cmd()
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| e.to_string())?;
        t.push(start.elapsed().as_secs_f64() * 1000.0);
        if !out.status.success() {
            return Err(format!("exit {}", out.status));
        }
        lines = out
            .stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
    }
    t.sort_by(f64::total_cmp);
    Ok((t[t.len() / 2], lines))
}

fn main() -> ExitCode {
    let o = Opts::parse();
    let exe = o.quorumsign.unwrap_or_else(|| {
        std::env::current_exe()
            .unwrap()
            .with_file_name("quorumsign")
    });
    let dir = std::env::temp_dir().join(format!("qs-bench-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = quorumsign::hsm::soft::SoftKeystore::new(dir.clone());
    let zone = quorumsign::zone::Name::parse(b"example.", None).unwrap();
    let made = Instant::now();
    for i in 0..o.count {
        if let Err(e) = store.generate(
            &zone,
            quorumsign::keys::Algorithm::EcdsaP256Sha256,
            i % 2 == 0,
        ) {
            eprintln!("generate: {e}");
            return ExitCode::from(2);
        }
    }
    println!(
        "{} P-256 keys made in {:.0} ms (not timed below)",
        o.count,
        made.elapsed().as_secs_f64() * 1000.0
    );
    let ks = format!("dir:{}", dir.display());
    let ours = median_ms(
        &mut || {
            let mut c = Command::new(&exe);
            c.args(["keys", "list", "--zone", "example.", "--keystore", &ks]);
            c
        },
        o.runs,
    );
    let floor = median_ms(
        &mut || {
            let mut c = Command::new("ls");
            c.arg(&dir);
            c
        },
        o.runs,
    );
    let _ = std::fs::remove_dir_all(&dir);
    match (ours, floor) {
        (Ok((ms, n)), Ok((ls, _))) => {
            println!(
                "quorumsign keys list: {n} keys listed, median {ms:.1} ms of {} runs",
                o.runs
            );
            println!("ls of the directory (floor): median {ls:.1} ms");
            println!(
                "target: {} keys in <= {TARGET_MS:.0} ms: {}",
                o.count,
                if ms <= TARGET_MS { "met" } else { "NOT met" }
            );
            if n != o.count {
                eprintln!("listed {n} keys, expected {}", o.count);
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("listing failed: {e}");
            ExitCode::from(1)
        }
    }
}
