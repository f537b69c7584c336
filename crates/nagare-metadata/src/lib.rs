//! Cluster metadata for Nagare: the records of the `__cluster_metadata` log, the immutable
//! [`MetadataImage`] every node builds by replaying them, topic-config definitions, and the
//! on-disk metadata log. Does no network I/O; the controller decides, this crate records.

pub mod acls;
pub mod client_quotas;
pub mod delta;
pub mod fault;
pub mod features;
pub mod image;
pub mod log;
pub mod metadata_version;
pub mod publisher;
pub mod records;
pub mod scram;
pub mod topic_config;

pub use delta::{BrokerDelta, MetadataDelta, PartitionDelta};
pub use fault::{
    FaultHandler, MetadataFault, ProcessTerminatingFaultHandler, RecordingFaultHandler,
};
pub use image::{BrokerRegistration, MetadataImage, PartitionRegistration, TopicImage};
pub use publisher::{ImageListener, MetadataPublisher};
pub use records::{ConfigResource, Endpoint, MetadataRecord, RecordType};
pub use uuid::Uuid;
