"""Pages: block devices, the page store, meta slots, the free list."""
