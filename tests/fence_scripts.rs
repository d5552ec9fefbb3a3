//! The fence scripts of `fencing/` against hostile arguments: fake `ssh`, `nft` and
//! `ipmitool` on PATH execute what they receive (ssh runs its command through `sh -c`, as a
//! remote shell would), so an argument that reached a shell would run. Each hostile value
//! must be refused (exit 2) with nothing run; the same scripts with good arguments must run
//! their commands, so the fakes are shown to work. shellcheck must find nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fencing() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fencing")
}

/// A directory with the fake tools; each logs its arguments to `log` (one line a call).
fn fakes(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("log");
    let tools = [
        (
            "ssh",
            format!(
                "#!/bin/sh\nprintf 'ssh %s\\n' \"$*\" >> '{}'\nfor a; do last=$a; done\nexec sh -c \"$last\"\n",
                log.display()
            ),
        ),
        (
            "nft",
            format!(
                "#!/bin/sh\nprintf 'nft %s\\n' \"$*\" >> '{}'\ncase \"$1\" in list) exit 1;; esac\nexit 0\n",
                log.display()
            ),
        ),
        (
            "ipmitool",
            format!(
                "#!/bin/sh\nprintf 'ipmitool %s\\n' \"$*\" >> '{}'\necho 'Chassis Power is off'\n",
                log.display()
            ),
        ),
    ];
    for (name, text) in tools {
        let p = bin.join(name);
        std::fs::write(&p, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

fn run(dir: &Path, script: &str, args: &[&str]) -> (i32, String) {
    let bin = fakes(dir);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg(fencing().join(script))
        .args(args)
        .env("PATH", path)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Hostile values, each of which creates `canary` if any shell evaluates it.
fn hostile(canary: &Path) -> Vec<String> {
    let c = canary.display();
    vec![
        format!("10.0.0.9;touch${{IFS}}{c};#:7101"),
        format!("10.0.0.9;touch {c};#:7101"),
        format!("$(touch {c}):7101"),
        format!("`touch {c}`:7101"),
        format!("10.0.0.9:7101;touch {c}"),
        format!("10.0.0.9:7101\ntouch {c}"),
        format!("10.0.0.9 :7101 $(touch {c})"),
        format!("[::1;touch {c}]:7101"),
        format!("[::1]:7101$(touch {c})"),
        "1.2.3.4.5:7101".into(),
        "256.0.0.1:7101".into(),
        "10.0.0.9:70000".into(),
        "10.0.0.9:0".into(),
        "10.0.0.9".into(),
        "-oProxyCommand=x:1".into(),
    ]
}

fn hostile_numbers(canary: &Path) -> Vec<String> {
    let c = canary.display();
    vec![
        format!("2;touch {c}"),
        format!("$(touch {c})"),
        format!("`touch {c}`"),
        "2 3".into(),
        "2\n3".into(),
        "".into(),
        "-1".into(),
        "123456789012345678901".into(),
    ]
}

/// Every hostile node id, address and term is refused by `script` (first argument `first`)
/// before anything runs: exit 2, no canary, no call of a fake tool.
fn refuses_hostile(script: &str, first: &dyn Fn(&Path) -> String) {
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    let first = first(dir.path());
    let mut cases: Vec<[String; 4]> = Vec::new();
    for a in hostile(&canary) {
        cases.push(["2".into(), a, "7".into(), "test".into()]);
    }
    for n in hostile_numbers(&canary) {
        cases.push([n.clone(), "10.0.0.9:7101".into(), "7".into(), "test".into()]);
        cases.push(["2".into(), "10.0.0.9:7101".into(), n, "test".into()]);
    }
    for [node, addr, term, reason] in &cases {
        let (code, out) = run(dir.path(), script, &[&first, node, addr, term, reason]);
        assert_eq!(code, 2, "{script} {node:?} {addr:?} {term:?}: {out}");
        assert!(
            !canary.exists(),
            "{script} {node:?} {addr:?} {term:?} ran a command"
        );
        assert!(
            !dir.path().join("log").exists(),
            "{script} {node:?} {addr:?} {term:?} called a tool: {}",
            std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        );
    }
}

#[test]
fn nftables_fence_refuses_hostile_arguments_and_runs_with_good_ones() {
    refuses_hostile("fence-nftables.sh", &|_| "router.example".into());
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    // A hostile host (config) and a hostile reason (data, never in the remote command).
    let (code, out) = run(
        dir.path(),
        "fence-nftables.sh",
        &["-oProxyCommand=sh", "2", "10.0.0.9:7101", "7", "r"],
    );
    assert_eq!(code, 2, "{out}");
    let reason = format!("$(touch {}) `touch {}`", canary.display(), canary.display());
    for addr in ["10.0.0.9:7101", "[2001:db8::9]:7101"] {
        let (code, out) = run(
            dir.path(),
            "fence-nftables.sh",
            &["root@router.example", "2", addr, "7", &reason],
        );
        assert_eq!(code, 0, "{out}");
    }
    assert!(!canary.exists(), "the reason was run");
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(
        log.contains("nft add rule inet quorumsign-fence forward ip saddr 10.0.0.9 drop"),
        "{log}"
    );
    assert!(
        log.contains("nft add rule inet quorumsign-fence forward ip6 daddr 2001:db8::9 drop"),
        "{log}"
    );
    assert!(log.contains("ssh -o BatchMode=yes -o ConnectTimeout=10 -- root@router.example"));
}

#[test]
fn ipmi_fence_refuses_hostile_arguments_and_map_lines() {
    let map_of = |dir: &Path, line: &str| {
        let pw = dir.join("pw");
        std::fs::write(&pw, "secret").unwrap();
        let map = dir.join("map");
        std::fs::write(&map, format!("{line} {}\n", pw.display())).unwrap();
        map.display().to_string()
    };
    refuses_hostile("fence-ipmi.sh", &|d| map_of(d, "2 bmc2.example admin"));
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    for line in [
        format!("2 bmc;touch${{IFS}}{} admin", canary.display()),
        format!("2 $(touch {}) admin", canary.display()),
        "2 -oX admin".into(),
        format!("2 bmc2.example `touch {}`", canary.display()),
        "2 bmc2.example admin extra".into(),
        "2 * admin".into(),
    ] {
        let map = map_of(dir.path(), &line);
        let (code, out) = run(
            dir.path(),
            "fence-ipmi.sh",
            &[&map, "2", "10.0.0.9:7101", "7", "r"],
        );
        assert_eq!(code, 2, "map line {line:?}: {out}");
        assert!(!canary.exists(), "map line {line:?} ran a command");
        assert!(
            !dir.path().join("log").exists(),
            "map line {line:?} called ipmitool"
        );
    }
    let map = map_of(dir.path(), "2 bmc2.example admin");
    let (code, out) = run(
        dir.path(),
        "fence-ipmi.sh",
        &[&map, "2", "10.0.0.9:7101", "7", "r"],
    );
    assert_eq!(code, 0, "{out}");
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(
        log.contains("ipmitool -I lanplus -H bmc2.example -U admin -f"),
        "{log}"
    );
    assert!(log.contains("chassis power off"), "{log}");
}

#[test]
fn file_fence_refuses_hostile_arguments_and_keeps_the_reason_as_data() {
    let fenced = tempfile::tempdir().unwrap();
    let d = fenced.path().display().to_string();
    refuses_hostile("fence-file.sh", &|_| d.clone());
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    let reason = format!("why $(touch {})\nnode=9 forged", canary.display());
    let (code, out) = run(
        dir.path(),
        "fence-file.sh",
        &[&d, "2", "127.0.0.1:7102", "7", &reason],
    );
    assert_eq!(code, 0, "{out}");
    assert!(!canary.exists());
    let rec = std::fs::read_to_string(fenced.path().join("fenced-node-2")).unwrap();
    assert_eq!(
        rec.lines().count(),
        1,
        "the reason made a second line: {rec}"
    );
    assert!(
        rec.starts_with("node=2 address=127.0.0.1:7102 term=7 "),
        "{rec}"
    );
}

#[test]
fn fence_scripts_are_shellcheck_clean() {
    let out = Command::new("shellcheck")
        .args([
            "-x",
            "fence-args.sh",
            "fence-file.sh",
            "fence-ipmi.sh",
            "fence-nftables.sh",
        ])
        .current_dir(fencing())
        .output()
        .expect("shellcheck (install the test tools with `bash tests/run.sh`)");
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
