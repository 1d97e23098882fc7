//! The IDX file format of MNIST and Fashion-MNIST, plain or gzip-compressed, and [`ImageSet`].

use super::error::{Error, Result};
use rand::Rng;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

/// The magic number of an IDX file of unsigned-byte images, `[count, rows, cols]`.
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// The magic number of an IDX file of unsigned-byte labels, `[count]`.
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// `count` grey-scale images of `height × width` pixels, stored row-major, image after image:
/// pixel `(r, c)` of image `i` is `pixels[i * height * width + r * width + c]`.
///
/// ```
/// use flow_datasets::images::ImageSet;
/// let set = ImageSet::new(2, 1, 3, vec![0, 1, 2, 3, 4, 5]).unwrap();
/// assert_eq!(set.dim(), 3);
/// assert_eq!(set.image(1), &[3, 4, 5]);
/// assert_eq!(set.take(1).pixels(), &[0, 1, 2]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    count: usize,
    height: usize,
    width: usize,
    pixels: Vec<u8>,
}

impl ImageSet {
    /// A set of `count` images of `height × width` over `pixels`, which must hold exactly
    /// `count * height * width` values; `height` and `width` must not be zero.
    pub fn new(count: usize, height: usize, width: usize, pixels: Vec<u8>) -> Result<Self> {
        if height == 0 || width == 0 {
            return Err(Error::Invalid(format!(
                "images of {height} × {width} pixels: both sizes must be positive"
            )));
        }
        let expected = count.checked_mul(height).and_then(|n| n.checked_mul(width));
        if expected != Some(pixels.len()) {
            return Err(Error::Invalid(format!(
                "{count} images of {height} × {width} pixels need {} values, got {}",
                expected.map_or_else(|| "more than usize::MAX".into(), |n| n.to_string()),
                pixels.len()
            )));
        }
        Ok(Self {
            count,
            height,
            width,
            pixels,
        })
    }

    /// The number of images.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Rows of pixels per image.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Columns of pixels per image.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Pixels per image, `height * width`: the dimension a flow models.
    pub fn dim(&self) -> usize {
        self.height * self.width
    }

    /// All pixels, row-major, image after image.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The pixels, without the shape.
    pub fn into_pixels(self) -> Vec<u8> {
        self.pixels
    }

    /// Image `i` (from 0), `dim()` pixels row by row. Panics when `i >= count`.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(
            i < self.count,
            "image {i} of a set of {} images",
            self.count
        );
        let d = self.dim();
        &self.pixels[i * d..(i + 1) * d]
    }

    /// The images in `range` (from 0), copied. Panics when the range is decreasing or ends
    /// past `count`.
    pub fn slice(&self, range: Range<usize>) -> ImageSet {
        assert!(
            range.start <= range.end && range.end <= self.count,
            "images {}..{} of a set of {} images",
            range.start,
            range.end,
            self.count
        );
        let d = self.dim();
        ImageSet {
            count: range.len(),
            height: self.height,
            width: self.width,
            pixels: self.pixels[range.start * d..range.end * d].to_vec(),
        }
    }

    /// The first `n` images (all of them when `n >= count`), copied.
    pub fn take(&self, n: usize) -> ImageSet {
        self.slice(0..n.min(self.count))
    }

    /// The pixels as `f64`, row-major (`count` rows of `dim()` features), without noise.
    pub fn to_f64(&self) -> Vec<f64> {
        self.pixels.iter().map(|&p| f64::from(p)).collect()
    }

    /// The pixels uniformly dequantised in pixel units, `x = pixel + u` with `u ~ U[0, 1)`
    /// drawn pixel by pixel in storage order: `count` rows of `dim()` values in `[0, 256)`.
    /// See [`dequantize_pixels`].
    pub fn dequantized<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f64> {
        dequantize_pixels(&self.pixels, rng)
    }
}

/// Uniform dequantisation in pixel units: each pixel value `k` in `0..=255` becomes
/// `k + u`, `u ~ U[0, 1)`, drawn in order from `rng`, so the values fill `[0, 256)`. A
/// continuous density `p` on the dequantised data bounds the discrete data's probability:
/// `log P(k) ≥ E_u[log p(k + u)]` (Theis et al. 2016), since each pixel's bin has width 1.
pub fn dequantize_pixels<R: Rng + ?Sized>(pixels: &[u8], rng: &mut R) -> Vec<f64> {
    // k + u for k ≤ 255 and u < 1 stays below k + 1: no rounding up at these magnitudes.
    pixels
        .iter()
        .map(|&p| f64::from(p) + rng.random::<f64>())
        .collect()
}

/// The file's bytes, gunzipped when they start with the gzip magic `1f 8b`; and whether
/// they were.
fn read_bytes(path: &Path, kind: &'static str) -> Result<(Vec<u8>, bool)> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, "read", e))?;
    if raw.is_empty() {
        return Err(Error::Empty {
            path: path.into(),
            kind,
        });
    }
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|source| Error::Gzip {
                path: path.into(),
                source,
            })?;
        if out.is_empty() {
            return Err(Error::Empty {
                path: path.into(),
                kind,
            });
        }
        Ok((out, true))
    } else {
        Ok((raw, false))
    }
}

/// Parses an IDX file of unsigned bytes with `magic` (whose low byte is the number of
/// dimensions): its dimensions and the data after the header.
fn parse_idx(path: &Path, kind: &'static str, magic: u32) -> Result<(Vec<u32>, Vec<u8>)> {
    let (bytes, gzip) = read_bytes(path, kind)?;
    let ndim = (magic & 0xff) as usize;
    let header = 4 + 4 * ndim;
    let word = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    if bytes.len() < 4 {
        return Err(Error::TruncatedHeader {
            path: path.into(),
            expected: header,
            got: bytes.len(),
            gzip,
        });
    }
    let found = word(0);
    if found != magic {
        return Err(Error::Magic {
            path: path.into(),
            kind,
            expected: magic,
            found,
        });
    }
    if bytes.len() < header {
        return Err(Error::TruncatedHeader {
            path: path.into(),
            expected: header,
            got: bytes.len(),
            gzip,
        });
    }
    let shape: Vec<u32> = (0..ndim).map(|k| word(4 + 4 * k)).collect();
    if shape.contains(&0) {
        return Err(Error::ZeroDimension {
            path: path.into(),
            shape,
        });
    }
    // At most (2^32 - 1)^3 < 2^96: compute in u128, then compare with what the file holds.
    let expected: u128 = shape.iter().map(|&d| u128::from(d)).product();
    let got = (bytes.len() - header) as u64;
    if expected != u128::from(got) {
        let expected = u64::try_from(expected).unwrap_or(u64::MAX);
        let (path, shape) = (path.into(), shape);
        return Err(if u128::from(got) < u128::from(expected) {
            Error::Truncated {
                path,
                shape,
                header,
                expected,
                got,
                gzip,
            }
        } else {
            Error::TrailingData {
                path,
                shape,
                header,
                expected,
                got,
                gzip,
            }
        });
    }
    let mut data = bytes;
    data.drain(..header);
    Ok((shape, data))
}

/// Reads an IDX file of images (magic `0x00000803`: unsigned bytes, dimensions
/// `[count, rows, cols]`, big-endian), plain or gzip-compressed (recognised by its first two
/// bytes `1f 8b`, whatever the file's name).
///
/// Errors name the file and what is wrong: it is missing or empty, the gzip stream is
/// broken, the magic number is wrong, the header or the data is truncated (`expected N
/// bytes, got M`), bytes follow the data, or a dimension is zero.
///
/// ```no_run
/// let train = flow_datasets::images::read_idx_images("train-images-idx3-ubyte.gz")?;
/// assert_eq!((train.count(), train.height(), train.width()), (60_000, 28, 28));
/// # Ok::<(), flow_datasets::images::Error>(())
/// ```
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<ImageSet> {
    let path = path.as_ref();
    let (shape, pixels) = parse_idx(path, "images", IDX_IMAGES_MAGIC)?;
    let [count, height, width] = [shape[0], shape[1], shape[2]].map(|d| d as usize);
    Ok(ImageSet {
        count,
        height,
        width,
        pixels,
    })
}

/// Reads an IDX file of labels (magic `0x00000801`: unsigned bytes, dimension `[count]`),
/// plain or gzip-compressed; errors as for [`read_idx_images`].
///
/// ```no_run
/// let labels = flow_datasets::images::read_idx_labels("train-labels-idx1-ubyte.gz")?;
/// assert!(labels.iter().all(|&l| l < 10));
/// # Ok::<(), flow_datasets::images::Error>(())
/// ```
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let (_, labels) = parse_idx(path.as_ref(), "labels", IDX_LABELS_MAGIC)?;
    Ok(labels)
}

/// Reads an IDX image file and its IDX label file, and checks that they hold as many images
/// as labels (an error naming both files otherwise).
pub fn read_idx_pair(
    images: impl AsRef<Path>,
    labels: impl AsRef<Path>,
) -> Result<(ImageSet, Vec<u8>)> {
    let (images_path, labels_path) = (images.as_ref(), labels.as_ref());
    let images = read_idx_images(images_path)?;
    let labels = read_idx_labels(labels_path)?;
    if images.count() != labels.len() {
        return Err(Error::CountMismatch {
            images_path: images_path.into(),
            labels_path: labels_path.into(),
            images: images.count(),
            labels: labels.len(),
        });
    }
    Ok((images, labels))
}

/// The bytes of an IDX image file (uncompressed) holding `set`: the inverse of
/// [`read_idx_images`]. Panics when a dimension does not fit in 32 bits.
pub fn idx_images_bytes(set: &ImageSet) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + set.pixels.len());
    out.extend_from_slice(&IDX_IMAGES_MAGIC.to_be_bytes());
    for d in [set.count, set.height, set.width] {
        let d = u32::try_from(d).expect("IDX dimensions are 32-bit");
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(&set.pixels);
    out
}

/// The bytes of an IDX label file (uncompressed) holding `labels`: the inverse of
/// [`read_idx_labels`]. Panics when there are `2^32` labels or more.
pub fn idx_labels_bytes(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&IDX_LABELS_MAGIC.to_be_bytes());
    let n = u32::try_from(labels.len()).expect("IDX dimensions are 32-bit");
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(labels);
    out
}
