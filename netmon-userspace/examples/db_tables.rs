//! Prints every table of a netmon history file with its rows and stored
//! bytes (redb's table statistics): where the file's bytes go.
//!
//! Run: `cargo run --release -p netmon-userspace --example db_tables -- FILE`
use redb::{ReadableDatabase as _, ReadableTableMetadata as _, TableHandle as _};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: db_tables FILE")?;
    let db = redb::ReadOnlyDatabase::open(&path)?;
    let txn = db.begin_read()?;
    let mut rows = Vec::new();
    for handle in txn.list_tables()? {
        let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(handle.name());
        let Ok(table) = txn.open_table(def) else {
            continue;
        };
        let stats = table.stats()?;
        rows.push((
            stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes(),
            handle.name().to_owned(),
            table.len()?,
            stats.stored_bytes(),
        ));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    println!(
        "{:<24} {:>12} {:>14} {:>14}",
        "TABLE", "ROWS", "STORED B", "WITH PAGES B"
    );
    for (total, name, n, stored) in rows {
        println!("{name:<24} {n:>12} {stored:>14} {total:>14}");
    }
    println!("file: {} bytes", std::fs::metadata(&path)?.len());
    Ok(())
}
