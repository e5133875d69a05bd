//! Server names of flows: which name a flow's remote bytes are counted
//! under, decided once.
//!
//! The source reports each flow's name once ([`Reading::names`]), no later
//! than the first reading in which the flow carries payload. The drain
//! therefore **decides** a flow's name at the first reading where its
//! counters show payload (or when it closes), and never revises it:
//! - a name reported for a flow that had payload in an earlier committed
//!   reading is ignored (the flow was decided without one);
//! - until a flow is decided, its bytes (handshake, SYN/ACK: no payload)
//!   stay in its snapshot entry's pending pieces, which the background
//!   flush leaves alone ([`FlowNames::hold`]); when the name comes, those
//!   pieces are relabelled with it before any of them reached a rollup, so
//!   the whole flow is counted under its name. Only a flow that carries no
//!   payload for three minutes, or changes owner meanwhile, has bytes
//!   flushed unnamed before its name is known (drain invariant 8 flushes a
//!   piece then whatever it holds).
//!
//! Per-name totals plus the unnamed rows equal the per remote totals to
//! the byte: the name is one more field of the remote key
//! ([`crate::store::RemoteKey::name`]), every byte is flushed under exactly
//! one key.
//!
//! The accepted names are committed with the snapshot
//! ([`crate::store::names::FLOW_NAMES`]), so a restarted drain and every
//! reader label pending pieces alike; names of flows that left the
//! snapshot are dropped once a minute. With `[names] enabled = false`
//! nothing is accepted and committed names are deleted.
use netmon_common::FlowKey;

use crate::source::Reading;
use crate::store::names::NameId;
use crate::store::{RemotePending, TimeMs, Traffic};

use super::PeerMap;

/// The drain's per flow names (see the module docs).
#[derive(Debug)]
pub(super) struct FlowNames {
    /// Names are accepted and stored.
    enabled: bool,
    /// Accepted names of the snapshot's flows (named flows only).
    flows: PeerMap<FlowKey, NameId>,
    /// [`crate::store::names::FLOW_NAMES`] changes for the next commit
    /// (`NameId::NONE`: delete).
    writes: Vec<(FlowKey, NameId)>,
    /// Minute of the last sweep of names of flows that left.
    swept: Option<TimeMs>,
    /// The names put by the last batch: taken again by a reload (a failed
    /// commit lost them, and the source reports a name once).
    inflight: Vec<(FlowKey, NameId)>,
}

impl Default for FlowNames {
    fn default() -> Self {
        Self {
            enabled: true,
            flows: PeerMap::default(),
            writes: Vec::new(),
            swept: None,
            inflight: Vec::new(),
        }
    }
}

/// Payload bytes in either direction.
pub(super) const fn has_payload(t: &Traffic) -> bool {
    t.tx.payload_bytes > 0 || t.rx.payload_bytes > 0
}

impl FlowNames {
    /// Turns names on or off (off: nothing accepted, committed names
    /// deleted by the next commit).
    pub(super) fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
        if !enabled {
            let gone: Vec<FlowKey> = self.flows.drain().map(|(k, _)| k).collect();
            self.writes
                .extend(gone.into_iter().map(|k| (k, NameId::NONE)));
        }
    }

    /// After a (re)load: the committed names (`stored`) of flows in the
    /// snapshot (`live`) are kept, the others deleted by the next commit;
    /// names taken since the last commit (which may have failed) are taken
    /// again (returned, for their flows' pending pieces).
    pub(super) fn load(
        &mut self,
        stored: impl IntoIterator<Item = (FlowKey, NameId)>,
        live: impl Fn(&FlowKey) -> bool,
    ) -> Vec<(FlowKey, NameId)> {
        // Names not committed: those of the last batch and those of a step
        // that failed before its batch.
        let mut again = std::mem::take(&mut self.inflight);
        again.extend(self.writes.drain(..).filter(|(_, n)| !n.is_none()));
        self.flows.clear();
        self.swept = None;
        for (k, n) in stored {
            if self.enabled && live(&k) && !n.is_none() {
                self.flows.insert(k, n);
            } else {
                self.writes.push((k, NameId::NONE));
            }
        }
        if !self.enabled {
            again.clear();
        }
        again.retain(|(k, n)| self.flows.get(k) != Some(n));
        for (k, n) in &again {
            self.flows.insert(*k, *n);
            self.writes.push((*k, *n));
        }
        again
    }

    /// Takes the names of `reading`: accepts each for a flow that was not
    /// decided before (`decided(key)`: its committed counters had
    /// payload) and has no name yet. Returns the accepted ones, whose
    /// committed pending pieces the caller relabels.
    pub(super) fn observe(
        &mut self,
        reading: &Reading,
        decided: impl Fn(&FlowKey) -> bool,
    ) -> Vec<(FlowKey, NameId)> {
        if !self.enabled || reading.names.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (key, name) in &reading.names {
            if self.flows.contains_key(key) || decided(key) {
                continue;
            }
            let id = NameId::of(name);
            self.flows.insert(*key, id);
            self.writes.push((*key, id));
            out.push((*key, id));
        }
        out
    }

    /// The name a flow's bytes are counted under.
    pub(super) fn of(&self, key: &FlowKey) -> NameId {
        if self.flows.is_empty() {
            return NameId::NONE;
        }
        self.flows.get(key).copied().unwrap_or_default()
    }

    /// True when the pending pieces `p` of a flow whose counters are
    /// `counters` must not be flushed yet: the flow is not decided (no
    /// payload, not closed, no name) and a name may still come.
    pub(super) fn hold(&self, p: &RemotePending, counters: &Traffic, closed: bool) -> bool {
        self.enabled && p.name.is_none() && !closed && !has_payload(counters)
    }

    /// Once a minute: forgets the names of flows no longer in the snapshot
    /// (`live`), deleting their rows with the next commit.
    pub(super) fn sweep(&mut self, minute: TimeMs, live: impl Fn(&FlowKey) -> bool) {
        if self.swept == Some(minute) {
            return;
        }
        self.swept = Some(minute);
        let gone: Vec<FlowKey> = self.flows.keys().filter(|k| !live(k)).copied().collect();
        for k in gone {
            self.flows.remove(&k);
            self.writes.push((k, NameId::NONE));
        }
    }

    /// The changes to commit with this step.
    pub(super) fn take_writes(&mut self) -> Vec<(FlowKey, NameId)> {
        let w = std::mem::take(&mut self.writes);
        self.inflight = w.iter().filter(|(_, n)| !n.is_none()).copied().collect();
        w
    }

    /// Gives back memory after a burst of flows.
    pub(super) fn shrink(&mut self) {
        self.flows.shrink_to_fit();
    }

    /// `reading` with the accepted name of each of its flows in `names`
    /// (for live readers: every named flow, not only this step's news).
    pub(super) fn label(&self, mut reading: Reading) -> Reading {
        reading.names = reading
            .flows
            .iter()
            .filter_map(|f| Some((f.key, (*self.flows.get(&f.key)?.get()?).clone())))
            .collect();
        reading
    }
}

impl super::Drain {
    /// Stores server names or not (`[names] enabled`); on by default.
    pub fn set_names(&mut self, enabled: bool) {
        self.names.set_enabled(enabled);
        self.unlabel_if_off();
    }

    /// With names off, no pending piece keeps a name (their rows are
    /// deleted by the next commit; a failed one reloads and gets here
    /// again).
    fn unlabel_if_off(&mut self) {
        if !self.names.enabled {
            for s in self.slots.iter_mut().flatten() {
                s.entry.pending.name = NameId::NONE;
            }
        }
    }

    /// Reloads the committed names of the snapshot's flows (after
    /// [`super::Drain`]'s snapshot was (re)loaded).
    pub(super) fn load_names(
        &mut self,
        store: &mut crate::store::Store,
    ) -> Result<(), crate::store::StoreError> {
        let stored = store.flow_names()?;
        let index = &self.index;
        for (key, id) in self.names.load(stored, |k| index.contains_key(k)) {
            self.relabel(&key, id);
        }
        self.unlabel_if_off();
        Ok(())
    }

    /// This step's names: accepted ones relabel the committed pending
    /// pieces of their flow (not flushed yet: held while undecided). The
    /// slots are changed in memory only: the label is not part of the
    /// snapshot chunks but of the name rows this step commits, and a failed
    /// step reloads both. Once a minute, first, names of flows that left
    /// go.
    pub(super) fn take_names(&mut self, reading: &Reading, minute: TimeMs) {
        // First the names of flows that left (new flows are not in the
        // index before their first commit).
        let index = &self.index;
        self.names.sweep(minute, |k| index.contains_key(k));
        let (index, slots) = (&self.index, &self.slots);
        let decided = |k: &FlowKey| {
            index
                .get(k)
                .and_then(|s| slots.get(super::slot_index(*s)))
                .and_then(Option::as_ref)
                .is_some_and(|s| has_payload(&s.entry.counters))
        };
        for (key, id) in self.names.observe(reading, decided) {
            self.relabel(&key, id);
        }
    }

    /// Labels the committed pending pieces of `key` with its name.
    fn relabel(&mut self, key: &FlowKey, id: NameId) {
        if let Some(s) = self.index.get(key).copied()
            && let Some(Some(slot)) = self.slots.get_mut(super::slot_index(s))
        {
            slot.entry.pending.name = id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{FlowName, NameSource};

    fn key(cookie: u64) -> FlowKey {
        FlowKey {
            cookie,
            ..FlowKey::default()
        }
    }

    fn reading(names: &[(u64, &str)]) -> Reading {
        Reading {
            names: names
                .iter()
                .map(|(c, n)| {
                    (
                        key(*c),
                        FlowName {
                            server_name: (*n).to_owned(),
                            source: NameSource::Sni,
                        },
                    )
                })
                .collect(),
            ..Reading::default()
        }
    }

    #[test]
    fn a_name_is_taken_once_and_only_before_the_flow_is_decided() {
        let mut n = FlowNames::default();
        let got = n.observe(&reading(&[(1, "a.example"), (2, "b.example")]), |k| {
            k.cookie == 2
        });
        assert_eq!(got.len(), 1, "flow 2 had payload before: decided unnamed");
        assert_eq!(n.of(&key(2)), NameId::NONE);
        let a = n.of(&key(1));
        assert_eq!(
            a.get().map(|f| f.server_name.clone()).as_deref(),
            Some("a.example")
        );
        // Reported again with another name: the first one stays.
        assert!(
            n.observe(&reading(&[(1, "c.example")]), |_| false)
                .is_empty()
        );
        assert_eq!(n.of(&key(1)), a);
        assert_eq!(n.take_writes(), vec![(key(1), a)]);
    }

    #[test]
    fn undecided_flows_are_held_and_disabled_names_are_dropped() {
        let mut n = FlowNames::default();
        let mut t = Traffic::default();
        t.tx.ip_bytes = 60;
        let p = RemotePending::default();
        assert!(n.hold(&p, &t, false), "handshake only: held");
        assert!(!n.hold(&p, &t, true), "closed: decided");
        t.rx.payload_bytes = 1;
        assert!(!n.hold(&p, &t, false), "payload: decided");
        let x = NameId::of(&FlowName {
            server_name: "x.example".to_owned(),
            source: NameSource::Dns,
        });
        // The last batch put x for flow 3, and its commit failed: a reload
        // takes it again.
        n.writes.push((key(3), x));
        assert_eq!(n.take_writes(), vec![(key(3), x)]);
        let again = n.load(
            [
                (
                    key(1),
                    NameId::of(&FlowName {
                        server_name: "x.example".to_owned(),
                        source: NameSource::Dns,
                    }),
                ),
                (key(2), NameId::NONE),
            ],
            |k| k.cookie == 1,
        );
        assert_eq!(again, vec![(key(3), x)]);
        assert_eq!(n.of(&key(3)), x);
        assert_eq!(n.take_writes(), vec![(key(2), NameId::NONE), (key(3), x)]);
        n.sweep(60_000, |k| k.cookie == 3);
        assert_eq!(n.take_writes(), vec![(key(1), NameId::NONE)]);
        n.set_enabled(false);
        assert!(
            n.observe(&reading(&[(3, "y.example")]), |_| false)
                .is_empty()
        );
        assert!(!n.hold(&RemotePending::default(), &Traffic::default(), false));
    }
}
