//! Aligned plain-text tables, friendly sizes and lists.

use std::fmt::Write as _;

/// A table: a header and rows of cells, printed with columns aligned.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Columns two spaces apart; the last column is not padded.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(cols) {
                if i + 1 == cols {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

pub use mcr_core::display::size;

/// A list, or `*` for an empty one (a wildcard in a rule).
pub fn list_or_any<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "*".to_string()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(&["NAME", "TAGS", "SIZE"]);
        t.row(vec!["app".into(), "1".into(), "1.0 KiB".into()]);
        t.row(vec!["team/tool".into(), "12".into(), "3 B".into()]);
        assert_eq!(
            t.render(),
            "NAME       TAGS  SIZE\napp        1     1.0 KiB\nteam/tool  12    3 B\n"
        );
    }
}
