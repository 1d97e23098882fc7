//! Exact linear assignment: the permutation minimising a square cost matrix's total, by
//! shortest augmenting paths with dual variables (Jonker and Volgenant's method; Crouse 2016
//! describes the variant used here). For two equal batches with uniform weights the exact
//! optimal-transport plan is such a permutation, which is what OT-CFM pairs by.
//!
//! Each row is added by one Dijkstra search over reduced costs `c[i][j] - u[i] - v[j]`
//! (nonnegative throughout), so the result is optimal, and [`Assignment::duals`] certify it:
//! `u[i] + v[j] <= c[i][j]` everywhere, with equality on the assignment.

use crate::error::{Error, Result};

/// An optimal assignment and the dual variables that prove it optimal.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    /// `column_of_row[i]`: the column assigned to row `i`.
    pub column_of_row: Vec<usize>,
    /// Row duals `u` and column duals `v`.
    pub duals: (Vec<f64>, Vec<f64>),
}

impl Assignment {
    /// The total cost of the assignment under `cost` (`n x n`, row-major).
    pub fn total(&self, cost: &[f64]) -> f64 {
        let n = self.column_of_row.len();
        (0..n).map(|i| cost[i * n + self.column_of_row[i]]).sum()
    }
}

/// The permutation `p` minimising `sum_i cost[i * n + p[i]]` for a finite `n x n` matrix in
/// row-major order, in `O(n^3)` time at worst (far less on random costs).
///
/// ```
/// use flow_layers::assignment::solve;
/// // Row 0 is cheapest in column 1 and row 1 in column 0.
/// let cost = [4.0, 1.0, 2.0, 5.0];
/// let a = solve(&cost, 2)?;
/// assert_eq!(a.column_of_row, vec![1, 0]);
/// assert_eq!(a.total(&cost), 3.0);
/// # Ok::<(), flow_layers::Error>(())
/// ```
pub fn solve(cost: &[f64], n: usize) -> Result<Assignment> {
    if cost.len() != n * n {
        return Err(Error::Config(format!(
            "an assignment of {n} rows needs {} costs, got {}",
            n * n,
            cost.len()
        )));
    }
    if let Some(k) = cost.iter().position(|c| !c.is_finite()) {
        return Err(Error::Config(format!(
            "assignment cost at row {}, column {} is {}: costs must be finite",
            k / n,
            k % n,
            cost[k]
        )));
    }
    const NONE: usize = usize::MAX;
    let mut u = vec![0.0; n];
    let mut v = vec![0.0; n];
    let mut column_of_row = vec![NONE; n];
    let mut row_of_column = vec![NONE; n];
    // Per search: tentative distances to columns, the row each was reached from, the rows
    // visited, and the columns not yet settled.
    let mut shortest = vec![f64::INFINITY; n];
    let mut reached_from = vec![NONE; n];
    let mut row_visited = vec![false; n];
    let mut settled = Vec::with_capacity(n);
    let mut remaining: Vec<usize> = Vec::with_capacity(n);
    // Column reduction (Jonker and Volgenant's first phase): v[j] is column j's least cost,
    // so every reduced cost is nonnegative with u = 0, and each column whose cheapest row is
    // still free takes it (a tight edge). Only the rows left free need a search.
    for j in (0..n).rev() {
        let (mut best, mut row) = (f64::INFINITY, 0);
        for i in 0..n {
            if cost[i * n + j] < best {
                (best, row) = (cost[i * n + j], i);
            }
        }
        v[j] = best;
        if column_of_row[row] == NONE {
            column_of_row[row] = j;
            row_of_column[j] = row;
        }
    }
    let mut free: Vec<usize> = (0..n).filter(|&i| column_of_row[i] == NONE).collect();
    // Augmenting row reduction (their second phase), twice: a free row takes the column of
    // its least reduced cost, lowering that column's price by the gap to its second least so
    // that it still prefers it, and the row it displaces is free again. Prices only fall, so
    // every reduced cost stays nonnegative against `u[i]` = a row's least one.
    for _ in 0..2 {
        let mut queue = std::mem::take(&mut free);
        let mut k = 0;
        // Each pass is bounded: a row displaced without a strict price gap goes to the back,
        // and the pass stops after a few sweeps' worth of work.
        let mut budget = 4 * n + 4;
        while k < queue.len() && budget > 0 {
            budget -= 1;
            let i = queue[k];
            k += 1;
            let costs = &cost[i * n..(i + 1) * n];
            let (mut u1, mut j1, mut u2, mut j2) = (f64::INFINITY, 0, f64::INFINITY, NONE);
            for j in 0..n {
                let h = costs[j] - v[j];
                if h < u2 {
                    if h >= u1 {
                        (u2, j2) = (h, j);
                    } else {
                        (u2, j2, u1, j1) = (u1, j1, h, j);
                    }
                }
            }
            let mut displaced = row_of_column[j1];
            if u1 < u2 {
                v[j1] -= u2 - u1;
            } else if displaced != NONE && j2 != NONE {
                // A tie: take the second column instead.
                j1 = j2;
                displaced = row_of_column[j1];
            }
            if displaced != NONE {
                column_of_row[displaced] = NONE;
                if u1 < u2 {
                    k -= 1;
                    queue[k] = displaced;
                } else {
                    queue.push(displaced);
                }
            }
            column_of_row[i] = j1;
            row_of_column[j1] = i;
        }
        free = queue[k..].to_vec();
        free.extend(
            queue[..k]
                .iter()
                .copied()
                .filter(|&i| column_of_row[i] == NONE),
        );
        free.sort_unstable();
        free.dedup();
        free.retain(|&i| column_of_row[i] == NONE);
    }
    // Duals for the search: an assigned row's reduced cost is least on its own column.
    for i in 0..n {
        let costs = &cost[i * n..(i + 1) * n];
        u[i] = match column_of_row[i] {
            NONE => (0..n)
                .map(|j| costs[j] - v[j])
                .fold(f64::INFINITY, f64::min),
            j => costs[j] - v[j],
        };
    }
    for start in free {
        shortest.fill(f64::INFINITY);
        row_visited.fill(false);
        settled.clear();
        remaining.clear();
        remaining.extend(0..n);
        let mut distance = 0.0;
        let mut row = start;
        let sink = loop {
            row_visited[row] = true;
            let costs = &cost[row * n..(row + 1) * n];
            let mut lowest = f64::INFINITY;
            let mut best = 0;
            for (k, &j) in remaining.iter().enumerate() {
                let reduced = distance + costs[j] - u[row] - v[j];
                if reduced < shortest[j] {
                    shortest[j] = reduced;
                    reached_from[j] = row;
                }
                // Ties go to a free column: the search ends sooner.
                if shortest[j] < lowest || (shortest[j] == lowest && row_of_column[j] == NONE) {
                    lowest = shortest[j];
                    best = k;
                }
            }
            distance = lowest;
            let j = remaining.swap_remove(best);
            settled.push(j);
            if row_of_column[j] == NONE {
                break j;
            }
            row = row_of_column[j];
        };
        // Duals: keep every reduced cost nonnegative and the new path's tight.
        u[start] += distance;
        for i in (0..n).filter(|&i| row_visited[i] && i != start) {
            u[i] += distance - shortest[column_of_row[i]];
        }
        for &j in &settled {
            v[j] -= distance - shortest[j];
        }
        // Augment along the path back to `start`.
        let mut j = sink;
        loop {
            let i = reached_from[j];
            row_of_column[j] = i;
            let previous = std::mem::replace(&mut column_of_row[i], j);
            if i == start {
                break;
            }
            j = previous;
        }
    }
    Ok(Assignment {
        column_of_row,
        duals: (u, v),
    })
}

/// The `n x n` matrix (row-major) of squared Euclidean distances between the rows of `a`
/// and those of `b` (`n` rows of `dim` features each): optimal transport's cost.
pub fn squared_distances(a: &[f64], b: &[f64], dim: usize) -> Vec<f64> {
    let rows = a.len() / dim;
    let mut cost = Vec::with_capacity(rows * rows);
    for p in a.chunks_exact(dim) {
        for q in b.chunks_exact(dim) {
            cost.push(p.iter().zip(q).map(|(x, y)| (x - y) * (x - y)).sum());
        }
    }
    cost
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute_force(cost: &[f64], n: usize) -> f64 {
        fn go(cost: &[f64], n: usize, row: usize, used: &mut Vec<bool>) -> f64 {
            if row == n {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            for j in 0..n {
                if !used[j] {
                    used[j] = true;
                    best = best.min(cost[row * n + j] + go(cost, n, row + 1, used));
                    used[j] = false;
                }
            }
            best
        }
        go(cost, n, 0, &mut vec![false; n])
    }

    /// A permutation, and dual feasibility with complementary slackness: a proof of
    /// optimality independent of how the solver got there.
    fn certify(a: &Assignment, cost: &[f64], n: usize) {
        let mut seen = vec![false; n];
        for &j in &a.column_of_row {
            assert!(!seen[j], "column {j} assigned twice");
            seen[j] = true;
        }
        let (u, v) = &a.duals;
        let scale = cost.iter().fold(1.0f64, |m, c| m.max(c.abs()));
        for i in 0..n {
            for j in 0..n {
                let slack = cost[i * n + j] - u[i] - v[j];
                assert!(
                    slack >= -1e-12 * scale,
                    "negative reduced cost {slack} at ({i}, {j})"
                );
            }
            let slack = cost[i * n + a.column_of_row[i]] - u[i] - v[a.column_of_row[i]];
            assert!(
                slack.abs() <= 1e-12 * scale * n as f64,
                "assigned slack {slack}"
            );
        }
    }

    proptest! {
        #[test]
        fn matches_brute_force(n in 1usize..7, seed in any::<u64>(), integers in any::<bool>()) {
            let mut r = flow_core::rng(seed);
            let mut cost = flow_core::random::standard_normals(n * n, &mut r);
            if integers {
                // Many ties.
                cost.iter_mut().for_each(|c| *c = (c.abs() * 2.0).round());
            }
            let a = solve(&cost, n).unwrap();
            certify(&a, &cost, n);
            let best = brute_force(&cost, n);
            prop_assert!((a.total(&cost) - best).abs() <= 1e-12 * (1.0 + best.abs()));
        }

        #[test]
        fn certified_on_point_clouds(n in 1usize..120, seed in any::<u64>()) {
            // Squared distances between two Gaussian clouds: OT-CFM's costs.
            let mut r = flow_core::rng(seed);
            let a = flow_core::random::standard_normals(2 * n, &mut r);
            let b = flow_core::random::standard_normals(2 * n, &mut r);
            let cost: Vec<f64> = (0..n * n)
                .map(|k| {
                    let (i, j) = (k / n, k % n);
                    (a[2 * i] - b[2 * j]).powi(2) + (a[2 * i + 1] - b[2 * j + 1]).powi(2)
                })
                .collect();
            certify(&solve(&cost, n).unwrap(), &cost, n);
        }
    }

    #[test]
    fn refuses_bad_input() {
        assert!(solve(&[1.0, 2.0, 3.0], 2).is_err());
        let e = solve(&[1.0, f64::NAN, 3.0, 4.0], 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 0, column 1"), "{e}");
        assert_eq!(solve(&[], 0).unwrap().column_of_row, Vec::<usize>::new());
    }
}
