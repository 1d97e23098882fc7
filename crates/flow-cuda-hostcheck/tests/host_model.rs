//! The host stand-ins for the CUDA built-ins (`kernels/host/cuda_host.h`) against what
//! CUDA documents, through the probe kernels of `cpp/host_probe.cu`.

use flow_cuda_hostcheck::check::{nans, Real};
use flow_cuda_hostcheck::{Kernels, Launch};

#[test]
fn built_in_variables_cover_the_grid() {
    for (grid, block) in [(1, 32), (3, 64), (5, 1024), (2, 40)] {
        let threads = (grid * block) as usize;
        let mut out = vec![u32::MAX; 4 * threads];
        unsafe { f64::probe_ids(Launch::new(grid, block), out.as_mut_ptr()) };
        for (i, ids) in out.chunks_exact(4).enumerate() {
            let want = [i as u32 % block, i as u32 / block, block, grid];
            assert_eq!(ids, want, "thread {i} of {grid} x {block}");
        }
    }
}

/// CUDA's `__shfl_xor_sync` and `__shfl_down_sync` for lane `lane` of a group of `width`.
fn xor_source(lane: u32, mask: u32, width: u32) -> u32 {
    let src = lane ^ mask;
    if src >= (lane / width + 1) * width {
        lane
    } else {
        src
    }
}

fn down_source(lane: u32, delta: u32, width: u32) -> u32 {
    if lane % width + delta < width {
        lane + delta
    } else {
        lane
    }
}

fn shuffles<T: Real>() {
    for (grid, block) in [(1, 32), (2, 96)] {
        for width in [32, 16, 8, 4, 2, 1] {
            let threads = (grid * block) as usize;
            let mut out = nans::<T>(12 * threads);
            unsafe { T::probe_shuffles(Launch::new(grid, block), out.as_mut_ptr(), width) };
            for (i, got) in out.chunks_exact(12).enumerate() {
                let (b, t) = (i as u32 / block, i as u32 % block);
                let (warp_base, lane) = (t - t % 32, t % 32);
                let value = |lane: u32| f64::from(1000 * b + warp_base + lane);
                let w = width as u32;
                let mut want = Vec::new();
                want.extend((0..5).map(|k| value(xor_source(lane, 1 << k, w))));
                want.extend((0..5).map(|k| value(down_source(lane, 1 << k, w))));
                want.push(f64::from(warp_base + xor_source(lane, 1, 32)));
                want.push(f64::from(warp_base + down_source(lane, 1, 32)));
                let got: Vec<f64> = got.iter().map(|x| x.to_f64()).collect();
                assert_eq!(got, want, "{} thread {i}, width {width}", T::NAME);
            }
        }
    }
}

#[test]
fn shuffles_follow_cuda_f32() {
    shuffles::<f32>();
}

#[test]
fn shuffles_follow_cuda_f64() {
    shuffles::<f64>();
}

#[test]
fn shared_memory_is_per_block_and_barriers_publish_writes() {
    for (grid, block) in [(1, 32), (3, 256), (2, 1024)] {
        let threads = (grid * block) as usize;
        let mut out = nans::<f64>(3 * threads);
        let launch = Launch::new(grid, block).with_shared(8 * u64::from(block));
        unsafe { f64::probe_shared(launch, out.as_mut_ptr()) };
        for (i, got) in out.chunks_exact(3).enumerate() {
            let (b, t) = (i as u32 / block, i as u32 % block);
            let base = f64::from(1000 * b);
            let want = [
                1.0, // fresh dynamic shared memory reads as NaN
                base + f64::from((t + 1) % block),
                base + f64::from(block - 1 - t),
            ];
            assert_eq!(got, want, "thread {i} of {grid} x {block}");
        }
    }
}

#[test]
fn atomics_add_every_thread() {
    let (mut sum, mut count) = (0.0f32, 0u32);
    unsafe { f32::probe_atomic(Launch::new(7, 256), &mut sum, &mut count) };
    assert_eq!((sum, count), (1792.0, 1792));
}
