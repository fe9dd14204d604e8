//! How the kernels are laid over a tensor: pure arithmetic, tested without a GPU.

/// A shape the kernels' 32-bit indexing cannot address, or an empty one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    #[error("group norm of {channels} channels in {groups} groups: the channels must divide into the groups")]
    Groups { channels: usize, groups: usize },
    #[error("group norm over {batch} × {groups} groups of {group_len} elements: too many for one launch")]
    GroupTooLarge { batch: usize, groups: usize, group_len: usize },
    #[error("softmax over rows of {cols}: too long for one launch")]
    RowTooLong { cols: usize },
    #[error("an empty tensor")]
    Empty,
}

/// Elements one group-norm block works: large enough that a block's fixed costs (combining its group's partial
/// moments) are small against its reads, small enough that SDXL's smallest groups at 1024² (1280 channels at
/// 32²: 40 960 elements a group, 3 blocks) still give a guided step's norm 192 blocks, more than an H100's 132
/// SMs.
pub const GROUP_NORM_CHUNK: usize = 16_384;

/// Threads per group-norm block.
pub const GROUP_NORM_THREADS: u32 = 256;

/// The grid of a group norm over `batch` × `channels` × `spatial` elements (`spatial` = height × width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupNormGrid {
    /// Elements per group: `channels / groups × spatial`, contiguous.
    pub group_len: u32,
    /// Elements per block; the last block of a group may have fewer.
    pub chunk_len: u32,
    /// Blocks per group (grid x).
    pub chunks: u32,
    /// `batch × groups` (grid y).
    pub groups_total: u32,
}

impl GroupNormGrid {
    pub fn new(batch: usize, channels: usize, spatial: usize, groups: usize) -> Result<Self, LaunchError> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(LaunchError::Groups { channels, groups });
        }
        if batch == 0 || channels == 0 || spatial == 0 {
            return Err(LaunchError::Empty);
        }
        let group_len = channels / groups * spatial;
        let too_large = LaunchError::GroupTooLarge { batch, groups, group_len };
        // The kernels index within a group in u32 (chunk_len added to an index must not wrap either); grid y
        // is limited to 65 535 blocks.
        let group_len_u32 = u32::try_from(group_len).ok().filter(|&l| l <= u32::MAX - GROUP_NORM_CHUNK as u32);
        let groups_total = batch.checked_mul(groups).filter(|&g| g <= 65_535);
        let (Some(group_len), Some(groups_total)) = (group_len_u32, groups_total) else {
            return Err(too_large);
        };
        let chunk_len = GROUP_NORM_CHUNK.min(group_len as usize) as u32;
        Ok(Self { group_len, chunk_len, chunks: group_len.div_ceil(chunk_len), groups_total: groups_total as u32 })
    }

    /// Floats of partial moments the two launches exchange (count, mean, squared deviations per block).
    pub fn partial_len(&self) -> usize {
        3 * self.chunks as usize * self.groups_total as usize
    }
}

/// Threads for one softmax row of `cols`: about 8 elements a thread, a whole number of warps, at most 1024 (so a
/// 77-key cross-attention row gets one warp and a 16 k-key row 1024 threads).
pub fn softmax_threads(cols: usize) -> Result<u32, LaunchError> {
    if cols == 0 {
        return Err(LaunchError::Empty);
    }
    if u32::try_from(cols).is_err() {
        return Err(LaunchError::RowTooLong { cols });
    }
    Ok(cols.div_ceil(8).next_power_of_two().clamp(32, 1024) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_cut_into_chunks_that_cover_it_once() {
        // SDXL at 1024²: UNet's first level (320 channels at 128²), the VAE's last (128 channels at 1024²).
        for (batch, channels, spatial) in [(2, 320, 128 * 128), (1, 128, 1024 * 1024), (1, 64, 10), (3, 32, 1)] {
            let grid = GroupNormGrid::new(batch, channels, spatial, 32).unwrap();
            let group_len = channels / 32 * spatial;
            assert_eq!(grid.group_len as usize, group_len);
            assert_eq!(grid.groups_total as usize, batch * 32);
            // Every block has work and together they cover the group exactly.
            assert!((grid.chunks as usize - 1) * (grid.chunk_len as usize) < group_len);
            assert!(grid.chunks as usize * grid.chunk_len as usize >= group_len);
            assert!(grid.chunk_len as usize <= GROUP_NORM_CHUNK);
            assert_eq!(grid.partial_len(), 3 * grid.chunks as usize * batch * 32);
        }
        assert_eq!(GroupNormGrid::new(1, 128, 1024 * 1024, 32).unwrap().chunks, 256);
    }

    #[test]
    fn shapes_the_kernels_cannot_index_are_refused() {
        assert_eq!(GroupNormGrid::new(1, 30, 10, 32), Err(LaunchError::Groups { channels: 30, groups: 32 }));
        assert_eq!(GroupNormGrid::new(1, 32, 10, 0), Err(LaunchError::Groups { channels: 32, groups: 0 }));
        assert_eq!(GroupNormGrid::new(0, 32, 10, 32), Err(LaunchError::Empty));
        let huge = GroupNormGrid::new(1, 32, 1 << 32, 32);
        assert!(matches!(huge, Err(LaunchError::GroupTooLarge { .. })), "{huge:?}");
        let many = GroupNormGrid::new(4096, 32, 4, 32);
        assert!(matches!(many, Err(LaunchError::GroupTooLarge { .. })), "{many:?}");
    }

    #[test]
    fn softmax_blocks_are_whole_warps_of_about_eight_elements_a_thread() {
        assert_eq!(softmax_threads(1), Ok(32));
        assert_eq!(softmax_threads(77), Ok(32));
        assert_eq!(softmax_threads(1024), Ok(128));
        assert_eq!(softmax_threads(4096), Ok(512));
        assert_eq!(softmax_threads(16_384), Ok(1024));
        assert_eq!(softmax_threads(1 << 20), Ok(1024));
        assert_eq!(softmax_threads(0), Err(LaunchError::Empty));
    }
}
