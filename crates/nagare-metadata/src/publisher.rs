//! The metadata publisher (Kafka's `MetadataLoader` + `MetadataPublisher`): turns committed
//! metadata-log entries and snapshots into a new immutable [`MetadataImage`], then tells every
//! listener. Every node has one, fed by the KRaft shell in commit order; readers take the
//! current image with [`MetadataPublisher::image`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::delta::MetadataDelta;
use crate::fault::{FaultHandler, FaultSource, MetadataFault, ProcessTerminatingFaultHandler};
use crate::image::MetadataImage;
use crate::metadata_version;
use crate::records::MetadataRecord;

/// A listener told of each new image after it is published: what changed since the image
/// it was last told of, and the new image (Kafka's `MetadataPublisher.onMetadataUpdate`).
pub type ImageListener = Box<dyn Fn(&MetadataDelta, &Arc<MetadataImage>) + Send + Sync>;

/// Work for the listener thread, in publication order.
enum Event {
    /// A new image after `old`.
    Publish(Arc<MetadataImage>, Arc<MetadataImage>),
    /// A listener to catch up with the current image and then add; the sender is told once
    /// the catch-up ran.
    Install(ImageListener, std::sync::mpsc::SyncSender<()>),
}

/// Holds the current image and publishes new ones.
pub struct MetadataPublisher {
    image: RwLock<Arc<MetadataImage>>,
    listeners: Arc<RwLock<Vec<ImageListener>>>,
    /// When set, listeners run on their own thread (see [`MetadataPublisher::with_notifier`]).
    notifier: Option<std::sync::mpsc::Sender<Event>>,
    // Serializes publications so listeners see images in order.
    publish: Mutex<()>,
    applied: tokio::sync::watch::Sender<i64>,
    /// Told when a committed record cannot be applied.
    fault_handler: Arc<dyn FaultHandler>,
    /// Set after a fault: nothing more is applied, since every later image would lack the
    /// record that could not be applied.
    halted: AtomicBool,
}

impl Default for MetadataPublisher {
    fn default() -> Self {
        Self::new()
    }
}

impl MetadataPublisher {
    /// A publisher holding the empty image, whose faults stop the process (see
    /// [`MetadataPublisher::with_fault_handler`]).
    pub fn new() -> Self {
        MetadataPublisher {
            image: RwLock::new(Arc::new(MetadataImage::empty())),
            listeners: Arc::new(RwLock::new(Vec::new())),
            notifier: None,
            publish: Mutex::new(()),
            applied: tokio::sync::watch::channel(-1).0,
            fault_handler: Arc::new(ProcessTerminatingFaultHandler),
            halted: AtomicBool::new(false),
        }
    }

    /// A publisher whose listeners run, in publication order, on a thread of their own: the
    /// image itself is swapped at once (readers and the controller see it immediately), while
    /// slow listener work (a broker creating partition logs) never holds up whoever applies
    /// the records — the metadata quorum's driver. Kafka's `MetadataLoader` works the same
    /// way, with its own event queue. [`MetadataPublisher::applied_offset`] moves only after
    /// the listeners ran. The deltas are computed on that thread too.
    pub fn with_notifier() -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Event>();
        let listeners: Arc<RwLock<Vec<ImageListener>>> = Arc::new(RwLock::new(Vec::new()));
        let applied = tokio::sync::watch::channel(-1).0;
        let (l2, a2) = (listeners.clone(), applied.clone());
        std::thread::Builder::new()
            .name("metadata-publisher".into())
            .spawn(move || {
                // The image the listeners were last told of.
                let mut current = Arc::new(MetadataImage::empty());
                while let Ok(event) = rx.recv() {
                    match event {
                        Event::Publish(old, new) => {
                            let delta = MetadataDelta::between(&old, &new);
                            for l in l2.read().iter() {
                                l(&delta, &new);
                            }
                            a2.send_replace(new.offset);
                            current = new;
                        }
                        Event::Install(listener, done) => {
                            let delta = MetadataDelta::between(&MetadataImage::empty(), &current);
                            listener(&delta, &current);
                            l2.write().push(listener);
                            let _ = done.send(());
                        }
                    }
                }
            })?;
        Ok(MetadataPublisher {
            image: RwLock::new(Arc::new(MetadataImage::empty())),
            listeners,
            notifier: Some(tx),
            publish: Mutex::new(()),
            applied,
            fault_handler: Arc::new(ProcessTerminatingFaultHandler),
            halted: AtomicBool::new(false),
        })
    }

    /// Replaces the fault handler (the default stops the process; tests record instead).
    pub fn with_fault_handler(mut self, handler: Arc<dyn FaultHandler>) -> Self {
        self.fault_handler = handler;
        self
    }

    /// Whether a fault stopped this publisher from applying more metadata.
    pub fn is_halted(&self) -> bool {
        self.halted.load(Ordering::Acquire)
    }

    /// The latest published image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().clone()
    }

    /// Registers a listener for the images published from now on (each delta is relative to
    /// the image published before it).
    pub fn subscribe(&self, listener: ImageListener) {
        self.listeners.write().push(listener);
    }

    /// Registers a listener that is first told of the current image, as a delta from the
    /// empty image, and then of every later one — in order with other publications, so that
    /// it sees every change exactly once (Kafka's `MetadataLoader.installPublishers`).
    /// Returns once the listener has caught up with the image current at the call.
    pub fn install(&self, listener: ImageListener) {
        let guard = self.publish.lock();
        if let Some(tx) = &self.notifier {
            let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
            match tx.send(Event::Install(listener, done_tx)) {
                Ok(()) => {
                    // Wait without blocking publications: the catch-up may take a while.
                    drop(guard);
                    let _ = done_rx.recv();
                }
                Err(std::sync::mpsc::SendError(Event::Install(listener, _))) => {
                    self.install_inline(listener)
                }
                Err(_) => {}
            }
            return;
        }
        self.install_inline(listener);
    }

    fn install_inline(&self, listener: ImageListener) {
        let image = self.image();
        listener(
            &MetadataDelta::between(&MetadataImage::empty(), &image),
            &image,
        );
        self.listeners.write().push(listener);
    }

    /// Watches the offset of the last record whose image the listeners have seen (`-1`
    /// before any).
    pub fn applied_offset(&self) -> tokio::sync::watch::Receiver<i64> {
        self.applied.subscribe()
    }

    /// Applies committed entries (offset, encoded [`MetadataRecord`]) in order and publishes
    /// the result. An entry that does not decode (a record type or version newer than this
    /// binary, or corrupt bytes) is a fault: the entries before it are published, the fault
    /// handler is told (in production it stops the process) and nothing more is applied —
    /// skipping it would leave this node with an image no other node has.
    pub fn apply_committed<'a>(&self, entries: impl IntoIterator<Item = (i64, &'a [u8])>) {
        let _g = self.publish.lock();
        if self.is_halted() {
            return;
        }
        let old = self.image();
        let mut next = (*old).clone();
        let mut changed = false;
        let mut fault = None;
        for (offset, value) in entries {
            match MetadataRecord::decode(value) {
                Ok(r) => next.apply(offset, &r),
                Err(error) => {
                    fault = Some(MetadataFault {
                        location: FaultSource::Log { offset },
                        error,
                    });
                    break;
                }
            }
            changed = true;
        }
        if changed {
            self.publish_locked(old, next);
        }
        if let Some(f) = fault {
            self.halted.store(true, Ordering::Release);
            self.fault_handler.handle_fault(&f);
        }
    }

    /// Replaces the image with the one a snapshot describes (its last offset is
    /// `last_offset`), then publishes it. A record that does not decode is a fault (see
    /// [`MetadataPublisher::apply_committed`]) and nothing of the snapshot is published.
    pub fn load_snapshot(&self, last_offset: i64, records: &[Bytes]) {
        let _g = self.publish.lock();
        if self.is_halted() {
            return;
        }
        let old = self.image();
        let mut decoded = Vec::with_capacity(records.len());
        for (index, r) in records.iter().enumerate() {
            match MetadataRecord::decode(r) {
                Ok(r) => decoded.push(r),
                Err(error) => {
                    self.halted.store(true, Ordering::Release);
                    self.fault_handler.handle_fault(&MetadataFault {
                        location: FaultSource::Snapshot { last_offset, index },
                        error,
                    });
                    return;
                }
            }
        }
        let next = MetadataImage::from_records(last_offset, &decoded);
        self.publish_locked(old, next);
    }

    /// The current image as snapshot records, each at the version the image's finalized
    /// `metadata.version` allows.
    pub fn snapshot_records(&self) -> Vec<Bytes> {
        let image = self.image();
        let level = metadata_version::effective_level(
            image.features.get(metadata_version::FEATURE_NAME).copied(),
        );
        image
            .to_records()
            .iter()
            .map(|r| {
                Bytes::from(r.encode_for(level).unwrap_or_else(|e| {
                    // Only a metadata.version this binary does not know gets here; the
                    // latest version is what this binary would write anyway.
                    tracing::error!(error = %e, "snapshot record written at its latest version");
                    r.encode()
                }))
            })
            .collect()
    }

    fn publish_locked(&self, old: Arc<MetadataImage>, next: MetadataImage) {
        let offset = next.offset;
        let next = Arc::new(next);
        *self.image.write() = next.clone();
        if let Some(tx) = &self.notifier {
            if tx.send(Event::Publish(old.clone(), next.clone())).is_ok() {
                return;
            }
        }
        let delta = MetadataDelta::between(&old, &next);
        for l in self.listeners.read().iter() {
            l(&delta, &next);
        }
        self.applied.send_replace(offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::RecordingFaultHandler;
    use std::sync::atomic::AtomicUsize;

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
        p.apply_committed([(0, t.as_slice())]);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        assert_eq!(p.image().offset, 0);
        assert!(p.image().topic("a").is_some());
        assert_eq!(*p.applied_offset().borrow(), 0);
        let snap = p.snapshot_records();
        let q = MetadataPublisher::new();
        q.load_snapshot(1, &snap);
        assert!(q.image().topic("a").is_some());
        assert_eq!(q.image().offset, 1);
    }

    fn recording() -> (MetadataPublisher, Arc<RecordingFaultHandler>) {
        let faults = Arc::new(RecordingFaultHandler::default());
        (
            MetadataPublisher::new().with_fault_handler(faults.clone()),
            faults,
        )
    }

    fn topic(name: &str, id: u8) -> Vec<u8> {
        MetadataRecord::Topic {
            name: name.into(),
            topic_id: uuid::Uuid::from_bytes([id; 16]),
        }
        .encode()
    }

    /// A committed record this binary cannot read stops the node (here: is recorded) with
    /// its offset, type and version; the records before it are applied, nothing after.
    #[test]
    fn undecodable_committed_record_is_a_fault_not_skipped() {
        let (p, faults) = recording();
        let (a, b, c) = (topic("a", 1), topic("b", 2), topic("c", 3));
        let mut newer = b.clone();
        newer[2] = 3; // TopicRecord version 3
        p.apply_committed([(0, a.as_slice()), (1, newer.as_slice()), (2, c.as_slice())]);
        let f = faults.faults();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].location, FaultSource::Log { offset: 1 });
        let msg = f[0].to_string();
        assert!(msg.contains("offset 1"), "{msg}");
        assert!(msg.contains("TopicRecord (apiKey 2) version 3"), "{msg}");
        assert!(msg.contains("versions 0 to 0"), "{msg}");
        assert!(p.is_halted());
        let img = p.image();
        assert_eq!(img.offset, 0);
        assert!(img.topic("a").is_some());
        assert!(img.topic("c").is_none(), "applied past the fault");
        // Later commits are not applied on top of the missing record.
        p.apply_committed([(3, c.as_slice())]);
        assert_eq!(p.image().offset, 0);
        assert_eq!(faults.faults().len(), 1);
    }

    #[test]
    fn undecodable_snapshot_record_is_a_fault() {
        let (p, faults) = recording();
        let snap = vec![
            Bytes::from(topic("a", 1)),
            Bytes::from_static(b"\x01\x63\x00{}"),
        ];
        p.load_snapshot(9, &snap);
        let f = faults.faults();
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].location,
            FaultSource::Snapshot {
                last_offset: 9,
                index: 1
            }
        );
        assert!(f[0].to_string().contains("apiKey 99"), "{}", f[0]);
        assert_eq!(p.image().offset, -1, "a partial snapshot was published");
    }

    /// Listeners get what changed; an installed listener first gets the whole current image.
    #[test]
    fn listeners_receive_deltas() {
        let p = MetadataPublisher::new();
        let a = topic("a", 1);
        p.apply_committed([(0, a.as_slice())]);
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        p.install(Box::new(move |d, img| {
            s2.lock()
                .push((d.old_offset, img.offset, d.created_topics.len()))
        }));
        let b = topic("b", 2);
        p.apply_committed([(1, b.as_slice())]);
        assert_eq!(*seen.lock(), vec![(-1, 0, 1), (0, 1, 1)]);
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
