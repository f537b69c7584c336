//! The active controller: turns admin requests, broker registrations and producer-id
//! allocations into metadata records. [`logic`] holds the decisions as pure functions over a
//! [`MetadataImage`] returning `(records, response)`; [`shell::Controller`] commits the
//! records to the metadata log and publishes the new image.

pub mod cluster_control;
pub mod logic;
pub mod placement;
pub mod shell;

pub use nagare_metadata::MetadataImage;
pub use shell::Controller;
