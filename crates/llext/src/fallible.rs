//! Allocation that reports failure: every vector, string and table the loader grows goes through these, so
//! running out of heap is [`Error::OutOfMemory`] and the operation unwinds instead of aborting the program.

use alloc::vec::Vec;

use crate::error::{Error, Result};

/// The error for `n` values of `T` that could not be allocated.
pub(crate) fn oom<T>(n: usize) -> Error {
    Error::OutOfMemory {
        size: n.saturating_mul(core::mem::size_of::<T>()),
        align: core::mem::align_of::<T>(),
    }
}

/// An empty vector with room for exactly `n` values.
pub(crate) fn vec<T>(n: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| oom::<T>(n))?;
    Ok(v)
}

/// Makes room for `n` more values.
pub(crate) fn reserve<T>(v: &mut Vec<T>, n: usize) -> Result<()> {
    v.try_reserve(n).map_err(|_| oom::<T>(n))
}

/// Appends one value.
pub(crate) fn push<T>(v: &mut Vec<T>, value: T) -> Result<()> {
    reserve(v, 1)?;
    v.push(value);
    Ok(())
}

/// Appends a slice.
pub(crate) fn extend<T: Copy>(v: &mut Vec<T>, values: &[T]) -> Result<()> {
    reserve(v, values.len())?;
    v.extend_from_slice(values);
    Ok(())
}

/// A copy of a slice.
pub(crate) fn to_vec<T: Copy>(values: &[T]) -> Result<Vec<T>> {
    let mut v = vec(values.len())?;
    v.extend_from_slice(values);
    Ok(v)
}

/// Sorts `v` so that no element is `less` than the one before it: in place, never allocating, in little
/// code. A heapsort: O(n log n) comparisons at worst and no scratch memory, where core's stable sort takes a
/// scratch buffer from the heap for long slices (an allocation that aborts instead of failing) and each of
/// core's sorts costs kilobytes of flash per element type. Not stable: give `less` a total order where the
/// order of equal elements matters.
pub(crate) fn sort_by<T>(v: &mut [T], mut less: impl FnMut(&T, &T) -> bool) {
    let n = v.len();
    for root in (0..n / 2).rev() {
        sift_down(v, root, &mut less);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        if let Some(heap) = v.get_mut(..end) {
            sift_down(heap, 0, &mut less);
        }
    }
}

/// Moves `v[root]` down the max-heap `v` until neither child is greater.
fn sift_down<T>(v: &mut [T], mut root: usize, less: &mut impl FnMut(&T, &T) -> bool) {
    loop {
        let left = 2 * root + 1;
        let right = left + 1;
        let child = match (v.get(left), v.get(right)) {
            (Some(l), Some(r)) if less(l, r) => right,
            (Some(_), _) => left,
            (None, _) => return,
        };
        match (v.get(root), v.get(child)) {
            (Some(parent), Some(c)) if less(parent, c) => v.swap(root, child),
            _ => return,
        }
        root = child;
    }
}

#[cfg(test)]
mod tests {
    use super::sort_by;
    use alloc::vec::Vec;

    /// Every permutation of up to 7 elements (repeats included) and longer pseudo-random slices come out
    /// sorted, holding the same elements.
    #[test]
    fn sort_by_sorts_every_small_permutation_and_long_slices() {
        fn check(mut v: Vec<u32>) {
            let mut expected = v.clone();
            expected.sort();
            sort_by(&mut v, |a, b| a < b);
            assert_eq!(v, expected);
        }
        for n in 0..=7u32 {
            // Every word of n digits in base n (so with repeats).
            let base = n.max(1);
            for mut code in 0..base.pow(n) {
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push(code % base);
                    code /= base;
                }
                check(v);
            }
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in [100, 1000, 4097] {
            let v = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 500) as u32
                })
                .collect();
            check(v);
        }
        check((0..1000).collect());
        check((0..1000).rev().collect());
    }
}
