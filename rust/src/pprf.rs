//! Regular-noise sparse VOLE from GGM punctured PRFs (Boyle et al., CCS 2019; the "silent"
//! part of silent VOLE), with GF(2^128) noise values.
//!
//! `t` trees of depth `d` give a vector of `N = t·2^d` blocks. The sender expands every tree
//! from a random root with the length-doubling PRG `G(s) = (π0(s) ⊕ s, π1(s) ⊕ s)` (fixed-key
//! AES) and sends, per level, the XOR of the left children and of the right children, each
//! masked by one correlated OT. The receiver, which picked one leaf `α` per tree, learns the
//! sum off its path at every level and so every leaf but `α`. A base VOLE per tree
//! (`γ' = γ + β·Δ`, 128 correlated OTs combined over the powers of `x`) then lets it learn
//! `leaf_α + β·Δ`: the sender sends `Σ leaves + γ`. Result: sender `b` (all leaves), receiver
//! `c = b + e·Δ` with `e` zero but for `β_i` at `α_i` in every tree.

use rayon::prelude::*;

use crate::block::{Block, Cipher};

fn prg() -> (Cipher, Cipher) {
    (
        Cipher::new(0x2718_2818_2845_9045_2353_6028_7471_3527),
        Cipher::new(0x1414_2135_6237_3095_0488_0168_8724_2097),
    )
}

/// Expands one level in place: `nodes[..w]` become `nodes[..2w]`, children of `i` at `2i`,
/// `2i + 1`. Returns the XOR of the left and of the right children.
fn expand_level(
    g: &(Cipher, Cipher),
    nodes: &mut [Block],
    scratch: &mut Vec<Block>,
    w: usize,
) -> (Block, Block) {
    scratch.clear();
    scratch.extend_from_slice(&nodes[..w]);
    scratch.extend_from_slice(&nodes[..w]);
    let (l, r) = scratch.split_at_mut(w);
    g.0.encrypt(l);
    g.1.encrypt(r);
    let (mut sl, mut sr) = (0u128, 0u128);
    for i in (0..w).rev() {
        let s = nodes[i];
        let (a, b) = (l[i] ^ s, r[i] ^ s);
        nodes[2 * i] = a;
        nodes[2 * i + 1] = b;
        sl ^= a;
        sr ^= b;
    }
    (sl, sr)
}

/// The sender's side: all leaves (`t·2^d`) and, per tree and level, the two sums.
pub fn sender(roots: &[Block], depth: usize) -> (Vec<Block>, Vec<[Block; 2]>) {
    let mut leaves = Vec::new();
    let sums = sender_into(roots, depth, !0, &mut leaves);
    (leaves, sums)
}

/// `sender` into a caller's buffer (resized to `t·2^d`, so that batches reuse it), every
/// leaf ANDed with `mask` once its tree is expanded (the sums are of the unmasked leaves).
pub fn sender_into(
    roots: &[Block],
    depth: usize,
    mask: Block,
    leaves: &mut Vec<Block>,
) -> Vec<[Block; 2]> {
    let leaves_per = 1usize << depth;
    leaves.resize(roots.len() * leaves_per, 0);
    let mut sums = vec![[0u128; 2]; roots.len() * depth];
    leaves
        .par_chunks_mut(leaves_per)
        .zip(sums.par_chunks_mut(depth.max(1)))
        .zip(roots.par_iter())
        .for_each(|((tree, s), &root)| {
            let g = prg();
            let mut scratch = Vec::with_capacity(leaves_per);
            tree[0] = root;
            for (level, sum) in s.iter_mut().enumerate().take(depth) {
                let (a, b) = expand_level(&g, tree, &mut scratch, 1 << level);
                *sum = [a, b];
            }
            if mask != !0 {
                for x in tree.iter_mut() {
                    *x &= mask;
                }
            }
        });
    sums
}

/// The receiver's side: every leaf but `alphas[i]` of tree `i` (left zero there), from the
/// sums off its path (`known[i·d + level]`, the sum of the side that `α` does not take).
pub fn receiver(alphas: &[u32], known: &[Block], depth: usize) -> Vec<Block> {
    let mut leaves = Vec::new();
    receiver_into(alphas, known, depth, !0, &mut leaves);
    leaves
}

/// `receiver` into a caller's buffer, every leaf ANDed with `mask` (as `sender_into`).
pub fn receiver_into(
    alphas: &[u32],
    known: &[Block],
    depth: usize,
    mask: Block,
    leaves: &mut Vec<Block>,
) {
    let leaves_per = 1usize << depth;
    leaves.resize(alphas.len() * leaves_per, 0);
    leaves
        .par_chunks_mut(leaves_per)
        .zip(alphas.par_iter())
        .enumerate()
        .for_each(|(i, (tree, &alpha))| {
            let g = prg();
            let mut scratch = Vec::with_capacity(leaves_per);
            let mut path = 0usize; // index of the unknown node at the current level
            for level in 0..depth {
                let w = 1usize << level;
                tree[path] = 0;
                expand_level(&g, tree, &mut scratch, w);
                let bit = ((alpha as usize) >> (depth - 1 - level)) & 1;
                let sib = 2 * path + (1 - bit);
                // XOR of the known children on the sibling's side, then the missing one.
                let mut acc = known[i * depth + level];
                let mut k = 1 - bit;
                while k < 2 * w {
                    if k != sib {
                        acc ^= tree[k];
                    }
                    k += 2;
                }
                tree[sib] = acc;
                path = 2 * path + bit;
            }
            tree[path] = 0;
            if mask != !0 {
                for x in tree.iter_mut() {
                    *x &= mask;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::random_block;

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn receiver_learns_every_leaf_but_the_punctured_one() {
        for depth in [1usize, 2, 5, 9] {
            let t = 7;
            let roots: Vec<Block> = (0..t).map(|_| random_block()).collect();
            let (leaves, sums) = sender(&roots, depth);
            let alphas: Vec<u32> = (0..t)
                .map(|i| ((i * 5 + 3) % (1 << depth)) as u32)
                .collect();
            let known: Vec<Block> = (0..t * depth)
                .map(|j| {
                    let (i, level) = (j / depth, j % depth);
                    let bit = ((alphas[i] as usize) >> (depth - 1 - level)) & 1;
                    sums[j][1 - bit]
                })
                .collect();
            let got = receiver(&alphas, &known, depth);
            for i in 0..t {
                for k in 0..1 << depth {
                    let idx = i * (1 << depth) + k;
                    if k == alphas[i] as usize {
                        assert_eq!(got[idx], 0);
                    } else {
                        assert_eq!(got[idx], leaves[idx], "depth {depth} tree {i} leaf {k}");
                    }
                }
            }
        }
    }
}
