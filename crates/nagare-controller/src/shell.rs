//! The controller's thin shell: runs a decision against the current image under one lock,
//! commits the resulting records to the metadata log (fsynced), applies them to a new image
//! and publishes it to listeners. Single-voter quorum for now: a record is committed once it
//! is durable on this node's metadata log.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};

use nagare_metadata::log::{MetadataLog, MetadataLogError};
use nagare_metadata::records::MetadataRecord;
use nagare_metadata::MetadataImage;

use crate::logic::ApiError;

/// A listener told of each new image (old, new) after it is committed.
pub type ImageListener = Box<dyn Fn(&MetadataImage, &Arc<MetadataImage>) + Send + Sync>;

/// Errors of a controller operation.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The request was refused with a Kafka error.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The metadata log could not be written.
    #[error(transparent)]
    Log(#[from] MetadataLogError),
}

impl ControllerError {
    /// The Kafka error code to answer with (KAFKA_STORAGE_ERROR for log failures).
    pub fn code(&self) -> i16 {
        match self {
            ControllerError::Api(e) => e.code,
            ControllerError::Log(_) => 56,
        }
    }
    /// The message to answer with.
    pub fn message(&self) -> String {
        match self {
            ControllerError::Api(e) => e.message.clone(),
            ControllerError::Log(e) => e.to_string(),
        }
    }
}

struct Inner {
    log: MetadataLog,
    image: Arc<MetadataImage>,
}

/// The active controller of a single-voter quorum.
pub struct Controller {
    inner: Mutex<Inner>,
    published: RwLock<Arc<MetadataImage>>,
    listeners: RwLock<Vec<ImageListener>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Controller {
    /// Opens the metadata log in `metadata_dir` and replays it.
    pub fn open(metadata_dir: &Path) -> Result<Self, ControllerError> {
        let (log, image) = MetadataLog::open(metadata_dir, now_ms())?;
        let image = Arc::new(image);
        Ok(Controller {
            inner: Mutex::new(Inner {
                log,
                image: image.clone(),
            }),
            published: RwLock::new(image),
            listeners: RwLock::new(Vec::new()),
        })
    }

    /// The latest committed image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.published.read().clone()
    }

    /// Registers a listener for new images.
    pub fn subscribe(&self, listener: ImageListener) {
        self.listeners.write().push(listener);
    }

    /// Runs `decide` against the current image; commits the records it returns (unless
    /// `dry_run`), publishes the new image, and returns its answer. Decisions are serialized,
    /// so each sees the effect of the previous one.
    pub fn commit<T>(
        &self,
        dry_run: bool,
        decide: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), ApiError>,
    ) -> Result<T, ControllerError> {
        let mut inner = self.inner.lock();
        let (records, answer) = decide(&inner.image)?;
        if dry_run || records.is_empty() {
            return Ok(answer);
        }
        let first = inner.log.append(&records, 0, now_ms())?;
        let old = inner.image.clone();
        let mut next = (*old).clone();
        for (i, r) in records.iter().enumerate() {
            next.apply(first + i as i64, r);
        }
        let next = Arc::new(next);
        inner.image = next.clone();
        *self.published.write() = next.clone();
        for l in self.listeners.read().iter() {
            l(&old, &next);
        }
        Ok(answer)
    }

    /// Flushes and closes the metadata log.
    pub fn close(&self) -> Result<(), ControllerError> {
        Ok(self.inner.lock().log.close()?)
    }
}
