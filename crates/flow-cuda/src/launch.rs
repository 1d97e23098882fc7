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
