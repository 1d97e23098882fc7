//! Column slicing, concatenation, gathers and scatters (whole columns, or one entry per
//! row), sorted search along rows, and masked selection.

use super::{from_shape_vec, shape_of, slice_of};
use crate::element::Element;
use crate::shape::Shape;
use ndarray::Array2;

pub(crate) fn slice_cols<E: Element>(a: &Array2<E>, start: usize, len: usize) -> Array2<E> {
    let s = shape_of(a);
    let mut data = Vec::with_capacity(s.rows * len);
    for row in slice_of(a).chunks_exact(s.cols.max(1)).take(s.rows) {
        data.extend_from_slice(&row[start..start + len]);
    }
    from_shape_vec(Shape::new(s.rows, len), data)
}

pub(crate) fn concat_cols<E: Element>(parts: &[&Array2<E>]) -> Array2<E> {
    let rows = parts.first().map_or(0, |p| p.nrows());
    let cols: usize = parts.iter().map(|p| p.ncols()).sum();
    let mut data = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        for p in parts {
            let w = p.ncols();
            data.extend_from_slice(&slice_of(p)[i * w..(i + 1) * w]);
        }
    }
    from_shape_vec(Shape::new(rows, cols), data)
}

pub(crate) fn gather_cols<E: Element>(a: &Array2<E>, index: &[usize]) -> Array2<E> {
    let s = shape_of(a);
    let mut data = Vec::with_capacity(s.rows * index.len());
    for row in slice_of(a).chunks_exact(s.cols.max(1)).take(s.rows) {
        data.extend(index.iter().map(|&j| row[j]));
    }
    from_shape_vec(Shape::new(s.rows, index.len()), data)
}

pub(crate) fn scatter_add_cols<E: Element>(
    a: &Array2<E>,
    index: &[usize],
    width: usize,
) -> Array2<E> {
    let s = shape_of(a);
    let mut data = vec![E::zero(); s.rows * width];
    for (i, row) in slice_of(a)
        .chunks_exact(s.cols.max(1))
        .take(s.rows)
        .enumerate()
    {
        let out = &mut data[i * width..(i + 1) * width];
        for (&x, &j) in row.iter().zip(index) {
            out[j] += x;
        }
    }
    from_shape_vec(Shape::new(s.rows, width), data)
}

pub(crate) fn select<E: Element>(mask: &Array2<E>, a: &Array2<E>, b: &Array2<E>) -> Array2<E> {
    let data = slice_of(mask)
        .iter()
        .zip(slice_of(a).iter().zip(slice_of(b)))
        .map(|(&m, (&x, &y))| if m != E::zero() { x } else { y })
        .collect();
    from_shape_vec(shape_of(a), data)
}

pub(crate) fn take_per_row<E: Element>(a: &Array2<E>, index: &[usize]) -> Array2<E> {
    let cols = a.ncols().max(1);
    let data = slice_of(a)
        .chunks_exact(cols)
        .zip(index)
        .map(|(row, &j)| row[j])
        .collect();
    from_shape_vec(Shape::new(index.len(), 1), data)
}

pub(crate) fn put_per_row<E: Element>(a: &Array2<E>, index: &[usize], width: usize) -> Array2<E> {
    let mut data = vec![E::zero(); index.len() * width];
    for (r, (&j, &v)) in index.iter().zip(slice_of(a)).enumerate() {
        data[r * width + j] = v;
    }
    from_shape_vec(Shape::new(index.len(), width), data)
}

pub(crate) fn search_sorted_rows<E: Element>(sorted: &Array2<E>, x: &Array2<E>) -> Vec<usize> {
    let cols = sorted.ncols();
    slice_of(x)
        .iter()
        .enumerate()
        .map(|(r, &v)| slice_of(sorted)[r * cols..(r + 1) * cols].partition_point(|&k| k <= v))
        .collect()
}
