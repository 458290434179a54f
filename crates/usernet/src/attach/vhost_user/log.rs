//! The dirty-page log QEMU shares during a migration (`SET_LOG_BASE`).
//!
//! How it works: while QEMU migrates a guest it must re-send every page that changed,
//! including those the back end wrote (frames into receive buffers, used rings). It
//! shares a bitmap, one bit per 4 KiB page of guest physical memory, and the back end
//! sets the bits of the pages it writes. Here the bitmap is [`DirtyLog`], the `vm-memory`
//! bitmap type of every region of the guest's memory: `vm-memory` calls
//! [`Bitmap::mark_dirty`] on every write it makes (ours and `virtio-queue`'s), so no
//! write can be missed. Until QEMU gives a log, marking does nothing; the log is set on
//! all regions at once, each told where it starts in guest physical memory.
//!
//! (`vhost-user-backend` has the same idea, but its log type cannot be built outside
//! that crate; this is the small part of it the engine needs, over `vm-memory`'s safe
//! mapping and atomic access.)

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use vm_memory::bitmap::{Bitmap, BitmapSlice, NewBitmap, WithBitmapSlice};
use vm_memory::{FileOffset, MmapRegion, VolatileMemory};

const PAGE: usize = 4096;

/// QEMU's log, mapped.
#[derive(Debug)]
pub struct LogMap {
    map: MmapRegion<()>,
}

impl LogMap {
    pub fn new(file: File, offset: u64, size: u64) -> io::Result<LogMap> {
        let size = usize::try_from(size).map_err(|_| io::ErrorKind::InvalidInput)?;
        if size == 0 {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let map =
            MmapRegion::from_file(FileOffset::new(file, offset), size).map_err(io::Error::other)?;
        Ok(LogMap { map })
    }

    /// Pages the log covers.
    pub fn pages(&self) -> u64 {
        self.map.len() as u64 * 8
    }

    fn mark(&self, page: u64) {
        let Ok(byte) = usize::try_from(page / 8) else {
            return;
        };
        if let Ok(b) = self.map.get_atomic_ref::<AtomicU8>(byte) {
            b.fetch_or(1 << (page % 8), Ordering::Relaxed);
        }
    }
}

/// One region's place in the log.
#[derive(Debug)]
pub struct RegionLog {
    pub log: Arc<LogMap>,
    /// The region's first page in guest physical memory.
    pub first_page: u64,
    pub pages: u64,
}

/// A region's (or a slice of it's) bitmap: marks pages in QEMU's log once there is one.
#[derive(Debug, Clone, Default)]
pub struct DirtyLog {
    log: Arc<RwLock<Option<RegionLog>>>,
    /// Where this slice starts within its region.
    offset: usize,
}

impl DirtyLog {
    /// From now on, writes to the region mark pages in `log`.
    pub fn start(&self, log: RegionLog) {
        *self.log.write().unwrap_or_else(|p| p.into_inner()) = Some(log);
    }
}

impl Bitmap for DirtyLog {
    fn mark_dirty(&self, offset: usize, len: usize) {
        let guard = self.log.read().unwrap_or_else(|p| p.into_inner());
        let (Some(r), Some(start)) = (guard.as_ref(), self.offset.checked_add(offset)) else {
            return;
        };
        if len == 0 {
            return;
        }
        let first = (start / PAGE) as u64;
        let last = (start.saturating_add(len - 1) / PAGE) as u64;
        for page in first..=last.min(r.pages.saturating_sub(1)) {
            r.log.mark(r.first_page + page);
        }
    }

    fn dirty_at(&self, _offset: usize) -> bool {
        // Only QEMU reads the log.
        false
    }

    fn slice_at(&self, offset: usize) -> Self {
        DirtyLog {
            log: self.log.clone(),
            offset: self.offset.saturating_add(offset),
        }
    }
}

impl<'a> WithBitmapSlice<'a> for DirtyLog {
    type S = Self;
}

impl BitmapSlice for DirtyLog {}

impl NewBitmap for DirtyLog {
    fn with_len(_len: usize) -> Self {
        DirtyLog::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_file(bytes: usize) -> File {
        let f = tempfile::tempfile().unwrap();
        f.set_len(bytes as u64).unwrap();
        f
    }

    #[test]
    fn a_write_marks_every_page_it_touches_at_the_regions_place() {
        let file = log_file(64);
        let log = Arc::new(LogMap::new(file.try_clone().unwrap(), 0, 64).unwrap());
        let bitmap = DirtyLog::default();
        // The region starts at guest page 16 and has 32 pages.
        bitmap.start(RegionLog {
            log,
            first_page: 16,
            pages: 32,
        });
        // Bytes 4095..4097 of the region: its pages 0 and 1, guest pages 16 and 17.
        bitmap.slice_at(4000).mark_dirty(95, 2);
        let mut bits = vec![0u8; 64];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut bits, 0).unwrap();
        assert_eq!(
            bits[2], 0b11,
            "guest pages 16 and 17 are byte 2's bits 0 and 1"
        );
        assert!(bits.iter().enumerate().all(|(i, b)| i == 2 || *b == 0));
    }

    #[test]
    fn writes_before_a_log_and_beyond_the_region_mark_nothing() {
        let file = log_file(8);
        let bitmap = DirtyLog::default();
        bitmap.mark_dirty(0, 4096); // no log yet
        bitmap.start(RegionLog {
            log: Arc::new(LogMap::new(file.try_clone().unwrap(), 0, 8).unwrap()),
            first_page: 0,
            pages: 2,
        });
        bitmap.mark_dirty(3 * PAGE, 10); // past the region's two pages
        let mut bits = vec![0u8; 8];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut bits, 0).unwrap();
        assert!(bits.iter().all(|b| *b == 0), "{bits:?}");
    }
}
