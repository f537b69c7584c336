//! One module per CLI subcommand.

pub mod bench;
pub mod consume;
pub mod produce;
pub mod server;
pub mod topic;
