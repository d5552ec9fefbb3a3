//! A three-node lab cluster on loopback, started and initialised, with the helpers the
//! DNS tests share (leader, convergence, logs, kill and restart).

use std::time::Duration;

use quorumsign::testkit::lab::{self, LabNode};

use super::{qs, qs_bin};

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub procs: lab::Procs,
}

impl Cluster {
    pub fn start(port: u16) -> Cluster {
        Cluster::start_with(port, "")
    }

    /// Starts three nodes with `extra` in each node's configuration.
    pub fn start_with(port: u16, extra: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ids = [1, 2, 3];
        let nodes = lab::write(dir.path(), &ids, &ids, port, extra).unwrap();
        let mut c = Cluster {
            dir,
            procs: lab::Procs::local(nodes, &qs_bin()),
        };
        c.procs.start().unwrap();
        let (code, out, err) = qs(&["cluster", "init", "--admin", &c.procs.nodes[0].admin]);
        assert_eq!(code, 0, "cluster init: {out}{err}");
        c.leader();
        c
    }

    pub fn secret(&self) -> String {
        lab::lab_tsig_secret(self.dir.path()).unwrap()
    }

    pub fn running(&self) -> Vec<&LabNode> {
        self.procs.running()
    }

    pub fn leader(&self) -> u64 {
        self.procs
            .agreed_leader(Duration::from_secs(30))
            .expect("one leader all running nodes agree on")
    }

    /// Every running node has validated the same serial above `after` for `zone`, with the
    /// same content hash.
    pub fn converged(&self, zone: &str, after: u64) -> u64 {
        let v = self
            .procs
            .converged(zone, after, Duration::from_secs(60))
            .unwrap_or_else(|| {
                panic!("nodes did not converge on a serial of {zone} above {after}")
            });
        assert!(
            v.iter().all(|x| *x == v[0]),
            "same serial, same hash: {v:?}"
        );
        v[0].0
    }

    /// Every node's log, in node order.
    pub fn logs(&self) -> Vec<String> {
        self.procs
            .nodes
            .iter()
            .map(|n| std::fs::read_to_string(&n.log).unwrap_or_default())
            .collect()
    }

    pub fn restart(&mut self, id: u64) {
        assert!(self.running().iter().all(|n| n.id != id), "node {id} runs");
        self.procs.restart(id).unwrap();
    }

    pub fn kill(&mut self, id: u64) {
        self.procs.kill(id);
    }

    pub fn admin(&self) -> &str {
        &self.running()[0].admin
    }

    pub fn dns_port(&self, id: u64) -> String {
        let n = self.procs.node(id);
        n.dns.rsplit(':').next().unwrap().to_string()
    }
}
