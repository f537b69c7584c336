//! Request framing: a 4-byte big-endian size, then the request header and body.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

/// Why a frame or request header was refused.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative or larger than `socket.request.max.bytes`.
    #[error("frame size {size} exceeds the limit of {max} bytes (socket.request.max.bytes)")]
    TooLarge {
        /// Size announced by the client.
        size: i64,
        /// The configured maximum.
        max: usize,
    },
    /// The size prefix is too small to hold a request header.
    #[error("frame size {0} is too small for a request header")]
    TooSmall(i32),
    /// The request header names an API key this broker does not know.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// The request header could not be decoded.
    #[error("malformed request header: {0}")]
    MalformedHeader(String),
}

/// Smallest possible request: api key, version, correlation id, client id length.
const MIN_REQUEST_SIZE: i32 = 10;

/// Checks a frame's 4-byte size prefix against `max` *before* anything is allocated for it.
pub fn check_frame_size(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let size = i32::from_be_bytes(prefix);
    if size < 0 || size as usize > max {
        return Err(FrameError::TooLarge {
            size: size as i64,
            max,
        });
    }
    if size < MIN_REQUEST_SIZE {
        return Err(FrameError::TooSmall(size));
    }
    Ok(size as usize)
}

/// The first fields of every request header, readable whatever the header version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPrefix {
    /// API key (may be unknown to us).
    pub api_key: i16,
    /// API version (may be out of our range).
    pub api_version: i16,
    /// Correlation id, echoed in the response.
    pub correlation_id: i32,
}

/// Reads the api key, version and correlation id without consuming the frame.
pub fn peek_header_prefix(frame: &[u8]) -> Result<HeaderPrefix, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::MalformedHeader(
            "frame shorter than 8 bytes".into(),
        ));
    }
    let mut b = &frame[..8];
    Ok(HeaderPrefix {
        api_key: b.get_i16(),
        api_version: b.get_i16(),
        correlation_id: b.get_i32(),
    })
}

/// Decodes the request header of a frame for a known API key, leaving `frame` at the body.
pub fn decode_request_header(frame: &mut Bytes) -> Result<(ApiKey, RequestHeader), FrameError> {
    let prefix = peek_header_prefix(frame)?;
    let key =
        ApiKey::try_from(prefix.api_key).map_err(|_| FrameError::UnknownApiKey(prefix.api_key))?;
    let header_version = key.request_header_version(prefix.api_version);
    let header = RequestHeader::decode(frame, header_version)
        .map_err(|e| FrameError::MalformedHeader(e.to_string()))?;
    Ok((key, header))
}

/// Encodes a response header (v0: correlation id; v1: plus empty tagged fields).
pub fn put_response_header(buf: &mut BytesMut, correlation_id: i32, header_version: i16) {
    buf.put_i32(correlation_id);
    if header_version >= 1 {
        buf.put_u8(0); // no tagged fields
    }
}

/// KIP-511: when a client sends ApiVersions at a version we do not support, Kafka answers
/// with a version-0 body carrying UNSUPPORTED_VERSION and the full list of supported ranges,
/// so the client can retry at a version we know. Returns the whole frame (size prefix included).
pub fn api_versions_fallback(correlation_id: i32, ranges: &[(i16, i16, i16)]) -> Bytes {
    let mut buf = BytesMut::with_capacity(14 + ranges.len() * 6);
    buf.put_i32(0); // size, patched below
    buf.put_i32(correlation_id); // ApiVersions responses always use header v0
    buf.put_i16(35); // UNSUPPORTED_VERSION
    buf.put_i32(ranges.len() as i32);
    for &(key, min, max) in ranges {
        buf.put_i16(key);
        buf.put_i16(min);
        buf.put_i16(max);
    }
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_size_limits() {
        assert!(check_frame_size(100i32.to_be_bytes(), 1000).is_ok());
        assert!(matches!(
            check_frame_size(2000i32.to_be_bytes(), 1000),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            check_frame_size((-1i32).to_be_bytes(), 1000),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            check_frame_size(3i32.to_be_bytes(), 1000),
            Err(FrameError::TooSmall(3))
        ));
    }

    #[test]
    fn unknown_api_key_is_reported() {
        let mut frame = BytesMut::new();
        frame.put_i16(9999);
        frame.put_i16(0);
        frame.put_i32(7);
        frame.put_i16(-1);
        let mut frame = frame.freeze();
        assert!(matches!(
            decode_request_header(&mut frame),
            Err(FrameError::UnknownApiKey(9999))
        ));
    }

    #[test]
    fn fallback_layout() {
        let f = api_versions_fallback(42, &[(18, 0, 4), (0, 3, 13)]);
        let mut b = &f[..];
        assert_eq!(b.get_i32() as usize, f.len() - 4);
        assert_eq!(b.get_i32(), 42);
        assert_eq!(b.get_i16(), 35);
        assert_eq!(b.get_i32(), 2);
        assert_eq!((b.get_i16(), b.get_i16(), b.get_i16()), (18, 0, 4));
        assert_eq!((b.get_i16(), b.get_i16(), b.get_i16()), (0, 3, 13));
        assert!(b.is_empty());
    }
}
