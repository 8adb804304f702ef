//! Shared prompt prefixes: Zipf popularity of system-prompt groups, the identities of groups and
//! sessions, and the chained block hashes a replica's prefix cache sees for a synthetic prompt.
//!
//! A synthetic prompt has no token content, so its KV blocks are identified by what they
//! would contain: block *i* lying inside the group's shared system prompt is the same for every
//! request of that group; block *i* after it (a multi-turn conversation's history) is the same
//! for every turn of that session. Hashes are *chained* as in vLLM and the Mooncake traces:
//! block *i*'s hash is derived from block *i − 1*'s hash and block *i*'s identity, so equal
//! hashes mean equal prefixes up to that block.
//!
//! Invariants: every key and hash is non-zero; hashes carry their own domain constant (distinct
//! from the trace readers' salted ids and from group/session keys), so they do not collide with
//! trace hashes in practice; [`block_hashes`] costs O(blocks written) and allocates only when
//! its buffer lacks capacity; [`Zipf::sample`] is a pure function of its uniform (inverse
//! CDF), with the cumulative table summed in rank order, so a sample depends on nothing but
//! the IEEE arithmetic of `powf` and additions done in a fixed order.

use crate::rng::mix64;
use crate::workload::PrefixRef;
use std::sync::Arc;

/// Domain of group keys: `fnv1a64("routelab/prefix/group")`.
const GROUP_DOMAIN: u64 = 0x1037_F0C2_9F8D_733E;
/// Domain of session keys: `fnv1a64("routelab/prefix/session")`.
const SESSION_DOMAIN: u64 = 0x2539_F963_1DE9_AAE1;
/// Domain of synthetic block hashes: `fnv1a64("routelab/prefix/block")`.
const BLOCK_DOMAIN: u64 = 0x2F49_33A6_656B_2D88;
/// Stand-in for the single input whose mix is 0 (keys and hashes are never 0).
const NONZERO: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn nonzero(h: u64) -> u64 {
    if h == 0 {
        NONZERO
    } else {
        h
    }
}

/// The key of shared system prompt `group` (0-based) of class `class`; never 0.
pub fn group_key(class: usize, group: u32) -> u64 {
    nonzero(mix64(mix64(GROUP_DOMAIN ^ class as u64) ^ (u64::from(group) + 1)))
}

/// The key of the session numbered `ordinal` (0-based, in arrival order) of class `class`;
/// never 0. It also indexes the session's own random stream.
pub fn session_key(class: usize, ordinal: u64) -> u64 {
    nonzero(mix64(mix64(SESSION_DOMAIN ^ class as u64) ^ ordinal.wrapping_add(1)))
}

/// Zipf law over ranks `1..=n`: `P(k) = k^-s / H(n, s)`; `s = 0` is uniform.
///
/// Sampling is by inverse CDF from one uniform, so it is coupled and deterministic. For
/// `s > 0` the cumulative table (8 bytes a rank, shared between clones) is built once in rank
/// order; a sample is a binary search, O(log n).
#[derive(Debug, Clone, PartialEq)]
pub struct Zipf {
    n: u32,
    s: f64,
    /// `cumulative[k - 1] = P(rank <= k)`, last exactly 1; `None` when uniform.
    cumulative: Option<Arc<[f64]>>,
}

impl Zipf {
    /// The law over `n` ranks (at least 1) with exponent `s` (>= 0; a negative or NaN `s` is
    /// treated as 0).
    pub fn new(n: u32, s: f64) -> Zipf {
        let n = n.max(1);
        let s = if s > 0.0 { s } else { 0.0 };
        if s == 0.0 || n == 1 {
            return Zipf { n, s, cumulative: None };
        }
        let mut acc = 0.0;
        let mut cumulative: Vec<f64> = (1..=n)
            .map(|k| {
                acc += f64::from(k).powf(-s);
                acc
            })
            .collect();
        let total = acc;
        for c in &mut cumulative {
            *c /= total;
        }
        if let Some(last) = cumulative.last_mut() {
            *last = 1.0;
        }
        Zipf { n, s, cumulative: Some(cumulative.into()) }
    }

    /// Number of ranks.
    pub fn len(&self) -> u32 {
        self.n
    }

    /// Always false: a law has at least one rank.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The exponent.
    pub fn exponent(&self) -> f64 {
        self.s
    }

    /// The rank (in `1..=n`) at quantile `u` in (0, 1): the smallest `k` with `P(rank <= k) > u`.
    #[inline]
    pub fn sample(&self, u: f64) -> u32 {
        let i = match &self.cumulative {
            None => (u * f64::from(self.n)) as u32,
            Some(c) => c.partition_point(|&x| x <= u) as u32,
        };
        i.min(self.n - 1) + 1
    }

    /// `P(rank = k)` (0 outside `1..=n`).
    pub fn probability(&self, k: u32) -> f64 {
        if k == 0 || k > self.n {
            return 0.0;
        }
        match &self.cumulative {
            None => 1.0 / f64::from(self.n),
            Some(c) => {
                let i = (k - 1) as usize;
                c[i] - if i == 0 { 0.0 } else { c[i - 1] }
            }
        }
    }
}

/// Writes into `out` (cleared first) the chained hashes of the shared *full* blocks of a
/// prompt of `prompt_tokens` tokens cut into `block_size`-token blocks:
/// - blocks lying entirely inside the first `min(group_tokens, prompt_tokens)` tokens (when
///   `group_key != 0`) get hashes determined by `(group_key, block index, block_size)` — the
///   same for every request of the group;
/// - if `session_key != 0`, every further full block *i* gets a hash determined by
///   `(group_key, session_key, i, block_size)`, so a later turn of the session (whose prompt
///   extends this one) repeats these hashes and adds its own;
/// - otherwise the hashes stop after the group prefix; a partial last block is never hashed.
///
/// Block *i*'s hash is chained from block *i − 1*'s, so it identifies the whole prefix. Hashes
/// are never 0. `block_size == 0` writes nothing.
pub fn block_hashes(p: &PrefixRef, prompt_tokens: u32, block_size: u32, out: &mut Vec<u64>) {
    out.clear();
    if block_size == 0 {
        return;
    }
    let full = prompt_tokens / block_size;
    let group_blocks =
        if p.group_key == 0 { 0 } else { p.group_tokens.min(prompt_tokens) / block_size };
    let n = if p.session_key != 0 { full } else { group_blocks };
    if n == 0 {
        return;
    }
    out.reserve(n as usize);
    let mut h = mix64(BLOCK_DOMAIN ^ mix64(p.group_key ^ mix64(u64::from(block_size))));
    let group_id = mix64(p.group_key ^ GROUP_DOMAIN);
    for i in 0..group_blocks {
        h = link(h, group_id, i);
        out.push(h);
    }
    if p.session_key != 0 {
        let session_id = mix64(p.session_key ^ SESSION_DOMAIN);
        for i in group_blocks..full {
            h = link(h, session_id, i);
            out.push(h);
        }
    }
}

/// The hash of block `i` with identity `id` following a block hashed `prev`.
#[inline]
fn link(prev: u64, id: u64, i: u32) -> u64 {
    let block = mix64(id.wrapping_add(NONZERO.wrapping_mul(u64::from(i) + 1)));
    nonzero(mix64(prev.rotate_left(23) ^ block))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{fnv1a64, Stream};

    #[test]
    fn domain_constants_are_pinned() {
        assert_eq!(GROUP_DOMAIN, fnv1a64("routelab/prefix/group"));
        assert_eq!(SESSION_DOMAIN, fnv1a64("routelab/prefix/session"));
        assert_eq!(BLOCK_DOMAIN, fnv1a64("routelab/prefix/block"));
    }

    /// Chi-square statistic of `draws` samples of `z` against its probabilities.
    fn chi_square(z: &Zipf, draws: usize, seed: u64) -> (f64, Vec<u64>) {
        let mut s = Stream::from_seed(seed);
        let mut counts = vec![0u64; z.len() as usize];
        for _ in 0..draws {
            let k = z.sample(s.uniform_open());
            assert!((1..=z.len()).contains(&k));
            counts[(k - 1) as usize] += 1;
        }
        let chi2 = counts
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let e = z.probability(i as u32 + 1) * draws as f64;
                (c as f64 - e).powi(2) / e
            })
            .sum();
        (chi2, counts)
    }

    #[test]
    fn zipf_frequencies_match_theory() {
        // 49 degrees of freedom: mean 49, sd 9.9; P(chi2 > 100) ~ 2e-5.
        for (s, seed) in [(1.1, 1), (0.6, 2), (2.0, 3)] {
            let z = Zipf::new(50, s);
            let h: f64 = (1..=50).map(|k| f64::from(k).powf(-s)).sum();
            for k in [1, 2, 10, 50] {
                let p = f64::from(k).powf(-s) / h;
                assert!((z.probability(k) - p).abs() < 1e-12, "s {s} k {k}");
            }
            let (chi2, counts) = chi_square(&z, 100_000, seed);
            assert!(chi2 < 100.0, "s {s}: chi2 {chi2}");
            // Rank 1 within 5 binomial sd.
            let p1 = z.probability(1);
            let sd = (100_000.0 * p1 * (1.0 - p1)).sqrt();
            assert!((counts[0] as f64 - 100_000.0 * p1).abs() < 5.0 * sd);
        }
    }

    #[test]
    fn zipf_zero_exponent_is_uniform() {
        let z = Zipf::new(20, 0.0);
        assert_eq!(z.probability(7), 0.05);
        let (chi2, _) = chi_square(&z, 100_000, 4);
        // 19 degrees of freedom: P(chi2 > 50) ~ 1e-4.
        assert!(chi2 < 50.0, "chi2 {chi2}");
        assert_eq!(Zipf::new(20, -1.0), z);
        assert_eq!(Zipf::new(1, 1.5).sample(0.999), 1);
        assert_eq!(Zipf::new(0, 1.5).len(), 1);
    }

    #[test]
    fn zipf_inverse_cdf_boundaries() {
        let z = Zipf::new(3, 1.0);
        // P = (6/11, 3/11, 2/11): cumulative 6/11, 9/11, 1.
        assert_eq!(z.sample(1e-12), 1);
        assert_eq!(z.sample(6.0 / 11.0 - 1e-9), 1);
        assert_eq!(z.sample(6.0 / 11.0 + 1e-9), 2);
        assert_eq!(z.sample(9.0 / 11.0 + 1e-9), 3);
        assert_eq!(z.sample(1.0 - 1e-16), 3);
        let u = Zipf::new(4, 0.0);
        assert_eq!([0.1, 0.3, 0.6, 0.99].map(|x| u.sample(x)), [1, 2, 3, 4]);
    }

    #[test]
    fn zipf_over_a_million_ranks() {
        let z = Zipf::new(1_000_000, 1.0);
        let h: f64 = (1..=1_000_000).map(|k| 1.0 / f64::from(k)).sum();
        assert!((z.probability(1) - 1.0 / h).abs() < 1e-12);
        let mut s = Stream::from_seed(5);
        let n = 100_000;
        let ones = (0..n).filter(|_| z.sample(s.uniform_open()) == 1).count();
        let p = 1.0 / h;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!((ones as f64 - n as f64 * p).abs() < 5.0 * sd, "{ones}");
        assert_eq!(z.sample(1.0 - 1e-16), 1_000_000);
    }

    fn hashes(p: &PrefixRef, prompt: u32, bs: u32) -> Vec<u64> {
        let mut v = Vec::new();
        block_hashes(p, prompt, bs, &mut v);
        v
    }

    fn group(g: u32, tokens: u32) -> PrefixRef {
        PrefixRef { group_key: group_key(0, g), group_tokens: tokens, session_key: 0 }
    }

    #[test]
    fn keys_are_distinct_and_nonzero() {
        let mut keys: Vec<u64> = (0..4)
            .flat_map(|c| (0..1000).map(move |g| group_key(c, g)))
            .chain((0..4).flat_map(|c| (0..1000).map(move |o| session_key(c, o))))
            .collect();
        assert!(keys.iter().all(|&k| k != 0));
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 8000);
    }

    #[test]
    fn same_group_shares_leading_hashes_and_groups_differ_from_block_zero() {
        let a = hashes(&group(3, 800), 2000, 16);
        let b = hashes(&group(3, 800), 900, 16);
        assert_eq!(a.len(), 50, "800 / 16 group blocks, none beyond without a session");
        assert_eq!(a, b);
        let short = hashes(&group(3, 800), 100, 16);
        assert_eq!(short.len(), 6, "a prompt shorter than the prefix is all prefix: 100 / 16");
        assert_eq!(short[..], a[..6]);
        let c = hashes(&group(4, 800), 2000, 16);
        assert!(a.iter().zip(&c).all(|(x, y)| x != y), "differ from block 0 on");
        // Another block size is another cache: nothing in common.
        let d = hashes(&group(3, 800), 2000, 32);
        assert!(d.iter().all(|h| !a.contains(h)));
        // All distinct and non-zero.
        let mut all: Vec<u64> = a.iter().chain(&c).chain(&d).copied().collect();
        assert!(all.iter().all(|&h| h != 0));
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 50 + 50 + 25);
    }

    #[test]
    fn partial_blocks_and_no_prefix_are_not_hashed() {
        assert_eq!(hashes(&group(0, 40), 1000, 16).len(), 2, "block 2 straddles the prefix end");
        assert_eq!(hashes(&group(0, 800), 15, 16).len(), 0);
        assert!(hashes(&PrefixRef::default(), 5000, 16).is_empty());
        assert!(hashes(&group(0, 800), 5000, 0).is_empty());
        let s = PrefixRef { session_key: session_key(0, 0), ..group(0, 40) };
        assert_eq!(hashes(&s, 1000, 16).len(), 62, "1000 / 16 full blocks, last partial");
    }

    #[test]
    fn session_turns_extend_their_hashes() {
        let p = PrefixRef { session_key: session_key(1, 7), ..group(2, 500) };
        // Turn k's prompt is a prefix of turn k+1's.
        let turns = [300, 700, 1333, 2900];
        let hs: Vec<Vec<u64>> = turns.iter().map(|&t| hashes(&p, t, 16)).collect();
        for (t, h) in turns.iter().zip(&hs) {
            assert_eq!(h.len() as u32, t / 16);
        }
        for w in hs.windows(2) {
            assert_eq!(w[0][..], w[1][..w[0].len()]);
        }
        // The group part is the group's; the rest is the session's.
        let g = hashes(&group(2, 500), 2900, 16);
        assert_eq!(g[..], hs[3][..31]);
        let other = PrefixRef { session_key: session_key(1, 8), ..p };
        let o = hashes(&other, 2900, 16);
        assert_eq!(o[..31], hs[3][..31]);
        assert!(o[31..].iter().zip(&hs[3][31..]).all(|(x, y)| x != y));
        // A session without a group hashes from block 0.
        let bare = PrefixRef { session_key: session_key(1, 7), ..PrefixRef::default() };
        assert_eq!(hashes(&bare, 100, 16).len(), 6);
        assert_ne!(hashes(&bare, 100, 16)[0], hs[0][0]);
    }

    #[test]
    fn block_hashes_reuse_the_buffer() {
        let p = PrefixRef { session_key: 9, ..group(0, 64) };
        let mut v = Vec::with_capacity(64);
        let ptr = v.as_ptr();
        block_hashes(&p, 1024, 16, &mut v);
        assert_eq!(v.len(), 64);
        block_hashes(&group(1, 32), 1024, 16, &mut v);
        assert_eq!((v.len(), v.as_ptr()), (2, ptr));
    }
}
