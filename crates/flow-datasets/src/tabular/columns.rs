//! Choosing columns by index or by name.

use super::error::{Error, Result};
use std::fmt;
use std::path::Path;

/// A column to read: by 0-based index, or by the name the header gives it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColumnSelector {
    /// The column's 0-based position in the file.
    Index(usize),
    /// The column's name in the file's header.
    Name(String),
}

impl From<usize> for ColumnSelector {
    fn from(index: usize) -> Self {
        Self::Index(index)
    }
}

impl From<&str> for ColumnSelector {
    fn from(name: &str) -> Self {
        Self::Name(name.to_string())
    }
}

impl From<String> for ColumnSelector {
    fn from(name: String) -> Self {
        Self::Name(name)
    }
}

impl std::str::FromStr for ColumnSelector {
    type Err = std::convert::Infallible;

    /// Digits select by index (`"2"`), anything else by name (`"age"`), as a command line
    /// would take them.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let s = s.trim();
        Ok(match s.parse::<usize>() {
            Ok(i) => Self::Index(i),
            Err(_) => Self::Name(s.to_string()),
        })
    }
}

impl fmt::Display for ColumnSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Index(i) => write!(f, "{i}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// The 0-based indices `selectors` pick out of a file of `cols` columns (all of them, in order,
/// when `selectors` is `None`).
pub(crate) fn resolve(
    path: &Path,
    selectors: Option<&[ColumnSelector]>,
    header: Option<&[String]>,
    cols: usize,
) -> Result<Vec<usize>> {
    let Some(selectors) = selectors else {
        if cols == 0 {
            return Err(Error::NoColumns { path: path.into() });
        }
        return Ok((0..cols).collect());
    };
    if selectors.is_empty() {
        return Err(Error::NoColumns { path: path.into() });
    }
    selectors
        .iter()
        .map(|s| match s {
            ColumnSelector::Index(i) if *i < cols => Ok(*i),
            ColumnSelector::Index(i) => Err(Error::ColumnOutOfRange {
                path: path.into(),
                index: *i,
                cols,
            }),
            ColumnSelector::Name(name) => {
                let Some(header) = header else {
                    return Err(Error::NoHeader {
                        path: path.into(),
                        name: name.clone(),
                    });
                };
                header.iter().position(|h| h == name).ok_or_else(|| {
                    let available: Vec<String> = header.iter().map(|h| format!("`{h}`")).collect();
                    Error::UnknownColumn {
                        path: path.into(),
                        name: name.clone(),
                        available: available.join(", "),
                    }
                })
            }
        })
        .collect()
}
