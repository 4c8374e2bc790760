//! A block: many state records (key and value) in one store item, sorted by key.
//!
//! ```text
//! [version = 1: u8][CRC-32 (IEEE) of the rest: u32 LE][count: u32 LE]
//! count × [key length: u32 LE][value length: u32 LE][key][value]
//! ```
//!
//! Values are the codec's own CRC frames; the block's checksum covers its structure, so a damaged
//! length is reported as damage instead of being read as a different key.

use crate::state_store::Kv;

const VERSION: u8 = 1;
const HEADER: usize = 9;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    #[error("block is {0} bytes, shorter than its header")]
    Short(usize),
    #[error("block version {0} is not supported (this build reads version {VERSION})")]
    Version(u8),
    #[error("block checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("block structure: {0}")]
    Structure(&'static str),
}

/// Encode entries that are sorted by key, without repeats.
pub fn encode<K: AsRef<[u8]>, V: AsRef<[u8]>>(entries: &[(K, V)]) -> Vec<u8> {
    let bytes: usize = entries.iter().map(|(k, v)| 8 + k.as_ref().len() + v.as_ref().len()).sum();
    let mut out = Vec::with_capacity(HEADER + bytes);
    out.push(VERSION);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (k, v) in entries {
        let (k, v) = (k.as_ref(), v.as_ref());
        debug_assert!(!k.is_empty());
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    let crc = crc32fast::hash(&out[5..]);
    out[1..5].copy_from_slice(&crc.to_le_bytes());
    out
}

fn u32_at(b: &[u8], at: usize) -> Result<usize, BlockError> {
    let s = b.get(at..at + 4).ok_or(BlockError::Structure("truncated length"))?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// The entries of a block, borrowed from it, in key order.
pub fn decode(bytes: &[u8]) -> Result<Vec<(&[u8], &[u8])>, BlockError> {
    if bytes.len() < HEADER {
        return Err(BlockError::Short(bytes.len()));
    }
    if bytes[0] != VERSION {
        return Err(BlockError::Version(bytes[0]));
    }
    let stored = u32_at(bytes, 1)? as u32;
    let computed = crc32fast::hash(&bytes[5..]);
    if stored != computed {
        return Err(BlockError::Checksum { stored, computed });
    }
    let count = u32_at(bytes, 5)?;
    // Each entry takes at least 9 bytes: a count beyond that is damage, not an allocation.
    if count > (bytes.len() - HEADER) / 9 {
        return Err(BlockError::Structure("count larger than the block"));
    }
    let mut out = Vec::with_capacity(count);
    let mut at = HEADER;
    for _ in 0..count {
        let kl = u32_at(bytes, at)?;
        let vl = u32_at(bytes, at + 4)?;
        at += 8;
        let end = at.checked_add(kl).and_then(|e| e.checked_add(vl)).ok_or(BlockError::Structure("length overflow"))?;
        if end > bytes.len() {
            return Err(BlockError::Structure("entry past the end"));
        }
        let (k, v) = (&bytes[at..at + kl], &bytes[at + kl..end]);
        if k.is_empty() || out.last().is_some_and(|(prev, _): &(&[u8], &[u8])| *prev >= k) {
            return Err(BlockError::Structure("keys out of order"));
        }
        out.push((k, v));
        at = end;
    }
    if at != bytes.len() {
        return Err(BlockError::Structure("trailing bytes"));
    }
    Ok(out)
}

/// The entries, owned.
pub fn decode_owned(bytes: &[u8]) -> Result<Vec<Kv>, BlockError> {
    Ok(decode(bytes)?.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
}

/// Bytes an entry adds to a block.
pub fn entry_bytes(k: &[u8], v: &[u8]) -> usize {
    8 + k.len() + v.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![(b"Ta".to_vec(), b"1".to_vec()), (b"Tb".to_vec(), vec![]), (b"Tc".to_vec(), vec![7; 300])]
    }

    #[test]
    fn round_trips() {
        let bytes = encode(&sample());
        let back = decode_owned(&bytes).unwrap();
        assert_eq!(back, sample());
        assert_eq!(decode(&encode::<&[u8], &[u8]>(&[])).unwrap(), vec![]);
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_refused() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode(&b).is_err(), "flip of bit {bit} in byte {i} was accepted");
            }
        }
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncation to {n} bytes was accepted");
        }
    }

    #[test]
    fn a_consistent_crc_over_bad_structure_is_still_refused() {
        // Keys out of order, with a checksum that matches: the structure check catches it.
        let mut b = encode(&[(b"Tb".to_vec(), b"".to_vec()), (b"Ta".to_vec(), b"".to_vec())]);
        let crc = crc32fast::hash(&b[5..]);
        b[1..5].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&b), Err(BlockError::Structure("keys out of order")));
        // A count far beyond the bytes.
        let mut b = encode(&sample());
        b[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32fast::hash(&b[5..]);
        b[1..5].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&b), Err(BlockError::Structure("count larger than the block")));
    }
}
