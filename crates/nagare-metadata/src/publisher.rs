//! The metadata publisher (Kafka's `MetadataLoader` + `MetadataPublisher`): turns committed
//! metadata-log entries and snapshots into a new immutable [`MetadataImage`], then tells every
//! listener. Every node has one, fed by the KRaft shell in commit order; readers take the
//! current image with [`MetadataPublisher::image`].

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::image::MetadataImage;
use crate::records::MetadataRecord;

/// A listener told of each new image (old, new) after it is published.
pub type ImageListener = Box<dyn Fn(&MetadataImage, &Arc<MetadataImage>) + Send + Sync>;

/// Holds the current image and publishes new ones.
pub struct MetadataPublisher {
    image: RwLock<Arc<MetadataImage>>,
    listeners: Arc<RwLock<Vec<ImageListener>>>,
    /// When set, listeners run on their own thread (see [`MetadataPublisher::with_notifier`]).
    notifier: Option<std::sync::mpsc::Sender<(Arc<MetadataImage>, Arc<MetadataImage>)>>,
    // Serializes publications so listeners see images in order.
    publish: Mutex<()>,
    applied: tokio::sync::watch::Sender<i64>,
}

impl Default for MetadataPublisher {
    fn default() -> Self {
        Self::new()
    }
}

impl MetadataPublisher {
    /// A publisher holding the empty image.
    pub fn new() -> Self {
        MetadataPublisher {
            image: RwLock::new(Arc::new(MetadataImage::empty())),
            listeners: Arc::new(RwLock::new(Vec::new())),
            notifier: None,
            publish: Mutex::new(()),
            applied: tokio::sync::watch::channel(-1).0,
        }
    }

    /// A publisher whose listeners run, in publication order, on a thread of their own: the
    /// image itself is swapped at once (readers and the controller see it immediately), while
    /// slow listener work (a broker creating partition logs) never holds up whoever applies
    /// the records — the metadata quorum's driver. Kafka's `MetadataLoader` works the same
    /// way, with its own event queue. [`MetadataPublisher::applied_offset`] moves only after
    /// the listeners ran.
    pub fn with_notifier() -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<(Arc<MetadataImage>, Arc<MetadataImage>)>();
        let listeners: Arc<RwLock<Vec<ImageListener>>> = Arc::new(RwLock::new(Vec::new()));
        let applied = tokio::sync::watch::channel(-1).0;
        let (l2, a2) = (listeners.clone(), applied.clone());
        std::thread::Builder::new()
            .name("metadata-publisher".into())
            .spawn(move || {
                while let Ok((old, new)) = rx.recv() {
                    for l in l2.read().iter() {
                        l(&old, &new);
                    }
                    a2.send_replace(new.offset);
                }
            })?;
        Ok(MetadataPublisher {
            image: RwLock::new(Arc::new(MetadataImage::empty())),
            listeners,
            notifier: Some(tx),
            publish: Mutex::new(()),
            applied,
        })
    }

    /// The latest published image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().clone()
    }

    /// Registers a listener for new images.
    pub fn subscribe(&self, listener: ImageListener) {
        self.listeners.write().push(listener);
    }

    /// Watches the offset of the last record whose image the listeners have seen (`-1`
    /// before any).
    pub fn applied_offset(&self) -> tokio::sync::watch::Receiver<i64> {
        self.applied.subscribe()
    }

    /// Applies committed entries (offset, encoded [`MetadataRecord`]) in order and publishes
    /// the result. An entry that does not decode is logged and skipped rather than stopping
    /// the node: the controller never writes one, so it can only come from a newer version.
    pub fn apply_committed<'a>(&self, entries: impl IntoIterator<Item = (i64, &'a [u8])>) {
        let _g = self.publish.lock();
        let old = self.image();
        let mut next = (*old).clone();
        let mut changed = false;
        for (offset, value) in entries {
            match MetadataRecord::decode(value) {
                Ok(r) => next.apply(offset, &r),
                Err(e) => {
                    tracing::error!(offset, error = %e, "skipping undecodable metadata record");
                    next.offset = offset;
                }
            }
            changed = true;
        }
        if changed {
            self.publish_locked(old, next);
        }
    }

    /// Replaces the image with the one a snapshot describes (its last offset is
    /// `last_offset`), then publishes it.
    pub fn load_snapshot(&self, last_offset: i64, records: &[Bytes]) {
        let _g = self.publish.lock();
        let old = self.image();
        let mut decoded = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            match MetadataRecord::decode(r) {
                Ok(r) => decoded.push(r),
                Err(e) => {
                    tracing::error!(index = i, error = %e, "skipping undecodable snapshot record")
                }
            }
        }
        let next = MetadataImage::from_records(last_offset, &decoded);
        self.publish_locked(old, next);
    }

    /// The current image as snapshot records.
    pub fn snapshot_records(&self) -> Vec<Bytes> {
        self.image()
            .to_records()
            .iter()
            .map(|r| Bytes::from(r.encode()))
            .collect()
    }

    fn publish_locked(&self, old: Arc<MetadataImage>, next: MetadataImage) {
        let offset = next.offset;
        let next = Arc::new(next);
        *self.image.write() = next.clone();
        if let Some(tx) = &self.notifier {
            if tx.send((old.clone(), next.clone())).is_ok() {
                return;
            }
        }
        for l in self.listeners.read().iter() {
            l(&old, &next);
        }
        self.applied.send_replace(offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn publishes_in_order_and_snapshots_round_trip() {
        let p = MetadataPublisher::new();
        let seen = Arc::new(AtomicUsize::new(0));
        let s2 = seen.clone();
        p.subscribe(Box::new(move |_, _| {
            s2.fetch_add(1, Ordering::SeqCst);
        }));
        let t = MetadataRecord::Topic {
            name: "a".into(),
            topic_id: uuid::Uuid::from_bytes([1; 16]),
        }
        .encode();
        p.apply_committed([(0, t.as_slice()), (1, b"garbage".as_slice())]);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        assert_eq!(p.image().offset, 1);
        assert!(p.image().topic("a").is_some());
        assert_eq!(*p.applied_offset().borrow(), 1);
        let snap = p.snapshot_records();
        let q = MetadataPublisher::new();
        q.load_snapshot(1, &snap);
        assert!(q.image().topic("a").is_some());
        assert_eq!(q.image().offset, 1);
    }

    #[tokio::test]
    async fn notifier_thread_runs_listeners_in_order() {
        let p = MetadataPublisher::with_notifier().expect("thread");
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        p.subscribe(Box::new(move |_, new| s2.lock().push(new.offset)));
        let mut rx = p.applied_offset();
        for o in 0..5 {
            let t = MetadataRecord::FeatureLevel {
                name: "x".into(),
                level: o as i16,
            }
            .encode();
            p.apply_committed([(o, t.as_slice())]);
        }
        // The image is current at once; the listeners catch up on their thread.
        assert_eq!(p.image().offset, 4);
        while *rx.borrow_and_update() < 4 {
            rx.changed().await.expect("watch");
        }
        assert_eq!(*seen.lock(), vec![0, 1, 2, 3, 4]);
    }
}
