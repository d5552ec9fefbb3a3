//! Proposing a version: its changes cut into bounded `Stage` entries, proposed a window
//! at a time, then the `Publish`.

use crate::node::Node;
use crate::replica::{Command, Outcome, Part, RrsetChange};

/// Largest encoded size of one `Stage` entry, roughly.
pub(super) const STAGE_BYTES: usize = 2 << 20;

/// `changes` cut into parts of about [`STAGE_BYTES`] (at least one part, perhaps empty),
/// each encoded once, on all cores.
pub(super) fn encode_parts(changes: Vec<RrsetChange>) -> Vec<Part> {
    use rayon::prelude::*;
    let mut cuts = vec![0];
    let mut bytes = 0usize;
    for (i, c) in changes.iter().enumerate() {
        bytes += c.owner.as_wire().len()
            + c.val.as_ref().map_or(0, |v| {
                v.rdatas.iter().map(|d| d.len() + 4).sum::<usize>()
                    + v.sigs.iter().map(|d| d.len() + 4).sum::<usize>()
            });
        if bytes >= STAGE_BYTES {
            cuts.push(i + 1);
            bytes = 0;
        }
    }
    if cuts.len() == 1 || *cuts.last().expect("one cut") != changes.len() {
        cuts.push(changes.len());
    }
    cuts.par_windows(2)
        .map(|w| Part::encode(&changes[w[0]..w[1]]))
        .collect()
}

pub(super) async fn propose(node: &Node, cmd: Command) -> Result<Outcome, String> {
    let what = cmd.to_string();
    match node.raft.client_write(cmd).await {
        Ok(r) => match r.data {
            Outcome::Refused(m) => Err(format!("{what}: refused: {m}")),
            o => Ok(o),
        },
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// Entries proposed together: pipelined, but bounded (8 × ~2 MiB).
pub(super) const PROPOSE_WINDOW: usize = 8;

/// Proposes `cmds` in order, in pipelined windows; the outcome of the last, or the first
/// refusal.
pub(super) async fn propose_all(node: &Node, cmds: Vec<Command>) -> Result<Outcome, String> {
    use futures::StreamExt;
    let mut last = Outcome::Done;
    let mut cmds = cmds.into_iter().peekable();
    while cmds.peek().is_some() {
        let window: Vec<Command> = cmds.by_ref().take(PROPOSE_WINDOW).collect();
        let n = window.len();
        let mut results = node
            .raft
            .client_write_many(window)
            .await
            .map_err(|e| format!("propose: {e}"))?;
        let mut seen = 0;
        while let Some(r) = results.next().await {
            seen += 1;
            match r.map_err(|e| format!("propose: {e}"))? {
                Ok(resp) => match resp.response {
                    Outcome::Refused(m) => return Err(format!("refused: {m}")),
                    o => last = o,
                },
                Err(e) => return Err(format!("propose: {e}")),
            }
        }
        if seen != n {
            return Err(format!("propose: {seen} of {n} entries answered"));
        }
    }
    Ok(last)
}
