//! Random draws of stochastic layers (a residual block's trace probes and series lengths, a
//! CNF's Hutchinson probes) that a resumed run repeats: each call's stream is a function of
//! a seed and a draw counter kept in a buffer of the parameter store (so checkpoints hold
//! them), plus the calls made since the counter was last committed
//! ([`crate::Flow::after_step`]).

use crate::error::{Error, Result};
use crate::registry::BuildContext;
use flow_core::{Backend, FlowRng, ParamId, ParamStore, Tensor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// 2^24: the counter is stored in two f32-exact pieces.
const PIECE: u64 = 1 << 24;

/// A layer's draw counter: the buffer `{prefix}.draws` (`1 x 3`: the seed, the committed
/// count mod 2^24 and its quotient, all exact in f32) and the calls since the last commit.
#[derive(Debug)]
pub struct Draws {
    buffer: ParamId,
    /// Training calls since the last commit.
    calls: Arc<AtomicU64>,
    /// Evaluations (parameters frozen) since the layer was built: a stream of their own,
    /// which never moves the training draws.
    evaluations: Arc<AtomicU64>,
}

impl Draws {
    /// Registers the buffer under `{cx.prefix}.draws`, its seed drawn from the build's stream.
    pub fn new<B: Backend>(cx: &mut BuildContext<'_, B>) -> Result<Self> {
        let seed = {
            use rand::Rng;
            (cx.rng.random::<u32>() >> 8) as f64
        };
        let buffer = cx.params.add_buffer(
            cx.name("draws"),
            Tensor::from_f64s(cx.backend, (1, 3), &[seed, 0.0, 0.0])?,
        )?;
        Ok(Draws {
            buffer,
            calls: Arc::default(),
            evaluations: Arc::default(),
        })
    }

    /// The buffer's handle.
    pub fn buffer(&self) -> ParamId {
        self.buffer
    }

    /// The random stream of one call: from the seed, the committed count and the calls
    /// since (training), or the evaluation count (`evaluation`).
    pub fn stream<B: Backend>(&self, params: &ParamStore<B>, evaluation: bool) -> Result<FlowRng> {
        let (seed, committed) = self.read(params)?;
        let key = if evaluation {
            let n = self.evaluations.fetch_add(1, Ordering::Relaxed);
            mix(mix(seed ^ 0x5eed_e7a1, committed), n)
        } else {
            let n = self.calls.fetch_add(1, Ordering::Relaxed);
            mix(seed, committed + n)
        };
        Ok(flow_core::rng(key))
    }

    /// Adds the calls since the last commit to the stored count.
    pub fn commit<B: Backend>(&self, params: &mut ParamStore<B>) -> Result<()> {
        let calls = self.calls.swap(0, Ordering::Relaxed);
        if calls > 0 {
            let (seed, committed) = self.read(params)?;
            let n = committed + calls;
            let backend = params.get(self.buffer)?.backend().clone();
            let value = [seed as f64, (n % PIECE) as f64, (n / PIECE) as f64];
            params.set(self.buffer, Tensor::from_f64s(&backend, (1, 3), &value)?)?;
        }
        Ok(())
    }

    /// The seed and committed count stored in the buffer.
    fn read<B: Backend>(&self, params: &ParamStore<B>) -> Result<(u64, u64)> {
        let v = params.get(self.buffer)?.to_f64s()?;
        if v.len() != 3 || v.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
            return Err(Error::Config(format!(
                "a draws buffer holds {v:?}, not [seed, count, count / 2^24]"
            )));
        }
        Ok((v[0] as u64, v[1] as u64 + (v[2] as u64) * PIECE))
    }
}

/// SplitMix64's finaliser of `a` and `b`: a key per (seed, count).
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(b)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
