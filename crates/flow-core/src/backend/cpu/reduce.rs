//! Reductions along an axis, broadcasting back, and the row-wise logsumexp and softmax.

use super::{from_shape_vec, shape_of, slice_of};
use crate::backend::ReduceOp;
use crate::element::Element;
use crate::shape::{Axis, Shape};
use ndarray::Array2;

pub(crate) fn reduce<E: Element>(op: ReduceOp, axis: Axis, a: &Array2<E>) -> Array2<E> {
    match op {
        ReduceOp::Sum => fold(axis, a, E::zero(), |acc, x| acc + x),
        ReduceOp::Max => fold(
            axis,
            a,
            E::neg_infinity(),
            |acc, x| if x > acc { x } else { acc },
        ),
    }
}

fn fold<E: Element>(axis: Axis, a: &Array2<E>, init: E, f: impl Fn(E, E) -> E) -> Array2<E> {
    let s = shape_of(a);
    let d = slice_of(a);
    let data: Vec<E> = match axis {
        Axis::All => vec![d.iter().fold(init, |acc, &x| f(acc, x))],
        Axis::Cols => d
            .chunks_exact(s.cols.max(1))
            .take(s.rows)
            .map(|row| row.iter().fold(init, |acc, &x| f(acc, x)))
            .collect(),
        Axis::Rows => {
            let mut acc = vec![init; s.cols];
            for row in d.chunks_exact(s.cols.max(1)).take(s.rows) {
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a = f(*a, x);
                }
            }
            acc
        }
    };
    // A row of zero columns still reduces to one (empty-sum) value per row.
    let data = if axis == Axis::Cols && s.cols == 0 {
        vec![init; s.rows]
    } else {
        data
    };
    from_shape_vec(s.reduced(axis), data)
}

/// `Backend::finite_probe`: the sum of `0 * x` over the entries, 0 when all are finite and NaN
/// otherwise (`0 * inf` and `0 * NaN` are NaN), in independent lanes so that the adds
/// vectorise instead of waiting on one another.
pub(crate) fn finite_probe<E: Element>(a: &Array2<E>) -> Array2<E> {
    const LANES: usize = 16;
    let d = slice_of(a);
    let zero = E::zero();
    let mut lanes = [zero; LANES];
    let mut chunks = d.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += zero * x;
        }
    }
    let probe = chunks
        .remainder()
        .iter()
        .fold(zero, |acc, &x| acc + zero * x);
    let probe = lanes.iter().fold(probe, |acc, &lane| acc + lane);
    from_shape_vec(Shape::new(1, 1), vec![probe])
}

/// One-hot mask of the first maximum along `axis` (ties go to the first index).
pub(crate) fn argmax_mask<E: Element>(axis: Axis, a: &Array2<E>) -> Array2<E> {
    let s = shape_of(a);
    let d = slice_of(a);
    let mut mask = vec![E::zero(); s.len()];
    let idx = |i: usize, j: usize| i * s.cols + j;
    match axis {
        Axis::All => {
            if let Some(best) = first_max(d.iter().copied()) {
                mask[best] = E::one();
            }
        }
        Axis::Cols => {
            for i in 0..s.rows {
                if let Some(j) = first_max((0..s.cols).map(|j| d[idx(i, j)])) {
                    mask[idx(i, j)] = E::one();
                }
            }
        }
        Axis::Rows => {
            for j in 0..s.cols {
                if let Some(i) = first_max((0..s.rows).map(|i| d[idx(i, j)])) {
                    mask[idx(i, j)] = E::one();
                }
            }
        }
    }
    from_shape_vec(s, mask)
}

fn first_max<E: Element>(values: impl Iterator<Item = E>) -> Option<usize> {
    let mut best: Option<(usize, E)> = None;
    for (i, x) in values.enumerate() {
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i)
}

fn row_max<E: Element>(row: &[E]) -> E {
    row.iter().fold(E::neg_infinity(), |m, &x| m.max(x))
}

pub(crate) fn logsumexp_cols<E: Element>(a: &Array2<E>) -> Array2<E> {
    let s = shape_of(a);
    let data = (0..s.rows)
        .map(|i| {
            let row = &slice_of(a)[i * s.cols..(i + 1) * s.cols];
            let m = row_max(row);
            if !m.is_finite() {
                return m; // all -inf stays -inf; +inf or NaN propagate
            }
            m + row.iter().map(|&x| (x - m).exp()).sum::<E>().ln()
        })
        .collect();
    from_shape_vec(Shape::new(s.rows, 1), data)
}

pub(crate) fn softmax_cols<E: Element>(a: &Array2<E>) -> Array2<E> {
    let s = shape_of(a);
    let mut data = slice_of(a).to_vec();
    for row in data.chunks_exact_mut(s.cols.max(1)) {
        let m = row_max(row);
        let mut total = E::zero();
        for x in row.iter_mut() {
            *x = (*x - m).exp();
            total += *x;
        }
        for x in row.iter_mut() {
            *x = *x / total;
        }
    }
    from_shape_vec(s, data)
}

pub(crate) fn broadcast_to<E: Element>(a: &Array2<E>, shape: Shape) -> Array2<E> {
    a.broadcast((shape.rows, shape.cols))
        .expect("broadcast target is validated by Tensor")
        .as_standard_layout()
        .into_owned()
}
