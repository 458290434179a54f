//! `--pcap FILE`: every frame crossing the guest side, both directions, in the classic
//! pcap format (link type Ethernet, microsecond timestamps).
//!
//! How it works: a buffered writer; a write error stops the capture (counted once,
//! never fatal to the engine). Frames are recorded as built, before they are sent.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("cannot create capture file {path}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub struct Pcap {
    out: Option<BufWriter<File>>,
}

impl Pcap {
    pub fn create(path: &Path) -> Result<Pcap, PcapError> {
        let err = |source| PcapError::Create {
            path: path.display().to_string(),
            source,
        };
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(err)?);
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes());
        header[6..8].copy_from_slice(&4u16.to_le_bytes());
        header[16..20].copy_from_slice(&65535u32.to_le_bytes());
        header[20..24].copy_from_slice(&1u32.to_le_bytes());
        out.write_all(&header).map_err(err)?;
        Ok(Pcap { out: Some(out) })
    }

    pub fn record(&mut self, frame: &[u8]) {
        let Some(out) = self.out.as_mut() else { return };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let caplen = frame.len().min(65535) as u32;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(now.as_secs() as u32).to_le_bytes());
        h[4..8].copy_from_slice(&now.subsec_micros().to_le_bytes());
        h[8..12].copy_from_slice(&caplen.to_le_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        if out
            .write_all(&h)
            .and_then(|_| out.write_all(&frame[..caplen as usize]))
            .is_err()
        {
            self.out = None;
        }
    }

    pub fn flush(&mut self) {
        if let Some(out) = self.out.as_mut()
            && out.flush().is_err()
        {
            self.out = None;
        }
    }
}

impl Drop for Pcap {
    fn drop(&mut self) {
        self.flush();
    }
}
