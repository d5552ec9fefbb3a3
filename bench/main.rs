//! `qs-bench`: quorumsign side by side with the peer DNSSEC signers and validators.
//!
//! # What it measures
//! One deterministic zone (`quorumsign::zone::generate`, TLD-like or flat) and ONE key set
//! (an ECDSA P-256 KSK and ZSK made by `dnssec-keygen`, used by every tool) are signed, per
//! denial mode (`nsec`, `nsec3`, `nsec3-optout`), by:
//! - `quorumsign sign` (our signer, reading the BIND key files with `--keystore dir:KEYS`),
//! - Knot's `kzonesign` (keys imported with `keymgr import-bind` beforehand, not timed),
//! - BIND's `dnssec-signzone -P` (no post-signing self-check) and
//! - ldns's `ldns-signzone`.
//!
//! quorumsign's signed output is then checked by `quorumsign verify`, `dnssec-verify`,
//! `ldns-verify-zone` and `kzonecheck -d on`; every one of them must accept it (a benchmark of
//! an invalid zone means nothing), otherwise its row says FAILED with an excerpt of its
//! output.
//!
//! Every tool runs as a child process; its wall time is taken around spawn..wait and its own
//! peak resident set size comes from `wait4(2)`'s `ru_maxrss`. Output goes to files in the
//! work directory. Per mode, the signers and the validators are printed as tables with the
//! ratio of each wall time to the fastest peer's (peers: every tool but quorumsign), followed
//! by the targets: sign ratio ≤ 0.25, verify ratio ≤ 0.35, peak RSS ≤ 1.5 GiB.
//!
//! With `--pkcs11`, a SoftHSM2 token is created in the work directory and two rates are
//! measured: SoftHSM2's own signing rate in one session (cryptoki, `CKM_ECDSA` on P-256), and
//! the signatures per second of `quorumsign sign` with its keys in that token.
//!
//! # How to run
//! ```sh
//! cargo build --release && target/release/qs-bench --count 100000
//! target/release/qs-bench --count 20000 --modes nsec3 --pkcs11
//! ```
//! Needs `bind9-utils`, `ldnsutils`, `knot` (keymgr), `knot-dnssecutils` and, for `--pkcs11`,
//! `softhsm2`. A tool that is not installed is reported as skipped.
//!
//! Exit status: 0 when every tool succeeded, 1 when one FAILED, 2 when the benchmark could
//! not be set up (e.g. quorumsign not built).

use std::fs::{self, File};
use std::io::{self, BufRead};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use quorumsign::zone::generate::{Shape, zone_text};

/// quorumsign's sign wall time over the fastest peer signer's.
const SIGN_TARGET: f64 = 0.25;
/// quorumsign's verify wall time over the fastest peer validator's.
const VERIFY_TARGET: f64 = 0.35;
/// Peak RSS of any quorumsign run, in MiB (1.5 GiB).
const RSS_TARGET_MIB: f64 = 1536.0;
/// Seed of the generated zone: the same arguments always give the same zone.
const ZONE_SEED: u64 = 1;

const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN_LABEL: &str = "qsbench";
const USER_PIN: &str = "1234";
const SO_PIN: &str = "5678";
/// Names in the zone signed through PKCS#11 (at most).
const PKCS11_ZONE_MAX: usize = 50_000;
/// Signatures made directly with SoftHSM2 to measure its own rate.
const RAW_SIGNS: u32 = 20_000;
/// DER of the prime256v1 OID, the `CKA_EC_PARAMS` of a P-256 key.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

#[derive(Parser)]
#[command(
    name = "qs-bench",
    about = "Time quorumsign against kzonesign, dnssec-signzone and ldns-signzone \
             (and the validators) on one generated zone with one key set"
)]
struct Opts {
    /// Names (delegations or hosts) in the generated zone.
    #[arg(long, default_value_t = 1_000_000)]
    count: usize,
    /// Zone shape: tld (delegations, ~30 % with DS, ~10 % with glue) or flat (A + TXT hosts).
    #[arg(long, value_enum, default_value_t = ShapeArg::Tld)]
    shape: ShapeArg,
    /// Zone name.
    #[arg(long, default_value = "tld.")]
    zone: String,
    /// Work directory (default: a new directory under /tmp); kept afterwards.
    #[arg(long)]
    work: Option<PathBuf>,
    /// Denial modes, comma separated.
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [Mode::Nsec, Mode::Nsec3OptOut])]
    modes: Vec<Mode>,
    /// Sign with quorumsign only (no kzonesign, dnssec-signzone, ldns-signzone).
    #[arg(long)]
    skip_peers: bool,
    /// Do not run the validators on quorumsign's output.
    #[arg(long)]
    skip_validators: bool,
    /// Also measure signing through PKCS#11 (SoftHSM2).
    #[arg(long)]
    pkcs11: bool,
    /// The quorumsign binary (default: `quorumsign` next to this program).
    #[arg(long)]
    quorumsign: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShapeArg {
    Tld,
    Flat,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Mode {
    Nsec,
    Nsec3,
    #[value(name = "nsec3-optout")]
    Nsec3OptOut,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Nsec => "nsec",
            Mode::Nsec3 => "nsec3",
            Mode::Nsec3OptOut => "nsec3-optout",
        }
    }

    fn nsec3(self) -> bool {
        self != Mode::Nsec
    }

    fn opt_out(self) -> bool {
        self == Mode::Nsec3OptOut
    }
}

fn main() -> ExitCode {
    match run(Opts::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("qs-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the whole benchmark; `Ok(false)` when some tool failed.
fn run(opts: Opts) -> Result<bool> {
    let bench = Bench::prepare(&opts)?;
    let mut reports = Vec::new();
    for mode in unique(&opts.modes) {
        let report = bench.run_mode(mode, &opts);
        report.print(bench.count);
        reports.push(report);
    }
    print_targets(&reports);
    let mut all_ok = reports.iter().all(ModeReport::all_ok);
    if opts.pkcs11 {
        let mode = opts.modes.first().copied().unwrap_or(Mode::Nsec);
        all_ok &= bench.run_pkcs11(mode);
    }
    println!("\nwork directory (kept): {}", bench.work.display());
    Ok(all_ok)
}

fn unique(modes: &[Mode]) -> Vec<Mode> {
    let mut out = Vec::new();
    for &m in modes {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Running and measuring child processes
// ---------------------------------------------------------------------------------------------

/// How one tool run ended.
enum Outcome {
    Ok,
    /// Non-zero exit or could not start: message and an excerpt of its output.
    Failed(String),
    Skipped(String),
}

/// One measured tool run.
struct Run {
    tool: String,
    ours: bool,
    wall: Duration,
    max_rss_kib: u64,
    outcome: Outcome,
    stderr: PathBuf,
    /// RRSIGs in a signer's output (counted afterwards, not timed).
    rrsigs: Option<u64>,
}

impl Run {
    fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok)
    }

    fn rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 / 1024.0
    }

    fn not_run(tool: &str, ours: bool, outcome: Outcome) -> Run {
        Run {
            tool: tool.to_string(),
            ours,
            wall: Duration::ZERO,
            max_rss_kib: 0,
            outcome,
            stderr: PathBuf::new(),
            rrsigs: None,
        }
    }
}

/// Starts tools with their stdout and stderr in files under `logs`.
struct Runner {
    logs: PathBuf,
}

impl Runner {
    /// Runs `cmd` to completion and measures it; `stem` names its log files.
    fn measure(&self, tool: &str, ours: bool, stem: &str, cmd: Command) -> Run {
        let program = PathBuf::from(cmd.get_program());
        if !program_exists(&program) {
            let why = format!("{} not installed", program.display());
            return Run::not_run(tool, ours, Outcome::Skipped(why));
        }
        eprint!("  running {tool:<18} ({stem}) ... ");
        let (stdout, stderr) = self.log_paths(stem);
        let run = match spawn_and_wait(cmd, &stdout, &stderr) {
            Ok((status, wall, max_rss_kib)) => Run {
                tool: tool.to_string(),
                ours,
                wall,
                max_rss_kib,
                outcome: outcome_of(status, &stdout, &stderr),
                stderr: stderr.clone(),
                rrsigs: None,
            },
            Err(e) => Run::not_run(tool, ours, Outcome::Failed(format!("cannot run: {e}"))),
        };
        match &run.outcome {
            Outcome::Ok => eprintln!("{:.2} s", run.wall.as_secs_f64()),
            _ => eprintln!("FAILED"),
        }
        run
    }

    /// Runs an untimed preparation step; fails with an excerpt of its output.
    fn prepare(&self, stem: &str, cmd: Command) -> Result<String> {
        let (stdout, stderr) = self.log_paths(stem);
        let program = PathBuf::from(cmd.get_program());
        let (status, _, _) = spawn_and_wait(cmd, &stdout, &stderr)
            .with_context(|| format!("cannot run {}", program.display()))?;
        if let Outcome::Failed(why) = outcome_of(status, &stdout, &stderr) {
            bail!("{} failed: {why}", program.display());
        }
        Ok(fs::read_to_string(&stdout).unwrap_or_default())
    }

    fn log_paths(&self, stem: &str) -> (PathBuf, PathBuf) {
        (
            self.logs.join(format!("{stem}.stdout")),
            self.logs.join(format!("{stem}.stderr")),
        )
    }
}

/// Spawns `cmd` with output to files; returns its status, wall time and peak RSS (KiB).
fn spawn_and_wait(
    mut cmd: Command,
    stdout: &Path,
    stderr: &Path,
) -> io::Result<(ExitStatus, Duration, u64)> {
    cmd.stdin(Stdio::null())
        .stdout(File::create(stdout)?)
        .stderr(File::create(stderr)?);
    let start = Instant::now();
    // The child is reaped by wait4 below, never through `Child` (dropping it does not wait).
    let child = cmd.spawn()?;
    let (status, usage) = wait4(child.id())?;
    let wall = start.elapsed();
    Ok((status, wall, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}

/// Waits for the child `pid` and returns its exit status and its own resource usage.
fn wait4(pid: u32) -> io::Result<(ExitStatus, libc::rusage)> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data, for which all zero bytes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own child, not yet reaped; both pointers are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((ExitStatus::from_raw(status), usage));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn outcome_of(status: ExitStatus, stdout: &Path, stderr: &Path) -> Outcome {
    if status.success() {
        return Outcome::Ok;
    }
    let mut message = format!("{status} (logs: {})", stderr.display());
    for (name, path) in [("stdout", stdout), ("stderr", stderr)] {
        let excerpt = tail(path, 8);
        if !excerpt.is_empty() {
            message.push_str(&format!("\n    {name}:\n{excerpt}"));
        }
    }
    Outcome::Failed(message)
}

/// The last `n` lines of a file, each cut to 200 characters and indented.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("      | {}", l.chars().take(200).collect::<String>()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `program` is a path to a file or a name found on `PATH`.
fn program_exists(program: &Path) -> bool {
    if program.components().count() > 1 {
        return program.is_file();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

fn command(program: impl AsRef<std::ffi::OsStr>, cwd: &Path) -> Command {
    let mut c = Command::new(program);
    c.current_dir(cwd);
    c
}

// ---------------------------------------------------------------------------------------------
// The benchmark: zone, keys, signers, validators
// ---------------------------------------------------------------------------------------------

/// The BIND key files everyone signs with (paths without `.key` / `.private`).
struct KeySet {
    dir: PathBuf,
    ksk: PathBuf,
    zsk: PathBuf,
}

struct Bench {
    zone: String,
    count: usize,
    shape: Shape,
    work: PathBuf,
    zone_file: PathBuf,
    keys: KeySet,
    cores: usize,
    quorumsign: PathBuf,
    runner: Runner,
}

impl Bench {
    /// Makes the work directory, writes the zone and creates the shared key set.
    fn prepare(opts: &Opts) -> Result<Bench> {
        let quorumsign = locate_quorumsign(opts.quorumsign.as_deref())?;
        let zone = absolute_zone(&opts.zone);
        let work = make_work_dir(opts.work.as_deref())?;
        println!("work directory: {}", work.display());
        let logs = work.join("logs");
        fs::create_dir_all(&logs)?;
        let runner = Runner { logs };
        let shape = match opts.shape {
            ShapeArg::Tld => Shape::Tld,
            ShapeArg::Flat => Shape::Flat,
        };
        let zone_file = work.join("zone.db");
        write_zone(&zone_file, shape, &zone, opts.count)?;
        let keys = make_key_set(&runner, &work, &zone)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "zone {zone}: {} {} names, {:.1} MiB; keys {} (KSK) and {} (ZSK); {cores} cores",
            opts.count,
            shape_name(shape),
            fs::metadata(&zone_file)?.len() as f64 / (1024.0 * 1024.0),
            file_name(&keys.ksk),
            file_name(&keys.zsk),
        );
        Ok(Bench {
            zone,
            count: opts.count,
            shape,
            work,
            zone_file,
            keys,
            cores,
            quorumsign,
            runner,
        })
    }

    /// Signs with every signer in `mode`, then validates quorumsign's output.
    fn run_mode(&self, mode: Mode, opts: &Opts) -> ModeReport {
        eprintln!("[{}]", mode.name());
        let dir = self.work.join(mode.name());
        let mut report = ModeReport {
            mode,
            signers: Vec::new(),
            validators: Vec::new(),
        };
        if let Err(e) = fresh_dir(&dir) {
            let failed = Outcome::Failed(format!("cannot create {}: {e}", dir.display()));
            report
                .signers
                .push(Run::not_run("quorumsign sign", true, failed));
            return report;
        }
        let signed = dir.join("quorumsign.signed");
        let ours = counted(self.sign_quorumsign(mode, &dir, &signed), &signed);
        let ours_ok = ours.ok();
        report.signers.push(ours);
        if !opts.skip_peers {
            let knot_out = dir.join("knot/out/zone.db");
            report
                .signers
                .push(counted(self.sign_knot(mode, &dir), &knot_out));
            let bind_out = dir.join("bind.signed");
            report
                .signers
                .push(counted(self.sign_bind(mode, &dir, &bind_out), &bind_out));
            let ldns_out = dir.join("ldns.signed");
            report
                .signers
                .push(counted(self.sign_ldns(mode, &dir, &ldns_out), &ldns_out));
        }
        if ours_ok && !opts.skip_validators {
            report.validators = self.validate_all(mode, &dir, &signed);
        }
        report
    }

    fn sign_quorumsign(&self, mode: Mode, dir: &Path, out: &Path) -> Run {
        let mut c = command(&self.quorumsign, dir);
        c.args(["sign", "--zone", &self.zone, "--input"])
            .arg(&self.zone_file)
            .arg("--output")
            .arg(out)
            .arg("--keystore")
            .arg(format!("dir:{}", self.keys.dir.display()))
            .args(["--denial", if mode.nsec3() { "nsec3" } else { "nsec" }]);
        if mode.opt_out() {
            c.arg("--opt-out");
        }
        self.runner
            .measure("quorumsign sign", true, &stem(mode, "quorumsign-sign"), c)
    }

    fn sign_knot(&self, mode: Mode, dir: &Path) -> Run {
        const TOOL: &str = "kzonesign";
        if !program_exists(Path::new(TOOL)) || !program_exists(Path::new("keymgr")) {
            let why = "kzonesign or keymgr not installed (packages knot-dnssecutils, knot)";
            return Run::not_run(TOOL, false, Outcome::Skipped(why.into()));
        }
        let knot_dir = dir.join("knot");
        let conf = match self.knot_setup(mode, &knot_dir) {
            Ok(conf) => conf,
            Err(e) => {
                let why = format!("setup: {e:#}");
                return Run::not_run(TOOL, false, Outcome::Failed(why));
            }
        };
        let mut c = command(TOOL, &knot_dir);
        c.arg("-c")
            .arg(&conf)
            .arg("-o")
            .arg(knot_dir.join("out"))
            .arg(&self.zone);
        self.runner.measure(TOOL, false, &stem(mode, TOOL), c)
    }

    /// Writes knot.conf for `mode`, links the zone in and imports both keys (not timed).
    fn knot_setup(&self, mode: Mode, knot_dir: &Path) -> Result<PathBuf> {
        for sub in ["run", "db/keys", "keys", "out"] {
            fs::create_dir_all(knot_dir.join(sub))?;
        }
        link_or_copy(&self.zone_file, &knot_dir.join("zone.db"))?;
        let conf = knot_dir.join("knot.conf");
        fs::write(&conf, knot_conf(knot_dir, &self.zone, mode, self.cores))?;
        for (role, key) in [("ksk", &self.keys.ksk), ("zsk", &self.keys.zsk)] {
            let mut c = command("keymgr", knot_dir);
            c.arg("-c")
                .arg(&conf)
                .arg(&self.zone)
                .arg("import-bind")
                .arg(with_ext(key, "private"));
            self.runner
                .prepare(&stem(mode, &format!("keymgr-import-{role}")), c)?;
        }
        Ok(conf)
    }

    fn sign_bind(&self, mode: Mode, dir: &Path, out: &Path) -> Run {
        let mut c = command("dnssec-signzone", dir);
        c.args([
            "-x",
            "-N",
            "keep",
            "-n",
            &self.cores.to_string(),
            "-S",
            "-K",
        ])
        .arg(&self.keys.dir)
        .arg("-P");
        if mode.nsec3() {
            c.args(["-3", "-", "-H", "0"]);
        }
        if mode.opt_out() {
            c.arg("-A");
        }
        c.args(["-o", &self.zone, "-f"])
            .arg(out)
            .arg(&self.zone_file);
        self.runner
            .measure("dnssec-signzone", false, &stem(mode, "dnssec-signzone"), c)
    }

    fn sign_ldns(&self, mode: Mode, dir: &Path, out: &Path) -> Run {
        let mut c = command("ldns-signzone", dir);
        if mode.nsec3() {
            c.args(["-n", "-a", "1", "-t", "0", "-s", ""]);
        }
        if mode.opt_out() {
            c.arg("-p");
        }
        c.args(["-o", &self.zone, "-f"])
            .arg(out)
            .arg(&self.zone_file)
            .arg(&self.keys.ksk)
            .arg(&self.keys.zsk);
        self.runner
            .measure("ldns-signzone", false, &stem(mode, "ldns-signzone"), c)
    }

    /// Runs every validator on quorumsign's signed zone.
    fn validate_all(&self, mode: Mode, dir: &Path, signed: &Path) -> Vec<Run> {
        let mut ours = command(&self.quorumsign, dir);
        ours.args(["verify", "--zone", &self.zone]).arg(signed);
        let mut bind = command("dnssec-verify", dir);
        bind.args(["-o", &self.zone]).arg(signed);
        let mut ldns = command("ldns-verify-zone", dir);
        ldns.arg(signed);
        let mut knot = command("kzonecheck", dir);
        knot.args(["-o", &self.zone, "-d", "on"]).arg(signed);
        vec![
            self.runner.measure(
                "quorumsign verify",
                true,
                &stem(mode, "quorumsign-verify"),
                ours,
            ),
            self.runner
                .measure("kzonecheck", false, &stem(mode, "kzonecheck"), knot),
            self.runner
                .measure("dnssec-verify", false, &stem(mode, "dnssec-verify"), bind),
            self.runner.measure(
                "ldns-verify-zone",
                false,
                &stem(mode, "ldns-verify-zone"),
                ldns,
            ),
        ]
    }
}

/// Adds the RRSIG count of `output` to a successful signer run.
fn counted(mut run: Run, output: &Path) -> Run {
    if run.ok() {
        run.rrsigs = count_rrsigs(output).ok();
    }
    run
}

/// Counts the RRSIG records in a zone file written by any of the signers: a line with
/// `RRSIG <type covered> <algorithm number>` among its first fields (BIND's multi-line
/// format too; the number tells a record from `RRSIG` in an NSEC/NSEC3 type bitmap).
fn count_rrsigs(path: &Path) -> io::Result<u64> {
    let mut n = 0;
    for line in io::BufReader::new(File::open(path)?).lines() {
        let line = line?;
        let fields: Vec<&str> = line.split_whitespace().take(7).collect();
        let is_rrsig = |w: &[&str]| w[0] == "RRSIG" && w[2].parse::<u8>().is_ok();
        if fields.windows(3).any(is_rrsig) {
            n += 1;
        }
    }
    Ok(n)
}

fn stem(mode: Mode, tool: &str) -> String {
    format!("{}-{tool}", mode.name())
}

fn shape_name(shape: Shape) -> &'static str {
    match shape {
        Shape::Tld => "TLD-like",
        Shape::Flat => "flat",
    }
}

fn absolute_zone(zone: &str) -> String {
    if zone.ends_with('.') {
        zone.to_string()
    } else {
        format!("{zone}.")
    }
}

/// The given quorumsign binary, or `quorumsign` next to this program.
fn locate_quorumsign(given: Option<&Path>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("cannot find this program's path")?
            .with_file_name("quorumsign"),
    };
    if !path.is_file() {
        bail!(
            "{} not found: build it first with `cargo build --release` (or give --quorumsign PATH)",
            path.display()
        );
    }
    Ok(path)
}

/// The given directory (created if needed), or a new one under /tmp.
fn make_work_dir(given: Option<&Path>) -> Result<PathBuf> {
    let dir = match given {
        Some(d) => d.to_path_buf(),
        None => {
            let secs = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
            std::env::temp_dir().join(format!("qs-bench-{secs}-{}", std::process::id()))
        }
    };
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    dir.canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))
}

/// Removes what an earlier run left at `dir` (only our own sub-directories) and recreates it.
fn fresh_dir(dir: &Path) -> io::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)
}

fn write_zone(path: &Path, shape: Shape, zone: &str, count: usize) -> Result<()> {
    fs::write(path, zone_text(shape, zone, count, ZONE_SEED))
        .with_context(|| format!("writing {}", path.display()))
}

/// Creates the KSK and ZSK everyone uses, with `dnssec-keygen`.
fn make_key_set(runner: &Runner, work: &Path, zone: &str) -> Result<KeySet> {
    let dir = work.join("keys");
    fresh_dir(&dir)?;
    let mut made = Vec::new();
    for (role, flags) in [("ksk", &["-f", "KSK"][..]), ("zsk", &[][..])] {
        let mut c = command("dnssec-keygen", work);
        c.args(["-q", "-K"])
            .arg(&dir)
            .args(["-a", "ECDSAP256SHA256"])
            .args(flags)
            .arg(zone);
        let out = runner.prepare(&format!("dnssec-keygen-{role}"), c)?;
        let base = out.trim();
        if base.is_empty() {
            bail!("dnssec-keygen printed no key name");
        }
        made.push(dir.join(base));
    }
    let zsk = made.pop().expect("two keys");
    let ksk = made.pop().expect("two keys");
    Ok(KeySet { dir, ksk, zsk })
}

fn knot_conf(dir: &Path, zone: &str, mode: Mode, cores: usize) -> String {
    let d = dir.display();
    let on = |b: bool| if b { "on" } else { "off" };
    format!(
        "server:\n    rundir: \"{d}/run\"\n\n\
         database:\n    storage: \"{d}/db\"\n    kasp-db: \"{d}/db/keys\"\n\n\
         keystore:\n  - id: pem\n    backend: pem\n    config: \"{d}/keys\"\n\n\
         policy:\n  - id: p\n    keystore: pem\n    manual: on\n    algorithm: ecdsap256sha256\n\
         \x20   rrsig-lifetime: 30d\n    rrsig-refresh: 7d\n    signing-threads: {cores}\n\
         \x20   nsec3: {}\n    nsec3-iterations: 0\n    nsec3-salt-length: 0\n\
         \x20   nsec3-opt-out: {}\n\n\
         zone:\n  - domain: {zone}\n    storage: \"{d}\"\n    file: \"zone.db\"\n\
         \x20   dnssec-signing: on\n    dnssec-policy: p\n    zonefile-load: whole\n\
         \x20   journal-content: none\n    adjust-threads: {cores}\n    semantic-checks: off\n",
        on(mode.nsec3()),
        on(mode.opt_out()),
    )
}

fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    if to.exists() {
        fs::remove_file(to)?;
    }
    fs::hard_link(from, to).or_else(|_| fs::copy(from, to).map(|_| ()))
}

fn with_ext(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// The value of the last `name=VALUE` field in a log file (quorumsign's tracing lines).
fn log_field(log: &Path, name: &str) -> Option<u64> {
    let text = fs::read_to_string(log).ok()?;
    let prefix = format!("{name}=");
    text.lines()
        .rev()
        .flat_map(|l| l.split_whitespace())
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
}

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

struct ModeReport {
    mode: Mode,
    signers: Vec<Run>,
    validators: Vec<Run>,
}

impl ModeReport {
    fn all_ok(&self) -> bool {
        let failed = |r: &Run| matches!(r.outcome, Outcome::Failed(_));
        !self.signers.iter().chain(&self.validators).any(failed)
    }

    fn print(&self, count: usize) {
        let m = self.mode.name();
        println!("\n== {m}: signers ({count} names) ==");
        print_table(&self.signers);
        if self.mode.opt_out() && self.signers.iter().any(|r| r.tool == "ldns-signzone") {
            println!("   note: ldns-signzone -p sets the opt-out flag but still emits an NSEC3");
            println!("         for every name (no real opt-out), so it does more work here");
        }
        if !self.validators.is_empty() {
            println!("\n== {m}: validators on quorumsign's output ==");
            print_table(&self.validators);
        }
    }

    fn sign_ratio(&self) -> Option<f64> {
        ours_ratio(&self.signers)
    }

    fn verify_ratio(&self) -> Option<f64> {
        ours_ratio(&self.validators)
    }

    /// Peak RSS of quorumsign over its sign and verify runs, in MiB.
    fn ours_rss_mib(&self) -> Option<f64> {
        self.signers
            .iter()
            .chain(&self.validators)
            .filter(|r| r.ours && r.ok())
            .map(Run::rss_mib)
            .reduce(f64::max)
    }
}

/// The fastest successful peer (not quorumsign) of a table.
fn fastest_peer(runs: &[Run]) -> Option<&Run> {
    runs.iter()
        .filter(|r| !r.ours && r.ok())
        .min_by(|a, b| a.wall.cmp(&b.wall))
}

/// quorumsign's wall time over the fastest peer's.
fn ours_ratio(runs: &[Run]) -> Option<f64> {
    let peer = fastest_peer(runs)?;
    let ours = runs.iter().find(|r| r.ours && r.ok())?;
    Some(ratio(ours, peer))
}

fn ratio(run: &Run, fastest: &Run) -> f64 {
    run.wall.as_secs_f64() / fastest.wall.as_secs_f64().max(1e-9)
}

fn print_table(runs: &[Run]) {
    let fastest = fastest_peer(runs);
    let with_rrsigs = runs.iter().any(|r| r.rrsigs.is_some());
    let head = ["wall s", "peak RSS MiB", "ratio", "RRSIGs"].map(String::from);
    print_row("tool", &head, with_rrsigs);
    for r in runs {
        match &r.outcome {
            Outcome::Ok => {
                let ratio = fastest.map_or("n/a".to_string(), |f| format!("{:.2}", ratio(r, f)));
                let cells = [
                    format!("{:.2}", r.wall.as_secs_f64()),
                    format!("{:.1}", r.rss_mib()),
                    ratio,
                    r.rrsigs.map_or("?".to_string(), |n| n.to_string()),
                ];
                print_row(&r.tool, &cells, with_rrsigs);
            }
            Outcome::Failed(why) => println!("{:<20} FAILED: {why}", r.tool),
            Outcome::Skipped(why) => println!("{:<20} skipped: {why}", r.tool),
        }
    }
    println!("(ratio = wall / fastest peer's wall; peers = every tool but quorumsign)");
}

/// One table row: tool, wall, RSS, ratio and (for signers) the RRSIG count.
fn print_row(tool: &str, cells: &[String; 4], with_rrsigs: bool) {
    let [wall, rss, ratio, rrsigs] = cells;
    let mut line = format!("{tool:<20} {wall:>9} {rss:>13} {ratio:>7}");
    if with_rrsigs {
        line.push_str(&format!(" {rrsigs:>10}"));
    }
    println!("{line}");
}

fn print_targets(reports: &[ModeReport]) {
    println!("\n== targets ==");
    for r in reports {
        let m = r.mode.name();
        if r.validators
            .iter()
            .any(|v| matches!(v.outcome, Outcome::Failed(_)))
        {
            println!(
                "[{m:<12}] FAILED validation: quorumsign's output is not valid, ratios mean nothing"
            );
        }
        print_target(m, "sign ratio    ", r.sign_ratio(), SIGN_TARGET, "");
        print_target(m, "verify ratio  ", r.verify_ratio(), VERIFY_TARGET, "");
        let rss = r.ours_rss_mib();
        print_target(m, "peak RSS (MiB)", rss, RSS_TARGET_MIB, " (1.5 GiB)");
    }
}

fn print_target(mode: &str, what: &str, value: Option<f64>, target: f64, unit: &str) {
    match value {
        Some(v) => {
            let verdict = if v <= target { "met" } else { "MISSED" };
            println!("[{mode:<12}] {what} {v:>8.2}   target <= {target}{unit}   {verdict}");
        }
        None => println!("[{mode:<12}] {what}      n/a   (nothing to compare)"),
    }
}

// ---------------------------------------------------------------------------------------------
// PKCS#11 (SoftHSM2)
// ---------------------------------------------------------------------------------------------

impl Bench {
    /// Measures SoftHSM2's own signing rate and quorumsign's rate through it; false on failure.
    fn run_pkcs11(&self, mode: Mode) -> bool {
        println!("\n== PKCS#11 through SoftHSM2 ==");
        eprintln!("[pkcs11]");
        let dir = self.work.join("softhsm");
        if let Err(e) = setup_softhsm(&self.runner, &dir) {
            println!("FAILED: SoftHSM2 token setup: {e:#}");
            return false;
        }
        let raw = match softhsm_raw_rate(RAW_SIGNS) {
            Ok(elapsed) => {
                let rate = f64::from(RAW_SIGNS) / elapsed.as_secs_f64();
                println!(
                    "SoftHSM2 alone (cryptoki, one session, CKM_ECDSA P-256): {RAW_SIGNS} signs \
                     in {:.2} s = {rate:.0} signs/s",
                    elapsed.as_secs_f64()
                );
                Some(rate)
            }
            Err(e) => {
                println!("FAILED: SoftHSM2 direct signing: {e:#}");
                None
            }
        };
        match self.sign_through_pkcs11(mode, &dir) {
            Ok(rate) => {
                if let Some(raw) = raw {
                    println!("   = {:.2} x one SoftHSM2 session", rate / raw);
                }
                raw.is_some()
            }
            Err(e) => {
                println!("FAILED: quorumsign through PKCS#11: {e:#}");
                false
            }
        }
    }

    /// Generates a KSK and ZSK in the token and signs a zone with them; returns signatures/s.
    fn sign_through_pkcs11(&self, mode: Mode, dir: &Path) -> Result<f64> {
        let keystore = format!(
            "pkcs11:token={TOKEN_LABEL}?module-path={SOFTHSM_MODULE}&pin-source={}",
            dir.join("pin").display()
        );
        for role in ["ksk", "zsk"] {
            let mut c = command(&self.quorumsign, dir);
            c.args([
                "keys",
                "generate",
                "--zone",
                &self.zone,
                "--keystore",
                &keystore,
            ])
            .args(["--role", role]);
            self.runner
                .prepare(&format!("pkcs11-keys-generate-{role}"), c)?;
        }
        let count = self.count.min(PKCS11_ZONE_MAX);
        let zone_file = dir.join("zone.db");
        write_zone(&zone_file, self.shape, &self.zone, count)?;
        let mut c = command(&self.quorumsign, dir);
        c.args(["sign", "--zone", &self.zone, "--input"])
            .arg(&zone_file)
            .arg("--output")
            .arg(dir.join("quorumsign.signed"))
            .args(["--keystore", &keystore])
            .args(["--denial", if mode.nsec3() { "nsec3" } else { "nsec" }]);
        if mode.opt_out() {
            c.arg("--opt-out");
        }
        let run = self
            .runner
            .measure("quorumsign sign", true, "pkcs11-quorumsign-sign", c);
        if let Outcome::Failed(why) | Outcome::Skipped(why) = &run.outcome {
            bail!("quorumsign sign: {why}");
        }
        let signed = log_field(&run.stderr, "signed").context("no signed= in the sign log")?;
        let sign_ms = log_field(&run.stderr, "sign_ms").context("no sign_ms= in the sign log")?;
        let rate = signed as f64 / (sign_ms.max(1) as f64 / 1000.0);
        println!(
            "quorumsign sign via PKCS#11 ({count} names, {}, {} cores): signed={signed} \
             sign_ms={sign_ms} = {rate:.0} signatures/s (wall {:.2} s, peak RSS {:.1} MiB)",
            mode.name(),
            self.cores,
            run.wall.as_secs_f64(),
            run.rss_mib()
        );
        Ok(rate)
    }
}

/// Creates a SoftHSM2 configuration and a fresh token under `dir`, and a PIN file.
fn setup_softhsm(runner: &Runner, dir: &Path) -> Result<()> {
    fresh_dir(dir)?;
    let tokens = dir.join("tokens");
    fs::create_dir_all(&tokens)?;
    let conf = dir.join("softhsm2.conf");
    fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )?;
    fs::write(dir.join("pin"), format!("{USER_PIN}\n"))?;
    // SAFETY: no other thread of this program is running, and SoftHSM2 (loaded in this
    // process below) and every child read the variable only after this point.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    let mut c = command("softhsm2-util", dir);
    c.args(["--init-token", "--free", "--label", TOKEN_LABEL])
        .args(["--pin", USER_PIN, "--so-pin", SO_PIN]);
    runner.prepare("softhsm2-init-token", c)?;
    Ok(())
}

/// Signs a 32-byte digest `n` times in one SoftHSM2 session; returns the time taken.
fn softhsm_raw_rate(n: u32) -> Result<Duration> {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;

    let ctx = Pkcs11::new(SOFTHSM_MODULE).context("loading SoftHSM2")?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = find_token(&ctx)?;
    let session = ctx.open_rw_session(slot)?;
    session.login(UserType::User, Some(&AuthPin::from(USER_PIN)))?;
    let (public, private) = raw_key_templates();
    let (_, key) = session.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)?;
    let digest = [0x5au8; 32];
    let start = Instant::now();
    for _ in 0..n {
        let sig = session.sign(&Mechanism::Ecdsa, key, &digest)?;
        if sig.len() != 64 {
            bail!("unexpected ECDSA signature length {}", sig.len());
        }
    }
    let elapsed = start.elapsed();
    session.logout().ok();
    drop(session);
    ctx.finalize().ok();
    Ok(elapsed)
}

/// The slot holding the bench token.
fn find_token(ctx: &cryptoki::context::Pkcs11) -> Result<cryptoki::slot::Slot> {
    for slot in ctx.get_slots_with_initialized_token()? {
        if ctx.get_token_info(slot)?.label().trim_end() == TOKEN_LABEL {
            return Ok(slot);
        }
    }
    bail!("no token labelled {TOKEN_LABEL:?}")
}

/// Templates of a P-256 session key pair (gone when the session closes) that can sign.
fn raw_key_templates() -> (
    Vec<cryptoki::object::Attribute>,
    Vec<cryptoki::object::Attribute>,
) {
    use cryptoki::object::Attribute;
    let label = || Attribute::Label(b"qs-bench raw rate".to_vec());
    let public = vec![
        Attribute::Token(false),
        Attribute::EcParams(P256_PARAMS.to_vec()),
        Attribute::Verify(true),
        label(),
    ];
    let private = vec![
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
        label(),
    ];
    (public, private)
}
