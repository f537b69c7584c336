//! One module per CLI subcommand.

pub mod bench;
pub mod consume;
pub mod group;
pub mod produce;
pub mod server;
pub mod topic;
