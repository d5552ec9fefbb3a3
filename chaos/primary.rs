//! A hidden primary for the chaos run's second zone: it answers SOA at once and sends its
//! zone by AXFR, whole, except while a `trickle` episode lasts: then it sends one record a
//! second (each message well inside the signer's per-message timeout) and never the closing
//! SOA, until the episode ends. Other zones must meanwhile be signed and served as ever.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::rdata::{A, NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The zone this primary serves.
pub const ZONE: &str = "slow.";

#[derive(Default)]
pub struct Primary {
    pub serial: AtomicU32,
    pub trickle: AtomicBool,
    /// AXFRs sent whole, and trickled.
    pub whole: AtomicU64,
    pub trickled: AtomicU64,
}

impl Primary {
    /// Listens on `host:port` (bounded: 2,000 connections, each in a thread of its own).
    pub fn start(host: &str, port: u16) -> Arc<Primary> {
        let p = Arc::new(Primary {
            serial: AtomicU32::new(1),
            ..Default::default()
        });
        let l = std::net::TcpListener::bind((host, port)).expect("primary port");
        let me = p.clone();
        std::thread::spawn(move || {
            for s in l.incoming().take(2_000).flatten() {
                let me = me.clone();
                std::thread::spawn(move || me.answer(s));
            }
        });
        p
    }

    fn answer(&self, mut s: std::net::TcpStream) -> Option<()> {
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut len = [0u8; 2];
        s.read_exact(&mut len).ok()?;
        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut q).ok()?;
        let req = Message::from_vec(&q).ok()?;
        let query = req.queries.first()?.clone();
        let n = |s: &str| Name::from_ascii(s).expect("name");
        let serial = self.serial.load(SeqCst);
        let soa = Record::from_rdata(
            n(ZONE),
            300,
            RData::SOA(SOA::new(
                n("ns.slow."),
                n("host.slow."),
                serial,
                2,
                1,
                86400,
                60,
            )),
        );
        let send = |s: &mut std::net::TcpStream, recs: Vec<Record>| {
            let mut m = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
            m.metadata.authoritative = true;
            m.add_query(query.clone());
            m.add_answers(recs);
            let b = m.to_vec().ok()?;
            s.write_all(&[&(b.len() as u16).to_be_bytes()[..], &b].concat())
                .ok()
        };
        if query.query_type() != RecordType::AXFR {
            return send(&mut s, vec![soa]);
        }
        let ns = Record::from_rdata(n(ZONE), 300, RData::NS(NS(n("ns.slow."))));
        let host = |i: u32| {
            Record::from_rdata(
                n(&format!("h{i}.slow.")),
                300,
                RData::A(A::new(192, 0, 2, 9)),
            )
        };
        if !self.trickle.load(SeqCst) {
            self.whole.fetch_add(1, SeqCst);
            return send(&mut s, vec![soa.clone(), ns, host(0), host(1), soa]);
        }
        self.trickled.fetch_add(1, SeqCst);
        send(&mut s, vec![soa, ns])?;
        for i in 0..120 {
            if !self.trickle.load(SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            send(&mut s, vec![host(i)])?;
        }
        Some(()) // closed without the closing SOA: a truncated transfer
    }
}
