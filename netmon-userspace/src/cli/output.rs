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

/// The width tables are fitted to: `COLUMNS` when set (as shells export
/// it, and tests), else the terminal's width when stdout is a terminal,
/// else `None` (piped: no limit).
#[must_use]
pub fn terminal_width() -> Option<usize> {
    if let Some(w) = std::env::var("COLUMNS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|w| *w > 0)
    {
        return Some(w);
    }
    if std::io::stdout().is_terminal() {
        return ratatui::crossterm::terminal::size()
            .ok()
            .map(|(w, _)| usize::from(w));
    }
    None
}

/// Narrowest a shrinkable column gets before the table gives up fitting.
const MIN_SHRUNK: usize = 8;

/// A table: a header row and rows of cells, printed with aligned columns
/// (numbers right-aligned). Fitted to a width: columns marked optional are
/// left out (last marked first) and then columns marked shrinkable are cut
/// with `…`, until the lines fit.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
    /// Column `i` may be left out on a narrow terminal; higher goes first.
    optional: Vec<u8>,
    shrink: Vec<bool>,
    width: Option<usize>,
}

impl Table {
    /// A table with these column names; `right[i]` right-aligns column i.
    #[must_use]
    pub fn new(header: &[&str], right: &[bool]) -> Self {
        Self {
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
            right: right.to_vec(),
            optional: vec![0; header.len()],
            shrink: vec![false; header.len()],
            width: None,
        }
    }

    /// Column `col` may be left out when the table does not fit; columns
    /// with a higher `rank` are left out first.
    #[must_use]
    pub fn optional(mut self, col: usize, rank: u8) -> Self {
        if let Some(o) = self.optional.get_mut(col) {
            *o = rank;
        }
        self
    }

    /// Column `col` may be cut (with `…`) when the table does not fit.
    #[must_use]
    pub fn shrinkable(mut self, col: usize) -> Self {
        if let Some(s) = self.shrink.get_mut(col) {
            *s = true;
        }
        self
    }

    /// Fit to `width` columns (`None`: no limit).
    #[must_use]
    pub const fn fit(mut self, width: Option<usize>) -> Self {
        self.width = width;
        self
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
        let mut shown: Vec<bool> = vec![true; widths.len()];
        let line_width = |widths: &[usize], shown: &[bool]| {
            let cols: Vec<usize> = widths
                .iter()
                .zip(shown)
                .filter(|(_, s)| **s)
                .map(|(w, _)| *w)
                .collect();
            cols.iter().sum::<usize>() + 2 * cols.len().saturating_sub(1)
        };
        if let Some(limit) = self.width {
            // Leave out optional columns, highest rank first, a whole rank
            // at a time (TX and RX go together).
            while line_width(&widths, &shown) > limit {
                let rank = (0..widths.len())
                    .filter(|i| shown[*i])
                    .map(|i| self.optional.get(i).copied().unwrap_or(0))
                    .max()
                    .unwrap_or(0);
                if rank == 0 {
                    break;
                }
                for (i, s) in shown.iter_mut().enumerate() {
                    if self.optional.get(i).copied().unwrap_or(0) == rank {
                        *s = false;
                    }
                }
            }
            // Then cut the widest shrinkable column, a character at a time.
            let mut over = line_width(&widths, &shown).saturating_sub(limit);
            while over > 0 {
                let widest = (0..widths.len())
                    .filter(|i| {
                        shown[*i]
                            && self.shrink.get(*i).copied().unwrap_or(false)
                            && widths[*i] > MIN_SHRUNK
                    })
                    .max_by_key(|i| (widths[*i], *i));
                let Some(i) = widest else { break };
                widths[i] -= 1;
                over -= 1;
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            let mut first = true;
            for (i, cell) in row.iter().enumerate() {
                if !shown.get(i).copied().unwrap_or(false) {
                    continue;
                }
                let width = widths.get(i).copied().unwrap_or(0);
                if !first {
                    line.push_str("  ");
                }
                first = false;
                let cell = cut(cell, width);
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

/// `s` cut to `width` characters, the last one `…` when cut.
#[must_use]
pub fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
    t.push('…');
    t
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

    #[test]
    fn table_fits_a_width() {
        let mut t = Table::new(&["name", "path", "extra"], &[false, false, true])
            .optional(2, 1)
            .shrinkable(1)
            .fit(Some(20));
        t.row(vec![
            "curl".into(),
            "/usr/bin/curl-long-name".into(),
            "7".into(),
        ]);
        let text = t.render();
        assert!(text.lines().all(|l| l.chars().count() <= 20), "{text}");
        assert!(!text.contains("extra"), "{text}");
        assert!(text.contains('…'), "{text}");
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("abcdef", 4), "abc…");
    }
}
