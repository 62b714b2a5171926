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
