//! The module map in `docs/architecture.md` matches the tree: every source
//! file of `netmon-userspace/src` is listed there, and every `.rs` path the
//! map lists exists. A new file comes with its line in the map.
use std::path::{Path, PathBuf};

fn rs_files(dir: &Path, root: &Path, out: &mut Vec<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries {
        let path = e.expect("directory entry").path();
        if path.is_dir() {
            rs_files(&path, root, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let rel = path.strip_prefix(root).expect("under src");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The backticked `*.rs` paths in the rows of the map's table.
fn listed(doc: &str) -> Vec<String> {
    let start = doc
        .find("## Module map of `netmon-userspace/src`")
        .expect("docs/architecture.md has the module map section");
    let section = &doc[start..];
    let section = section[3..]
        .find("\n## ")
        .map_or(section, |end| &section[..end + 3]);
    section
        .lines()
        .filter(|l| l.starts_with('|'))
        .flat_map(|l| l.split('`').skip(1).step_by(2))
        .filter(|t| t.ends_with(".rs") && !t.contains(' '))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_source_file_is_in_the_module_map_and_back() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let src = crate_dir.join("src");
    let mut files = Vec::new();
    rs_files(&src, &src, &mut files);
    files.sort();
    assert!(files.len() > 50, "the source tree was found: {files:?}");
    let doc_path = crate_dir.join("../docs/architecture.md");
    let doc = std::fs::read_to_string(&doc_path)
        .unwrap_or_else(|e| panic!("{}: {e}", doc_path.display()));
    let map = listed(&doc);
    assert!(!map.is_empty(), "the map lists files");
    let missing: Vec<&String> = files.iter().filter(|f| !map.contains(f)).collect();
    assert!(
        missing.is_empty(),
        "not in the module map of docs/architecture.md (add a line or a file to its row): {missing:?}"
    );
    let stale: Vec<&String> = map.iter().filter(|f| !files.contains(f)).collect();
    assert!(
        stale.is_empty(),
        "in the module map of docs/architecture.md but not in netmon-userspace/src: {stale:?}"
    );
}
