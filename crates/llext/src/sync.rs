//! The registry's lock: `std::sync::Mutex` on hosts, a spin lock in `no_std` builds.

#[cfg(feature = "std")]
pub(crate) struct Lock<T>(std::sync::Mutex<T>);

#[cfg(feature = "std")]
impl<T> Lock<T> {
    pub fn new(value: T) -> Self {
        Lock(std::sync::Mutex::new(value))
    }

    /// Locks; a panic in another holder does not make the registry unusable (its state is only changed by
    /// code paths that do not panic).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks if no one holds the lock (a fault handler must not wait for code it interrupted).
    pub fn try_lock(&self) -> Option<std::sync::MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

#[cfg(not(feature = "std"))]
pub(crate) struct Lock<T>(spin::Mutex<T>);

#[cfg(not(feature = "std"))]
impl<T> Lock<T> {
    pub fn new(value: T) -> Self {
        Lock(spin::Mutex::new(value))
    }

    pub fn lock(&self) -> spin::MutexGuard<'_, T> {
        self.0.lock()
    }

    /// Locks if no one holds the lock (a fault handler must not wait for code it interrupted).
    pub fn try_lock(&self) -> Option<spin::MutexGuard<'_, T>> {
        self.0.try_lock()
    }
}
