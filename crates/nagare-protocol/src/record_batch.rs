//! Zero-copy view of a RecordBatch (magic v2) header.
