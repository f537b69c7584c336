//! The active controller: turns admin requests, broker registrations, heartbeats and
//! producer-id allocations into metadata records. [`logic`] and [`cluster_control`] hold the
//! decisions as pure functions over a [`MetadataImage`] returning `(records, response)`;
//! [`shell::Controller`] runs them one at a time on the quorum leader and proposes the records
//! to the KRaft quorum ([`shell::Quorum`]).

pub mod client_metrics;
pub mod cluster_control;
pub mod elections;
pub mod feature_control;
pub mod logic;
pub mod placement;
pub mod replication_control;
pub mod scram_control;
pub mod shell;

pub use nagare_metadata::MetadataImage;
pub use shell::Controller;
