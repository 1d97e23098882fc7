//! The CUDA backend against `flow_core`'s conformance suite and its own promises (random
//! draws, buffers shared between storages), on GPU 0.
//!
//! Without a GPU (no driver, no device, or no NVRTC / cuBLAS) the device tests print that
//! they skipped and pass: the one allowed skip. With `FLOWS_REQUIRE_GPU=1` a missing GPU is a
//! failure. `CudaBackend::new`'s error is checked everywhere.

use flow_core::backend::{Activation, Backend};
use flow_core::conformance::{self, Tolerances};
use flow_core::{Error, Shape};
use flow_cuda::{CudaBackend, CudaElement};
use std::time::Instant;

fn gpu_required() -> bool {
    std::env::var("FLOWS_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The backend on GPU 0, or `None` (after saying so) where there is no GPU and it is not
/// required.
fn backend<E: CudaElement>(test: &str) -> Option<CudaBackend<E>> {
    match CudaBackend::<E>::new(0) {
        Ok(b) => Some(b),
        Err(e) if gpu_required() => panic!("FLOWS_REQUIRE_GPU=1, but there is no GPU: {e}"),
        Err(e) => {
            println!("{test}: skipped, no GPU present ({e})");
            None
        }
    }
}

#[test]
fn new_names_what_is_missing() {
    // SAFETY: these only try to load the libraries.
    let present = unsafe {
        [
            flow_cuda::cudarc::driver::sys::is_culib_present(),
            flow_cuda::cudarc::nvrtc::sys::is_culib_present(),
            flow_cuda::cudarc::cublas::sys::is_culib_present(),
        ]
    };
    match CudaBackend::<f32>::new(0) {
        Ok(b) => {
            assert_eq!(present, [true; 3]);
            assert_eq!(b.name(), "cuda:0-f32");
            let (major, minor) = b.compute_capability();
            println!("GPU 0: {} (sm_{major}{minor})", b.device_name().unwrap());
        }
        Err(Error::Backend { backend, message }) => {
            assert_eq!(backend, "cuda:0-f32");
            for (here, name) in present.iter().zip(["CUDA driver", "NVRTC", "cuBLAS"]) {
                assert_eq!(
                    message.contains(name),
                    !here,
                    "`{message}` should name {name} exactly when it is missing"
                );
            }
            if present == [true; 3] {
                assert!(message.contains("no CUDA device"), "{message}");
            }
            assert!(!gpu_required(), "FLOWS_REQUIRE_GPU=1, but: {message}");
        }
        Err(other) => panic!("not a backend error: {other}"),
    }
}

fn conforms<E: CudaElement>(test: &str) {
    let Some(gpu) = backend::<E>(test) else {
        return;
    };
    let start = Instant::now();
    gpu.compile_all()
        .unwrap_or_else(|e| panic!("compiling the kernels: {e}"));
    println!(
        "{}: kernels compiled in {:.2?}",
        gpu.name(),
        start.elapsed()
    );
    let start = Instant::now();
    let report = conformance::run(&gpu, Tolerances::for_backend(&gpu))
        .unwrap_or_else(|e| panic!("{} fails the conformance suite: {e}", gpu.name()));
    gpu.synchronize().unwrap();
    println!("{report} in {:.2?}", start.elapsed());
}

#[test]
fn f32_conforms() {
    conforms::<f32>("f32_conforms");
}

#[test]
fn f64_conforms() {
    conforms::<f64>("f64_conforms");
}

#[test]
fn random_draws_are_reproducible_per_seed_and_distributed() {
    let Some(gpu) = backend::<f64>("random_draws_are_reproducible_per_seed_and_distributed") else {
        return;
    };
    let n = 100_003;
    let mut rng = flow_core::rng(7);
    let a = gpu
        .download(&gpu.randn(Shape::new(n, 1), &mut rng).unwrap())
        .unwrap();
    let b = gpu
        .download(&gpu.randn(Shape::new(n, 1), &mut rng).unwrap())
        .unwrap();
    let again = gpu
        .download(&gpu.randn(Shape::new(n, 1), &mut flow_core::rng(7)).unwrap())
        .unwrap();
    assert_eq!(a, again, "the same seed gives the same draws");
    assert_ne!(a[..100], b[..100], "the stream moves on");
    let mean = a.iter().sum::<f64>() / n as f64;
    let var = a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    assert!(
        mean.abs() < 0.02 && (var - 1.0).abs() < 0.03,
        "mean {mean} var {var}"
    );

    let u = gpu
        .download(
            &gpu.rand_uniform(Shape::new(n, 1), -2.0, 3.0, &mut rng)
                .unwrap(),
        )
        .unwrap();
    assert!(u.iter().all(|&x| (-2.0..3.0).contains(&x)));
    let mean = u.iter().sum::<f64>() / n as f64;
    assert!((mean - 0.5).abs() < 0.03, "uniform mean {mean}");
}

#[test]
fn writes_in_place_leave_shared_buffers_alone() {
    let Some(gpu) = backend::<f32>("writes_in_place_leave_shared_buffers_alone") else {
        return;
    };
    let values = vec![-1.0f32, 2.0, -3.0, 4.0, 5.0, -6.0];
    let g = gpu.upload(Shape::new(2, 3), values.clone()).unwrap();
    let out = g.clone();
    let shared = gpu.reshape(&g, Shape::new(3, 2)).unwrap();
    let mut g_mut = g.clone();
    let bias_grad = gpu
        .activation_backward(Activation::Relu, &mut g_mut, &out)
        .unwrap();
    assert_eq!(gpu.download(&bias_grad).unwrap(), [4.0, 7.0, 0.0]);
    assert_eq!(
        gpu.download(&g_mut).unwrap(),
        [0.0, 2.0, 0.0, 4.0, 5.0, 0.0]
    );
    assert_eq!(gpu.download(&g).unwrap(), values);
    assert_eq!(gpu.download(&shared).unwrap(), values);
    assert_eq!(gpu.shape(&shared), Shape::new(3, 2));
}

#[test]
fn a_failed_allocation_is_a_backend_error_and_the_backend_goes_on() {
    let Some(gpu) =
        backend::<f64>("a_failed_allocation_is_a_backend_error_and_the_backend_goes_on")
    else {
        return;
    };
    // 2^45 doubles: 256 TiB, more than any device has.
    match gpu.full(Shape::new(1 << 45, 1), 1.0) {
        Err(Error::Backend { backend, message }) => {
            assert_eq!(backend, "cuda:0-f64");
            assert!(message.contains("allocating"), "{message}");
        }
        other => panic!("expected an allocation failure, got {other:?}"),
    }
    let x = gpu.full(Shape::new(2, 2), 1.5).unwrap();
    assert_eq!(gpu.download(&x).unwrap(), [1.5; 4]);
    gpu.synchronize().unwrap();
}
