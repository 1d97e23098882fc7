//! The fused operations: a linear layer (cuBLAS, then the bias-and-activation epilogue)
//! and its activation's backward, the affine coupling and its backward, the diagonal
//! Gaussian's log-density and its backward, and Adam's update.

use super::{input, size};
use crate::backend::{CudaBackend, CudaElement};
use crate::device::Arg;
use crate::kernels;
use crate::launch;
use crate::storage::CudaStorage;
use flow_core::backend::{Activation, AdamStep, CouplingScale, Direction, ReduceOp, UnaryOp};
use flow_core::{Axis, Result, Shape};

/// KERNELS.md's `act` code of an activation and its slope (0 where unused).
pub(crate) fn activation_code<E: num_traits::Zero>(act: Activation<E>) -> (i32, E) {
    match act {
        Activation::Identity => (0, E::zero()),
        Activation::Relu => (1, E::zero()),
        Activation::LeakyRelu(slope) => (2, slope),
    }
}

/// KERNELS.md's codes of a coupling's scale map and of a direction.
pub(crate) fn coupling_codes(scale: CouplingScale, direction: Direction) -> (i32, i32) {
    (
        match scale {
            CouplingScale::Exp => 0,
            CouplingScale::Sigmoid => 1,
        },
        direction_code(direction),
    )
}

/// KERNELS.md's `direction`: 0 forward, 1 inverse.
pub(crate) fn direction_code(direction: Direction) -> i32 {
    match direction {
        Direction::Forward => 0,
        Direction::Inverse => 1,
    }
}

impl<E: CudaElement> CudaBackend<E> {
    pub(crate) fn linear_layer(
        &self,
        x: &CudaStorage<E>,
        weight: &CudaStorage<E>,
        bias: &CudaStorage<E>,
        act: Activation<E>,
    ) -> Result<CudaStorage<E>> {
        let mut y = self.gemm(x, false, weight, true)?;
        let s = y.shape;
        if bias.shape.len() != s.cols {
            return Err(self.error(format!(
                "linear: a bias of {} for {} outputs",
                bias.shape, s.cols
            )));
        }
        if !s.is_empty() {
            let (code, slope) = activation_code(act);
            let y_data = self.unique(&mut y)?;
            // linear_epilogue(y, bias, rows, cols, act, slope): y (rows x cols) in place,
            // bias 1 x cols.
            self.launch(
                &kernels::LINEAR_EPILOGUE,
                launch::grid_stride(s.len() as u64),
                &mut [
                    Arg::Out(y_data, s.len()),
                    Arg::In(&bias.data, s.cols),
                    size(s.rows),
                    size(s.cols),
                    Arg::I32(code),
                    Arg::Elem(slope),
                ],
            )?;
        }
        Ok(y)
    }

    pub(crate) fn activation_grad(
        &self,
        act: Activation<E>,
        g: &mut CudaStorage<E>,
        out: &CudaStorage<E>,
    ) -> Result<CudaStorage<E>> {
        let n = g.shape.len();
        if out.shape.len() != n {
            return Err(self.error(format!(
                "activation_backward: a gradient of {} for an output of {}",
                g.shape, out.shape
            )));
        }
        if n > 0 && act != Activation::Identity {
            let (code, slope) = activation_code(act);
            let g_data = self.unique(g)?;
            // activation_backward(g, out, n, act, slope): g in place, both n entries.
            self.launch(
                &kernels::ACTIVATION_BACKWARD,
                launch::grid_stride(n as u64),
                &mut [
                    Arg::Out(g_data, n),
                    Arg::In(&out.data, n),
                    size(n),
                    Arg::I32(code),
                    Arg::Elem(slope),
                ],
            )?;
        }
        self.reduce_along(ReduceOp::Sum, Axis::Rows, g)
    }

    pub(crate) fn coupling(
        &self,
        v: &CudaStorage<E>,
        params: &CudaStorage<E>,
        scale: CouplingScale,
        direction: Direction,
    ) -> Result<(CudaStorage<E>, CudaStorage<E>)> {
        let s = v.shape;
        let (d, d2) = (s.cols, params.shape.cols / 2);
        if params.shape != Shape::new(s.rows, 2 * d2) || d2 > d {
            return Err(self.error(format!(
                "affine_coupling: parameters of {} for rows of {s}",
                params.shape
            )));
        }
        let mut out = self.output(s.len())?;
        let mut log_det = self.output(s.rows)?;
        if s.rows > 0 {
            let (scale_code, direction_code) = coupling_codes(scale, direction);
            let (l, lanes) = launch::rows_with_lanes(s.rows as u64, d as u64);
            // affine_coupling(v, params, out, log_det, rows, d, d2, scale, direction, lanes):
            // v and out rows x d, params rows x 2 d2, log_det rows x 1.
            self.launch(
                &kernels::AFFINE_COUPLING,
                l,
                &mut [
                    input(v),
                    input(params),
                    Arg::Out(&mut out, s.len()),
                    Arg::Out(&mut log_det, s.rows),
                    size(s.rows),
                    size(d),
                    size(d2),
                    Arg::I32(scale_code),
                    Arg::I32(direction_code),
                    Arg::I32(lanes as i32),
                ],
            )?;
        }
        Ok((
            CudaStorage::new(out, s),
            CudaStorage::new(log_det, Shape::new(s.rows, 1)),
        ))
    }

    pub(crate) fn coupling_backward(
        &self,
        params: &CudaStorage<E>,
        out: &CudaStorage<E>,
        g: &CudaStorage<E>,
        scale: CouplingScale,
        direction: Direction,
    ) -> Result<(CudaStorage<E>, CudaStorage<E>)> {
        let s = out.shape;
        let (d, d2) = (s.cols, params.shape.cols / 2);
        if params.shape != Shape::new(s.rows, 2 * d2) || d2 > d || g.shape != s {
            return Err(self.error(format!(
                "affine_coupling_backward: parameters of {} and a gradient of {} for rows of {s}",
                params.shape, g.shape
            )));
        }
        let mut g_v = self.output(s.len())?;
        let mut g_params = self.output(params.shape.len())?;
        if s.rows > 0 && d > 0 {
            let (scale_code, direction_code) = coupling_codes(scale, direction);
            // affine_coupling_backward(params, out, g, g_v, g_params, rows, d, d2, scale,
            // direction): out, g and g_v rows x d; params and g_params rows x 2 d2.
            self.launch(
                &kernels::AFFINE_COUPLING_BACKWARD,
                launch::grid_stride(s.len() as u64),
                &mut [
                    input(params),
                    input(out),
                    input(g),
                    Arg::Out(&mut g_v, s.len()),
                    Arg::Out(&mut g_params, params.shape.len()),
                    size(s.rows),
                    size(d),
                    size(d2),
                    Arg::I32(scale_code),
                    Arg::I32(direction_code),
                ],
            )?;
        }
        Ok((
            CudaStorage::new(g_v, s),
            CudaStorage::new(g_params, params.shape),
        ))
    }

    pub(crate) fn normal_log_prob(
        &self,
        z: &CudaStorage<E>,
        loc: &CudaStorage<E>,
        log_scale: &CudaStorage<E>,
    ) -> Result<CudaStorage<E>> {
        let s = z.shape;
        self.check_normal_params(s, loc, log_scale)?;
        let mut out = self.output(s.rows)?;
        if s.rows > 0 {
            let (l, lanes) = launch::rows_with_lanes(s.rows as u64, s.cols as u64);
            // diag_normal_log_prob(z, loc, log_scale, out, rows, d, lanes): z rows x d,
            // loc and log_scale 1 x d, out rows x 1.
            self.launch(
                &kernels::DIAG_NORMAL_LOG_PROB,
                l,
                &mut [
                    input(z),
                    Arg::In(&loc.data, s.cols),
                    Arg::In(&log_scale.data, s.cols),
                    Arg::Out(&mut out, s.rows),
                    size(s.rows),
                    size(s.cols),
                    Arg::I32(lanes as i32),
                ],
            )?;
        }
        Ok(CudaStorage::new(out, Shape::new(s.rows, 1)))
    }

    pub(crate) fn normal_log_prob_backward(
        &self,
        z: &CudaStorage<E>,
        loc: &CudaStorage<E>,
        log_scale: &CudaStorage<E>,
        g: &CudaStorage<E>,
    ) -> Result<(CudaStorage<E>, CudaStorage<E>, CudaStorage<E>)> {
        let s = z.shape;
        self.check_normal_params(s, loc, log_scale)?;
        if g.shape.len() != s.rows {
            return Err(self.error(format!(
                "diag_normal_log_prob_backward: a gradient of {} for {} rows",
                g.shape, s.rows
            )));
        }
        let mut w = self.output(s.len())?;
        let mut t = self.output(s.len())?;
        if !s.is_empty() {
            // diag_normal_backward(z, loc, log_scale, g, w, t, rows, d): z, w, t rows x d;
            // loc, log_scale 1 x d; g rows x 1.
            self.launch(
                &kernels::DIAG_NORMAL_BACKWARD,
                launch::grid_stride(s.len() as u64),
                &mut [
                    input(z),
                    Arg::In(&loc.data, s.cols),
                    Arg::In(&log_scale.data, s.cols),
                    Arg::In(&g.data, s.rows),
                    Arg::Out(&mut w, s.len()),
                    Arg::Out(&mut t, s.len()),
                    size(s.rows),
                    size(s.cols),
                ],
            )?;
        }
        let (w, t) = (CudaStorage::new(w, s), CudaStorage::new(t, s));
        let g_loc = self.reduce_along(ReduceOp::Sum, Axis::Rows, &w)?;
        let g_log_scale = self.reduce_along(ReduceOp::Sum, Axis::Rows, &t)?;
        let g_z = self.map_unary(UnaryOp::Neg, &w)?;
        Ok((g_z, g_loc, g_log_scale))
    }

    fn check_normal_params(
        &self,
        s: Shape,
        loc: &CudaStorage<E>,
        log_scale: &CudaStorage<E>,
    ) -> Result<()> {
        let row = Shape::new(1, s.cols);
        if loc.shape != row || log_scale.shape != row {
            return Err(self.error(format!(
                "diag_normal_log_prob: loc {} and log_scale {} for rows of {s}",
                loc.shape, log_scale.shape
            )));
        }
        Ok(())
    }

    pub(crate) fn adam(
        &self,
        param: &mut CudaStorage<E>,
        grad: &CudaStorage<E>,
        m: &mut CudaStorage<E>,
        v: &mut CudaStorage<E>,
        h: &AdamStep<E>,
    ) -> Result<()> {
        let n = param.shape.len();
        if [grad.shape.len(), m.shape.len(), v.shape.len()] != [n; 3] {
            return Err(self.error(format!(
                "adam_update: a parameter of {} with a gradient of {} and moments of {} and {}",
                param.shape, grad.shape, m.shape, v.shape
            )));
        }
        if n == 0 {
            return Ok(());
        }
        // Copies of shared buffers are made before anything is written, so an error leaves
        // the three as they were.
        let param_data = self.unique(param)?;
        let m_data = self.unique(m)?;
        let v_data = self.unique(v)?;
        // adam(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2): all four
        // buffers n entries, param, m and v updated in place.
        self.launch(
            &kernels::ADAM,
            launch::grid_stride(n as u64),
            &mut [
                Arg::Out(param_data, n),
                Arg::In(&grad.data, n),
                Arg::Out(m_data, n),
                Arg::Out(v_data, n),
                size(n),
                Arg::Elem(h.lr),
                Arg::Elem(h.beta1),
                Arg::Elem(h.beta2),
                Arg::Elem(h.eps),
                Arg::Elem(h.weight_decay),
                Arg::Elem(h.bias_correction1),
                Arg::Elem(h.bias_correction2),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_kernels_md() {
        assert_eq!(activation_code::<f32>(Activation::Identity), (0, 0.0));
        assert_eq!(activation_code::<f32>(Activation::Relu), (1, 0.0));
        assert_eq!(activation_code(Activation::LeakyRelu(0.2f32)), (2, 0.2));
        assert_eq!(
            coupling_codes(CouplingScale::Exp, Direction::Forward),
            (0, 0)
        );
        assert_eq!(
            coupling_codes(CouplingScale::Sigmoid, Direction::Inverse),
            (1, 1)
        );
    }
}
