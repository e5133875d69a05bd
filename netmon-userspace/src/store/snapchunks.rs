//! [`SnapshotChunks`]: the committed snapshot's rows one commit rewrites,
//! encoded by the store that owns their byte layout
//! ([`layout::SNAPSHOT`], [`layout::SNAPSHOT_KEYS`]).
//!
//! The drain keeps its snapshot as a slab of slots (slot `s` is row
//! `s / SNAP_CHUNK` of both tables) and knows which slots a step changes and
//! whether a change touches the rarely changing keys record. It hands those
//! and a way to read each slot's record as the commit will leave it; this
//! type groups them by chunk and writes the rows. A chunk left with no flow
//! gets an empty row (the commit deletes it).

use netmon_common::FlowKey;

use super::{
    SnapEntry,
    layout::{self, SNAP_CHUNK},
};

/// The [`layout::SNAPSHOT`] rows and the [`layout::SNAPSHOT_KEYS`] rows of
/// one commit, in chunk order (an empty value deletes the row); what
/// [`crate::store::Batch`]'s `snapshot_chunks` and `snapshot_key_chunks`
/// hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotChunks {
    /// Counter rows of every touched chunk.
    pub rows: Vec<(u32, Vec<u8>)>,
    /// Keys rows of the touched chunks where a keys record changed.
    pub key_rows: Vec<(u32, Vec<u8>)>,
}

/// Bytes a record takes, about (the rows' initial capacity).
const RECORD_BYTES: usize = 40;

impl SnapshotChunks {
    /// Encodes the chunks holding the `touched` slots (`(slot, keys
    /// changed)`, any order, a slot at most once), reading every slot of
    /// those chunks below `end` (the slab's length after the commit)
    /// through `record`: the flow it will hold after the commit, or `None`
    /// for a free slot.
    pub fn encode<'a>(
        touched: impl IntoIterator<Item = (u32, bool)>,
        end: u32,
        record: impl Fn(u32) -> Option<(&'a FlowKey, &'a SnapEntry)>,
    ) -> Self {
        let mut chunks: Vec<(u32, bool)> = touched
            .into_iter()
            .map(|(slot, keys)| (slot / SNAP_CHUNK, keys))
            .collect();
        // Per chunk, `keys` set if any change needs it (sorted last).
        chunks.sort_unstable();
        chunks.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 |= later.1;
            }
            same
        });
        let chunk_bytes = RECORD_BYTES * SNAP_CHUNK as usize;
        let mut out = Self {
            rows: Vec::with_capacity(chunks.len()),
            key_rows: Vec::new(),
        };
        for (c, with_keys) in chunks {
            let first = c * SNAP_CHUNK;
            let last = first.saturating_add(SNAP_CHUNK).min(end.max(first));
            let mut hot = Vec::with_capacity(chunk_bytes);
            let mut keys = Vec::with_capacity(if with_keys { chunk_bytes } else { 0 });
            for s in first..last {
                if let Some((key, entry)) = record(s) {
                    layout::encode_snap_record(&mut hot, entry);
                    if with_keys {
                        // `s - first` < SNAP_CHUNK = 256.
                        let off = u8::try_from(s - first).unwrap_or(u8::MAX);
                        layout::encode_snap_keys_record(&mut keys, off, key, entry);
                    }
                }
            }
            out.rows.push((c, hot));
            if with_keys {
                out.key_rows.push((c, keys));
            }
        }
        out
    }

    /// Whether a flow's keys record changes when its entry goes from `old`
    /// to `new` (the flow key staying the same): then its chunk's keys row
    /// is rewritten too.
    #[must_use]
    pub fn keys_differ(old: &SnapEntry, new: &SnapEntry) -> bool {
        layout::snap_keys_differ(old, new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Traffic;

    fn entry(n: u64) -> SnapEntry {
        let mut e = SnapEntry::default();
        e.counters.tx.packets = n;
        e
    }

    /// Rows come per chunk in order, every occupied slot of a touched chunk
    /// is written (touched or not), keys rows only where asked, and a chunk
    /// left empty gets an empty row.
    #[test]
    fn groups_by_chunk_and_writes_keys_rows_only_when_asked() {
        let keys: Vec<FlowKey> = (0..600)
            .map(|c| FlowKey {
                cookie: c,
                ..FlowKey::default()
            })
            .collect();
        let entries: Vec<SnapEntry> = (0..600).map(entry).collect();
        // Slots 0, 1 and 300 hold flows; 256..512 is chunk 1; chunk 2
        // (512..600) is empty.
        let occupied = |s: u32| matches!(s, 0 | 1 | 300);
        let record = |s: u32| occupied(s).then(|| (&keys[s as usize], &entries[s as usize]));
        let out = SnapshotChunks::encode(
            [(300, false), (1, false), (0, true), (520, true)],
            600,
            record,
        );
        let chunk_ids: Vec<u32> = out.rows.iter().map(|(c, _)| *c).collect();
        assert_eq!(chunk_ids, vec![0, 1, 2]);
        let key_ids: Vec<u32> = out.key_rows.iter().map(|(c, _)| *c).collect();
        assert_eq!(key_ids, vec![0, 2]);
        let mut one = Vec::new();
        layout::encode_snap_record(&mut one, &entries[0]);
        layout::encode_snap_record(&mut one, &entries[1]);
        assert_eq!(out.rows[0].1, one);
        let mut k = Vec::new();
        layout::encode_snap_keys_record(&mut k, 0, &keys[0], &entries[0]);
        layout::encode_snap_keys_record(&mut k, 1, &keys[1], &entries[1]);
        assert_eq!(out.key_rows[0].1, k);
        assert!(out.rows[2].1.is_empty() && out.key_rows[1].1.is_empty());
        assert!(!SnapshotChunks::keys_differ(&entries[0], &entries[0]));
        let mut moved = entries[0];
        moved.pending.older = Traffic::default();
        moved.first_boottime_ns = 7;
        assert!(SnapshotChunks::keys_differ(&entries[0], &moved));
    }
}
