//! Free ranges of an address space, for the memory providers: sorted, coalesced, first fit.
//!
//! The list grows only when a range is split in two or a range that touches no other is returned; if the
//! heap cannot give it room then, taking fails (as if nothing fit) and returning drops the range (its
//! memory is no longer handed out) — nothing aborts.

use alloc::vec::Vec;

/// Free `(offset, length)` ranges, sorted by offset and never adjacent (neighbours are merged).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct FreeRanges(Vec<(usize, usize)>);

impl FreeRanges {
    /// One free range `[0, len)` (none if `len` is 0, or if the heap has no room for the list: then nothing
    /// can be taken, and every allocation from it fails as out of memory instead of the program aborting).
    pub fn whole(len: usize) -> Self {
        let mut v = Vec::new();
        if len > 0 && v.try_reserve_exact(1).is_ok() {
            v.push((0, len)); // room made above
        }
        FreeRanges(v)
    }

    /// Removes the first range that can hold `size` bytes at an offset whose address (`base + offset`) is a
    /// multiple of `align`; returns that offset.
    pub fn take_first_fit(&mut self, base: usize, size: usize, align: usize) -> Option<usize> {
        let (i, start) = self.0.iter().enumerate().find_map(|(i, &(off, len))| {
            let addr = base.checked_add(off)?;
            let aligned = addr.checked_add(align - 1)? & !(align - 1);
            let start = off + (aligned - addr);
            (start.checked_add(size)? <= off + len).then_some((i, start))
        })?;
        self.remove_within(i, start, size).then_some(start)
    }

    /// Removes exactly `[off, off + len)` if it lies wholly inside one range; false (and nothing changed)
    /// otherwise.
    pub fn take_exact(&mut self, off: usize, len: usize) -> bool {
        let Some(end) = off.checked_add(len) else {
            return false;
        };
        // The only range that can hold it is the last one starting at or before `off`.
        let Some(i) = self.0.partition_point(|r| r.0 <= off).checked_sub(1) else {
            return false;
        };
        match self.0.get(i) {
            Some(&(o, l)) if end <= o + l => self.remove_within(i, off, len),
            _ => false,
        }
    }

    /// Splits range `i` around `[start, start + size)`, which it contains; false (and nothing changed) if
    /// the list has no room for the second part.
    fn remove_within(&mut self, i: usize, start: usize, size: usize) -> bool {
        let Some(&(off, len)) = self.0.get(i) else {
            return false;
        };
        let before = (start > off).then(|| (off, start - off));
        let after = (off + len > start + size).then(|| (start + size, off + len - start - size));
        match (before, after) {
            (None, None) => {
                self.0.remove(i);
            }
            (Some(part), None) | (None, Some(part)) => {
                if let Some(r) = self.0.get_mut(i) {
                    *r = part;
                }
            }
            (Some(b), Some(a)) => {
                if self.0.try_reserve(1).is_err() {
                    return false;
                }
                if let Some(r) = self.0.get_mut(i) {
                    *r = b;
                }
                self.0.insert(i + 1, a); // room made above
            }
        }
        true
    }

    /// Returns `[off, off + len)` to the free set, merging with its neighbours. False if it touches no
    /// free range and the list has no room for it: the range is then dropped.
    pub fn give_back(&mut self, off: usize, len: usize) -> bool {
        let pos = self.0.partition_point(|r| r.0 < off);
        let end = off + len;
        let before = pos
            .checked_sub(1)
            .filter(|&b| self.0.get(b).is_some_and(|&(po, pl)| po + pl == off));
        let after = self
            .0
            .get(pos)
            .filter(|&&(no, _)| no == end)
            .map(|&(_, nl)| nl);
        match (before, after) {
            (Some(b), Some(nl)) => {
                if let Some(r) = self.0.get_mut(b) {
                    r.1 += len + nl;
                }
                self.0.remove(pos);
            }
            (Some(b), None) => {
                if let Some(r) = self.0.get_mut(b) {
                    r.1 += len;
                }
            }
            (None, Some(nl)) => {
                if let Some(r) = self.0.get_mut(pos) {
                    *r = (off, len + nl);
                }
            }
            (None, None) => {
                if self.0.try_reserve(1).is_err() {
                    return false;
                }
                self.0.insert(pos, (off, len)); // room made above
            }
        }
        true
    }

    /// Makes room for `n` more ranges, so that as many `give_back` calls drop none; false if the heap
    /// has no room.
    pub fn reserve(&mut self, n: usize) -> bool {
        self.0.try_reserve(n).is_ok()
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Keeps only the ranges for which `keep(offset, length)` is true (removing ranges leaves the others
    /// sorted and apart).
    pub fn retain(&mut self, mut keep: impl FnMut(usize, usize) -> bool) {
        self.0.retain(|&(off, len)| keep(off, len));
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.0.iter().copied()
    }

    /// Total free length.
    pub fn total(&self) -> usize {
        self.0.iter().map(|r| r.1).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_and_give_back_coalesce() {
        let mut f = FreeRanges::whole(100);
        assert_eq!(f.take_first_fit(0, 10, 1), Some(0));
        assert_eq!(f.take_first_fit(0, 10, 16), Some(16));
        assert_eq!(f.0, [(10, 6), (26, 74)]);
        assert!(f.take_exact(50, 10));
        assert!(!f.take_exact(55, 10));
        f.give_back(16, 10);
        f.give_back(0, 10);
        f.give_back(50, 10);
        assert_eq!(f.0, [(0, 100)]);
        assert_eq!(f.total(), 100);
        assert_eq!(f.take_first_fit(0, 101, 1), None);
    }

    #[test]
    fn give_back_merges_with_either_neighbour_or_neither() {
        let mut f = FreeRanges::default();
        assert!(f.give_back(50, 10)); // alone
        assert!(f.give_back(10, 10)); // alone, before it
        assert!(f.give_back(40, 10)); // touches the one after
        assert!(f.give_back(20, 5)); // touches the one before
        assert_eq!(f.0, [(10, 15), (40, 20)]);
        assert!(f.give_back(25, 15)); // touches both
        assert_eq!(f.0, [(10, 50)]);
        assert!(f.take_exact(30, 10)); // split in two
        assert_eq!(f.0, [(10, 20), (40, 20)]);
        assert!(f.take_exact(10, 20)); // whole range
        assert_eq!(f.0, [(40, 20)]);
        assert!(!f.take_exact(35, 10)); // straddles the start
    }
}
