//! What a node does when committed metadata cannot be applied (Kafka's `FaultHandler`).
//!
//! A committed record that does not decode (a type or version newer than this binary, or
//! corrupt bytes) must not be skipped: the image would then differ from every other node's,
//! and the broker could act on it — delete the logs of a topic whose records it missed. Kafka
//! stops the process (`ProcessTerminatingFaultHandler`) so that an operator upgrades the node;
//! tests use a handler that records the fault (Kafka's `MockFaultHandler`).

use parking_lot::Mutex;

use crate::records::RecordError;

/// Where the undecodable record was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultSource {
    /// A committed entry of the metadata log.
    Log {
        /// Its offset.
        offset: i64,
    },
    /// A record of a snapshot.
    Snapshot {
        /// The last offset the snapshot covers.
        last_offset: i64,
        /// The record's position in the snapshot.
        index: usize,
    },
}

/// A committed metadata record this node cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot apply committed metadata: {where_}: {error}", where_ = describe(.location))]
pub struct MetadataFault {
    /// Where the record was.
    pub location: FaultSource,
    /// Why it does not decode (type, version and what this binary supports).
    pub error: RecordError,
}

fn describe(s: &FaultSource) -> String {
    match s {
        FaultSource::Log { offset } => format!("record at offset {offset}"),
        FaultSource::Snapshot { last_offset, index } => {
            format!("record {index} of the snapshot ending at offset {last_offset}")
        }
    }
}

/// Told of a fault the node cannot continue past.
pub trait FaultHandler: Send + Sync {
    /// Handles `fault`. The caller stops applying metadata afterwards whatever this does.
    fn handle_fault(&self, fault: &MetadataFault);
}

/// Logs the fault at error level and ends the process with exit code 1 (Kafka's
/// `ProcessTerminatingFaultHandler`, which halts without shutdown hooks): continuing with an
/// image that lacks a committed record risks acting on wrong metadata.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessTerminatingFaultHandler;

impl FaultHandler for ProcessTerminatingFaultHandler {
    fn handle_fault(&self, fault: &MetadataFault) {
        tracing::error!(error = %fault, "metadata fault: stopping the process; upgrade this node to a version that reads the record");
        eprintln!("fatal: {fault}");
        std::process::exit(1);
    }
}

/// Records faults instead of stopping (for tests).
#[derive(Debug, Default)]
pub struct RecordingFaultHandler {
    faults: Mutex<Vec<MetadataFault>>,
}

impl RecordingFaultHandler {
    /// The faults seen so far.
    pub fn faults(&self) -> Vec<MetadataFault> {
        self.faults.lock().clone()
    }
}

impl FaultHandler for RecordingFaultHandler {
    fn handle_fault(&self, fault: &MetadataFault) {
        tracing::error!(error = %fault, "metadata fault (recorded)");
        self.faults.lock().push(fault.clone());
    }
}
