//! How a seeded [`FlowRng`](flow_core::FlowRng) keys the device's Philox draws
//! (`random.cu`): a 64-bit key from the ChaCha seed, the ChaCha stream number as Philox's
//! stream, and the ChaCha word position as the Philox counter. One Philox counter gives
//! four 32-bit words, four f32 draws or two f64 draws, and stands for four ChaCha words
//! (both are 128 bits), so after `n` draws the stream moves past `ceil(n / per_counter)`
//! counters: the next draw from the same `FlowRng` uses fresh counters, and the same seed
//! gives the same numbers.

/// The 64-bit Philox key of a 32-byte ChaCha seed: its four little-endian words mixed by
/// SplitMix64's finaliser, so that every bit of the seed moves the key.
pub(crate) fn key(seed: &[u8; 32]) -> u64 {
    let mut key = 0u64;
    for word in seed.chunks_exact(8) {
        let w = u64::from_le_bytes(word.try_into().expect("8-byte chunks"));
        key = mix(key ^ w);
    }
    key
}

/// SplitMix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Where `n` draws start and where the stream continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Draw {
    /// The first Philox counter (`offset` of the kernels).
    pub offset: u64,
    /// The ChaCha word position after the draws.
    pub next_word_pos: u128,
}

/// Draws per counter for elements of `bytes` bytes (`random.cu`: 4 in f32, 2 in f64).
pub(crate) fn per_counter(bytes: usize) -> u64 {
    if bytes == 4 {
        4
    } else {
        2
    }
}

/// The counters of `n` draws, `per` to a counter, from word position `word_pos`: a partly
/// used group of four words is skipped. `None` past 2^64 counters (a stream does not get
/// there).
pub(crate) fn draw(word_pos: u128, n: u64, per: u64) -> Option<Draw> {
    let offset = u64::try_from(word_pos.div_ceil(4)).ok()?;
    let end = offset.checked_add(n.div_ceil(per))?;
    Some(Draw {
        offset,
        next_word_pos: u128::from(end) * 4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_every_word_of_the_seed() {
        let base = [7u8; 32];
        let k = key(&base);
        assert_eq!(k, key(&base), "deterministic");
        for byte in [0, 8, 16, 31] {
            let mut other = base;
            other[byte] ^= 1;
            assert_ne!(key(&other), k, "byte {byte}");
        }
        let a = flow_core::rng(1).get_seed();
        let b = flow_core::rng(2).get_seed();
        assert_ne!(key(&a), key(&b));
        assert_eq!(key(&a), key(&flow_core::rng(1).get_seed()));
    }

    #[test]
    fn draws_use_fresh_counters_and_advance_past_them() {
        assert_eq!(
            draw(0, 10, 4),
            Some(Draw {
                offset: 0,
                next_word_pos: 12
            })
        );
        // The next draw starts where the last one stopped.
        let second = draw(12, 1, 4).unwrap();
        assert_eq!((second.offset, second.next_word_pos), (3, 16));
        // A partly used group of four words (a host draw moved the stream) is skipped.
        assert_eq!(draw(13, 4, 4).unwrap().offset, 4);
        assert_eq!(draw(13, 4, 4).unwrap().next_word_pos, 20);
        // Nothing drawn, nothing used (beyond rounding up to a whole counter).
        assert_eq!(draw(8, 0, 4).unwrap().next_word_pos, 8);
        assert_eq!(draw(u128::from(u64::MAX) * 8, 1, 4), None);
        // f64 draws come two to a counter.
        assert_eq!(draw(0, 10, 2).unwrap().next_word_pos, 20);
        assert_eq!((per_counter(4), per_counter(8)), (4, 2));
    }

    #[test]
    fn a_flow_rng_moves_as_planned() {
        let mut rng = flow_core::rng(3);
        let d = draw(rng.get_word_pos(), 1001, 4).unwrap();
        rng.set_word_pos(d.next_word_pos);
        assert_eq!(rng.get_word_pos(), 1004);
        assert_eq!(draw(rng.get_word_pos(), 4, 4).unwrap().offset, 251);
    }
}
