//! One segment file of the write-ahead log: a header, then records.
//!
//! ```text
//! header (64 bytes): magic "MINWAL01" | version u32 | flags u32 | first_index u64
//!                    | prev: present u8, index u64, term u64, node u64 | seq u64 | zero padding
//!                    | crc32 u32
//! record:            body_len u32 | crc32 u32 | body
//! body:              index u64 | term u64 | node u64 | payload
//! ```
//!
//! All integers little-endian. A record's CRC-32 covers its length field and its body, so a torn
//! length, a torn body and a flipped bit are all caught. `prev` is the log position just before
//! the segment's first entry (what a purge removed); `seq` numbers segments in the order they were
//! created (file names carry it); the `RESET` flag marks a segment started after a purge beyond
//! the end of the log (or a restart of an empty log): every segment created before it is obsolete.

use std::io;

use super::LogPos;
use crate::vfs::VFile;

pub const MAGIC: &[u8; 8] = b"MINWAL01";
pub const VERSION: u32 = 1;
pub const HEADER_BYTES: u64 = 64;
pub const RECORD_HEADER_BYTES: usize = 8;
const BODY_FIXED_BYTES: usize = 24;
/// The largest record body accepted on read: anything longer is damage, not data.
pub const RECORD_BODY_BYTES_MAX: usize = 1 << 30;
pub const FLAG_RESET: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    pub first_index: u64,
    pub prev: Option<LogPos>,
    pub flags: u32,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_BYTES as usize] {
        let mut b = [0u8; HEADER_BYTES as usize];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_index.to_le_bytes());
        if let Some(p) = self.prev {
            b[24] = 1;
            b[25..33].copy_from_slice(&p.index.to_le_bytes());
            b[33..41].copy_from_slice(&p.term.to_le_bytes());
            b[41..49].copy_from_slice(&p.node.to_le_bytes());
        }
        b[49..57].copy_from_slice(&self.seq.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Header, String> {
        if b.len() < HEADER_BYTES as usize {
            return Err(format!("header is {} bytes, expected {HEADER_BYTES}", b.len()));
        }
        let crc = u32_at(b, 60);
        if crc != crc32fast::hash(&b[..60]) {
            return Err("header checksum mismatch".into());
        }
        if &b[0..8] != MAGIC {
            return Err("not a Minion WAL segment (bad magic)".into());
        }
        let version = u32_at(b, 8);
        if version != VERSION {
            return Err(format!("segment format version {version}; this build reads {VERSION}"));
        }
        let prev = (b[24] == 1).then(|| LogPos { index: u64_at(b, 25), term: u64_at(b, 33), node: u64_at(b, 41) });
        Ok(Header { seq: u64_at(b, 49), flags: u32_at(b, 12), first_index: u64_at(b, 16), prev })
    }

    pub fn is_reset(&self) -> bool {
        self.flags & FLAG_RESET != 0
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Append one record for `(pos, payload)` to `out`; returns its length in bytes.
pub fn encode_record(out: &mut Vec<u8>, pos: LogPos, payload: &[u8]) -> usize {
    let body_len = BODY_FIXED_BYTES + payload.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&pos.index.to_le_bytes());
    out.extend_from_slice(&pos.term.to_le_bytes());
    out.extend_from_slice(&pos.node.to_le_bytes());
    out.extend_from_slice(payload);
    let mut h = crc32fast::Hasher::new();
    h.update(&out[start..start + 4]);
    h.update(&out[start + RECORD_HEADER_BYTES..]);
    let crc = h.finalize();
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// A record read back and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub pos: LogPos,
    pub payload: Vec<u8>,
}

/// Check and decode one whole record (header and body).
pub fn decode_record(bytes: &[u8]) -> Result<Record, String> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err("record shorter than its header".into());
    }
    let body_len = u32_at(bytes, 0) as usize;
    if bytes.len() != RECORD_HEADER_BYTES + body_len || body_len < BODY_FIXED_BYTES {
        return Err(format!("record length {body_len} does not match"));
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[0..4]);
    h.update(&bytes[RECORD_HEADER_BYTES..]);
    if h.finalize() != u32_at(bytes, 4) {
        return Err("record checksum mismatch".into());
    }
    let b = &bytes[RECORD_HEADER_BYTES..];
    Ok(Record {
        pos: LogPos { index: u64_at(b, 0), term: u64_at(b, 8), node: u64_at(b, 16) },
        payload: b[BODY_FIXED_BYTES..].to_vec(),
    })
}

/// Where a scan of a segment's records stopped.
#[derive(Debug)]
pub struct Scan {
    /// (record offset, record length, position) of every valid record, in order.
    pub records: Vec<(u64, u32, LogPos)>,
    /// Offset just past the last valid record.
    pub valid_end: u64,
    /// The file's length.
    pub file_len: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub stopped: Option<String>,
}

/// Read the records after the header until the end of the file or the first one that does not
/// check out (torn, damaged or out of sequence). Reads in large blocks.
pub fn scan(file: &dyn VFile, first_index: u64) -> io::Result<Scan> {
    let file_len = file.len()?;
    let mut records = Vec::new();
    let mut at = HEADER_BYTES;
    let mut expect = first_index;
    let mut stopped = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_at = at;
    const BLOCK: usize = 1 << 20;
    // Bytes [buf_at, buf_at + buf.len()) of the file are in `buf`.
    let ensure = |buf: &mut Vec<u8>, buf_at: &mut u64, at: u64, n: usize| -> io::Result<bool> {
        if at + n as u64 > file_len {
            return Ok(false);
        }
        if at >= *buf_at && at + n as u64 <= *buf_at + buf.len() as u64 {
            return Ok(true);
        }
        let want = n.max(BLOCK).min((file_len - at) as usize);
        buf.resize(want, 0);
        file.read_exact_at(buf, at)?;
        *buf_at = at;
        Ok(true)
    };
    loop {
        if at == file_len {
            break;
        }
        if !ensure(&mut buf, &mut buf_at, at, RECORD_HEADER_BYTES)? {
            stopped = Some(format!("a record header at offset {at} is cut off by the end of the file"));
            break;
        }
        let off = (at - buf_at) as usize;
        let body_len = u32_at(&buf, off) as usize;
        if body_len < BODY_FIXED_BYTES || body_len > RECORD_BODY_BYTES_MAX {
            stopped = Some(format!("record at offset {at} has an impossible length {body_len}"));
            break;
        }
        let total = RECORD_HEADER_BYTES + body_len;
        if !ensure(&mut buf, &mut buf_at, at, total)? {
            stopped = Some(format!("the record at offset {at} is cut off by the end of the file"));
            break;
        }
        let off = (at - buf_at) as usize;
        match decode_record(&buf[off..off + total]) {
            Ok(r) if r.pos.index == expect => {
                records.push((at, total as u32, r.pos));
                at += total as u64;
                expect += 1;
            }
            Ok(r) => {
                stopped = Some(format!("record at offset {at} holds index {}, expected {expect}", r.pos.index));
                break;
            }
            Err(e) => {
                stopped = Some(format!("record at offset {at}: {e}"));
                break;
            }
        }
    }
    Ok(Scan { records, valid_end: at, file_len, stopped })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_damage() {
        let h = Header { seq: 3, first_index: 7, prev: Some(LogPos { index: 6, term: 2, node: 3 }), flags: FLAG_RESET };
        let b = h.encode();
        assert_eq!(Header::decode(&b), Ok(h));
        for i in 0..b.len() {
            let mut d = b;
            d[i] ^= 0x10;
            assert!(Header::decode(&d).is_err(), "flip at {i} unnoticed");
        }
    }

    #[test]
    fn record_roundtrip_and_every_bit_flip_is_caught() {
        let mut out = Vec::new();
        let pos = LogPos { index: 9, term: 1, node: 1 };
        let n = encode_record(&mut out, pos, b"payload");
        assert_eq!(n, out.len());
        assert_eq!(decode_record(&out), Ok(Record { pos, payload: b"payload".to_vec() }));
        for i in 0..out.len() {
            for bit in 0..8 {
                let mut d = out.clone();
                d[i] ^= 1 << bit;
                assert!(decode_record(&d).is_err(), "flip of byte {i} bit {bit} unnoticed");
            }
        }
    }
}
