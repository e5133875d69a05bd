//! What the store does with files that are not what it expects: a non-redb
//! or corrupt file (clear error naming it, never overwritten), a newer
//! schema (refused), a foreign redb file (refused), and a full disk (the
//! drain reports it, nothing is lost, writing resumes when space returns).
use std::path::{Path, PathBuf};
use std::sync::Arc;

use netmon::drain::Drain;
use netmon::source::sim::{ScriptBuilder, SimResolver, SimSource, per_tick};
use netmon::store::{DaemonEvent, Retention, Store, StoreError};

mod query_support;

#[path = "../src/testing.rs"]
mod testing;

fn open_err(path: &Path) -> StoreError {
    Store::open(path, Retention::default()).expect_err("must be refused")
}

/// The error and its causes on one line, as `netmon` prints them.
fn chain(e: &StoreError) -> String {
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[test]
fn non_redb_file_is_named_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("netmon.redb");
    let content = b"this is somebody's spreadsheet, not a database\n".repeat(100);
    std::fs::write(&path, &content).expect("writes");
    let msg = chain(&open_err(&path));
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("not a netmon database"), "{msg}");
    assert_eq!(
        std::fs::read(&path).expect("reads"),
        content,
        "file untouched"
    );
}

#[test]
fn corrupt_redb_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("netmon.redb");
    {
        Store::open(&path, Retention::default()).expect("creates");
    }
    // Keep the magic, wreck the header and the pages after it.
    let mut bytes = std::fs::read(&path).expect("reads");
    let mut rng = fastrand::Rng::with_seed(3);
    for b in bytes.iter_mut().skip(9) {
        *b = rng.u8(..);
    }
    std::fs::write(&path, &bytes).expect("writes");
    let msg = chain(&open_err(&path));
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn newer_schema_is_refused_and_foreign_redb_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("netmon.redb");
    {
        Store::open(&path, Retention::default()).expect("creates");
    }
    {
        let db = redb::Database::create(&path).expect("raw open");
        let txn = db.begin_write().expect("txn");
        {
            let mut meta = txn.open_table(netmon::store::layout::META).expect("meta");
            meta.insert(
                netmon::store::layout::META_SCHEMA,
                99u32.to_be_bytes().as_slice(),
            )
            .expect("insert");
        }
        txn.commit().expect("commit");
    }
    let msg = chain(&open_err(&path));
    assert!(msg.contains("newer") && msg.contains("99"), "{msg}");

    let foreign = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&foreign).expect("raw create");
        let txn = db.begin_write().expect("txn");
        {
            let def: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("someone_elses");
            txn.open_table(def)
                .expect("table")
                .insert(1, 2)
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    assert!(
        matches!(open_err(&foreign), StoreError::Open { source, .. } if matches!(*source, StoreError::NotNetmon))
    );
}

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one (needs root: probe with [`testing::is_root`] first).
    fn mount(size: &str) -> Self {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("mnt");
        std::fs::create_dir(&dir).expect("mkdir");
        nix::mount::mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size}").as_str()),
        )
        .expect("mount tmpfs");
        Self {
            dir,
            _parent: parent,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("unmounting {}: {e}", self.dir.display());
        }
    }
}

/// Fills the file system until a write fails.
fn fill(path: &Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0xa5u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn disk_full_loses_nothing_and_writing_resumes() {
    let test = "disk_full_loses_nothing_and_writing_resumes";
    if !testing::require(testing::is_root(), test, "root (to mount a small tmpfs)") {
        return;
    }
    let fs = Tmpfs::mount("4M");
    let mut b = ScriptBuilder::new(1000);
    let procs: Vec<_> = (0..20)
        .map(|i| b.process(200 + i, 1, &format!("p{i}"), 0..=u64::MAX))
        .collect();
    for (i, p) in procs.iter().enumerate() {
        let c = i as u64 + 1;
        b.socket(c, Some(*p), None).flow(
            c,
            &format!("198.51.100.{}:443", i + 1),
            0..=100_000,
            per_tick(3, 1000),
            per_tick(5, 7000),
        );
    }
    for c in 0..400u64 {
        let from = c * 5;
        b.socket(1000 + c, Some(procs[(c % 20) as usize]), Some(from + 3))
            .flow(
                1000 + c,
                "10.9.8.7:22",
                from..=from + 2,
                per_tick(1, c),
                per_tick(1, 2 * c),
            );
    }
    let script = b.build().expect("valid");
    let db = fs.dir.join("netmon.redb");
    let (mut store, _) = Store::open(&db, Retention::default()).expect("opens");
    let mut drain = Drain::new(&mut store).expect("drain");
    let mut source = SimSource::new(Arc::new(script.clone()));
    let mut resolver = SimResolver::new(&script);
    let at = |k: u64| 1_700_000_000_000 + k * 1000;
    let mut tick = 0u64;
    let mut step = |tick: u64, source: &mut SimSource, store: &mut Store, drain: &mut Drain| {
        source.set_tick(tick);
        drain.step(source, &mut resolver, store, at(tick), Vec::new())
    };
    for _ in 0..20 {
        tick += 1;
        step(tick, &mut source, &mut store, &mut drain).expect("commits while there is space");
    }
    let filler = fs.dir.join("filler");
    fill(&filler);
    let mut failures = 0;
    while failures < 5 && tick < 5_000 {
        tick += 1;
        match step(tick, &mut source, &mut store, &mut drain) {
            Ok(_) => {}
            Err(e) => {
                assert!(
                    matches!(&e, netmon::drain::DrainError::Store(s) if s.is_io()),
                    "disk full is an I/O error: {e}"
                );
                failures += 1;
            }
        }
    }
    assert!(
        failures >= 5,
        "the full disk was noticed (ticks driven: {tick})"
    );
    assert!(drain.failures() > 0, "the drain reports the failures");
    std::fs::remove_file(&filler).expect("space returns");
    for _ in 0..10 {
        tick += 1;
        step(tick, &mut source, &mut store, &mut drain).expect("commits again once space is back");
    }
    let truth = script.truth(0..=tick);
    let totals = query_support::by_process(&mut store, &(0..u64::MAX / 2));
    assert_eq!(
        totals, truth.per_process,
        "nothing lost or doubled across the full disk"
    );
    // Remote bytes wait in the snapshot (drain invariant 8): rows plus
    // pending pieces are exact across the failed commits too.
    let remotes = query_support::by_remote(&mut store, &(0..u64::MAX / 2));
    assert_eq!(
        remotes, truth.per_remote,
        "remote totals exact across the full disk"
    );
    let recorded: u64 = store
        .events(&(0..u64::MAX / 2))
        .expect("events")
        .into_iter()
        .filter_map(|(_, e)| match e {
            DaemonEvent::WriteRecovered { failures, error } => {
                assert!(error.contains("No space left"), "{error}");
                Some(failures)
            }
            _ => None,
        })
        .sum();
    assert_eq!(
        recorded, failures,
        "every failed interval is recorded once writing recovers"
    );
}
