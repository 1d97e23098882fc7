//! Seeded train / validation / test splits.

use super::error::{Error, Result};
use super::table::Table;
use rand::seq::SliceRandom;

/// A partition of the rows `0..rows` into training, validation and test rows, drawn by a
/// seeded shuffle: every row is in exactly one part, and the same `rows`, fractions and seed
/// give the same split on any machine. Each part's indices are sorted, so selecting them keeps
/// the file's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    train: Vec<usize>,
    validation: Vec<usize>,
    test: Vec<usize>,
}

impl Split {
    /// Splits `rows` rows by `fractions` = (train, validation, test), e.g. `(0.8, 0.1, 0.1)`:
    /// each part gets [`Split::sizes`] rows, chosen by shuffling `0..rows` with
    /// `flow_core::rng(seed)`.
    pub fn new(rows: usize, fractions: (f64, f64, f64), seed: u64) -> Result<Self> {
        let [n_train, n_val, _] = Self::sizes(rows, fractions)?;
        let mut order: Vec<usize> = (0..rows).collect();
        order.shuffle(&mut flow_core::rng(seed));
        let mut test = order.split_off(n_train + n_val);
        let mut validation = order.split_off(n_train);
        let mut train = order;
        train.sort_unstable();
        validation.sort_unstable();
        test.sort_unstable();
        Ok(Self {
            train,
            validation,
            test,
        })
    }

    /// The parts' sizes: `fraction × rows` rounded by largest remainder, so they add up to
    /// `rows` and each is less than 1 away from its exact share (ties go to the earlier
    /// part). The fractions must be finite, non-negative and add up to 1 (within 1e-6).
    pub fn sizes(rows: usize, fractions: (f64, f64, f64)) -> Result<[usize; 3]> {
        let f = [fractions.0, fractions.1, fractions.2];
        let sum: f64 = f.iter().sum();
        if f.iter().any(|x| !x.is_finite() || *x < 0.0) || (sum - 1.0).abs() > 1e-6 {
            return Err(Error::Invalid(format!(
                "split fractions {fractions:?} must be non-negative and add up to 1"
            )));
        }
        let exact = f.map(|x| x / sum * rows as f64);
        let mut sizes = exact.map(|x| (x.floor() as usize).min(rows));
        let mut order = [0, 1, 2];
        // Stable: equal remainders keep the parts' order.
        order.sort_by(|&a, &b| {
            let ra = exact[a] - exact[a].floor();
            let rb = exact[b] - exact[b].floor();
            rb.total_cmp(&ra)
        });
        let mut k = 0;
        while sizes.iter().sum::<usize>() < rows {
            sizes[order[k % 3]] += 1;
            k += 1;
        }
        while sizes.iter().sum::<usize>() > rows {
            let largest = (0..3).max_by_key(|&i| sizes[i]).unwrap_or(0);
            sizes[largest] -= 1;
        }
        Ok(sizes)
    }

    /// The training rows, sorted.
    pub fn train(&self) -> &[usize] {
        &self.train
    }

    /// The validation rows, sorted.
    pub fn validation(&self) -> &[usize] {
        &self.validation
    }

    /// The test rows, sorted.
    pub fn test(&self) -> &[usize] {
        &self.test
    }

    /// The number of rows split.
    pub fn rows(&self) -> usize {
        self.train.len() + self.validation.len() + self.test.len()
    }

    /// The (train, validation, test) tables of `table`, which must have [`Split::rows`] rows.
    pub fn apply(&self, table: &Table) -> Result<(Table, Table, Table)> {
        if table.rows() != self.rows() {
            return Err(Error::Invalid(format!(
                "a split of {} rows applied to a table of {} rows",
                self.rows(),
                table.rows()
            )));
        }
        Ok((
            table.select_rows(&self.train),
            table.select_rows(&self.validation),
            table.select_rows(&self.test),
        ))
    }
}
