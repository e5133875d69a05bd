//! Output formats and the small helpers tables need.
use std::io::{IsTerminal as _, Write};

use serde::Serialize;

/// Output format flags shared by every command.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Output format. Default: table on a terminal, JSON otherwise.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Short for `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Raw byte counts instead of KiB/MiB/GiB in tables.
    #[arg(long)]
    pub bytes: bool,
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One pretty JSON document.
    Json,
    /// A readable table.
    Table,
    /// Newline-delimited JSON: one compact document (or row) per line.
    Ndjson,
    /// Comma-separated values with a header row.
    Csv,
}

impl OutputArgs {
    /// The format to use: explicit flag, else table on a terminal, else JSON.
    #[must_use]
    pub fn resolve(&self) -> Format {
        if self.json {
            return Format::Json;
        }
        self.format.unwrap_or_else(|| {
            if std::io::stdout().is_terminal() {
                Format::Table
            } else {
                Format::Json
            }
        })
    }
}

/// Writes `doc` as pretty JSON plus a newline to stdout.
///
/// # Errors
/// I/O errors (a broken pipe is recognised by `main`).
pub fn print_json<T: Serialize>(doc: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, doc)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Human-readable byte count: `512 B`, `1.5 KiB`, `3.2 GiB`; raw with `raw`.
#[must_use]
pub fn human_bytes(n: u64, raw: bool) -> String {
    if raw {
        return n.to_string();
    }
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A table: a header row and rows of cells, printed with aligned columns
/// (numbers right-aligned).
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
}

impl Table {
    /// A table with these column names; `right[i]` right-aligns column i.
    #[must_use]
    pub fn new(header: &[&str], right: &[bool]) -> Self {
        Self {
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
            right: right.to_vec(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders to a string.
    #[must_use]
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right.get(i).copied().unwrap_or(false) {
                    line.push_str(&format!("{cell:>width$}"));
                } else {
                    line.push_str(&format!("{cell:<width$}"));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints to stdout.
    ///
    /// # Errors
    /// I/O errors.
    pub fn print(&self) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(self.render().as_bytes())?;
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512, false), "512 B");
        assert_eq!(human_bytes(1536, false), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024, false), "3.0 GiB");
        assert_eq!(human_bytes(1536, true), "1536");
    }

    #[test]
    fn table_aligns() {
        let mut t = Table::new(&["name", "bytes"], &[false, true]);
        t.row(vec!["curl".into(), "10".into()]);
        t.row(vec!["firefox".into(), "2000".into()]);
        assert_eq!(
            t.render(),
            "name     bytes\ncurl        10\nfirefox   2000\n"
        );
    }
}
