//! A lab cluster of nodes 1..=n on loopback with the example zone added (`example.`, from
//! a copy of `examples/example.zone` the tests edit), and the helpers the cluster tests share.

use std::path::PathBuf;
use std::time::Duration;

use quorumsign::testkit::lab::{self, LabNode};
use serde_json::Value;

use super::{p, qs, qs_bin};

const ZONE: &str = "example.";

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub procs: lab::Procs,
}

impl Cluster {
    /// Starts nodes 1..=n (peers of each other), initialises them and adds the example zone.
    pub fn start(n: u64, port: u16, extra: &str) -> Cluster {
        Cluster::start_with(n, port, extra, |_| ())
    }

    /// As `start`, with `adjust` applied to the node layout before the nodes start.
    pub fn start_with(n: u64, port: u16, extra: &str, adjust: impl Fn(&mut LabNode)) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<u64> = (1..=n).collect();
        let mut nodes = lab::write(dir.path(), &ids, &ids, port, extra).unwrap();
        nodes.iter_mut().for_each(adjust);
        let mut c = Cluster {
            dir,
            port,
            procs: lab::Procs::local(nodes, &qs_bin()),
        };
        c.procs.start().unwrap();
        let (code, out, err) = qs(&["cluster", "init", "--admin", &c.procs.nodes[0].admin]);
        assert_eq!(code, 0, "cluster init: {out}{err}");
        c.leader();
        let zone = c.zone_file();
        std::fs::copy(super::example_zone(), &zone).unwrap();
        let (code, out, err) = qs(&[
            "zone",
            "add",
            ZONE,
            "--file",
            p(&zone),
            "--admin",
            &c.procs.nodes[0].admin,
        ]);
        assert_eq!(code, 0, "zone add: {out}{err}");
        c
    }

    pub fn zone_file(&self) -> PathBuf {
        self.dir.path().join("example.zone")
    }

    pub fn node(&self, id: u64) -> &LabNode {
        self.procs.node(id)
    }

    /// The leader every running node agrees on.
    pub fn leader(&self) -> u64 {
        self.procs
            .agreed_leader(Duration::from_secs(30))
            .expect("one leader all running nodes agree on")
    }

    /// Waits until every running node has validated one serial above `after`; returns it
    /// with its hash, after checking all nodes hold the same hash.
    pub fn converged(&self, after: u64) -> (u64, String) {
        let got = self
            .procs
            .converged(ZONE, after, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("nodes did not converge on a serial above {after}"));
        for (s, h) in &got {
            assert_eq!(
                (s, h),
                (&got[0].0, &got[0].1),
                "same serial, same content hash on every node"
            );
        }
        got[0].clone()
    }

    pub fn zone_status(&self, id: u64) -> Value {
        let s = lab::status(&self.node(id).admin).unwrap();
        lab::zone_of(&s, ZONE).unwrap().clone()
    }

    /// The signed zone as node `id` holds it.
    pub fn signed(&self, id: u64) -> String {
        let (code, out, err) = qs(&["zone", "show", ZONE, "--admin", &self.node(id).admin]);
        assert_eq!(code, 0, "zone show on node {id}: {err}");
        out
    }

    pub fn kill(&mut self, id: u64, sig: i32) {
        self.procs.signal(id, sig);
    }

    pub fn restart(&mut self, id: u64) {
        self.procs.restart(id).unwrap();
    }

    pub fn append_record(&self, line: &str) {
        let mut t = std::fs::read_to_string(self.zone_file()).unwrap();
        t.push_str(line);
        t.push('\n');
        std::fs::write(self.zone_file(), t).unwrap();
    }
}
