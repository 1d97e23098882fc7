//! Column slices, concatenation, gathers and scatters of whole columns, one entry per row
//! taken or put, and sorted search along rows.

use super::{input, size};
use crate::backend::{CudaBackend, CudaElement};
use crate::device::Arg;
use crate::kernels;
use crate::launch;
use crate::storage::{CudaIndex, CudaStorage};
use flow_core::{Result, Shape};
use std::sync::Arc;

impl<E: CudaElement> CudaBackend<E> {
    pub(crate) fn columns(
        &self,
        a: &CudaStorage<E>,
        start: usize,
        len: usize,
    ) -> Result<CudaStorage<E>> {
        let s = a.shape;
        if start + len > s.cols {
            return Err(self.error(format!(
                "slice_cols: columns {start}..{} of {s}",
                start + len
            )));
        }
        let shape = Shape::new(s.rows, len);
        let mut out = self.output(shape.len())?;
        if !shape.is_empty() {
            // slice_cols(x, out, rows, x_cols, start, len): reads columns start..start+len
            // of x (rows x x_cols), writes out (rows x len).
            self.launch(
                &kernels::SLICE_COLS,
                launch::grid_stride(shape.len() as u64),
                &mut [
                    input(a),
                    Arg::Out(&mut out, shape.len()),
                    size(s.rows),
                    size(s.cols),
                    size(start),
                    size(len),
                ],
            )?;
        }
        Ok(CudaStorage::new(out, shape))
    }

    pub(crate) fn concat(&self, parts: &[&CudaStorage<E>]) -> Result<CudaStorage<E>> {
        let rows = parts.first().map_or(0, |p| p.shape.rows);
        if let Some(p) = parts.iter().find(|p| p.shape.rows != rows) {
            return Err(self.error(format!(
                "concat_cols: parts of {rows} and {} rows",
                p.shape.rows
            )));
        }
        let cols: usize = parts.iter().map(|p| p.shape.cols).sum();
        let shape = Shape::new(rows, cols);
        let mut out = self.output(shape.len())?;
        let mut offset = 0;
        for part in parts {
            let part_cols = part.shape.cols;
            if rows > 0 && part_cols > 0 {
                // copy_cols(part, out, rows, part_cols, out_cols, offset): part (rows x
                // part_cols) into columns offset..offset+part_cols of out (rows x out_cols).
                self.launch(
                    &kernels::COPY_COLS,
                    launch::grid_stride(part.shape.len() as u64),
                    &mut [
                        input(part),
                        Arg::Out(&mut out, shape.len()),
                        size(rows),
                        size(part_cols),
                        size(cols),
                        size(offset),
                    ],
                )?;
            }
            offset += part_cols;
        }
        Ok(CudaStorage::new(out, shape))
    }

    pub(crate) fn gather(&self, a: &CudaStorage<E>, index: &CudaIndex) -> Result<CudaStorage<E>> {
        let s = a.shape;
        let shape = Shape::new(s.rows, index.len);
        let mut out = self.output(shape.len())?;
        if !shape.is_empty() {
            // gather_cols(x, index, out, rows, x_cols, out_cols): out column j is x column
            // index[j] (< x_cols, checked by IndexTensor), j < out_cols = index's length.
            self.launch(
                &kernels::GATHER_COLS,
                launch::grid_stride(shape.len() as u64),
                &mut [
                    input(a),
                    Arg::InIndex(&index.data, index.len),
                    Arg::Out(&mut out, shape.len()),
                    size(s.rows),
                    size(s.cols),
                    size(index.len),
                ],
            )?;
        }
        Ok(CudaStorage::new(out, shape))
    }

    pub(crate) fn scatter_add(
        &self,
        a: &CudaStorage<E>,
        index: &CudaIndex,
        width: usize,
    ) -> Result<CudaStorage<E>> {
        let s = a.shape;
        if index.len != s.cols {
            return Err(self.error(format!(
                "scatter_add_cols: {} indices for {} columns",
                index.len, s.cols
            )));
        }
        let shape = Shape::new(s.rows, width);
        let mut out = self.output(shape.len())?;
        if !shape.is_empty() {
            // scatter_add_cols(x, index, out, rows, x_cols, width): x column j adds into out
            // column index[j] (< width, checked by IndexTensor); every entry of out written.
            self.launch(
                &kernels::SCATTER_ADD_COLS,
                launch::grid_stride(shape.len() as u64),
                &mut [
                    input(a),
                    Arg::InIndex(&index.data, index.len),
                    Arg::Out(&mut out, shape.len()),
                    size(s.rows),
                    size(s.cols),
                    size(width),
                ],
            )?;
        }
        Ok(CudaStorage::new(out, shape))
    }

    pub(crate) fn take(&self, a: &CudaStorage<E>, index: &CudaIndex) -> Result<CudaStorage<E>> {
        let s = a.shape;
        if index.len != s.rows {
            return Err(self.error(format!(
                "take_per_row: {} indices for {} rows",
                index.len, s.rows
            )));
        }
        let mut out = self.output(s.rows)?;
        if s.rows > 0 {
            // take_per_row(x, index, out, rows, cols): out[r] = x[r cols + index[r]], with
            // index[r] < cols (checked by IndexTensor).
            self.launch(
                &kernels::TAKE_PER_ROW,
                launch::grid_stride(s.rows as u64),
                &mut [
                    input(a),
                    Arg::InIndex(&index.data, s.rows),
                    Arg::Out(&mut out, s.rows),
                    size(s.rows),
                    size(s.cols),
                ],
            )?;
        }
        Ok(CudaStorage::new(out, Shape::new(s.rows, 1)))
    }

    pub(crate) fn put(
        &self,
        a: &CudaStorage<E>,
        index: &CudaIndex,
        width: usize,
    ) -> Result<CudaStorage<E>> {
        let rows = index.len;
        if a.shape.len() != rows {
            return Err(self.error(format!(
                "put_per_row: {} values for {rows} indices",
                a.shape.len()
            )));
        }
        let shape = Shape::new(rows, width);
        let mut out = self.output(shape.len())?;
        if !shape.is_empty() {
            // put_per_row(x, index, out, rows, width): out[r width + index[r]] = x[r], with
            // index[r] < width (checked by IndexTensor), and 0 at every other entry.
            self.launch(
                &kernels::PUT_PER_ROW,
                launch::grid_stride(shape.len() as u64),
                &mut [
                    Arg::In(&a.data, rows),
                    Arg::InIndex(&index.data, rows),
                    Arg::Out(&mut out, shape.len()),
                    size(rows),
                    size(width),
                ],
            )?;
        }
        Ok(CudaStorage::new(out, shape))
    }

    pub(crate) fn search_sorted(
        &self,
        sorted: &CudaStorage<E>,
        x: &CudaStorage<E>,
    ) -> Result<CudaIndex> {
        let s = sorted.shape;
        if x.shape.len() != s.rows {
            return Err(self.error(format!(
                "search_sorted_rows: {} values for {} rows",
                x.shape.len(),
                s.rows
            )));
        }
        let mut out = self.index_zeros(s.rows)?;
        if s.rows > 0 {
            // search_sorted_rows(sorted, x, out, rows, cols): sorted is rows x cols, x and
            // out hold one entry per row.
            self.launch(
                &kernels::SEARCH_SORTED_ROWS,
                launch::grid_stride(s.rows as u64),
                &mut [
                    input(sorted),
                    Arg::In(&x.data, s.rows),
                    Arg::OutIndex(&mut out, s.rows),
                    size(s.rows),
                    size(s.cols),
                ],
            )?;
        }
        Ok(CudaIndex {
            data: Arc::new(out),
            len: s.rows,
        })
    }
}
