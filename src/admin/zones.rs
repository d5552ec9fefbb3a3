//! `/zones`: add, change, reload, remove a zone, its signed text, its keys and backups.

use super::*;

/// A request under `/zones` (the caller's role already checked).
pub(super) async fn handle(
    node: &Arc<Node>,
    caller: &Caller,
    method: &str,
    parts: &[&str],
    path: &str,
    body: &[u8],
) -> Reply {
    match (method, parts) {
        ("GET", ["zones"]) => json_reply(
            200,
            crate::runtime::blocking(|| status(node))["zones"].clone(),
        ),
        ("POST", ["zones"]) => {
            let req: ZoneAdd = match parse(body) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let mut cfg = ZoneConfig::new(&req.name, "");
            if crate::zone::Name::parse(cfg.name.as_bytes(), None).is_err() {
                return error(400, format!("bad zone name {:?}", req.name));
            }
            if let Some(text) = &req.policy {
                match crate::kasp::Policy::from_toml(text, "policy") {
                    Ok(p) => cfg.set_policy(p),
                    Err(e) => return error(400, e),
                }
            }
            if let Some(d) = req.denial {
                cfg.denial = d;
            }
            if let Some(a) = req.algorithm {
                if crate::keys::Algorithm::from_number(a).is_err() {
                    return error(
                        400,
                        format!("algorithm {a} is not supported (8, 13, 14, 15)"),
                    );
                }
                cfg.algorithm = a;
            }
            if let Some(c) = req.csk {
                cfg.csk = c;
            }
            if let Err(e) = crate::signer::Denial::parse(&cfg.denial) {
                return error(400, e);
            }
            let opts = ZoneOpts {
                file: req.file,
                primary: req.primary,
                serial: req.serial,
                output: req.output.map(Some),
                notify: Some(req.notify),
                transfer: Some(req.transfer),
                max_records: req.max_records,
            };
            if let Err(e) = apply_opts(node, &mut cfg, opts, true) {
                return error(400, e);
            }
            let o = origin(node, caller, format!("zone add {} {}", cfg.name, cfg.input));
            propose(
                node,
                Command::AddZone {
                    zone: cfg,
                    origin: o,
                },
            )
            .await
        }
        ("PATCH", ["zones", name]) => {
            let name = absolute(name);
            let req: ZoneSet = match parse(body) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let Some(mut cfg) = node
                .sm
                .with(|st| st.zones.get(&name).and_then(|z| z.config.clone()))
            else {
                return error(404, format!("no zone {name}"));
            };
            if let Some(text) = &req.policy {
                match crate::kasp::Policy::from_toml(text, "policy") {
                    Ok(p) => cfg.set_policy(p),
                    Err(e) => return error(400, e),
                }
            }
            let opts = ZoneOpts {
                file: req.file,
                primary: req.primary,
                serial: req.serial,
                output: if req.no_output {
                    Some(None)
                } else {
                    req.output.map(Some)
                },
                notify: req.notify,
                transfer: req.transfer,
                max_records: req.max_records,
            };
            if let Err(e) = apply_opts(node, &mut cfg, opts, false) {
                return error(400, e);
            }
            let o = origin(node, caller, format!("zone set {name}"));
            propose(
                node,
                Command::SetZone {
                    zone: cfg,
                    origin: o,
                },
            )
            .await
        }
        ("DELETE", ["zones", name, "keys"]) => {
            let name = absolute(name);
            if let Err(r) = confirmed(body, &name, "destroying the keys of", "keys purge") {
                return r;
            }
            propose(
                node,
                Command::PurgeKeys {
                    zone: name.clone(),
                    origin: origin(node, caller, format!("keys purge {name}")),
                },
            )
            .await
        }
        ("DELETE", ["zones", name]) => {
            let name = absolute(name);
            if let Err(r) = confirmed(body, &name, "removing zone", "zone remove") {
                return r;
            }
            propose(
                node,
                Command::RemoveZone {
                    name: name.clone(),
                    origin: origin(node, caller, format!("zone remove {name}")),
                },
            )
            .await
        }
        ("POST", ["zones", name, "reload"]) => {
            let name = absolute(name);
            propose(
                node,
                Command::Reload {
                    name: name.clone(),
                    origin: origin(node, caller, format!("zone reload {name}")),
                },
            )
            .await
        }
        ("GET", ["zones", name, "signed"]) => {
            let name = absolute(name);
            let good = node.local().last_good.get(&name).cloned();
            node.sm.with(|st| {
                let Some(z) = st.zones.get(&name) else {
                    return error(404, format!("no zone {name}"));
                };
                if let Some(why) = node.stale(&mut node.local(), &name, z) {
                    return error(503, format!("not answering for {name}: {why}"));
                }
                match (&z.current, good) {
                    (Some(cur), Some(g)) if cur.token == g.token => Reply {
                        code: 200,
                        body: z.to_text().into_bytes(),
                        content_type: "text/dns",
                    },
                    (Some(cur), _) => error(
                        503,
                        format!("serial {} is not validated on this node yet", cur.serial),
                    ),
                    (None, _) => error(503, format!("zone {name} has no signed version yet")),
                }
            })
        }
        (m, ["zones", name, what @ ("keys" | "backup" | "policy-check")]) => {
            keys::handle(node, caller, m, name, what, body).await
        }
        _ => error(404, format!("no such endpoint: {method} {path}")),
    }
}
