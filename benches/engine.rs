//! Engine micro-benchmarks: message parsing and serialisation, wildcard lookup, the cost of one
//! publish fanned out to N subscribers, a connect reply carrying queued messages, and contention
//! on the shared tables (the same operations from 1 and 2 threads at once). Time and
//! allocations per iteration are printed.
//!
//! ```text
//! cargo bench --bench engine
//! ```

use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tower::ServiceExt;
use tower_bayeux::protocol::parse_messages;
use tower_bayeux::{Bayeux, BayeuxService, ChannelName, Message};

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

const PUBLISH: &[u8] = br#"[{"id":"17","channel":"/chat/room-1","clientId":"8cb2687ebc2e15b9fbceeb3e50d5a0c3d79f29cb","data":{"user":"alice","text":"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor."}}]"#;

#[divan::bench]
fn parse_publish() -> Vec<Message> {
    parse_messages(divan::black_box(PUBLISH)).unwrap()
}

#[divan::bench]
fn serialise_delivery(bencher: divan::Bencher) {
    let message = parse_messages(PUBLISH).unwrap().remove(0);
    bencher.bench(|| divan::black_box(&message).to_json());
}

#[divan::bench]
fn wild_ancestors_of_a_deep_channel(bencher: divan::Bencher) {
    let channel = ChannelName::new("/a/b/c/d/e").unwrap();
    bencher.bench(|| {
        let mut total = 0;
        divan::black_box(&channel).for_each_wild_ancestor(|name| total += name.len());
        total
    });
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

async fn post(
    bayeux: &Bayeux,
    cookie: Option<&str>,
    body: String,
) -> (Option<String>, serde_json::Value) {
    let mut request = http::Request::post("/cometd");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = BayeuxService::new(bayeux.clone())
        .oneshot(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (cookie, serde_json::from_slice(&body).unwrap())
}

/// One server-side publish to `n` subscribers: one serialisation, `n` queue pushes. Queues are
/// not drained, so the sample count is bounded.
#[divan::bench(args = [10, 1_000, 10_000], sample_count = 20, sample_size = 5)]
fn publish_fan_out(bencher: divan::Bencher, n: usize) {
    let (bayeux, _) = engine_with_clients(n);
    let data =
        json!({"user": "alice", "text": "Lorem ipsum dolor sit amet, consectetur adipiscing."});
    bencher
        .counter(divan::counter::ItemsCount::new(n))
        .bench(|| {
            runtime()
                .block_on(bayeux.publish("/room", data.clone()))
                .unwrap();
        });
}

/// A server-side publish to 10 or 1,000 subscribers, on a channel without and with history (in
/// memory, the last 100 messages): what keeping history adds per message.
#[divan::bench(args = [(10, false), (10, true), (1_000, false), (1_000, true)], sample_count = 30, sample_size = 20)]
fn publish_with_history(bencher: divan::Bencher, (n, history): (usize, bool)) {
    let (bayeux, _) = engine_with_clients_on(n, history);
    let data =
        json!({"user": "alice", "text": "Lorem ipsum dolor sit amet, consectetur adipiscing."});
    bencher
        .counter(divan::counter::ItemsCount::new(n))
        .bench(|| {
            runtime()
                .block_on(bayeux.publish("/room", data.clone()))
                .unwrap();
        });
}

/// A long-polling `/meta/connect` answered with `n` queued messages: drain, join the shared
/// pieces, write the HTTP response.
#[divan::bench(args = [1, 100], sample_count = 50, sample_size = 20)]
fn connect_reply_with_queued_messages(bencher: divan::Bencher, n: usize) {
    let (bayeux, clients) = engine_with_clients(1);
    let (cookie, connect) = &clients[0];
    let data =
        json!({"user": "alice", "text": "Lorem ipsum dolor sit amet, consectetur adipiscing."});
    bencher
        .with_inputs(|| {
            runtime().block_on(async {
                for _ in 0..n {
                    bayeux.publish("/room", data.clone()).await.unwrap();
                }
            })
        })
        .bench_values(|()| runtime().block_on(post_raw(&bayeux, cookie, connect.clone())));
}

/// A POST whose response body is collected but not parsed.
async fn post_raw(bayeux: &Bayeux, cookie: &str, body: String) -> Bytes {
    let request = http::Request::post("/cometd")
        .header("cookie", cookie)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = BayeuxService::new(bayeux.clone())
        .oneshot(request)
        .await
        .unwrap();
    response.into_body().collect().await.unwrap().to_bytes()
}

thread_local! {
    /// One runtime per benchmark thread: the contention benchmarks run on 1 and 2 threads at once.
    static LOCAL_RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
}

/// An engine with `n` long-polling sessions (their own browser cookies), each subscribed to
/// `/room`, and a `/meta/connect` body (`timeout: 0`) for each, with its cookie. Queues are
/// bounded high enough that the benchmarks never reach the bound.
fn engine_with_clients(n: usize) -> (Bayeux, Vec<(String, String)>) {
    engine_with_clients_on(n, false)
}

/// Like [`engine_with_clients`], the room keeping its last 100 messages if `history`.
fn engine_with_clients_on(n: usize, history: bool) -> (Bayeux, Vec<(String, String)>) {
    runtime().block_on(async {
        let mut builder = Bayeux::builder()
            .max_interval(std::time::Duration::from_secs(3600))
            .max_queue_messages(10_000_000)
            .max_queue_bytes(usize::MAX);
        if history {
            builder = builder.history("/room", tower_bayeux::Retention::last(100));
        }
        let bayeux = builder.build();
        let handshake = json!([{"channel": "/meta/handshake", "version": "1.0"}]).to_string();
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            let (cookie, reply) = post(&bayeux, None, handshake.clone()).await;
            let cookie = cookie.unwrap();
            let id = reply[0]["clientId"].as_str().unwrap().to_owned();
            let subscribe =
                json!([{"channel": "/meta/subscribe", "subscription": "/room", "clientId": id}]);
            post(&bayeux, Some(&cookie), subscribe.to_string()).await;
            let connect =
                json!([{"channel": "/meta/connect", "clientId": id, "advice": {"timeout": 0}}]);
            clients.push((cookie, connect.to_string()));
        }
        (bayeux, clients)
    })
}

/// Contention on the session table, the browser table and session state: a long-polling
/// `/meta/connect` cycle (nothing queued, answered at once), each thread on its own session.
/// Time per cycle that stays flat from 1 to 2 threads means the shared tables do not serialise
/// the cores.
#[divan::bench(threads = [1, 2], sample_count = 50, sample_size = 200)]
fn contended_connect_cycle(bencher: divan::Bencher) {
    static CLIENTS: OnceLock<(Bayeux, Vec<(String, String)>)> = OnceLock::new();
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let (bayeux, clients) = CLIENTS.get_or_init(|| engine_with_clients(16));
    bencher.bench(|| {
        let (cookie, connect) = &clients[MINE.with(|i| *i) % clients.len()];
        LOCAL_RUNTIME.with(|rt| rt.block_on(post_raw(bayeux, cookie, connect.clone())))
    });
}

/// Contention on the channel table and on the subscribers' session state: a server-side
/// publish to the same 100 subscribers from 1 and 2 threads at once.
#[divan::bench(threads = [1, 2], sample_count = 50, sample_size = 100)]
fn contended_publish_to_100(bencher: divan::Bencher) {
    static CLIENTS: OnceLock<(Bayeux, Vec<(String, String)>)> = OnceLock::new();
    let (bayeux, _) = CLIENTS.get_or_init(|| engine_with_clients(100));
    let data =
        json!({"user": "alice", "text": "Lorem ipsum dolor sit amet, consectetur adipiscing."});
    bencher.bench(|| {
        LOCAL_RUNTIME
            .with(|rt| rt.block_on(bayeux.publish("/room", data.clone())))
            .unwrap();
    });
}
