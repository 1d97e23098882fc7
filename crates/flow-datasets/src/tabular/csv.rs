//! Reading CSV files of numbers.

use super::columns::{resolve, ColumnSelector};
use super::error::{ColumnRef, Error, NonFinite, Result};
use super::table::{default_name, Table};
use std::borrow::Cow;
use std::path::Path;

/// Whether the first non-blank line of a CSV file is a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Header {
    /// A header when any of its cells is text: not empty and not a number.
    #[default]
    Auto,
    /// Always a header.
    Yes,
    /// Never a header: the first line is data.
    No,
}

/// How to read a CSV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    pub header: Header,
    /// The columns to read, in this order; `None` reads them all.
    pub columns: Option<Vec<ColumnSelector>>,
    /// The byte between cells: an ASCII character other than `"` and line breaks. A space
    /// means any run of whitespace (as NumPy's `savetxt` writes).
    pub delimiter: u8,
}

impl Default for CsvOptions {
    /// Header detected, all columns, comma-separated.
    fn default() -> Self {
        Self {
            header: Header::Auto,
            columns: None,
            delimiter: b',',
        }
    }
}

/// Reads a CSV file of numbers into a [`Table`].
///
/// One row per line; blank lines are skipped; cells are trimmed of surrounding whitespace and
/// may be double-quoted (`"x, y"`, with `""` for a quote inside), but a cell cannot span lines.
/// Numbers are what Rust's `f64` parser takes (`1`, `-2.5e-3`); `NaN` and infinities parse but
/// are refused. Only the selected columns must hold numbers, so a text column (a label) can be
/// left out; every row must still have as many cells as the first.
///
/// The columns are named by the header, or `x0`, `x1`, ... after their positions in the file.
///
/// Errors name the file, and the row (the line of the file, from 1) and column (from 1, with
/// its header name) where one applies: a missing or unreadable file, no data rows, a cell that
/// is not a number, NaN or infinity, rows of different lengths, an unknown column name or an
/// index out of range.
pub fn read_csv(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Table> {
    let path = path.as_ref();
    check_delimiter(path, options.delimiter)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "read", e))?;
    parse_csv(&bytes, path, options)
}

/// The delimiter as a `char`, or an error when it is not an ASCII character other than a
/// quote or a line break.
fn check_delimiter(path: &Path, d: u8) -> Result<char> {
    if !d.is_ascii() || matches!(d, b'"' | b'\n' | b'\r') {
        return Err(Error::Invalid(format!(
            "{}: the delimiter {:?} is not an ASCII character other than a quote or a line break",
            path.display(),
            d as char
        )));
    }
    Ok(d as char)
}

/// [`read_csv`] from the bytes of a CSV file; `path` only names the source in errors.
pub fn parse_csv(bytes: &[u8], path: &Path, options: &CsvOptions) -> Result<Table> {
    let delimiter = check_delimiter(path, options.delimiter)?;
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        Error::NotUtf8 {
            path: path.into(),
            row: 1 + valid.iter().filter(|&&b| b == b'\n').count(),
        }
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.trim().is_empty());

    let Some((first_row, first_line)) = lines.next() else {
        return Err(Error::Empty {
            path: path.into(),
            header: false,
        });
    };
    let first = split(first_line, delimiter).ok_or_else(|| Error::UnclosedQuote {
        path: path.into(),
        row: first_row,
    })?;
    let width = first.len();
    let is_header = match options.header {
        Header::Yes => true,
        Header::No => false,
        Header::Auto => first
            .iter()
            .any(|c| !c.is_empty() && c.parse::<f64>().is_err()),
    };
    let header: Option<Vec<String>> =
        is_header.then(|| first.iter().map(|c| c.to_string()).collect());
    let selected = resolve(path, options.columns.as_deref(), header.as_deref(), width)?;

    let column_ref = |j: usize| ColumnRef {
        number: j + 1,
        name: header.as_ref().map(|h| h[j].clone()),
    };
    let mut data = Vec::new();
    let mut parse_row = |row: usize, cells: &[Cow<'_, str>]| -> Result<()> {
        if cells.len() != width {
            return Err(Error::Ragged {
                path: path.into(),
                row,
                expected: width,
                got: cells.len(),
            });
        }
        for &j in &selected {
            let cell = &cells[j];
            let v: f64 = cell.parse().map_err(|_| Error::NotANumber {
                path: path.into(),
                row,
                column: column_ref(j),
                cell: cell.to_string(),
            })?;
            if let Some(kind) = NonFinite::of(v) {
                return Err(Error::NonFinite {
                    path: path.into(),
                    row,
                    column: column_ref(j),
                    cell: cell.to_string(),
                    kind,
                });
            }
            data.push(v);
        }
        Ok(())
    };
    if !is_header {
        parse_row(first_row, &first)?;
    }
    for (row, line) in lines {
        let cells = split(line, delimiter).ok_or_else(|| Error::UnclosedQuote {
            path: path.into(),
            row,
        })?;
        parse_row(row, &cells)?;
    }
    if data.is_empty() {
        return Err(Error::Empty {
            path: path.into(),
            header: is_header,
        });
    }
    let names = selected
        .iter()
        .map(|&j| match &header {
            Some(h) => h[j].clone(),
            None => default_name(j),
        })
        .collect();
    Table::new(names, data)
}

/// The trimmed cells of one line, or `None` when a quoted cell is not closed.
fn split(line: &str, delimiter: char) -> Option<Vec<Cow<'_, str>>> {
    if delimiter == ' ' {
        return Some(line.split_whitespace().map(Cow::Borrowed).collect());
    }
    if !line.contains('"') {
        return Some(
            line.split(delimiter)
                .map(|c| Cow::Borrowed(c.trim()))
                .collect(),
        );
    }
    let mut cells = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|&c| c != delimiter && c.is_whitespace())
        {
            chars.next();
        }
        let mut cell = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        cell.push('"');
                    }
                    '"' => break,
                    c => cell.push(c),
                }
            }
            // Anything between the closing quote and the delimiter is kept, trimmed.
            let mut rest = String::new();
            while let Some(&c) = chars.peek() {
                if c == delimiter {
                    break;
                }
                rest.push(c);
                chars.next();
            }
            cell.push_str(rest.trim());
        } else {
            while let Some(&c) = chars.peek() {
                if c == delimiter {
                    break;
                }
                cell.push(c);
                chars.next();
            }
            cell = cell.trim().to_string();
        }
        cells.push(Cow::Owned(cell));
        if chars.next().is_none() {
            return Some(cells);
        }
    }
}
