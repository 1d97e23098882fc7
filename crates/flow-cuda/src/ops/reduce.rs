//! Reductions along an axis, the first-maximum masks, and the row-wise logsumexp and
//! softmax.

use super::{input, size};
use crate::backend::{CudaBackend, CudaElement};
use crate::device::Arg;
use crate::kernels;
use crate::launch;
use crate::storage::CudaStorage;
use flow_core::backend::{Backend, ReduceOp};
use flow_core::{Axis, Result, Shape};

/// KERNELS.md's code of a reduction.
pub(crate) fn reduce_code(op: ReduceOp) -> i32 {
    match op {
        ReduceOp::Sum => 0,
        ReduceOp::Max => 1,
    }
}

/// KERNELS.md's `axis` of `argmax_mask`: 0 per column (collapsing rows), 1 per row.
pub(crate) fn argmax_axis(axis: Axis) -> i32 {
    match axis {
        Axis::Rows => 0,
        Axis::Cols | Axis::All => 1,
    }
}

impl<E: CudaElement> CudaBackend<E> {
    /// The reduction's value over nothing: 0 for a sum, -inf for a maximum (as the CPU).
    fn identity(op: ReduceOp) -> E {
        match op {
            ReduceOp::Sum => E::zero(),
            ReduceOp::Max => E::neg_infinity(),
        }
    }

    pub(crate) fn reduce_along(
        &self,
        op: ReduceOp,
        axis: Axis,
        a: &CudaStorage<E>,
    ) -> Result<CudaStorage<E>> {
        let s = a.shape;
        let out_shape = s.reduced(axis);
        if out_shape.is_empty() {
            return self.zeros_of(out_shape);
        }
        if s.is_empty() {
            return self.fill(out_shape, Self::identity(op));
        }
        match axis {
            Axis::Rows => {
                // Tall matrices in passes: the same memory seen as (rows / k) x (k cols)
                // reduces to k partials of each column (rows j, j + k, ..), reduced again as
                // k x cols, itself split when still tall.
                let k = launch::column_split(s.rows as u64, s.cols as u64) as usize;
                if k == 1 {
                    return self.reduce_columns(op, a);
                }
                // Backend::reshape shares the buffer: no copy.
                let wide = Backend::reshape(self, a, Shape::new(s.rows / k, k * s.cols))?;
                let partials = self.reduce_columns(op, &wide)?;
                let partials = Backend::reshape(self, &partials, Shape::new(k, s.cols))?;
                self.reduce_along(op, Axis::Rows, &partials)
            }
            Axis::Cols => {
                let mut out = self.output(out_shape.len())?;
                // reduce_cols(x, out, rows, cols, op): x is rows x cols; out rows x 1.
                self.launch(
                    &kernels::REDUCE_COLS,
                    launch::row_groups(s.rows as u64, s.cols as u64),
                    &mut [
                        input(a),
                        Arg::Out(&mut out, out_shape.len()),
                        size(s.rows),
                        size(s.cols),
                        Arg::I32(reduce_code(op)),
                    ],
                )?;
                Ok(CudaStorage::new(out, out_shape))
            }
            Axis::All => {
                let n = s.len();
                let plan = launch::reduce_all(n as u64, std::mem::size_of::<E>());
                let partials_len = plan.partials as usize;
                let mut partials = self.output(partials_len)?;
                // reduce_all(x, out, n, op): block b writes out[b], b < grid = partials.
                self.launch(
                    &kernels::REDUCE_ALL,
                    plan.first,
                    &mut [
                        input(a),
                        Arg::Out(&mut partials, partials_len),
                        size(n),
                        Arg::I32(reduce_code(op)),
                    ],
                )?;
                if partials_len == 1 {
                    // One block covered it: its one partial is the result (no second launch,
                    // which matters for the many small sums of a step: gradient probes).
                    return Ok(CudaStorage::new(partials, Shape::SCALAR));
                }
                let mut out = self.output(1)?;
                // Again on the partials with one block, which writes out[0].
                self.launch(
                    &kernels::REDUCE_ALL,
                    plan.second,
                    &mut [
                        Arg::In(&partials, partials_len),
                        Arg::Out(&mut out, 1),
                        size(partials_len),
                        Arg::I32(reduce_code(op)),
                    ],
                )?;
                Ok(CudaStorage::new(out, Shape::SCALAR))
            }
        }
    }

    /// `reduce_rows`: each column of the non-empty `a` reduced over its rows, in one launch.
    fn reduce_columns(&self, op: ReduceOp, a: &CudaStorage<E>) -> Result<CudaStorage<E>> {
        let s = a.shape;
        let mut out = self.output(s.cols)?;
        // reduce_rows(x, out, rows, cols, op): x is rows x cols; out 1 x cols.
        self.launch(
            &kernels::REDUCE_ROWS,
            launch::column_tiles(s.cols as u64),
            &mut [
                input(a),
                Arg::Out(&mut out, s.cols),
                size(s.rows),
                size(s.cols),
                Arg::I32(reduce_code(op)),
            ],
        )?;
        Ok(CudaStorage::new(out, Shape::new(1, s.cols)))
    }

    pub(crate) fn argmax_along(&self, axis: Axis, a: &CudaStorage<E>) -> Result<CudaStorage<E>> {
        let n = a.shape.len();
        let mut out = self.output(n)?;
        if n > 0 {
            // Over everything: the same buffer seen as one row.
            let (rows, cols) = match axis {
                Axis::All => (1, n),
                _ => (a.shape.rows, a.shape.cols),
            };
            let l = if argmax_axis(axis) == 0 {
                launch::column_tiles(cols as u64)
            } else {
                launch::row_groups(rows as u64, cols as u64)
            };
            // argmax_mask(x, out, rows, cols, axis): x and out are rows x cols.
            self.launch(
                &kernels::ARGMAX_MASK,
                l,
                &mut [
                    input(a),
                    Arg::Out(&mut out, n),
                    size(rows),
                    size(cols),
                    Arg::I32(argmax_axis(axis)),
                ],
            )?;
        }
        Ok(CudaStorage::new(out, a.shape))
    }

    pub(crate) fn logsumexp_rows(&self, a: &CudaStorage<E>) -> Result<CudaStorage<E>> {
        let s = a.shape;
        let out_shape = Shape::new(s.rows, 1);
        if s.rows == 0 {
            return self.zeros_of(out_shape);
        }
        if s.cols == 0 {
            // The log of an empty sum, as the CPU: -inf.
            return self.fill(out_shape, E::neg_infinity());
        }
        let mut out = self.output(s.rows)?;
        // logsumexp_cols(x, out, rows, cols): out is rows x 1.
        self.launch(
            &kernels::LOGSUMEXP_COLS,
            launch::row_groups(s.rows as u64, s.cols as u64),
            &mut [
                input(a),
                Arg::Out(&mut out, s.rows),
                size(s.rows),
                size(s.cols),
            ],
        )?;
        Ok(CudaStorage::new(out, out_shape))
    }

    pub(crate) fn softmax_rows(&self, a: &CudaStorage<E>) -> Result<CudaStorage<E>> {
        let s = a.shape;
        let mut out = self.output(s.len())?;
        if !s.is_empty() {
            // softmax_cols(x, out, rows, cols): both rows x cols.
            self.launch(
                &kernels::SOFTMAX_COLS,
                launch::row_groups(s.rows as u64, s.cols as u64),
                &mut [
                    input(a),
                    Arg::Out(&mut out, s.len()),
                    size(s.rows),
                    size(s.cols),
                ],
            )?;
        }
        Ok(CudaStorage::new(out, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_kernels_md() {
        assert_eq!(reduce_code(ReduceOp::Sum), 0);
        assert_eq!(reduce_code(ReduceOp::Max), 1);
        assert_eq!(argmax_axis(Axis::Rows), 0);
        assert_eq!(argmax_axis(Axis::Cols), 1);
        assert_eq!(argmax_axis(Axis::All), 1);
    }
}
