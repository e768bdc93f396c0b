//! CPU hints that never change a result.

/// Starts loading the cache line at `p` (a read prefetch). A hint: it never faults, even
/// for an address outside any allocation, and reads nothing observable.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is a hint; it does not dereference `p` in any observable way
    // and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
