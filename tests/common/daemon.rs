//! Daemons a test starts (named, knotd, unbound…), stopped when the test ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{p, write};

/// A daemon started by the test, killed when dropped (log printed on failure).
pub struct Daemon {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(name: &str, cmd: &mut Command, log: PathBuf) -> Daemon {
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {name}: {e} (install with bash tests/run.sh)")
            });
        Daemon {
            name: name.into(),
            child,
            log,
        }
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- {} log (newest first):\n{}", self.name, tail.join("\n"));
        }
    }
}

/// Unbound on 127.0.0.1:`port`, with `server` lines added to its server section and
/// `zones` (stub zones) after it.
pub fn unbound(dir: &Path, port: &str, server: &str, zones: &str) -> Daemon {
    std::fs::create_dir_all(dir).unwrap();
    let conf = write(
        dir,
        "unbound.conf",
        &format!(
            "server:\n    interface: 127.0.0.1@{port}\n    port: {port}\n\
             \x20   do-ip6: no\n    chroot: \"\"\n    username: \"\"\n    directory: \"{u}\"\n\
             \x20   pidfile: \"{u}/unbound.pid\"\n    use-syslog: no\n    logfile: \"\"\n\
             \x20   do-not-query-localhost: no\n{server}\
             remote-control:\n    control-enable: no\n{zones}",
            u = dir.display()
        ),
    );
    Daemon::start(
        "unbound",
        Command::new("unbound").args(["-d", "-c", p(&conf)]),
        dir.join("unbound.log"),
    )
}

/// BIND's named on 127.0.0.1:`port`, its files in `dir`, with the TSIG key `xfr-key` of
/// `secret`; `options` are added to its options, `zones` follow them.
pub fn named(dir: &Path, port: &str, secret: &str, options: &str, zones: &str) -> Daemon {
    std::fs::create_dir_all(dir).unwrap();
    let conf = write(
        dir,
        "named.conf",
        &format!(
            "options {{ directory \"{nd}\"; listen-on port {port} {{ 127.0.0.1; }}; \
             listen-on-v6 {{ none; }}; pid-file \"{nd}/named.pid\"; recursion no; \
             dnssec-validation no; {options}session-keyfile \"{nd}/session.key\"; \
             managed-keys-directory \"{nd}\"; }};\n\
             key \"xfr-key\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n{zones}",
            nd = dir.display()
        ),
    );
    Daemon::start(
        "named",
        Command::new("named").args(["-g", "-c", p(&conf)]),
        dir.join("named.log"),
    )
}
