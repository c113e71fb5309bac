//! The results table (printed, and recorded in `docs/benchmarks.md`).

use std::path::Path;

use anyhow::{Context, Result};

/// One figure beside its floor.
#[derive(Debug, Clone)]
pub struct Row {
    pub what: String,
    pub skiff: String,
    pub floor: String,
    pub ratio: String,
}

#[derive(Debug, Default, Clone)]
pub struct Table {
    pub header: [String; 4],
    pub rows: Vec<Row>,
}

impl Table {
    pub fn new(what: &str, skiff: &str, floor: &str, ratio: &str) -> Self {
        Table {
            header: [what.into(), skiff.into(), floor.into(), ratio.into()],
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, what: impl Into<String>, skiff: String, floor: String, ratio: String) {
        self.rows.push(Row {
            what: what.into(),
            skiff,
            floor,
            ratio,
        });
    }

    /// A Markdown table padded to line up in a terminal too, so what is printed and
    /// what is recorded are the same text.
    pub fn markdown(&self) -> String {
        let cells: Vec<Vec<String>> = std::iter::once(self.header.to_vec())
            .chain(self.rows.iter().map(|r| {
                vec![
                    r.what.clone(),
                    r.skiff.clone(),
                    r.floor.clone(),
                    r.ratio.clone(),
                ]
            }))
            .collect();
        grid(&cells)
    }
}

/// A Markdown table of any width from `rows` (the first is the header), padded to line
/// up in a terminal; the first column left-aligned, figures right-aligned.
pub fn grid(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut width = vec![0usize; columns];
    for row in rows {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push('|');
        for (col, w) in width.iter().enumerate() {
            let c = row.get(col).map_or("", String::as_str);
            let pad = w - c.chars().count();
            // Figures are right-aligned so their magnitudes line up.
            if col == 0 {
                out.push_str(&format!(" {c}{} |", " ".repeat(pad)));
            } else {
                out.push_str(&format!(" {}{c} |", " ".repeat(pad)));
            }
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            for (col, w) in width.iter().enumerate() {
                let dashes = "-".repeat((*w).max(1));
                if col == 0 {
                    out.push_str(&format!(" {dashes} |"));
                } else {
                    out.push_str(&format!(" {}: |", &dashes[1..]));
                }
            }
            out.push('\n');
        }
    }
    out
}

const PREAMBLE: &str = "# Benchmarks\n\n\
Written by the benchmarks in `bench/` (see `bench/README.md`); each section is replaced \
by the next run of its benchmark. Every figure is printed beside a floor measured in the \
same run on the same machine: compare the ratios, not the absolute numbers.\n";

/// `doc` with the section that starts at the line `heading` (up to the next `## `
/// heading) replaced by `section`, or with `section` appended if there was none.
pub fn replace_section(doc: &str, heading: &str, section: &str) -> String {
    let mut section = section.trim_end().to_string();
    section.push('\n');
    if doc.trim().is_empty() {
        return format!("{PREAMBLE}\n{section}");
    }
    let lines: Vec<&str> = doc.split_inclusive('\n').collect();
    let Some(start) = lines.iter().position(|l| l.trim_end() == heading) else {
        let mut out = doc.trim_end().to_string();
        out.push_str("\n\n");
        out.push_str(&section);
        return out;
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("## "))
        .map_or(lines.len(), |i| start + 1 + i);
    let mut out: String = lines[..start].concat();
    out.push_str(&section);
    if end < lines.len() {
        out.push('\n');
        out.push_str(&lines[end..].concat());
    }
    out
}

/// Rewrites one section of the Markdown file at `path` (creating the file if needed).
pub fn write_section(path: &Path, heading: &str, section: &str) -> Result<()> {
    let doc = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let updated = replace_section(&doc, heading, section);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "## API server (bench/api)";

    #[test]
    fn new_file_gets_a_preamble() {
        let out = replace_section("", H, "## API server (bench/api)\n\nnew\n");
        assert!(out.starts_with("# Benchmarks\n"));
        assert!(out.ends_with("## API server (bench/api)\n\nnew\n"));
    }

    #[test]
    fn replaces_only_its_own_section() {
        let doc = "# Benchmarks\n\nintro\n\n## DNS (bench/dns)\n\ndns\n\n\
                   ## API server (bench/api)\n\nold\nold\n\n## Proxy\n\nproxy\n";
        let out = replace_section(doc, H, "## API server (bench/api)\n\nnew\n");
        assert_eq!(
            out,
            "# Benchmarks\n\nintro\n\n## DNS (bench/dns)\n\ndns\n\n\
             ## API server (bench/api)\n\nnew\n\n## Proxy\n\nproxy\n"
        );
    }

    #[test]
    fn appends_when_missing_and_replaces_at_the_end() {
        let doc = "# Benchmarks\n\n## DNS (bench/dns)\n\ndns\n";
        let once = replace_section(doc, H, "## API server (bench/api)\n\nv1\n");
        assert_eq!(
            once,
            "# Benchmarks\n\n## DNS (bench/dns)\n\ndns\n\n## API server (bench/api)\n\nv1\n"
        );
        let twice = replace_section(&once, H, "## API server (bench/api)\n\nv2\n");
        assert_eq!(
            twice,
            "# Benchmarks\n\n## DNS (bench/dns)\n\ndns\n\n## API server (bench/api)\n\nv2\n"
        );
    }

    #[test]
    fn markdown_table_lines_up() {
        let mut t = Table::new("what", "skiff", "floor", "ratio");
        t.row("create", "1/s".into(), "10/s".into(), "0.10".into());
        assert_eq!(
            t.markdown(),
            "| what   | skiff | floor | ratio |\n\
             | ------ | ----: | ----: | ----: |\n\
             | create |   1/s |  10/s |  0.10 |\n"
        );
    }
}
