//! Launch arithmetic, as pure functions: grid and block sizes for the grid-stride kernels,
//! the lanes of the row kernels, the two passes of a whole-tensor reduction and its shared
//! memory. Every kernel is correct for any grid size (KERNELS.md), so grids are capped.

/// Threads per block of every launch but the second pass of a reduction.
pub(crate) const BLOCK: u32 = 256;

/// The largest grid launched: enough blocks to fill any current GPU several times over;
/// larger problems loop (grid-stride).
pub(crate) const MAX_GRID: u32 = 65_535;

/// The most partial results the first pass of [`ReduceAllPlan`] writes.
pub(crate) const MAX_PARTIALS: u32 = 1024;

/// A one-dimensional launch: blocks, threads per block, dynamic shared memory in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Launch {
    pub grid: u32,
    pub block: u32,
    pub shared_bytes: u32,
}

impl Launch {
    /// cudarc's launch configuration.
    pub(crate) fn config(self) -> cudarc::driver::LaunchConfig {
        cudarc::driver::LaunchConfig {
            grid_dim: (self.grid, 1, 1),
            block_dim: (self.block, 1, 1),
            shared_mem_bytes: self.shared_bytes,
        }
    }
}

/// `ceil(items / per_block)` blocks, at least 1 and at most [`MAX_GRID`].
fn blocks_for(items: u64, per_block: u64) -> u32 {
    let blocks = items
        .div_ceil(per_block.max(1))
        .clamp(1, u64::from(MAX_GRID));
    u32::try_from(blocks).unwrap_or(MAX_GRID)
}

/// A grid-stride kernel over `items` work items of one thread each.
pub(crate) fn grid_stride(items: u64) -> Launch {
    Launch {
        grid: blocks_for(items, u64::from(BLOCK)),
        block: BLOCK,
        shared_bytes: 0,
    }
}

/// Threads that share a row in the row kernels (affine coupling, diagonal Gaussian): the
/// smallest power of two at least `min(cols, 32)` (1 for an empty row).
pub(crate) fn lanes(cols: u64) -> u32 {
    (cols.min(32) as u32).max(1).next_power_of_two()
}

/// A row kernel over `rows` rows of `cols` entries: `lanes(cols)` threads per row, so a
/// block of [`BLOCK`] threads does `BLOCK / lanes` rows at a time. Returns the launch and
/// the lanes.
pub(crate) fn rows_with_lanes(rows: u64, cols: u64) -> (Launch, u32) {
    let lanes = lanes(cols);
    let rows_per_block = u64::from(BLOCK / lanes);
    (
        Launch {
            grid: blocks_for(rows, rows_per_block),
            block: BLOCK,
            shared_bytes: 0,
        },
        lanes,
    )
}

/// Columns a block of `reduce_rows` (and of `argmax_mask` per column) takes at a time: a
/// tile as wide as a warp.
const TILE: u64 = 32;

/// `reduce_rows`, or `argmax_mask` per column, over `cols` columns: a block per tile.
pub(crate) fn column_tiles(cols: u64) -> Launch {
    Launch {
        grid: blocks_for(cols, TILE),
        block: BLOCK,
        shared_bytes: 0,
    }
}

/// The lanes that share a row in reduce.cu's per-row kernels, as its `flow_row_lanes`:
/// about 8 entries a lane, a power of two up to 32.
pub(crate) fn row_lanes(cols: u64) -> u32 {
    let mut lanes = 1u32;
    while lanes < 32 && u64::from(lanes) * 8 < cols {
        lanes *= 2;
    }
    lanes
}

/// reduce.cu's per-row kernels (`reduce_cols`, `logsumexp_cols`, `softmax_cols`, `argmax_mask`
/// per row) over `rows` rows of `cols`: a block does `BLOCK / row_lanes(cols)` rows a pass.
pub(crate) fn row_groups(rows: u64, cols: u64) -> Launch {
    Launch {
        grid: blocks_for(rows, u64::from(BLOCK / row_lanes(cols))),
        block: BLOCK,
        shared_bytes: 0,
    }
}

/// Blocks that fill a large GPU twice over (132 SMs on an H100 or H200).
const FILL_BLOCKS: u64 = 264;

/// The rows each warp of a one-pass column reduction may walk before the rows are split.
const MAX_ROWS_PER_WARP: u64 = 128;

/// The rows each warp walks at least in the first pass of a split column reduction.
const MIN_ROWS_PER_WARP: u64 = 16;

/// Into how many classes of rows a column reduction (`reduce_rows`) of a `rows x cols`
/// matrix is split. `reduce_rows` gives a block each tile of 32 columns and lets its warps
/// walk all the rows, so a few columns over many rows (a bias gradient over a batch) would
/// run on a block or two. With `k` classes, the same row-major memory is a
/// `(rows / k) x (k cols)` matrix (each of its rows is `k` consecutive rows side by side),
/// whose column `j cols + c` holds column `c` of rows `j, j + k, j + 2k, ..`: its column
/// reductions are `k` partial reductions of each column, and a second reduction over them,
/// seen as `k x cols`, gives the result. `k` is a power of two that divides `rows`: 1 (one
/// pass) while each warp walks at most [`MAX_ROWS_PER_WARP`] rows, else as large as keeps
/// [`MIN_ROWS_PER_WARP`] rows a warp and at most [`FILL_BLOCKS`] tiles.
pub(crate) fn column_split(rows: u64, cols: u64) -> u64 {
    let warps = u64::from(BLOCK / 32);
    if rows.div_ceil(warps) <= MAX_ROWS_PER_WARP {
        return 1;
    }
    let mut k = 1;
    while rows % (2 * k) == 0
        && rows / (2 * k) >= warps * MIN_ROWS_PER_WARP
        && (2 * k * cols).div_ceil(TILE) <= FILL_BLOCKS
    {
        k *= 2;
    }
    k
}

/// A reduction of `n` entries to one in two launches of `reduce_all`: the first writes one
/// partial per block (`partials` of them), the second reduces the partials with one block.
/// Dynamic shared memory is twice `block * elem_size` (room for compensated sums) in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReduceAllPlan {
    pub first: Launch,
    pub partials: u64,
    pub second: Launch,
}

/// The two passes of `reduce_all` over `n >= 1` entries of `elem_size` bytes.
pub(crate) fn reduce_all(n: u64, elem_size: usize) -> ReduceAllPlan {
    let shared = |block: u32| -> u32 {
        // At most 2 * 1024 * 8 = 16 KiB: within every device's 48 KiB default.
        2 * block * elem_size as u32
    };
    let grid = n
        .div_ceil(u64::from(BLOCK))
        .clamp(1, u64::from(MAX_PARTIALS)) as u32;
    ReduceAllPlan {
        first: Launch {
            grid,
            block: BLOCK,
            shared_bytes: shared(BLOCK),
        },
        partials: u64::from(grid),
        second: Launch {
            grid: 1,
            block: BLOCK,
            shared_bytes: shared(BLOCK),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_stride_covers_the_items_up_to_the_cap() {
        assert_eq!(grid_stride(0).grid, 1);
        assert_eq!(grid_stride(1).grid, 1);
        assert_eq!(grid_stride(256).grid, 1);
        assert_eq!(grid_stride(257).grid, 2);
        assert_eq!(grid_stride(1 << 40).grid, MAX_GRID);
        let l = grid_stride(1000);
        assert_eq!((l.block, l.shared_bytes), (BLOCK, 0));
        assert!(u64::from(l.grid * l.block) >= 1000);
    }

    #[test]
    fn lanes_are_the_next_power_of_two_up_to_a_warp() {
        let expected = [
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 4),
            (4, 4),
            (5, 8),
            (9, 16),
            (16, 16),
            (17, 32),
            (32, 32),
            (33, 32),
            (4099, 32),
        ];
        for (cols, lanes_) in expected {
            assert_eq!(lanes(cols), lanes_, "cols {cols}");
        }
    }

    #[test]
    fn row_launches_give_each_row_its_lanes() {
        let (l, lanes) = rows_with_lanes(1000, 3);
        assert_eq!(lanes, 4);
        // 64 rows per block of 256 threads.
        assert_eq!(l.grid, 1000u32.div_ceil(64));
        let (l, lanes) = rows_with_lanes(1, 100);
        assert_eq!((l.grid, lanes), (1, 32));
        let (l, _) = rows_with_lanes(0, 0);
        assert_eq!(l.grid, 1);
        let (l, _) = rows_with_lanes(u64::MAX / 2, 1);
        assert_eq!(l.grid, MAX_GRID);
        assert!(BLOCK % lanes == 0);
    }

    #[test]
    fn column_and_row_kernels_get_a_block_per_tile_or_row_group() {
        assert_eq!(column_tiles(1).grid, 1);
        assert_eq!(column_tiles(32).grid, 1);
        assert_eq!(column_tiles(33).grid, 2);
        assert_eq!(column_tiles(4099).grid, 129);
        // reduce.cu's flow_row_lanes: the smallest power of two with at most 8 entries a
        // lane, up to 32.
        let expected = [
            (0, 1),
            (1, 1),
            (8, 1),
            (9, 2),
            (16, 2),
            (17, 4),
            (64, 8),
            (65, 16),
        ];
        for (cols, lanes) in expected
            .into_iter()
            .chain([(256, 32), (257, 32), (1 << 20, 32)])
        {
            assert_eq!(row_lanes(cols), lanes, "cols {cols}");
        }
        // 8 columns: a row a thread, 256 rows a block; 4099 columns: a warp a row.
        assert_eq!(row_groups(1000, 8).grid, 4);
        assert_eq!(row_groups(1000, 4099).grid, 125);
        assert_eq!(row_groups(1, 4099).grid, 1);
        assert_eq!(row_groups(0, 3).grid, 1);
    }

    /// The column sums of `rows x cols` row-major values, as `reduce_rows` computes them.
    fn column_sums(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
        (0..cols)
            .map(|c| (0..rows).map(|r| x[r * cols + c]).sum())
            .collect()
    }

    /// The column sums through the two passes of [`column_split`].
    fn split_column_sums(values: &[f64], rows: usize, cols: usize) -> Vec<f64> {
        let k = column_split(rows as u64, cols as u64) as usize;
        let partials = column_sums(values, rows / k, k * cols);
        column_sums(&partials, k, cols)
    }

    #[test]
    fn tall_column_reductions_split_their_rows() {
        // Short batches: one pass.
        assert_eq!(column_split(512, 64), 1);
        assert_eq!(column_split(1024, 2), 1);
        // A batch of 4096 with 64 columns: 32 classes of 128 rows (16 a warp), 64 tiles.
        assert_eq!(column_split(4096, 64), 32);
        // 2^20 rows of 2: the tiles bound it (4096 classes, 256 tiles).
        assert_eq!(column_split(1 << 20, 2), 4096);
        // Rows with no factor of two, or wide matrices that already fill the GPU: one pass.
        assert_eq!(column_split(4099, 3), 1);
        assert_eq!(column_split(6144, 3), 32);
        assert_eq!(column_split(1 << 16, 1 << 14), 1);
        for (rows, cols) in [(4096, 64), (1 << 20, 2), (6144, 3), (3000, 5), (4099, 3)] {
            let k = column_split(rows, cols);
            assert!(k.is_power_of_two() && rows % k == 0, "{rows} x {cols}: {k}");
        }
        // Exactly the column sums (integers, so every order of summing agrees).
        for (rows, cols) in [(4096, 3), (6144, 5), (2048, 1), (4099, 2)] {
            let values: Vec<f64> = (0..rows * cols)
                .map(|i| ((i * 7919) % 101) as f64)
                .collect();
            assert_eq!(
                split_column_sums(&values, rows, cols),
                column_sums(&values, rows, cols),
                "{rows} x {cols}"
            );
        }
    }

    #[test]
    fn reduce_all_takes_two_passes_with_bounded_partials() {
        let p = reduce_all(1, 4);
        assert_eq!((p.first.grid, p.partials, p.second.grid), (1, 1, 1));
        let p = reduce_all(1000, 8);
        assert_eq!(p.partials, 4);
        assert_eq!(p.first.shared_bytes, 2 * BLOCK * 8);
        let p = reduce_all(1 << 40, 4);
        assert_eq!(p.partials, u64::from(MAX_PARTIALS));
        assert_eq!(p.first.grid, MAX_PARTIALS);
        assert_eq!(p.second.block, BLOCK);
        assert_eq!(p.second.shared_bytes, 2 * BLOCK * 4);
        // Block sizes are powers of two from 32 to 1024 (KERNELS.md).
        for l in [p.first, p.second, grid_stride(5)] {
            assert!(l.block.is_power_of_two() && (32..=1024).contains(&l.block));
        }
    }
}
