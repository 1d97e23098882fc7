//! Random draws on the device: `random.cu`'s Philox kernels keyed by the `FlowRng`'s seed,
//! stream and position (`philox.rs`), which then moves past what was used.

use super::size;
use crate::backend::{CudaBackend, CudaElement};
use crate::device::Arg;
use crate::kernels::{self, Kernel};
use crate::launch;
use crate::philox;
use crate::storage::CudaStorage;
use flow_core::{FlowRng, Result, Shape};

impl<E: CudaElement> CudaBackend<E> {
    pub(crate) fn draw_normal(&self, shape: Shape, rng: &mut FlowRng) -> Result<CudaStorage<E>> {
        self.draw(&kernels::RANDN, shape, None, rng)
    }

    pub(crate) fn draw_uniform(
        &self,
        shape: Shape,
        low: f64,
        high: f64,
        rng: &mut FlowRng,
    ) -> Result<CudaStorage<E>> {
        self.draw(&kernels::RAND_UNIFORM, shape, Some((low, high)), rng)
    }

    /// `shape.len()` draws of `kernel` (with the uniform bounds, if any), then `rng` moved
    /// past the counters used. On an error `rng` is left where it was.
    fn draw(
        &self,
        kernel: &Kernel,
        shape: Shape,
        bounds: Option<(f64, f64)>,
        rng: &mut FlowRng,
    ) -> Result<CudaStorage<E>> {
        let n = shape.len();
        let per = philox::per_counter(std::mem::size_of::<E>());
        let plan = philox::draw(rng.get_word_pos(), n as u64, per)
            .ok_or_else(|| self.error("random draws: the stream's position is exhausted"))?;
        let mut out = self.output(n)?;
        if n > 0 {
            let key = philox::key(&rng.get_seed());
            let stream = rng.get_stream();
            // randn(T* out, u64 n, u64 seed, u64 stream, u64 offset) and rand_uniform(.., T low,
            // T high): write out[0..n].
            let mut args = vec![
                Arg::Out(&mut out, n),
                size(n),
                Arg::U64(key),
                Arg::U64(stream),
                Arg::U64(plan.offset),
            ];
            if let Some((low, high)) = bounds {
                args.push(Arg::Elem(E::of(low)));
                args.push(Arg::Elem(E::of(high)));
            }
            self.launch(
                kernel,
                launch::grid_stride((n as u64).div_ceil(per)),
                &mut args,
            )?;
        }
        rng.set_word_pos(plan.next_word_pos);
        Ok(CudaStorage::new(out, shape))
    }
}
