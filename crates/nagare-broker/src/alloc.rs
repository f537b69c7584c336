//! A global allocator that keeps a hostile request from aborting the broker.
//!
//! `kafka-protocol` 0.18 reserves `Vec` capacity for whatever array length a request claims
//! (up to `i32::MAX` elements, or `u32::MAX` for compact arrays) before it reads a single
//! element. Such a reservation of hundreds of gigabytes fails, and a failed allocation aborts
//! the process: one 80-byte request could take the broker down. Allocations above
//! [`HUGE_ALLOCATION_BYTES`] are therefore served by `mmap(MAP_NORESERVE)`: address space is
//! reserved but no memory is committed until written, so the decoder runs out of input and
//! returns an error long before it touches more than the frame's worth of pages, and the
//! mapping is released. Smaller allocations go to the system allocator unchanged.
#![expect(
    unsafe_code,
    reason = "a GlobalAlloc implementation is unsafe by definition"
)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations larger than this come from lazily committed anonymous mappings. No request
/// can legitimately need one (frames are bounded by `socket.request.max.bytes`).
pub const HUGE_ALLOCATION_BYTES: usize = 1 << 30;

const PAGE: usize = 4096;

/// The broker's global allocator (install with `#[global_allocator]` in the binary).
pub struct GuardedAlloc;

fn is_huge(layout: &Layout) -> bool {
    layout.size() > HUGE_ALLOCATION_BYTES && layout.align() <= PAGE
}

// SAFETY: every pointer handed out is either from `System` (and returned to it) or from a
// fresh anonymous mapping of at least `layout.size()` bytes, page-aligned (>= any alignment
// we accept for it), unmapped with the same size in `dealloc`. The choice depends only on
// the layout, which callers must pass unchanged to `dealloc`.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Anonymous mappings are zero-filled.
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from `map(layout.size())` (same layout ⇒ same branch).
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: both sides are System allocations; forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if is_huge(&layout) && is_huge(&new_layout) {
            // Move the mapping instead of copying (possibly uncommitted) gigabytes.
            // SAFETY: `ptr` is a mapping of exactly `layout.size()` bytes made by `map`.
            let p =
                unsafe { libc::mremap(ptr.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE) };
            return if p == libc::MAP_FAILED {
                std::ptr::null_mut()
            } else {
                p.cast()
            };
        }
        // SAFETY: allocate with our own routing, copy the overlap, free the old block.
        unsafe {
            let new_ptr = self.alloc(new_layout);
            if !new_ptr.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new_ptr
        }
    }
}

fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_reservation_costs_no_memory_and_round_trips() {
        let a = GuardedAlloc;
        let layout = Layout::from_size_align(300 << 30, 8).expect("layout");
        // SAFETY: test of the allocator contract: alloc, write a little, grow, free.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null(), "a 300 GiB reservation must succeed lazily");
            *p = 7;
            let q = a.realloc(p, layout, 301 << 30);
            assert!(!q.is_null());
            assert_eq!(*q, 7);
            a.dealloc(q, Layout::from_size_align(301 << 30, 8).expect("layout"));
            let small = Layout::from_size_align(64, 8).expect("layout");
            let s = a.alloc(small);
            assert!(!s.is_null());
            let s2 = a.realloc(s, small, 2 << 30);
            assert!(!s2.is_null());
            a.dealloc(s2, Layout::from_size_align(2 << 30, 8).expect("layout"));
        }
    }
}
