//! The fuzz targets, one module each, each a `run(input)` that must not panic (see each
//! module for what it feeds and what must hold).

pub mod coordinator_records;
pub mod log_recovery;
pub mod metadata_log_recovery;
pub mod metadata_records;
pub mod record_batch;
pub mod request;

/// Every target by name (`NAGARE_FUZZ_TARGET`, the `cargo fuzz` binary names).
pub const ALL: &[(&str, fn(&[u8]))] = &[
    ("request", request::run),
    ("record_batch", record_batch::run),
    ("metadata_records", metadata_records::run),
    ("coordinator_records", coordinator_records::run),
    ("log_recovery", log_recovery::run),
    ("metadata_log_recovery", metadata_log_recovery::run),
];

/// The target called `name`.
pub fn by_name(name: &str) -> Option<fn(&[u8])> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
