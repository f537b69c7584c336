//! Metadata record decoding (`nagare-metadata`): the input is a run of records as the
//! `__cluster_metadata` log holds them (each behind a 2-byte length). Each is decoded; what
//! decodes must re-encode to a record that decodes to the same value; then the whole run
//! is applied to a metadata image as a broker or controller replaying its log would. Bad
//! bytes are a metadata fault (recorded); never a panic.

use crate::Input;
use nagare_metadata::records::MetadataRecord;
use nagare_metadata::{MetadataPublisher, RecordingFaultHandler};
use std::sync::Arc;

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input(data);
    let mut records: Vec<&[u8]> = Vec::new();
    while !input.is_empty() && records.len() < 64 {
        let len = input.u16() as usize;
        records.push(input.take(len));
    }
    for r in &records {
        if let Ok((rec, _version)) = MetadataRecord::decode_versioned(r) {
            // Decoding an older version and encoding the current one may drop fields the
            // current version lacks, so the check is that encoding is then a fixed point.
            let bytes = rec.encode();
            let again = MetadataRecord::decode(&bytes).expect("a re-encoded record decodes");
            assert_eq!(again.encode(), bytes, "encode/decode is not a fixed point");
        }
    }
    // A bad committed record is a metadata fault; Kafka's brokers log and count it (the
    // default handler here stops the process, which a fuzzer would report as a crash).
    let publisher =
        MetadataPublisher::new().with_fault_handler(Arc::new(RecordingFaultHandler::default()));
    publisher.apply_committed(records.iter().enumerate().map(|(i, r)| (i as i64, *r)));
    let _ = publisher.image();
}
