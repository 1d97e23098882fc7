//! The rational-quadratic spline and its backward (`spline.cu`, one thread per entry): the
//! forward caches [`kernels::SPLINE_CACHE_WIDTH`] values per entry, the backward recomputes
//! the softmaxes from the parameters.

use super::fused::direction_code;
use super::{input, size};
use crate::backend::{CudaBackend, CudaElement};
use crate::device::Arg;
use crate::kernels;
use crate::launch;
use crate::storage::CudaStorage;
use flow_core::backend::{Direction, RationalQuadratic};
use flow_core::{Result, Shape};

impl<E: CudaElement> CudaBackend<E> {
    /// The spline's `bins` as the kernels' `int`, and its parameters per entry.
    fn spline_sizes(&self, spec: &RationalQuadratic) -> Result<(i32, usize)> {
        let bins = i32::try_from(spec.bins)
            .ok()
            .filter(|&b| b >= 1)
            .ok_or_else(|| self.error(format!("rational_quadratic: {} bins", spec.bins)))?;
        Ok((bins, spec.params_per_feature()))
    }

    /// The spline's shape arguments, as both kernels take them after the sizes.
    fn spline_spec_args(spec: &RationalQuadratic, bins: i32) -> [Arg<'static, E>; 5] {
        [
            Arg::I32(bins),
            Arg::Elem(E::of(spec.tail_bound)),
            Arg::Elem(E::of(spec.min_bin_width)),
            Arg::Elem(E::of(spec.min_bin_height)),
            Arg::Elem(E::of(spec.min_derivative)),
        ]
    }

    pub(crate) fn spline(
        &self,
        x: &CudaStorage<E>,
        params: &CudaStorage<E>,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> Result<(CudaStorage<E>, CudaStorage<E>)> {
        let s = x.shape;
        let (bins, per_entry) = self.spline_sizes(spec)?;
        if params.shape != Shape::new(s.rows, s.cols * per_entry) {
            return Err(self.error(format!(
                "rational_quadratic: parameters of {} for {s} entries of {per_entry}",
                params.shape
            )));
        }
        let out_shape = Shape::new(s.rows, 2 * s.cols);
        let cache_shape = Shape::new(s.len(), kernels::SPLINE_CACHE_WIDTH);
        let mut out = self.output(out_shape.len())?;
        let mut cache = self.output(cache_shape.len())?;
        if !s.is_empty() {
            // rational_quadratic(x, params, out, cache, rows, d, bins, tail_bound,
            // min_bin_width, min_bin_height, min_derivative, direction): x rows x d, params
            // rows x d P, out rows x 2d, cache (rows d) x 8.
            let mut args = vec![
                input(x),
                input(params),
                Arg::Out(&mut out, out_shape.len()),
                Arg::Out(&mut cache, cache_shape.len()),
                size(s.rows),
                size(s.cols),
            ];
            args.extend(Self::spline_spec_args(spec, bins));
            args.push(Arg::I32(direction_code(direction)));
            self.launch(
                &kernels::RATIONAL_QUADRATIC,
                launch::grid_stride(s.len() as u64),
                &mut args,
            )?;
        }
        Ok((
            CudaStorage::new(out, out_shape),
            CudaStorage::new(cache, cache_shape),
        ))
    }

    pub(crate) fn spline_backward(
        &self,
        x: &CudaStorage<E>,
        params: &CudaStorage<E>,
        cache: &CudaStorage<E>,
        spec: &RationalQuadratic,
        direction: Direction,
        g: &CudaStorage<E>,
    ) -> Result<(CudaStorage<E>, CudaStorage<E>)> {
        let s = x.shape;
        let (bins, per_entry) = self.spline_sizes(spec)?;
        let cache_shape = Shape::new(s.len(), kernels::SPLINE_CACHE_WIDTH);
        if params.shape != Shape::new(s.rows, s.cols * per_entry)
            || cache.shape != cache_shape
            || g.shape != Shape::new(s.rows, 2 * s.cols)
        {
            return Err(self.error(format!(
                "rational_quadratic_backward: parameters of {}, a cache of {} and a gradient \
                 of {} for {s} entries",
                params.shape, cache.shape, g.shape
            )));
        }
        let mut g_x = self.output(s.len())?;
        let mut g_params = self.output(params.shape.len())?;
        if !s.is_empty() {
            // rational_quadratic_backward(params, cache, g, g_x, g_params, rows, d, bins,
            // tail_bound, min_bin_width, min_bin_height, direction): g rows x 2d as the
            // forward's out, g_x rows x d, g_params rows x d P.
            let mut args = vec![
                input(params),
                input(cache),
                input(g),
                Arg::Out(&mut g_x, s.len()),
                Arg::Out(&mut g_params, params.shape.len()),
                size(s.rows),
                size(s.cols),
            ];
            args.extend(Self::spline_spec_args(spec, bins).into_iter().take(4));
            args.push(Arg::I32(direction_code(direction)));
            self.launch(
                &kernels::RATIONAL_QUADRATIC_BACKWARD,
                launch::grid_stride(s.len() as u64),
                &mut args,
            )?;
        }
        Ok((
            CudaStorage::new(g_x, s),
            CudaStorage::new(g_params, params.shape),
        ))
    }
}
