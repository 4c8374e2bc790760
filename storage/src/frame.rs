//! The on-disk record frame: `[version: u8][CRC-32 (IEEE) of body: u32 LE][body: postcard]`.
//!
//! Every value Minion writes (log entries, votes, task records, snapshots) goes through this frame,
//! so a flipped bit anywhere is reported as corruption instead of being decoded as something else.
//! The version names the shape of the body: 1 everywhere, except where a record's shape grew
//! ([`encode_as`], [`open`]): the codec reads each version of such a record into the current one.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub const FRAME_VERSION: u8 = 1;
const HEADER_BYTES: usize = 5;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame is {0} bytes, shorter than its header")]
    Short(usize),
    #[error("frame version {0} is not supported (this build reads version {FRAME_VERSION})")]
    Version(u8),
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("body does not decode: {0}")]
    Decode(String),
    #[error("value does not encode: {0}")]
    Encode(String),
}

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, FrameError> {
    encode_as(FRAME_VERSION, value)
}

/// A frame whose body has the shape `version` names.
pub fn encode_as<T: Serialize + ?Sized>(version: u8, value: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![version, 0, 0, 0, 0];
    let mut out =
        postcard::to_extend(value, std::mem::take(&mut out)).map_err(|e| FrameError::Encode(e.to_string()))?;
    let crc = crc32fast::hash(&out[HEADER_BYTES..]);
    out[1..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Check the frame and return its body.
pub fn body(bytes: &[u8]) -> Result<&[u8], FrameError> {
    match open(bytes)? {
        (FRAME_VERSION, body) => Ok(body),
        (v, _) => Err(FrameError::Version(v)),
    }
}

/// Check the frame's checksum and return its version and body, whatever the version.
pub fn open(bytes: &[u8]) -> Result<(u8, &[u8]), FrameError> {
    if bytes.len() < HEADER_BYTES {
        return Err(FrameError::Short(bytes.len()));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[1..HEADER_BYTES]);
    let stored = u32::from_le_bytes(crc);
    let computed = crc32fast::hash(&bytes[HEADER_BYTES..]);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    Ok((bytes[0], &bytes[HEADER_BYTES..]))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    decode_body(body(bytes)?)
}

/// A body (of any version) as `T`, all of it.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| FrameError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(format!("{} trailing bytes", rest.len())));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_every_single_bit_flip_is_detected() {
        let value = (42u64, "payload".to_string(), vec![1u8, 2, 3]);
        let bytes = encode(&value).expect("encode");
        assert_eq!(decode::<(u64, String, Vec<u8>)>(&bytes), Ok(value));
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode::<(u64, String, Vec<u8>)>(&b).is_err(), "flip of byte {i} bit {bit} went unnoticed");
            }
        }
    }

    #[test]
    fn short_and_truncated_frames_are_errors() {
        assert_eq!(decode::<u64>(&[1, 0]), Err(FrameError::Short(2)));
        let bytes = encode(&"hello").expect("encode");
        assert!(decode::<String>(&bytes[..bytes.len() - 1]).is_err());
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(decode::<String>(&v2), Err(FrameError::Version(2)));
    }
}
