//! A local lab cluster on loopback: certificates, passphrase and one `node-<id>.toml` per
//! node, and the node processes ([`Procs`]), for `quorumsign demo`, the cluster tests and
//! the chaos harness.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::admin::client::call;

#[derive(Debug, Clone)]
pub struct LabNode {
    pub id: u64,
    pub config: PathBuf,
    pub raft: String,
    /// The admin socket (the lab's user has the security-officer role on it).
    pub admin: String,
    /// The HTTPS admin address (`https://IP:PORT`); operator certificates of the lab are
    /// `certs/operator-lab-{monitor,operator,security-officer}.pem`.
    pub https: String,
    /// DNS (UDP and TCP).
    pub dns: String,
    pub log: PathBuf,
    /// Extra environment for the node process (e.g. SOFTHSM2_CONF).
    pub env: Vec<(String, String)>,
}

pub fn raft_addr(base_port: u16, id: u64) -> String {
    format!("127.0.0.1:{}", base_port as u64 + id)
}

pub fn admin_addr(base_port: u16, id: u64) -> String {
    format!("127.0.0.1:{}", base_port as u64 + 100 + id)
}

pub fn dns_addr(base_port: u16, id: u64) -> String {
    format!("127.0.0.1:{}", base_port as u64 + 150 + id)
}

/// The lab's TSIG key for transfers and NOTIFY: name and base64 secret.
pub const LAB_TSIG_KEY: &str = "xfr-key";

pub fn lab_tsig_secret(dir: &Path) -> Result<String, String> {
    std::fs::read_to_string(dir.join("tsig.secret"))
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{}: {e}", dir.join("tsig.secret").display()))
}

/// Writes the layout for nodes `ids` (peers: `peers`, which should include `ids`).
/// Ports: Raft `base_port + id`, admin `base_port + 100 + id`, DNS `base_port + 150 + id`.
pub fn write(
    dir: &Path,
    ids: &[u64],
    peers: &[u64],
    base_port: u16,
    extra: &str,
) -> Result<Vec<LabNode>, String> {
    write_hosts(dir, ids, peers, base_port, extra, &|_| {
        "127.0.0.1".to_string()
    })
}

/// As [`write`], each node on its own host address (a network-namespace lab).
pub fn write_hosts(
    dir: &Path,
    ids: &[u64],
    peers: &[u64],
    base_port: u16,
    extra: &str,
    host: &dyn Fn(u64) -> String,
) -> Result<Vec<LabNode>, String> {
    let at = |id: u64, addr: String| addr.replacen("127.0.0.1", &host(id), 1);
    let raft_addr = |p: u16, id: u64| at(id, raft_addr(p, id));
    let admin_addr = |p: u16, id: u64| at(id, admin_addr(p, id));
    let dns_addr = |p: u16, id: u64| at(id, dns_addr(p, id));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let certs = dir.join("certs");
    crate::transport::certs::make(&certs, ids, &|id| vec![host(id)])?;
    for role in crate::access::Role::ALL {
        let name = format!("lab-{role}");
        if !certs.join(format!("operator-{name}.pem")).exists() {
            crate::transport::certs::operator(&certs, &name, role)?;
        }
    }
    let private = |path: &Path, text: String| {
        crate::transport::certs::write_private(path, &text)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let pass = dir.join("cluster.pass");
    if !pass.exists() {
        let mut b = [0u8; 24];
        aws_lc_rs::rand::fill(&mut b).map_err(|_| "no randomness")?;
        private(&pass, data_encoding::HEXLOWER.encode(&b))?;
    }
    let secret = dir.join("tsig.secret");
    if !secret.exists() {
        let mut b = [0u8; 32];
        aws_lc_rs::rand::fill(&mut b).map_err(|_| "no randomness")?;
        private(&secret, data_encoding::BASE64.encode(&b))?;
    }
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let mut out = Vec::new();
    for &id in ids {
        let mut t = format!(
            "id = {id}\ndata_dir = \"data-{id}\"\nraft_listen = \"{}\"\nadmin_listen = \"{}\"\n\
             keystore = \"embedded\"\npassphrase_file = \"cluster.pass\"\nlog_level = \"info\"\n{extra}\n\
             [tls]\nca = \"certs/ca.pem\"\ncert = \"certs/node-{id}.pem\"\nkey = \"certs/node-{id}.key\"\n\
             \n[dns]\nlisten = \"{}\"\n\n[[tsig]]\nname = \"{LAB_TSIG_KEY}\"\nsecret_file = \"tsig.secret\"\n\
             \n[admin]\nsocket = \"admin-{id}.sock\"\noperator_ca = \"certs/operator-ca.pem\"\n\
             [admin.users]\n\"{uid}\" = \"security-officer\"\n",
            raft_addr(base_port, id),
            admin_addr(base_port, id),
            dns_addr(base_port, id)
        );
        for &p in peers.iter().filter(|p| **p != id) {
            t.push_str(&format!(
                "\n[[peers]]\nid = {p}\nraft = \"{}\"\nadmin = \"https://{}\"\n",
                raft_addr(base_port, p),
                admin_addr(base_port, p)
            ));
        }
        let config = dir.join(format!("node-{id}.toml"));
        std::fs::write(&config, t).map_err(|e| e.to_string())?;
        out.push(LabNode {
            id,
            config,
            raft: raft_addr(base_port, id),
            admin: dir.join(format!("admin-{id}.sock")).display().to_string(),
            https: format!("https://{}", admin_addr(base_port, id)),
            dns: dns_addr(base_port, id),
            log: dir.join(format!("node-{id}.log")),
            env: Vec::new(),
        });
    }
    Ok(out)
}

/// Copies the directory `from` (a node's data dir) to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let t = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &t)?;
        } else {
            std::fs::copy(e.path(), &t)?;
        }
    }
    Ok(())
}

/// Starts `exe node run --config …`, logging to the node's log file (appended).
pub fn spawn(exe: &Path, n: &LabNode) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&n.log)
        .map_err(|e| format!("{}: {e}", n.log.display()))?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    Command::new(exe)
        .args(["node", "run", "--config"])
        .arg(&n.config)
        .envs(n.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{}: {e}", exe.display()))
}

/// Starts one node process (directly, or inside a network namespace).
pub type Launcher = Box<dyn Fn(&LabNode) -> Result<Child, String> + Send + Sync>;

/// The node processes of a lab: which run, signals, kill and restart, the leader they agree
/// on. Dropping it kills every process; while a test panics it also prints the tail of
/// each node's log.
pub struct Procs {
    pub nodes: Vec<LabNode>,
    children: Vec<Option<Child>>,
    launch: Launcher,
}

impl Procs {
    /// Nodes started by `launch`; none runs yet (see [`Procs::start`]).
    pub fn new(nodes: Vec<LabNode>, launch: Launcher) -> Procs {
        let children = nodes.iter().map(|_| None).collect();
        Procs {
            nodes,
            children,
            launch,
        }
    }

    /// Nodes run as `exe node run` on this host.
    pub fn local(nodes: Vec<LabNode>, exe: &Path) -> Procs {
        let exe = exe.to_path_buf();
        Procs::new(nodes, Box::new(move |n| spawn(&exe, n)))
    }

    /// Starts every node that does not run, then waits (up to 20 s each) for its admin API.
    pub fn start(&mut self) -> Result<(), String> {
        for id in self.ids() {
            self.restart(id)?;
        }
        for n in &self.nodes {
            wait_for(Duration::from_secs(20), || status(&n.admin))
                .ok_or_else(|| format!("node {} does not answer on {}", n.id, n.admin))?;
        }
        Ok(())
    }

    /// Adds a node to the lab and starts it.
    pub fn add(&mut self, n: LabNode) -> Result<(), String> {
        let id = n.id;
        self.nodes.push(n);
        self.children.push(None);
        self.restart(id)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn index(&self, id: u64) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id} in this lab"))
    }

    pub fn node(&self, id: u64) -> &LabNode {
        &self.nodes[self.index(id)]
    }

    /// Nodes whose process runs (stopped ones included).
    pub fn running(&self) -> Vec<&LabNode> {
        self.nodes
            .iter()
            .zip(&self.children)
            .filter(|(_, c)| c.is_some())
            .map(|(n, _)| n)
            .collect()
    }

    /// Sends `sig` to node `id`'s process; SIGKILL also reaps it.
    pub fn signal(&mut self, id: u64, sig: i32) {
        if sig == libc::SIGKILL {
            return self.kill(id);
        }
        if let Some(c) = &self.children[self.index(id)] {
            // SAFETY: signalling a child process this lab started.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// SIGKILLs node `id` (if it runs) and reaps it.
    pub fn kill(&mut self, id: u64) {
        let i = self.index(id);
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `id` again unless it runs.
    pub fn restart(&mut self, id: u64) -> Result<(), String> {
        let i = self.index(id);
        if self.children[i].is_none() {
            self.children[i] = Some((self.launch)(&self.nodes[i])?);
        }
        Ok(())
    }

    /// Whether node `id`'s process has ended by itself (without taking it from [`exited`]).
    pub fn node_exited(&mut self, id: u64) -> bool {
        let i = self.nodes.iter().position(|n| n.id == id);
        i.and_then(|i| self.children[i].as_mut())
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Nodes whose process ended by itself since the last look: (id, how).
    pub fn exited(&mut self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for (n, c) in self.nodes.iter().zip(self.children.iter_mut()) {
            if let Some(ch) = c
                && let Ok(Some(st)) = ch.try_wait()
            {
                out.push((n.id, st.to_string()));
                *c = None;
            }
        }
        out
    }

    /// SIGTERMs every node, gives each up to `grace` to finish, then kills what is left.
    pub fn shut_down(&mut self, grace: Duration) {
        for c in self.children.iter().flatten() {
            // SAFETY: signalling a child process this lab started.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        let end = Instant::now() + grace;
        for c in self.children.iter_mut().flatten() {
            while Instant::now() < end && !matches!(c.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.stop();
    }

    /// Kills every node.
    pub fn stop(&mut self) {
        for id in self.ids() {
            self.kill(id);
        }
    }

    /// The leader every running node names, once they agree and it runs (up to `timeout`).
    pub fn agreed_leader(&self, timeout: Duration) -> Option<u64> {
        wait_for(timeout, || {
            let running = self.running();
            let seen: Vec<Option<u64>> = running.iter().map(|n| leader_of(&n.admin)).collect();
            let first = (*seen.first()?)?;
            (running.iter().any(|n| n.id == first) && seen.iter().all(|s| *s == Some(first)))
                .then_some(first)
        })
    }

    /// Waits (up to `timeout`) until every running node has validated one serial of `zone`
    /// above `after`; returns each node's (serial, content hash), in node order.
    pub fn converged(
        &self,
        zone: &str,
        after: u64,
        timeout: Duration,
    ) -> Option<Vec<(u64, String)>> {
        wait_for(timeout, || {
            let v: Vec<(u64, String)> = self
                .running()
                .iter()
                .map(|n| validated_serial(&n.admin, zone))
                .collect::<Option<_>>()?;
            (v.first()?.0 > after && v.iter().all(|x| x.0 == v[0].0)).then_some(v)
        })
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            for n in &self.nodes {
                let log = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!(
                    "--- node {} log (last lines, newest first):\n{}",
                    n.id,
                    tail.join("\n")
                );
            }
        }
    }
}

/// The node's `/status`, if it answers.
pub fn status(admin: &str) -> Option<Value> {
    let a = call(admin, "GET", "/status", None, Duration::from_secs(3)).ok()?;
    (a.code == 200).then(|| a.json())
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    poll_every(Duration::from_millis(100), timeout, f)
}

/// Polls `f` every `every` until it returns `Some`, for at most `timeout`.
pub fn poll_every<T>(
    every: Duration,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// The zone's entry in a node status.
pub fn zone_of<'a>(status: &'a Value, zone: &str) -> Option<&'a Value> {
    status["zones"]
        .as_array()?
        .iter()
        .find(|z| z["name"] == zone)
}

/// The serial of `zone` that the node at `admin` has published and validated.
pub fn validated_serial(admin: &str, zone: &str) -> Option<(u64, String)> {
    let s = status(admin)?;
    let z = zone_of(&s, zone)?;
    let serial = z["serial"].as_u64()?;
    (z["validated_serial"].as_u64() == Some(serial) && z["alarm"].is_null())
        .then(|| (serial, z["hash"].as_str().unwrap_or("").to_string()))
}

/// Id of the leader as the node at `admin` sees it, if that node is sure.
pub fn leader_of(admin: &str) -> Option<u64> {
    status(admin)?["leader"].as_u64()
}

/// The DNSKEY records of a zone in presentation form (`owner ttl class DNSKEY …`), sorted.
pub fn dnskey_lines(zone_text: &str) -> Vec<String> {
    let mut v: Vec<String> = zone_text
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some("DNSKEY"))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}
