//! A counting global allocator, for the bounded-memory check.
//!
//! A global allocator is chosen per binary, so the connector's conformance
//! test installs it with [`counting_allocator!`](crate::counting_allocator).
//! It forwards to the system allocator and keeps the bytes currently
//! allocated and their peak.

// Implementing `GlobalAlloc` is unsafe by definition; this forwards to
// `System` unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Counts the bytes allocated through it. Install with
/// [`counting_allocator!`](crate::counting_allocator).
pub struct CountingAlloc;

impl CountingAlloc {
    pub const fn new() -> Self {
        CountingAlloc
    }
}

impl Default for CountingAlloc {
    fn default() -> Self {
        Self::new()
    }
}

fn added(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            added(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            added(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            added(new_size);
        }
        p
    }
}

/// Marks the allocator installed; called by [`counting_allocator!`](crate::counting_allocator)'s
/// static on first use through [`installed`].
#[doc(hidden)]
pub fn mark_installed() {
    INSTALLED.store(true, Ordering::Relaxed);
}

/// Whether the counting allocator is this binary's global allocator: a
/// fresh allocation moves its counter.
pub fn installed() -> bool {
    if INSTALLED.load(Ordering::Relaxed) {
        return true;
    }
    let before = CURRENT.load(Ordering::Relaxed);
    let probe = std::hint::black_box(vec![0u8; 1 << 20]);
    let during = CURRENT.load(Ordering::Relaxed);
    drop(probe);
    // Other threads allocate too; a 1 MiB allocation is the bulk of it.
    let yes = during >= before + (1 << 19);
    if yes {
        mark_installed();
    }
    yes
}

/// Bytes allocated now.
pub fn current() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Starts a new peak measurement from what is allocated now.
pub fn reset_peak() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// The highest allocation since the last [`reset_peak`].
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Installs [`CountingAlloc`] as the test binary's global allocator. Put it
/// at the top level of the connector's `tests/conformance.rs`:
///
/// ```ignore
/// tether_conformance::counting_allocator!();
/// ```
#[macro_export]
macro_rules! counting_allocator {
    () => {
        #[global_allocator]
        static TETHER_CONFORMANCE_ALLOC: $crate::alloc::CountingAlloc =
            $crate::alloc::CountingAlloc::new();
    };
}
