//! An in-memory table of numbers: named columns, row-major values.

use super::error::{Error, Result};

/// A table of `rows × cols` numbers, stored row-major, with a name for each column.
///
/// Files without a header get the names `x0`, `x1`, ... after the columns' 0-based positions
/// in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    columns: Vec<String>,
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

/// The name a column without a header gets: `x{index}`.
pub(crate) fn default_name(index: usize) -> String {
    format!("x{index}")
}

impl Table {
    /// A table with the given column names over row-major `data`; `data.len()` must be a
    /// multiple of the number of columns, which must be at least one.
    pub fn new(columns: Vec<String>, data: Vec<f64>) -> Result<Self> {
        let cols = columns.len();
        if cols == 0 {
            return Err(Error::Invalid("a table needs at least one column".into()));
        }
        if data.len() % cols != 0 {
            return Err(Error::Invalid(format!(
                "{} values do not fill rows of {cols} columns",
                data.len()
            )));
        }
        Ok(Self {
            rows: data.len() / cols,
            cols,
            columns,
            data,
        })
    }

    /// A table of `cols` columns named `x0`, `x1`, ... over row-major `data`.
    pub fn from_values(cols: usize, data: Vec<f64>) -> Result<Self> {
        Self::new((0..cols).map(default_name).collect(), data)
    }

    /// The columns' names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// All values, row-major.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// All values, row-major, to change in place (the shape stays).
    pub fn data_mut(&mut self) -> &mut [f64] {
        &mut self.data
    }

    /// The values, row-major, without the names.
    pub fn into_data(self) -> Vec<f64> {
        self.data
    }

    /// Row `i` (from 0). Panics when `i >= rows`.
    pub fn row(&self, i: usize) -> &[f64] {
        assert!(i < self.rows, "row {i} of a table of {} rows", self.rows);
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The value at row `i`, column `j` (both from 0). Panics when out of range.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        assert!(
            j < self.cols,
            "column {j} of a table of {} columns",
            self.cols
        );
        self.row(i)[j]
    }

    /// Column `j` (from 0), copied out. Panics when `j >= cols`.
    pub fn column(&self, j: usize) -> Vec<f64> {
        assert!(
            j < self.cols,
            "column {j} of a table of {} columns",
            self.cols
        );
        self.data
            .iter()
            .skip(j)
            .step_by(self.cols)
            .copied()
            .collect()
    }

    /// The rows at `indices` (from 0), in that order; an index may repeat. Panics when an
    /// index is out of range.
    pub fn select_rows(&self, indices: &[usize]) -> Table {
        let mut data = Vec::with_capacity(indices.len() * self.cols);
        for &i in indices {
            data.extend_from_slice(self.row(i));
        }
        Table {
            columns: self.columns.clone(),
            rows: indices.len(),
            cols: self.cols,
            data,
        }
    }

    /// The columns at `indices` (from 0), in that order, with their names. Panics when
    /// `indices` is empty or an index is out of range.
    pub fn select_columns(&self, indices: &[usize]) -> Table {
        assert!(!indices.is_empty(), "selecting no columns");
        for &j in indices {
            assert!(
                j < self.cols,
                "column {j} of a table of {} columns",
                self.cols
            );
        }
        let mut data = Vec::with_capacity(self.rows * indices.len());
        for i in 0..self.rows {
            let row = self.row(i);
            data.extend(indices.iter().map(|&j| row[j]));
        }
        Table {
            columns: indices.iter().map(|&j| self.columns[j].clone()).collect(),
            rows: self.rows,
            cols: indices.len(),
            data,
        }
    }
}
