//! Provably fair randomness: a room commits to a secret seed by publishing its SHA-256,
//! draws every roll and shuffle from it by a public rule, and reveals it later, so that
//! anyone can replay each draw.
//!
//! The rule (docs/games.md, "Checking a revealed seed"): draw `n` reads 32-bit big-endian
//! words from the blocks `SHA-256(seed ‖ u64be(n) ‖ u32be(i))`, i = 0, 1, ..., eight words
//! per block. A number below `k` is a word `w < k·⌊2³²/k⌋`, taken as `w mod k`; a larger
//! word is skipped. A shuffle of `len` items is Fisher–Yates from the last index down:
//! swap item `i` with item `below(i + 1)`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A seed: 32 secret bytes.
pub type Seed = [u8; 32];

/// The commitment to a seed: its SHA-256, in lowercase hex.
pub fn commitment(seed: &Seed) -> String {
    hex::encode(Sha256::digest(seed))
}

/// The words of one draw.
pub struct Draw {
    seed: Seed,
    nonce: u64,
    block: u32,
    words: [u32; 8],
    next: usize,
}

impl Draw {
    /// Draw number `nonce` under `seed`.
    pub fn new(seed: &Seed, nonce: u64) -> Self {
        Self {
            seed: *seed,
            nonce,
            block: 0,
            words: [0; 8],
            next: 8,
        }
    }

    /// The draw's nonce.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    fn word(&mut self) -> u32 {
        if self.next == 8 {
            let mut h = Sha256::new();
            h.update(self.seed);
            h.update(self.nonce.to_be_bytes());
            h.update(self.block.to_be_bytes());
            let out = h.finalize();
            for (w, b) in self.words.iter_mut().zip(out.chunks_exact(4)) {
                *w = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            }
            self.block += 1;
            self.next = 0;
        }
        self.next += 1;
        self.words[self.next - 1]
    }

    /// A uniform number in `0..k` (`k` > 0).
    pub fn below(&mut self, k: u32) -> u32 {
        let k = k.max(1);
        let zone = (u64::from(u32::MAX) + 1) / u64::from(k) * u64::from(k);
        loop {
            let w = self.word();
            if u64::from(w) < zone {
                return w % k;
            }
        }
    }

    /// Shuffles `items` in place (Fisher–Yates, last index first).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let bound = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let j = self.below(bound) as usize;
            items.swap(i, j);
        }
    }
}

/// A room's seed, its commitment and the next draw's nonce. Checkpointed with the game,
/// never shown to a client until revealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fairness {
    seed: Seed,
    /// The first nonce drawn under this seed.
    first: u64,
    next: u64,
}

/// A seed given up: the old seed and the range of nonces drawn under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revealed {
    /// The seed.
    pub seed: Seed,
    /// Nonces `first..last` were drawn under it.
    pub first: u64,
    /// See `first` (exclusive).
    pub last: u64,
}

impl Fairness {
    /// A fresh seed, nonces from 0.
    pub fn new(seed: Seed) -> Self {
        Self {
            seed,
            first: 0,
            next: 0,
        }
    }

    /// The published commitment.
    pub fn commitment(&self) -> String {
        commitment(&self.seed)
    }

    /// The nonce the next draw will use.
    pub fn next_nonce(&self) -> u64 {
        self.next
    }

    /// Draws were made under the current seed since it was committed to.
    pub fn unrevealed(&self) -> bool {
        self.next > self.first
    }

    /// The next draw. The nonce counts as used only when `commit` is called, so that an
    /// action its rules refuse after drawing leaves no gap in the nonces.
    pub fn draw(&self) -> Draw {
        Draw::new(&self.seed, self.next)
    }

    /// Marks the draw with `nonce` as used.
    pub fn commit(&mut self, nonce: u64) {
        self.next = self.next.max(nonce + 1);
    }

    /// Gives up the seed, and goes on under `fresh` with the nonces after it.
    pub fn reveal(&mut self, fresh: Seed) -> Revealed {
        let out = Revealed {
            seed: self.seed,
            first: self.first,
            last: self.next,
        };
        self.seed = fresh;
        self.first = self.next;
        out
    }
}

/// Checks a revealed seed against the commitment that was published for it.
pub fn seed_matches(seed_hex: &str, commitment_hex: &str) -> Option<Seed> {
    let seed: Seed = hex::decode(seed_hex).ok()?.try_into().ok()?;
    (commitment(&seed) == commitment_hex.to_ascii_lowercase()).then_some(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draw_is_a_function_of_seed_and_nonce() {
        let seed = [7u8; 32];
        let a: Vec<u32> = {
            let mut d = Draw::new(&seed, 3);
            (0..20).map(|_| d.below(6)).collect()
        };
        let b: Vec<u32> = {
            let mut d = Draw::new(&seed, 3);
            (0..20).map(|_| d.below(6)).collect()
        };
        let c: Vec<u32> = {
            let mut d = Draw::new(&seed, 4);
            (0..20).map(|_| d.below(6)).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| *v < 6));
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut d = Draw::new(&[1u8; 32], 0);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[d.below(6) as usize] += 1;
        }
        // 10,000 expected each; 5 sigma is about 450.
        assert!(
            counts.iter().all(|c| (9_500..10_500).contains(c)),
            "{counts:?}"
        );
    }

    #[test]
    fn a_shuffle_is_a_permutation() {
        let mut items: Vec<u32> = (0..52).collect();
        Draw::new(&[2u8; 32], 9).shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..52).collect::<Vec<_>>());
        assert_ne!(items, sorted);
    }

    #[test]
    fn revealing_hands_over_the_range_and_commits_anew() {
        let mut f = Fairness::new([3u8; 32]);
        let before = f.commitment();
        f.commit(f.draw().nonce());
        f.commit(f.draw().nonce());
        let r = f.reveal([4u8; 32]);
        assert_eq!((r.first, r.last), (0, 2));
        assert_eq!(seed_matches(&hex::encode(r.seed), &before), Some([3u8; 32]));
        assert_ne!(f.commitment(), before);
        assert_eq!(f.next_nonce(), 2);
        assert_eq!(seed_matches(&hex::encode([9u8; 32]), &before), None);
    }
}
