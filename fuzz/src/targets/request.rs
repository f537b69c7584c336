//! Request decoding and dispatch, for every API and version: the input is what a client
//! writes on a fresh connection (size-prefixed frames, up to 8), fed through the real
//! pipeline (`handlers::dispatch` on an in-memory `TestBroker`). Any answer is fine (a
//! response, none, or a closed connection); a panic, an abort, a reply that never comes
//! or committed memory beyond libFuzzer's `-rss_limit_mb` is a failure. The binary runs
//! under the server's guard allocator, as `nagare` does.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nagare_broker::handlers::dispatch;
use nagare_broker::network::Reply;
use nagare_broker::testing::TestBroker;

/// A fresh broker every this many inputs: bounds the state (topics, groups, log bytes) that
/// earlier inputs leave behind, so runs stay fast and a crash reproduces from few inputs.
const INPUTS_PER_BROKER: u32 = 500;

struct State {
    broker: TestBroker,
    inputs: u32,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

async fn new_broker() -> TestBroker {
    let t = TestBroker::build(
        &[
            // A JoinGroup for a new group answers at once rather than after 3 s.
            ("group.initial.rebalance.delay.ms", "0"),
            // Small segments: produced bytes roll and stay small.
            ("log.segment.bytes", "1048576"),
        ],
        None,
    )
    .await;
    // A topic for Produce, Fetch, ListOffsets, OffsetCommit... to find.
    t.create_topic("fuzz", 2).await;
    t
}

/// Runs one input.
pub fn run(data: &[u8]) {
    static STATE: Mutex<Option<State>> = Mutex::new(None);
    let rt = runtime();
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if guard.as_ref().is_none_or(|s| s.inputs >= INPUTS_PER_BROKER) {
        *guard = None;
        *guard = Some(State {
            broker: rt.block_on(new_broker()),
            inputs: 0,
        });
    }
    let Some(state) = guard.as_mut() else { return };
    state.inputs += 1;
    let t = &state.broker;
    let conn = t.connection_on("PLAINTEXT");
    let mut rest = data;
    let mut frames = 0;
    while rest.len() >= 4 && frames < 8 {
        frames += 1;
        let size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..];
        let size = size.min(rest.len());
        let frame = Bytes::copy_from_slice(&rest[..size]);
        rest = &rest[size..];
        let closed = rt.block_on(async {
            let d = dispatch(&t.broker, frame, &conn, Instant::now()).await;
            match d.reply {
                Reply::Now(_) | Reply::Nothing => false,
                Reply::Close => true,
                // Deferred answers (acks=all, long polls, joins) get a moment; one that is
                // still waiting is dropped as a client that disconnects would drop it.
                Reply::Later(f) => {
                    let _ = tokio::time::timeout(Duration::from_millis(50), f).await;
                    false
                }
            }
        });
        if closed {
            break;
        }
    }
}
