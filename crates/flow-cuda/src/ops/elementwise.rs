//! Elementwise maps: unary, broadcasting binary, select, and broadcasts.

use super::{input, size};
use crate::backend::{CudaBackend, CudaElement};
use crate::device::Arg;
use crate::kernels;
use crate::launch;
use crate::storage::CudaStorage;
use flow_core::backend::{BinaryOp, UnaryOp};
use flow_core::{Result, Shape};

/// KERNELS.md's code of a unary op, with its scalar `p` and integer `k` arguments.
pub(crate) fn unary_code<E: Copy + num_traits::Zero>(op: UnaryOp<E>) -> (i32, E, i32) {
    let zero = E::zero();
    match op {
        UnaryOp::Neg => (0, zero, 0),
        UnaryOp::Exp => (1, zero, 0),
        UnaryOp::Log => (2, zero, 0),
        UnaryOp::Log1p => (3, zero, 0),
        UnaryOp::Sqrt => (4, zero, 0),
        UnaryOp::Square => (5, zero, 0),
        UnaryOp::Abs => (6, zero, 0),
        UnaryOp::Tanh => (7, zero, 0),
        UnaryOp::Sigmoid => (8, zero, 0),
        UnaryOp::Softplus => (9, zero, 0),
        UnaryOp::Relu => (10, zero, 0),
        UnaryOp::LeakyRelu(p) => (11, p, 0),
        UnaryOp::Elu(p) => (12, p, 0),
        UnaryOp::AddScalar(p) => (13, p, 0),
        UnaryOp::MulScalar(p) => (14, p, 0),
        UnaryOp::Powi(k) => (15, zero, k),
        UnaryOp::Sign => (16, zero, 0),
        UnaryOp::Step => (17, zero, 0),
        UnaryOp::Swish(k) => (18, zero, k),
        UnaryOp::EluDerivative(p) => (19, p, 0),
    }
}

/// KERNELS.md's code of a binary op.
pub(crate) fn binary_code(op: BinaryOp) -> i32 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
        BinaryOp::Gate => 4,
    }
}

impl<E: CudaElement> CudaBackend<E> {
    pub(crate) fn map_unary(&self, op: UnaryOp<E>, a: &CudaStorage<E>) -> Result<CudaStorage<E>> {
        let n = a.shape.len();
        let mut out = self.output(n)?;
        if n > 0 {
            let (code, p, k) = unary_code(op);
            // unary(const T* x, T* out, u64 n, int op, T p, int k): x[0..n] to out[0..n].
            self.launch(
                &kernels::UNARY,
                launch::grid_stride(n as u64),
                &mut [
                    input(a),
                    Arg::Out(&mut out, n),
                    size(n),
                    Arg::I32(code),
                    Arg::Elem(p),
                    Arg::I32(k),
                ],
            )?;
        }
        Ok(CudaStorage::new(out, a.shape))
    }

    pub(crate) fn map_binary(
        &self,
        op: BinaryOp,
        a: &CudaStorage<E>,
        b: &CudaStorage<E>,
    ) -> Result<CudaStorage<E>> {
        let shape = a.shape.broadcast(b.shape).ok_or_else(|| {
            self.error(format!(
                "binary: shapes {} and {} do not broadcast",
                a.shape, b.shape
            ))
        })?;
        let n = shape.len();
        let mut out = self.output(n)?;
        if n > 0 {
            // binary(a, b, out, rows, cols, a_rows, a_cols, b_rows, b_cols, op): each operand
            // is read within its own rows x cols; out[0..rows cols] is written.
            self.launch(
                &kernels::BINARY,
                launch::grid_stride(n as u64),
                &mut [
                    input(a),
                    input(b),
                    Arg::Out(&mut out, n),
                    size(shape.rows),
                    size(shape.cols),
                    size(a.shape.rows),
                    size(a.shape.cols),
                    size(b.shape.rows),
                    size(b.shape.cols),
                    Arg::I32(binary_code(op)),
                ],
            )?;
        }
        Ok(CudaStorage::new(out, shape))
    }

    pub(crate) fn choose(
        &self,
        mask: &CudaStorage<E>,
        a: &CudaStorage<E>,
        b: &CudaStorage<E>,
    ) -> Result<CudaStorage<E>> {
        let n = a.shape.len();
        let mut out = self.output(n)?;
        if n > 0 {
            // select(mask, a, b, out, n): all four hold n entries (one shape, checked by
            // Tensor; the argument check confirms each buffer's length).
            self.launch(
                &kernels::SELECT,
                launch::grid_stride(n as u64),
                &mut [
                    Arg::In(&mask.data, n),
                    Arg::In(&a.data, n),
                    Arg::In(&b.data, n),
                    Arg::Out(&mut out, n),
                    size(n),
                ],
            )?;
        }
        Ok(CudaStorage::new(out, a.shape))
    }

    pub(crate) fn broadcast(&self, a: &CudaStorage<E>, shape: Shape) -> Result<CudaStorage<E>> {
        if !a.shape.broadcasts_to(shape) {
            return Err(self.error(format!(
                "broadcast_to: {} does not broadcast to {shape}",
                a.shape
            )));
        }
        let n = shape.len();
        let mut out = self.output(n)?;
        if n > 0 {
            // broadcast_to(x, out, rows, cols, x_rows, x_cols): x within x_rows x x_cols.
            self.launch(
                &kernels::BROADCAST_TO,
                launch::grid_stride(n as u64),
                &mut [
                    input(a),
                    Arg::Out(&mut out, n),
                    size(shape.rows),
                    size(shape.cols),
                    size(a.shape.rows),
                    size(a.shape.cols),
                ],
            )?;
        }
        Ok(CudaStorage::new(out, shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unary_codes_follow_kernels_md() {
        let codes: Vec<(i32, f32, i32)> = [
            UnaryOp::Neg,
            UnaryOp::Exp,
            UnaryOp::Log,
            UnaryOp::Log1p,
            UnaryOp::Sqrt,
            UnaryOp::Square,
            UnaryOp::Abs,
            UnaryOp::Tanh,
            UnaryOp::Sigmoid,
            UnaryOp::Softplus,
            UnaryOp::Relu,
            UnaryOp::LeakyRelu(0.5),
            UnaryOp::Elu(0.25),
            UnaryOp::AddScalar(2.0),
            UnaryOp::MulScalar(3.0),
            UnaryOp::Powi(-3),
            UnaryOp::Sign,
            UnaryOp::Step,
            UnaryOp::Swish(2),
            UnaryOp::EluDerivative(1.5),
        ]
        .into_iter()
        .map(unary_code)
        .collect();
        for (i, (code, _, _)) in codes.iter().enumerate() {
            assert_eq!(*code, i as i32);
        }
        assert_eq!(codes[11].1, 0.5);
        assert_eq!(codes[12].1, 0.25);
        assert_eq!(codes[13].1, 2.0);
        assert_eq!(codes[14].1, 3.0);
        assert_eq!(codes[15].2, -3);
        assert_eq!(codes[18].2, 2);
    }

    #[test]
    fn binary_codes_follow_kernels_md() {
        let ops = [
            BinaryOp::Add,
            BinaryOp::Sub,
            BinaryOp::Mul,
            BinaryOp::Div,
            BinaryOp::Gate,
        ];
        for (i, op) in ops.into_iter().enumerate() {
            assert_eq!(binary_code(op), i as i32);
        }
    }
}
