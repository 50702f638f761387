//! A global allocator that keeps a malformed request from aborting the broker.
//!
//! Why: kafka-protocol 0.15 (the last line with ZooKeeper-mode APIs) sizes each decoded array
//! with `Vec::with_capacity(count)` where `count` comes straight from the wire (upstream:
//! kafka-protocol-rs PRs #152, #161, #200, unmerged). A 20-byte Metadata request claiming
//! 2^31 topics asks for ~150 GB; the system allocator refuses and Rust aborts the process,
//! which no error handling can catch. A broker must answer garbage with a closed connection,
//! not die.
//!
//! How: allocations of at least [`LARGE`] bytes (far above anything the broker legitimately
//! allocates in one piece: a request is at most `socket.request.max.bytes`, 100 MiB by
//! default) are served by an anonymous `mmap` with `MAP_NORESERVE`. The kernel hands out
//! address space without committing memory, so the oversized `Vec` is created, the decoder
//! fails a few bytes later ("buffer too short"), the `Vec` is dropped and unmapped; only pages
//! actually written (bounded by the frame size) ever use memory. Everything smaller goes to the
//! system allocator unchanged.
//!
//! Limitation: with `vm.overcommit_memory=2` (strict accounting) the kernel refuses even
//! `MAP_NORESERVE` mappings that large, and the old abort comes back.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations from this size up are lazily mapped.
pub const LARGE: usize = 1 << 30;

pub struct GuardedAlloc;

fn page() -> usize {
    4096
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no fixed address has no preconditions.
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

// SAFETY: large blocks come from mmap (page-aligned, zero-filled) and go back through munmap
// with the same size; every other request is forwarded to `System` unchanged.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE && layout.align() <= page() {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE && layout.align() <= page() {
            // Anonymous mappings are zero-filled.
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= LARGE && layout.align() <= page() {
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_large = layout.size() >= LARGE && layout.align() <= page();
        let new_large = new_size >= LARGE && layout.align() <= page();
        if !old_large && !new_large {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees `layout.align()` with `new_size` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_capacity_is_address_space_only() {
        let a = GuardedAlloc;
        let layout = Layout::from_size_align(150 << 30, 8).unwrap();
        // SAFETY: non-zero size; freed below with the same layout.
        let p = unsafe { a.alloc(layout) };
        assert!(
            !p.is_null(),
            "150 GiB of address space should be mappable lazily"
        );
        unsafe {
            p.write(7);
            assert_eq!(p.read(), 7);
            a.dealloc(p, layout);
        }
    }
}
