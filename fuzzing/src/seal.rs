//! Checksums made right, so the fuzzer reaches the parsers behind them.
//!
//! Every stored format carries a CRC-32; a mutated input almost never has the right one, so a
//! decoder fed only raw fuzz bytes spends its time in the checksum comparison. Each function here
//! returns a copy of the input with the checksums the format would have if the bytes were written
//! as they are, leaving lengths, versions and bodies as the fuzzer made them. The decoders then
//! see both: the raw input (damage must be reported) and the sealed one (structure must be
//! parsed or refused, never panicked on).

fn put_crc(out: &mut [u8], at: usize, crc: u32) {
    out[at..at + 4].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// A record frame or a state block: `[version u8][CRC-32 of the rest u32][rest]`.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    if out.len() >= 5 {
        let crc = crc32fast::hash(&out[5..]);
        put_crc(&mut out, 1, crc);
    }
    out
}

/// Checksummed blocks from `at` on, as far as whole blocks go: each is `[prefix][CRC-32 of prefix
/// and body][body]`, where the prefix is `prefix_len` bytes ending in the body's length (u32).
fn seal_blocks(out: &mut [u8], mut at: usize, prefix_len: usize) {
    while let Some(len) = u32_at(out, at + prefix_len - 4) {
        let body = at + prefix_len + 4;
        let end = match body.checked_add(len) {
            Some(end) if end <= out.len() => end,
            _ => break,
        };
        let mut h = crc32fast::Hasher::new();
        h.update(&out[at..at + prefix_len]);
        h.update(&out[body..end]);
        let crc = h.finalize();
        put_crc(out, at + prefix_len, crc);
        at = end;
    }
}

/// Write-ahead log records from `at` on: `[body_len u32][CRC-32 of body_len and body][body]`.
fn wal_records(out: &mut [u8], at: usize) {
    seal_blocks(out, at, 4);
}

/// One write-ahead log record.
pub fn wal_record(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    wal_records(&mut out, 0);
    out
}

/// A segment file: the 64-byte header's CRC (over its first 60 bytes), then every record's.
pub fn wal_segment(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    if out.len() >= 64 {
        let crc = crc32fast::hash(&out[..60]);
        put_crc(&mut out, 60, crc);
        wal_records(&mut out, 64);
    }
    out
}

/// A snapshot or backup file: an 8-byte magic, then blocks of
/// `[kind u8][body_len u32][CRC-32 of kind, length and body][body]`.
pub fn snapshot(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    seal_blocks(&mut out, 8, 5);
    out
}

#[cfg(test)]
mod tests {
    use minion_storage::wal::{self, LogPos};

    #[test]
    fn sealing_a_damaged_frame_makes_it_decode_again_and_leaves_a_good_one_alone() {
        let good = minion_storage::frame::encode(&("queue", 7u32)).expect("encode");
        assert_eq!(super::frame(&good), good);
        let mut bad = good.clone();
        bad[1] ^= 0xff;
        assert!(minion_storage::frame::decode::<(String, u32)>(&bad).is_err());
        let again: (String, u32) = minion_storage::frame::decode(&super::frame(&bad)).expect("sealed");
        assert_eq!(again, ("queue".to_string(), 7));
    }

    #[test]
    fn sealing_a_wal_record_repairs_only_its_checksum() {
        let good = wal::encode_record(LogPos { index: 3, term: 1, node: 1 }, b"payload");
        assert_eq!(super::wal_record(&good), good);
        let mut bad = good.clone();
        bad[5] ^= 0x01;
        assert!(wal::decode_record(&bad).is_err());
        assert_eq!(super::wal_record(&bad), good);
    }
}
