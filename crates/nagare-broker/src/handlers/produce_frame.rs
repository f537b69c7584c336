//! Produce records handed to the log without copying them out of the request frame.
//!
//! The log patches each batch's base offset and leader epoch in place, so it needs a
//! uniquely owned, mutable buffer (`BytesMut`). The decoded request's records are `Bytes`
//! slices of the frame; once every other reference to the frame is gone (the decoded request,
//! the dispatcher's clone, the panic guard's), the frame's buffer is turned back into a
//! `BytesMut` (`Bytes::try_into_mut`, no copy when it is the sole owner) and split into one
//! disjoint `BytesMut` per partition. When the buffer is shared after all (an in-process test
//! frame, a small frame still sharing the connection's read buffer), each partition's records
//! are copied, as before.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::StrBytes;

/// Produce bodies at least this large are handed to the log without a copy: the panic guard
/// builds its error reply before the handler runs instead of keeping a reference to the body
/// (see `run_handler`), and the connection gives such frames a buffer of their own
/// (`network::read_frame`). Below it a copy costs less than those.
pub const OWN_FRAME_MIN_BYTES: usize = 32 * 1024;

/// Frames split into their partitions' buffers without a copy, since startup.
static SPLIT_WITHOUT_COPY: AtomicU64 = AtomicU64::new(0);

/// How many produce frames were handed to the log without copying their records (since the
/// process started; for tests and diagnostics).
pub fn frames_split_without_copy() -> u64 {
    SPLIT_WITHOUT_COPY.load(Ordering::Relaxed)
}

/// Where `part` lies inside `frame`, when it is a slice of it (as the decoder makes the
/// records of a request); `None` otherwise (e.g. an empty `Bytes`, which points nowhere).
pub fn locate(frame: &Bytes, part: &Bytes) -> Option<Range<usize>> {
    if part.is_empty() {
        return None;
    }
    let base = frame.as_ptr() as usize;
    let start = part.as_ptr() as usize;
    let end = start.checked_add(part.len())?;
    if start < base || end > base + frame.len() {
        return None;
    }
    Some(start - base..end - base)
}

/// Splits `frame` into one buffer per range of `ranges`, in order. Without a copy when the
/// ranges are ascending and disjoint and `frame` is the only reference to its buffer (every
/// slice of it dropped); otherwise each range is copied. Ranges must lie within `frame`
/// (as [`locate`] returns them); one that does not yields an empty buffer.
pub fn split_records(frame: Bytes, ranges: &[Range<usize>]) -> Vec<BytesMut> {
    let in_bounds = |r: &Range<usize>| r.start <= r.end && r.end <= frame.len();
    let ascending =
        ranges.iter().all(in_bounds) && ranges.windows(2).all(|w| w[0].end <= w[1].start);
    if ascending {
        match frame.try_into_mut() {
            Ok(mut buf) => {
                let mut out = Vec::with_capacity(ranges.len());
                let mut cursor = 0;
                for r in ranges {
                    // O(1) each: the pieces share the allocation, each owning its own bytes.
                    buf.advance(r.start - cursor);
                    out.push(buf.split_to(r.len()));
                    cursor = r.end;
                }
                SPLIT_WITHOUT_COPY.fetch_add(1, Ordering::Relaxed);
                return out;
            }
            Err(shared) => return copy_each(&shared, ranges),
        }
    }
    copy_each(&frame, ranges)
}

fn copy_each(frame: &Bytes, ranges: &[Range<usize>]) -> Vec<BytesMut> {
    ranges
        .iter()
        .map(|r| match frame.get(r.clone()) {
            Some(bytes) => BytesMut::from(bytes),
            None => BytesMut::new(),
        })
        .collect()
}

/// The request header with its own copies of the client id and tagged fields: decoded, they
/// are slices of the frame, and the header lives as long as the request, which would keep
/// the frame shared.
pub fn detach_header(mut header: RequestHeader) -> RequestHeader {
    header.client_id = header
        .client_id
        .map(|id| StrBytes::from_string(id.as_str().to_owned()));
    for v in header.unknown_tagged_fields.values_mut() {
        *v = Bytes::copy_from_slice(v);
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Bytes {
        Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>())
    }

    #[test]
    fn sole_owner_splits_without_copying() {
        let f = frame(1000);
        let base = f.as_ptr() as usize;
        let a = f.slice(10..300);
        let b = f.slice(400..1000);
        let ranges = vec![locate(&f, &a).unwrap(), locate(&f, &b).unwrap()];
        assert_eq!(ranges, vec![10..300, 400..1000]);
        drop((a, b));
        let out = split_records(f, &ranges);
        // The same memory: no byte was copied.
        assert_eq!(out[0].as_ptr() as usize, base + 10);
        assert_eq!(out[1].as_ptr() as usize, base + 400);
        assert_eq!(&out[0][..], &frame(1000)[10..300]);
        assert_eq!(&out[1][..], &frame(1000)[400..1000]);
    }

    #[test]
    fn split_pieces_are_independently_mutable() {
        let f = frame(100);
        let mut out = split_records(f, &[0..10, 10..20]);
        out[0][0] = 0xff;
        out[1][0] = 0xee;
        assert_eq!(out[0][0], 0xff);
        assert_eq!(out[1][0], 0xee);
        assert_eq!(out[1][1], 11);
    }

    #[test]
    fn shared_frame_is_copied() {
        let f = frame(100);
        let keep = f.clone();
        let base = f.as_ptr() as usize;
        let one = [Range { start: 5, end: 50 }];
        let out = split_records(f, &one[..]);
        assert_ne!(out[0].as_ptr() as usize, base + 5);
        assert_eq!(&out[0][..], &keep[5..50]);
    }

    #[test]
    fn unordered_or_out_of_bounds_ranges_are_copied_safely() {
        let f = frame(100);
        let out = split_records(f.clone(), &[50..60, 0..10]);
        assert_eq!(&out[0][..], &f[50..60]);
        assert_eq!(&out[1][..], &f[0..10]);
        let beyond = [Range {
            start: 90,
            end: 120,
        }];
        let out = split_records(f.clone(), &beyond[..]);
        assert!(out[0].is_empty());
    }

    #[test]
    fn a_detached_header_does_not_share_the_frame() {
        let f = frame(100);
        let header = RequestHeader::default().with_client_id(Some(
            StrBytes::from_utf8(f.slice(0..10)).unwrap_or_default(),
        ));
        assert!(!f.is_unique());
        let header = detach_header(header);
        assert!(f.is_unique(), "the header still refers to the frame");
        assert_eq!(header.client_id.map(|c| c.len()), Some(10));
    }

    #[test]
    fn locate_refuses_foreign_and_empty_slices() {
        let f = frame(100);
        let other = frame(10);
        assert_eq!(locate(&f, &other), None);
        assert_eq!(locate(&f, &Bytes::new()), None);
        assert_eq!(locate(&f, &f.slice(99..100)), Some(99..100));
    }
}
