//! Reading and writing NumPy's `.npy` files (format versions 1.0, 2.0 and 3.0).
//!
//! A file is the magic string `\x93NUMPY`, a major and a minor version byte, the header's
//! length (2 bytes little-endian in version 1.0, 4 bytes in 2.0 and 3.0), and the header: a
//! Python dict literal such as `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }`
//! padded with spaces and a newline so the data starts on a multiple of 64 bytes (Latin-1 in
//! versions 1.0 and 2.0, UTF-8 in 3.0). The data follow: `prod(shape)` elements of `descr`,
//! in C (row-major) or Fortran (column-major) order.

use super::columns::{resolve, ColumnSelector};
use super::error::{ColumnRef, Error, NonFinite, Result};
use super::table::{default_name, Table};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";
const ALIGN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Float,
    Int,
    Uint,
    Bool,
}

#[derive(Debug, Clone, Copy)]
struct Dtype {
    kind: Kind,
    size: usize,
    big_endian: bool,
}

impl Dtype {
    /// `<f8`, `>i4`, `|u1`, `|b1`, ...: byte order, kind, size. `=` is the native order; `|`
    /// (not applicable) is only taken for one-byte types.
    fn parse(descr: &str) -> Option<Self> {
        let (order, rest) = match descr.as_bytes().first()? {
            b'<' | b'>' | b'|' | b'=' => descr.split_at(1),
            _ => ("", descr),
        };
        let mut chars = rest.chars();
        let kind = match chars.next()? {
            'f' => Kind::Float,
            'i' => Kind::Int,
            'u' => Kind::Uint,
            'b' | '?' => Kind::Bool,
            _ => return None,
        };
        let size: usize = chars.as_str().parse().ok()?;
        let ok = match kind {
            Kind::Float => matches!(size, 4 | 8),
            Kind::Int | Kind::Uint => matches!(size, 1 | 2 | 4 | 8),
            Kind::Bool => size == 1,
        };
        if !ok || (order == "|" && size != 1) {
            return None;
        }
        let big_endian = match order {
            ">" => true,
            "=" => cfg!(target_endian = "big"),
            _ => false,
        };
        Some(Self {
            kind,
            size,
            big_endian,
        })
    }

    fn read(&self, b: &[u8]) -> f64 {
        macro_rules! num {
            ($t:ty, $n:literal) => {{
                let a: [u8; $n] = b.try_into().unwrap();
                if self.big_endian {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                }
            }};
        }
        match (self.kind, self.size) {
            (Kind::Float, 8) => num!(f64, 8),
            (Kind::Float, 4) => f64::from(num!(f32, 4)),
            (Kind::Int, 1) => f64::from(b[0] as i8),
            (Kind::Int, 2) => f64::from(num!(i16, 2)),
            (Kind::Int, 4) => f64::from(num!(i32, 4)),
            (Kind::Int, 8) => num!(i64, 8) as f64,
            (Kind::Uint, 1) => f64::from(b[0]),
            (Kind::Uint, 2) => f64::from(num!(u16, 2)),
            (Kind::Uint, 4) => f64::from(num!(u32, 4)),
            (Kind::Uint, 8) => num!(u64, 8) as f64,
            (Kind::Bool, _) => f64::from(u8::from(b[0] != 0)),
            _ => unreachable!("checked in Dtype::parse"),
        }
    }
}

/// Reads a 1-D (`n` rows of one column) or 2-D `.npy` array into a [`Table`] of `f64`, keeping
/// the selected columns (all when `columns` is `None`; only by index, since the format has no
/// column names). The columns are named `x0`, `x1`, ... after their positions in the array.
///
/// Element types: `f8 f4 i8 i4 i2 i1 u8 u4 u2 u1 b1`, little- or big-endian (64-bit integers
/// beyond 2^53 round to the nearest `f64`). Bytes after the data are ignored, as NumPy does.
///
/// Errors name the file: missing or unreadable, not starting with the magic string, an
/// unknown version, a header that does not parse, an unsupported dtype (the message quotes
/// it), more than two dimensions (or none), fewer data bytes than the shape needs (expected
/// and actual counts), no rows, and NaN or infinity (with its row and column, from 1).
pub fn read_npy(path: impl AsRef<Path>, columns: Option<&[ColumnSelector]>) -> Result<Table> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "read", e))?;
    parse_npy(&bytes, path, columns)
}

/// [`read_npy`] from the bytes of a `.npy` file; `path` only names the source in errors.
///
/// The data the header claims are checked against the bytes present before anything is
/// allocated for them, so a header claiming a huge shape is an error, not an allocation.
pub fn parse_npy(bytes: &[u8], path: &Path, columns: Option<&[ColumnSelector]>) -> Result<Table> {
    let header_error = |message: String| Error::NpyHeader {
        path: path.into(),
        message,
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Error::NpyMagic { path: path.into() });
    }
    if bytes.len() < 8 {
        return Err(header_error(format!(
            "the file ends after {} bytes, inside the preamble",
            bytes.len()
        )));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => {
            return Err(Error::NpyVersion {
                path: path.into(),
                major,
                minor,
            })
        }
    };
    let start = 8 + len_bytes;
    if bytes.len() < start {
        return Err(header_error(format!(
            "the file ends after {} bytes, inside the header length",
            bytes.len()
        )));
    }
    let header_len = if len_bytes == 2 {
        usize::from(u16::from_le_bytes([bytes[8], bytes[9]]))
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let data_start = start + header_len;
    if bytes.len() < data_start {
        return Err(header_error(format!(
            "the header is {header_len} bytes long but the file ends {} bytes into it",
            bytes.len() - start
        )));
    }
    let raw = &bytes[start..data_start];
    let header: String = if major == 3 {
        std::str::from_utf8(raw)
            .map_err(|_| header_error("the header is not UTF-8".into()))?
            .to_string()
    } else {
        raw.iter().map(|&b| char::from(b)).collect()
    };
    let fields = parse_header(&header).map_err(header_error)?;
    let descr = match fields.descr {
        Py::Str(s) => s,
        other => {
            return Err(Error::UnsupportedDtype {
                path: path.into(),
                descr: other.to_string(),
            })
        }
    };
    let dtype = Dtype::parse(&descr).ok_or_else(|| Error::UnsupportedDtype {
        path: path.into(),
        descr: descr.clone(),
    })?;
    let shape = fields.shape;
    let (rows, cols) = match shape[..] {
        [n] => (n, 1),
        [n, m] => (n, m),
        _ => {
            return Err(Error::UnsupportedShape {
                path: path.into(),
                shape,
            })
        }
    };
    let expected = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(dtype.size))
        .ok_or_else(|| header_error(format!("the shape {shape:?} is too large")))?;
    let actual = bytes.len() - data_start;
    if actual < expected {
        return Err(Error::Truncated {
            path: path.into(),
            shape,
            descr,
            expected: expected as u64,
            actual: actual as u64,
        });
    }
    // Before the columns are resolved: with no rows, nothing bounds the column count by the
    // bytes present, and resolving all of a huge count would allocate it.
    if rows == 0 {
        return Err(Error::Empty {
            path: path.into(),
            header: false,
        });
    }
    let selected = resolve(path, columns, None, cols)?;
    let data_bytes = &bytes[data_start..data_start + expected];
    let mut data = Vec::with_capacity(rows * selected.len());
    for i in 0..rows {
        for &j in &selected {
            let k = if fields.fortran_order {
                j * rows + i
            } else {
                i * cols + j
            };
            let v = dtype.read(&data_bytes[k * dtype.size..(k + 1) * dtype.size]);
            if let Some(kind) = NonFinite::of(v) {
                return Err(Error::NonFinite {
                    path: path.into(),
                    row: i + 1,
                    column: ColumnRef {
                        number: j + 1,
                        name: None,
                    },
                    cell: format!("{v}"),
                    kind,
                });
            }
            data.push(v);
        }
    }
    Table::new(selected.iter().map(|&j| default_name(j)).collect(), data)
}

/// Writes `table` as a version 1.0 `.npy` file: a 2-D array of shape `(rows, cols)` of
/// little-endian `f64` (`<f8`) in C order, as `numpy.save` writes it.
pub fn write_npy(path: impl AsRef<Path>, table: &Table) -> Result<()> {
    let path = path.as_ref();
    let mut header = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {}), }}",
        table.rows(),
        table.cols()
    );
    // Pad with spaces and end with a newline so the data start on a multiple of 64 bytes.
    let preamble = MAGIC.len() + 2 + 2;
    let total = (preamble + header.len() + 1).div_ceil(ALIGN) * ALIGN;
    let pad = total - preamble - header.len() - 1;
    header.extend(std::iter::repeat_n(' ', pad));
    header.push('\n');
    let header_len = u16::try_from(header.len())
        .map_err(|_| Error::Invalid(format!("{}: the NPY header is too long", path.display())))?;
    let mut out = Vec::with_capacity(total + 8 * table.data().len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in table.data() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out).map_err(|e| Error::io(path, "write", e))
}

/// The part of a Python literal an NPY header uses.
#[derive(Debug, Clone, PartialEq)]
enum Py {
    Str(String),
    Int(u64),
    Bool(bool),
    None,
    Tuple(Vec<Py>),
    List(Vec<Py>),
    Dict(Vec<(Py, Py)>),
}

impl std::fmt::Display for Py {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn seq(f: &mut std::fmt::Formatter<'_>, items: &[Py]) -> std::fmt::Result {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{item}")?;
            }
            Ok(())
        }
        match self {
            Py::Str(s) => write!(f, "'{s}'"),
            Py::Int(n) => write!(f, "{n}"),
            Py::Bool(true) => f.write_str("True"),
            Py::Bool(false) => f.write_str("False"),
            Py::None => f.write_str("None"),
            Py::Tuple(items) => {
                f.write_str("(")?;
                seq(f, items)?;
                f.write_str(if items.len() == 1 { ",)" } else { ")" })
            }
            Py::List(items) => {
                f.write_str("[")?;
                seq(f, items)?;
                f.write_str("]")
            }
            Py::Dict(items) => {
                f.write_str("{")?;
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

struct HeaderFields {
    descr: Py,
    fortran_order: bool,
    shape: Vec<usize>,
}

fn parse_header(text: &str) -> std::result::Result<HeaderFields, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
        depth: 0,
    };
    let value = p.value()?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text after the dict at byte {}", p.i));
    }
    let Py::Dict(items) = value else {
        return Err(format!("expected a dict, found `{value}`"));
    };
    let get = |key: &str| {
        items
            .iter()
            .find(|(k, _)| *k == Py::Str(key.into()))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("no '{key}' key in `{}`", text.trim_end()))
    };
    let descr = get("descr")?;
    let fortran_order = match get("fortran_order")? {
        Py::Bool(b) => b,
        other => return Err(format!("'fortran_order' is `{other}`, not True or False")),
    };
    let shape = match get("shape")? {
        Py::Tuple(dims) => dims
            .iter()
            .map(|d| match d {
                Py::Int(n) => usize::try_from(*n).map_err(|_| format!("dimension {n} too large")),
                other => Err(format!("'shape' holds `{other}`, not an integer")),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
        other => return Err(format!("'shape' is `{other}`, not a tuple")),
    };
    Ok(HeaderFields {
        descr,
        fortran_order,
        shape,
    })
}

/// How deeply dicts, tuples and lists may nest in a header: NumPy's own headers nest two
/// levels (three with a structured dtype); the limit keeps a hostile header of nested
/// brackets from overflowing the stack.
const MAX_DEPTH: usize = 32;

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    /// The containers open around the current position.
    depth: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn expect_end(&self) -> String {
        if self.i >= self.s.len() {
            "the header ends early".into()
        } else {
            format!(
                "unexpected `{}` at byte {}",
                self.text
                    .get(self.i..)
                    .and_then(|t| t.chars().next())
                    .unwrap_or('?'),
                self.i
            )
        }
    }

    /// Items up to `close`, separated by commas, a trailing comma allowed. Returns the items
    /// and whether a comma followed the last one.
    fn items(&mut self, close: u8) -> std::result::Result<(Vec<Py>, bool), String> {
        let mut items = Vec::new();
        let mut trailing = false;
        loop {
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok((items, trailing));
            }
            items.push(self.value()?);
            trailing = false;
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    trailing = true;
                }
                Some(c) if c == close => {}
                _ => return Err(self.expect_end()),
            }
        }
    }

    fn value(&mut self) -> std::result::Result<Py, String> {
        if matches!(self.peek(), Some(b'{' | b'(' | b'[')) {
            if self.depth >= MAX_DEPTH {
                return Err(format!(
                    "the header nests more than {MAX_DEPTH} levels deep at byte {}",
                    self.i
                ));
            }
            self.depth += 1;
            let value = self.scalar_or_container();
            self.depth -= 1;
            return value;
        }
        self.scalar_or_container()
    }

    fn scalar_or_container(&mut self) -> std::result::Result<Py, String> {
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        return Ok(Py::Dict(items));
                    }
                    let key = self.value()?;
                    if self.peek() != Some(b':') {
                        return Err(self.expect_end());
                    }
                    self.i += 1;
                    let value = self.value()?;
                    items.push((key, value));
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {}
                        _ => return Err(self.expect_end()),
                    }
                }
            }
            Some(b'(') => {
                self.i += 1;
                let (items, trailing) = self.items(b')')?;
                // `(x)` is x itself in Python; `(x,)` is a tuple.
                if items.len() == 1 && !trailing {
                    Ok(items.into_iter().next().unwrap())
                } else {
                    Ok(Py::Tuple(items))
                }
            }
            Some(b'[') => {
                self.i += 1;
                Ok(Py::List(self.items(b']')?.0))
            }
            Some(q @ (b'\'' | b'"')) => {
                self.i += 1;
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i] != q {
                    if self.s[self.i] == b'\\' {
                        self.i += 1;
                    }
                    self.i += 1;
                }
                if self.i >= self.s.len() {
                    return Err("a string is not closed".into());
                }
                let s = self.text[start..self.i].to_string();
                self.i += 1;
                Ok(Py::Str(s))
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                let n = self.text[start..self.i].parse().map_err(|_| {
                    format!("the integer `{}` is too large", &self.text[start..self.i])
                })?;
                // Python 2 wrote long integers as `3L`.
                if matches!(self.s.get(self.i), Some(b'L' | b'l')) {
                    self.i += 1;
                }
                Ok(Py::Int(n))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_alphanumeric() {
                    self.i += 1;
                }
                match &self.text[start..self.i] {
                    "True" => Ok(Py::Bool(true)),
                    "False" => Ok(Py::Bool(false)),
                    "None" => Ok(Py::None),
                    word => Err(format!("unexpected `{word}` at byte {start}")),
                }
            }
            _ => Err(self.expect_end()),
        }
    }
}
