//! The runtime's allocator: Rust's global allocator behind a memory cap that Herald keeps
//! itself rather than QuickJS, so that the cap can follow the run's budget.
//!
//! QuickJS polls its interrupt handler only every few thousand operations. A script whose
//! operations are large native calls (filling big arrays) and that catches its own
//! out-of-memory errors can go seconds between two polls. So once the run's budget is spent,
//! every allocation of [`LARGE`] bytes or more fails at once: such a script fails fast until the
//! next poll stops it. Small allocations then get [`HEADROOM`] past the cap, so that the
//! uncatchable "interrupted" error itself can still be built when the heap is full.

#![allow(unsafe_code)]

use std::rc::Rc;

use rquickjs::allocator::{Allocator, RustAllocator};

use crate::budget::Budget;

/// Allocations from this size on are refused once the budget is spent.
const LARGE: usize = 16 << 10;
/// What small allocations may use past the cap once the budget is spent.
const HEADROOM: usize = 1 << 20;

pub(crate) struct CappedAllocator {
    inner: RustAllocator,
    budget: Rc<Budget>,
    /// Bytes handed out and not freed.
    used: usize,
}

impl CappedAllocator {
    pub(crate) fn new(budget: Rc<Budget>) -> Self {
        Self {
            inner: RustAllocator,
            budget,
            used: 0,
        }
    }

    /// Whether `more` bytes may be handed out now. Only large requests and requests past the
    /// cap look at the clock: most allocations are small and well within it.
    fn allows(&self, more: usize) -> bool {
        let cap = self.budget.limits.memory_bytes;
        let after = self.used.saturating_add(more);
        let ok = if more < LARGE {
            after <= cap || (after <= cap.saturating_add(HEADROOM) && self.budget.exhausted())
        } else {
            after <= cap && !self.budget.exhausted()
        };
        if !ok {
            self.budget.refused.set(true);
        }
        ok
    }

    fn handed_out(&mut self, ptr: *mut u8) -> *mut u8 {
        if !ptr.is_null() {
            // SAFETY: `ptr` was just returned by `self.inner`, non-null.
            self.used += unsafe { RustAllocator::usable_size(ptr) };
        }
        ptr
    }
}

// SAFETY: every pointer comes from `RustAllocator`, which meets the trait's contract; this
// wrapper only refuses some requests (returning null, which QuickJS treats as out of memory and
// which leaves a block passed to `realloc` untouched) and counts sizes.
unsafe impl Allocator for CappedAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if !self.allows(size) {
            return std::ptr::null_mut();
        }
        let p = self.inner.alloc(size);
        self.handed_out(p)
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        // `RustAllocator::calloc` panics on overflow; a panic must not cross into C.
        let Some(total) = count.checked_mul(size) else {
            return std::ptr::null_mut();
        };
        if !self.allows(total) {
            return std::ptr::null_mut();
        }
        let p = self.inner.calloc(count, size);
        self.handed_out(p)
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        // SAFETY: the caller hands back a block of this allocator (non-null: rquickjs filters
        // null before calling).
        unsafe {
            self.used = self.used.saturating_sub(RustAllocator::usable_size(ptr));
            self.inner.dealloc(ptr);
        }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        // SAFETY: the caller hands in a block of this allocator (QuickJS turns a null `ptr`
        // into a plain allocation before calling).
        unsafe {
            let old = RustAllocator::usable_size(ptr);
            if new_size > old && !self.allows(new_size - old) {
                return std::ptr::null_mut();
            }
            let p = self.inner.realloc(ptr, new_size);
            if !p.is_null() {
                self.used = self.used.saturating_sub(old) + RustAllocator::usable_size(p);
            }
            p
        }
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // SAFETY: forwarded from the caller's promise.
        unsafe { RustAllocator::usable_size(ptr) }
    }
}
