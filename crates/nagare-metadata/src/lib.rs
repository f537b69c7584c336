//! Cluster metadata for Nagare: the records of the `__cluster_metadata` log, the immutable
//! [`MetadataImage`] every node builds by replaying them, topic-config definitions, and the
//! on-disk metadata log. Does no network I/O; the controller decides, this crate records.

pub mod image;
pub mod log;
pub mod publisher;
pub mod records;
pub mod topic_config;

pub use image::{BrokerRegistration, MetadataImage, PartitionRegistration, TopicImage};
pub use publisher::{ImageListener, MetadataPublisher};
pub use records::{ConfigResource, Endpoint, MetadataRecord};
pub use uuid::Uuid;
