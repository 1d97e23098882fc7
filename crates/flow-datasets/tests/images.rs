//! IDX reading (plain and gzip), bad files refused by name, the built-in image sets, and the
//! logit preprocessing with its log-determinant and bits/dim.

use flow_datasets::images::{
    self, bits_per_dim, dequantize_pixels, idx_images_bytes, idx_labels_bytes, read_idx_dir,
    read_idx_images, read_idx_labels, read_idx_pair, Error, ImageSet, LogitTransform, Part,
};
use flow_datasets::real::{self, load_real, real_info, RealData};
use std::io::Write;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// 2 images of 3 rows × 2 columns, written out byte by byte.
fn images_file() -> Vec<u8> {
    let mut b = vec![0x00, 0x00, 0x08, 0x03]; // magic: u8, 3 dimensions
    b.extend([0, 0, 0, 2]); // count
    b.extend([0, 0, 0, 3]); // rows
    b.extend([0, 0, 0, 2]); // cols
    b.extend([0, 1, 2, 3, 4, 5]); // image 0
    b.extend([250, 251, 252, 253, 254, 255]); // image 1
    b
}

fn labels_file(labels: &[u8]) -> Vec<u8> {
    let mut b = vec![0x00, 0x00, 0x08, 0x01];
    b.extend((labels.len() as u32).to_be_bytes());
    b.extend(labels);
    b
}

/// The error's message, after checking that it names the file.
fn message<T: std::fmt::Debug>(result: images::Result<T>, path: &Path) -> String {
    let err = result.expect_err("expected an error");
    let msg = err.to_string();
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(name), "`{msg}` does not name {name}");
    msg
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for part in parts {
        assert!(msg.contains(part), "`{msg}` does not contain `{part}`");
    }
}

fn check_small_set(set: &ImageSet) {
    assert_eq!(
        (set.count(), set.height(), set.width(), set.dim()),
        (2, 3, 2, 6)
    );
    assert_eq!(set.image(0), &[0, 1, 2, 3, 4, 5]);
    assert_eq!(set.image(1), &[250, 251, 252, 253, 254, 255]);
}

#[test]
fn idx_round_trips_plain_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write(dir.path(), "images.idx", images_file());
    let set = read_idx_images(&plain).unwrap();
    check_small_set(&set);
    assert_eq!(idx_images_bytes(&set), images_file());

    // Compression is recognised by the 1f 8b magic, not by the name.
    let gz = write(dir.path(), "images-no-extension", gzip(&images_file()));
    assert_eq!(read_idx_images(&gz).unwrap(), set);
    let plain_named_gz = write(dir.path(), "plain.gz", images_file());
    assert_eq!(read_idx_images(&plain_named_gz).unwrap(), set);

    let labels = [7u8, 3];
    assert_eq!(idx_labels_bytes(&labels), labels_file(&labels));
    let lp = write(dir.path(), "labels.idx", labels_file(&labels));
    let lgz = write(dir.path(), "labels.idx.gz", gzip(&labels_file(&labels)));
    assert_eq!(read_idx_labels(&lp).unwrap(), labels);
    assert_eq!(read_idx_labels(&lgz).unwrap(), labels);
    let (pair_set, pair_labels) = read_idx_pair(&gz, &lp).unwrap();
    assert_eq!((pair_set, pair_labels), (set, labels.to_vec()));
}

#[test]
fn image_set_accessors() {
    let set = ImageSet::new(3, 1, 2, vec![1, 2, 3, 4, 5, 6]).unwrap();
    assert_eq!(set.slice(1..3).pixels(), &[3, 4, 5, 6]);
    assert_eq!(set.slice(1..3).count(), 2);
    assert_eq!(set.slice(2..2).count(), 0);
    assert_eq!(set.take(1).pixels(), &[1, 2]);
    assert_eq!(set.take(10), set);
    assert_eq!(set.to_f64(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert!(ImageSet::new(3, 1, 2, vec![0; 5]).is_err());
    assert!(ImageSet::new(1, 0, 2, vec![]).is_err());
    assert!(ImageSet::new(usize::MAX, 2, 2, vec![]).is_err());
}

#[test]
fn dequantisation_is_seeded_and_stays_in_the_bins() {
    let pixels: Vec<u8> = (0..=255).collect();
    let a = dequantize_pixels(&pixels, &mut flow_core::rng(7));
    let b = dequantize_pixels(&pixels, &mut flow_core::rng(7));
    let c = dequantize_pixels(&pixels, &mut flow_core::rng(8));
    assert_eq!(a, b);
    assert_ne!(a, c);
    for (&k, &x) in pixels.iter().zip(&a) {
        assert!(x >= f64::from(k) && x < f64::from(k) + 1.0, "{k} -> {x}");
    }
    let set = ImageSet::new(1, 16, 16, pixels).unwrap();
    assert_eq!(set.dequantized(&mut flow_core::rng(7)), a);
}

#[test]
fn bad_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let missing = d.join("missing-images-idx3-ubyte");
    let msg = message(read_idx_images(&missing), &missing);
    assert_contains(&msg, &["cannot read"]);

    let empty = write(d, "empty.idx", b"");
    assert_contains(&message(read_idx_images(&empty), &empty), &["empty"]);
    let empty_gz = write(d, "empty-inside.gz", gzip(b""));
    assert_contains(&message(read_idx_labels(&empty_gz), &empty_gz), &["empty"]);

    // A label file where images are expected, and garbage.
    let labels = write(d, "labels.idx", labels_file(&[1, 2]));
    let msg = message(read_idx_images(&labels), &labels);
    assert_contains(&msg, &["bad magic", "0x00000801", "0x00000803", "label"]);
    let junk = write(d, "junk.idx", b"GIF89a and more bytes");
    assert_contains(
        &message(read_idx_labels(&junk), &junk),
        &["bad magic", "0x00000801"],
    );
    let images = write(d, "images.idx", images_file());
    let msg = message(read_idx_labels(&images), &images);
    assert_contains(&msg, &["bad magic", "0x00000803", "expected 0x00000801"]);

    let short_header = write(d, "short-header.idx", &images_file()[..10]);
    let msg = message(read_idx_images(&short_header), &short_header);
    assert_contains(&msg, &["header is truncated", "expected 16 bytes, got 10"]);
    let tiny = write(d, "tiny.idx", [0u8, 0]);
    let msg = message(read_idx_labels(&tiny), &tiny);
    assert_contains(&msg, &["header is truncated", "expected 8 bytes, got 2"]);

    let full = images_file();
    let short = write(d, "short-data.idx", &full[..full.len() - 1]);
    let msg = message(read_idx_images(&short), &short);
    assert_contains(
        &msg,
        &["truncated", "[2, 3, 2]", "expected 12 bytes", "got 11"],
    );
    let short_gz = write(d, "short-data.idx.gz", gzip(&full[..full.len() - 5]));
    let msg = message(read_idx_images(&short_gz), &short_gz);
    assert_contains(
        &msg,
        &["expected 12 bytes", "got 7", "after gzip decompression"],
    );

    let mut long = images_file();
    long.push(9);
    let long = write(d, "long.idx", long);
    let msg = message(read_idx_images(&long), &long);
    assert_contains(&msg, &["trailing data", "expected 12 bytes", "got 13"]);

    // A gzip stream cut short.
    let gz = gzip(&full);
    let cut = write(d, "cut.gz", &gz[..gz.len() - 12]);
    assert_contains(&message(read_idx_images(&cut), &cut), &["gzip"]);

    for (k, name) in [
        (4, "zero-count.idx"),
        (8, "zero-rows.idx"),
        (12, "zero-cols.idx"),
    ] {
        let mut b = images_file();
        b[k..k + 4].copy_from_slice(&[0, 0, 0, 0]);
        let path = write(d, name, b);
        let msg = message(read_idx_images(&path), &path);
        assert_contains(&msg, &["dimensions", "zero"]);
    }
    let zero_labels = write(d, "zero-labels.idx", labels_file(&[]));
    assert_contains(
        &message(read_idx_labels(&zero_labels), &zero_labels),
        &["zero"],
    );

    // A header promising far more than any file holds is an error, not an allocation.
    let mut huge = images_file();
    huge[4..16].copy_from_slice(&[0xff; 12]);
    let huge = write(d, "huge.idx", huge);
    assert_contains(&message(read_idx_images(&huge), &huge), &["truncated"]);

    let three = write(d, "three-labels.idx", labels_file(&[1, 2, 3]));
    let err = read_idx_pair(&images, &three).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::CountMismatch { .. }));
    assert_contains(
        &msg,
        &["images.idx", "three-labels.idx", "2 images", "3 labels"],
    );
}

#[test]
fn idx_directories_with_and_without_gz() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "train-images-idx3-ubyte.gz", gzip(&images_file()));
    write(d, "train-labels-idx1-ubyte", labels_file(&[4, 2]));
    write(d, "t10k-images-idx3-ubyte", images_file());
    write(
        d,
        "t10k-labels-idx1-ubyte.gz",
        gzip(&labels_file(&[1, 2, 3])),
    );
    let (train, labels) = read_idx_dir(d, Part::Train).unwrap();
    check_small_set(&train);
    assert_eq!(labels, [4, 2]);
    let msg = read_idx_dir(d, Part::Test).unwrap_err().to_string();
    assert_contains(
        &msg,
        &["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte.gz"],
    );

    let empty = tempfile::tempdir().unwrap();
    let msg = read_idx_dir(empty.path(), Part::Train)
        .unwrap_err()
        .to_string();
    let tried = empty.path().join("train-images-idx3-ubyte");
    assert_contains(
        &msg,
        &[
            "cannot find the training images",
            &tried.display().to_string(),
            "train-images-idx3-ubyte.gz",
        ],
    );
    let nowhere = d.join("no-such-dir");
    let msg = read_idx_dir(&nowhere, Part::Train).unwrap_err().to_string();
    assert_contains(&msg, &["directory", "no-such-dir"]);
}

/// The only test that touches `FLOWS_MNIST_DIR` (the environment is shared by all tests).
#[test]
fn mnist_is_found_through_its_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = d.join("nothing-here");
    std::env::set_var("FLOWS_MNIST_DIR", &missing);
    let msg = images::mnist(Part::Train).unwrap_err().to_string();
    assert_contains(
        &msg,
        &[
            "MNIST",
            "nothing-here",
            "FLOWS_MNIST_DIR is set",
            "yann.lecun.com",
        ],
    );
    let msg = load_real("mnist", Part::Train).unwrap_err().to_string();
    assert_contains(&msg, &["nothing-here", "FLOWS_MNIST_DIR"]);

    write(d, "t10k-images-idx3-ubyte.gz", gzip(&images_file()));
    write(d, "t10k-labels-idx1-ubyte.gz", gzip(&labels_file(&[0, 1])));
    std::env::set_var("FLOWS_MNIST_DIR", d);
    check_small_set(&images::mnist(Part::Test).unwrap());
    let (set, labels) = images::mnist_labeled(Part::Test).unwrap();
    check_small_set(&set);
    assert_eq!(labels, [0, 1]);
    match load_real("mnist", Part::Test).unwrap() {
        RealData::Images(set) => check_small_set(&set),
        other => panic!("expected images, got {other:?}"),
    }
    let msg = images::mnist(Part::Train).unwrap_err().to_string();
    assert_contains(
        &msg,
        &[
            "cannot find the training images",
            "train-images-idx3-ubyte.gz",
        ],
    );
    std::env::remove_var("FLOWS_MNIST_DIR");
}

#[test]
fn logit_inverse_undoes_forward() {
    for alpha in [0.0, 1e-6, 0.05] {
        let t = LogitTransform::new(alpha).unwrap();
        let x: Vec<f64> = (0..2560).map(|i| 1e-3 + i as f64 * 0.1).collect();
        let mut y = x.clone();
        t.forward_rows(&mut y);
        assert!(y.iter().all(|v| v.is_finite()));
        assert!(y.windows(2).all(|w| w[0] < w[1]), "forward is increasing");
        t.inverse_rows(&mut y);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-9, "alpha {alpha}: {a} -> {b}");
        }
    }
    let t = LogitTransform::default();
    assert_eq!(t.alpha, 1e-6);
    assert!(t.forward(128.0).abs() < 1e-12);
    assert!(
        (t.forward(10.0) + t.forward(246.0)).abs() < 1e-9,
        "odd about 128"
    );
    // The inverse stays in [0, 256) however far out y is.
    let mut extremes = vec![-1e300, -50.0, 50.0, 1e300, f64::INFINITY, f64::NEG_INFINITY];
    t.inverse_rows(&mut extremes);
    assert!(
        extremes.iter().all(|&x| (0.0..256.0).contains(&x)),
        "{extremes:?}"
    );
    assert!(LogitTransform::new(0.5).is_err());
    assert!(LogitTransform::new(-0.1).is_err());
    assert!(LogitTransform::new(f64::NAN).is_err());
}

#[test]
fn log_det_matches_finite_differences() {
    for alpha in [1e-6, 0.05] {
        let t = LogitTransform::new(alpha).unwrap();
        for x in [0.3, 1.0, 17.25, 100.0, 128.0, 200.5, 255.0, 255.7] {
            let h = 1e-4;
            let fd = (t.forward(x + h) - t.forward(x - h)) / (2.0 * h);
            let ld = t.log_det(x);
            assert!(
                (ld - fd.ln()).abs() < 1e-6,
                "alpha {alpha}, x {x}: log_det {ld}, finite differences {}",
                fd.ln()
            );
        }
    }
    let t = LogitTransform::default();
    let x = [0.5, 100.25, 255.5, 3.0, 4.0, 5.0];
    let rows = t.log_det_rows(&x, 3);
    assert_eq!(rows.len(), 2);
    for (r, row) in x.chunks(3).enumerate() {
        let sum: f64 = row.iter().map(|&v| t.log_det(v)).sum();
        assert!((rows[r] - sum).abs() < 1e-12);
    }
    // Closed form at the middle: s = 1/2, so log(1 - 2 alpha) - log 256 + 2 log 2.
    let expected = (1.0 - 2e-6f64).ln() - 256f64.ln() + 4f64.ln();
    assert!((t.log_det(128.0) - expected).abs() < 1e-12);
}

#[test]
fn bits_per_dim_known_values() {
    // A uniform density over [0, 256)^D costs 8 bits per dimension.
    assert!((bits_per_dim(784.0 * 256f64.ln(), 784) - 8.0).abs() < 1e-12);
    assert!((bits_per_dim(std::f64::consts::LN_2 * 3.0, 3) - 1.0).abs() < 1e-15);
    // The logit bookkeeping reproduces the uniform case: if x is uniform on [0, 256)^D, the
    // density of y = logit(...) is exp(-D ln 256 - log_det), and adding log_det back gives
    // exactly 8 bits/dim whatever the point.
    let t = LogitTransform::default();
    let x = [3.5, 77.1, 254.9, 0.01];
    let log_det = t.log_det_rows(&x, 4)[0];
    let log_p_model_y = -4.0 * 256f64.ln() - log_det;
    assert!((bits_per_dim(-(log_p_model_y + log_det), 4) - 8.0).abs() < 1e-12);
}

const FASHION_DIR: &str = "/usr/share/datasets/fashion-mnist";

fn fashion<T>(result: images::Result<T>) -> T {
    result.unwrap_or_else(|e| {
        panic!(
            "Fashion-MNIST is needed for this test (CI installs it): \
             `apt-get install dataset-fashion-mnist`, or set FLOWS_FASHION_MNIST_DIR. {e}"
        )
    })
}

#[test]
fn real_fashion_mnist() {
    if std::env::var_os("FLOWS_FASHION_MNIST_DIR").is_none() {
        assert!(
            Path::new(FASHION_DIR).is_dir(),
            "{FASHION_DIR} is missing: `apt-get install dataset-fashion-mnist` \
             (or set FLOWS_FASHION_MNIST_DIR)"
        );
    }
    let (train, train_labels) = fashion(images::fashion_mnist_labeled(Part::Train));
    assert_eq!(
        (train.count(), train.height(), train.width()),
        (60_000, 28, 28)
    );
    let sum: u64 = train.pixels().iter().map(|&p| u64::from(p)).sum();
    // Measured: 3,431,114,169 / 47,040,000 = 72.940352...
    assert_eq!(sum, 3_431_114_169);
    let mean = sum as f64 / train.pixels().len() as f64;
    assert!((mean - 72.940_352).abs() < 1e-6, "pixel mean {mean}");
    let mut counts = [0usize; 10];
    for &l in &train_labels {
        counts[usize::from(l)] += 1;
    }
    assert_eq!(counts, [6000; 10]);
    assert_eq!(&train_labels[..5], &[9, 0, 0, 3, 0]);
    let first: u32 = train.image(0).iter().map(|&p| u32::from(p)).sum();
    assert_eq!(first, 76_247);

    let (test, test_labels) = fashion(images::fashion_mnist_labeled(Part::Test));
    assert_eq!((test.count(), test.dim()), (10_000, 784));
    let mut counts = [0usize; 10];
    for &l in &test_labels {
        counts[usize::from(l)] += 1;
    }
    assert_eq!(counts, [1000; 10]);
    let test_sum: u64 = test.pixels().iter().map(|&p| u64::from(p)).sum();
    assert_eq!(test_sum, 573_469_082);
    assert_eq!(fashion(images::fashion_mnist(Part::Test)), test);

    // The registry agrees with what loads.
    let info = real_info("fashion-mnist").unwrap();
    assert_eq!(
        (info.rows, info.dim, info.image),
        (60_000, 784, Some((28, 28)))
    );
    assert!(info
        .needs
        .unwrap()
        .contains("apt-get install dataset-fashion-mnist"));
    match load_real("fashion-mnist", Part::Test).unwrap() {
        RealData::Images(set) => assert_eq!(set, test),
        other => panic!("expected images, got {other:?}"),
    }
}

#[test]
fn registry_lists_every_name() {
    for name in real::REAL_NAMES {
        let info = real_info(name).unwrap();
        assert_eq!(info.name, *name);
        assert!(!info.description.is_empty());
        if let Some((h, w)) = info.image {
            assert_eq!(h * w, info.dim);
        }
    }
    assert!(real_info("cifar10").is_none());
    let msg = load_real("cifar10", Part::Train).unwrap_err().to_string();
    assert_contains(&msg, &["cifar10", "wine-quality", "fashion-mnist", "mnist"]);
}
