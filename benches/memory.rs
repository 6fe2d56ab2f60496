//! The size of a websocket connection's future, then heap bytes per idle session: live heap
//! before and after creating sessions that handshake,
//! subscribe to a channel and send one connect, as a long-polling client does before it idles.
//! Then the live heap per message a channel history retains, against what its bound counts.
//! Then churn: rounds of 10,000 such sessions that vanish and expire, and the live heap left
//! above the baseline after each round (tables keep their capacity; a leak would grow per round).
//!
//! ```text
//! cargo bench --bench memory
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tower::ServiceExt;
use tower_bayeux::{Bayeux, BayeuxService};

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

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

async fn idle_session(bayeux: &Bayeux, room: usize) {
    let handshake = json!([{"channel": "/meta/handshake", "version": "1.0"}]).to_string();
    let (cookie, reply) = post(bayeux, None, handshake).await;
    let cookie = cookie.unwrap();
    let id = reply[0]["clientId"].as_str().unwrap().to_owned();
    let subscribe = json!([{"channel": "/meta/subscribe", "subscription": format!("/room/{room}"), "clientId": id}]);
    post(bayeux, Some(&cookie), subscribe.to_string()).await;
    let connect = json!([{"channel": "/meta/connect", "clientId": id, "advice": {"timeout": 0}}]);
    post(bayeux, Some(&cookie), connect.to_string()).await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // A websocket connection's task holds this future for the connection's whole life.
        let bayeux = Bayeux::builder().build();
        let (_client, server) = tokio::io::duplex(64);
        let (parts, ()) = http::Request::get("/cometd").body(()).unwrap().into_parts();
        let connection = tower_bayeux::serve_websocket(&bayeux, server, parts);
        println!(
            "websocket connection future (held by its task for the connection's life): {} bytes",
            std::mem::size_of_val(&connection)
        );
        drop(connection);

        for sessions in [1_000, 10_000, 100_000] {
            let bayeux = Bayeux::builder()
                .max_interval(std::time::Duration::from_secs(3600))
                .build();
            // Warm up the engine's own tables before measuring.
            idle_session(&bayeux, 0).await;
            let before = LIVE.load(Ordering::Relaxed);
            for i in 0..sessions {
                idle_session(&bayeux, i % 100).await;
            }
            let after = LIVE.load(Ordering::Relaxed);
            let per_session = (after - before) as f64 / sessions as f64;
            println!(
                "{sessions:>7} idle sessions (own cookie, one subscription, 100 rooms): \
                 {:>8.1} MiB live heap, {per_session:>6.0} bytes per session",
                (after - before) as f64 / (1024.0 * 1024.0)
            );
        }

        // Channel history: live heap per retained message (beyond its JSON, which the
        // subscribers' queues share) against what the bound counts.
        for (channels, per_channel) in [(1, 100_000), (10_000, 10)] {
            let bayeux = Bayeux::builder()
                .history("/h/**", tower_bayeux::Retention::last(per_channel))
                .max_history_bytes(usize::MAX)
                .build();
            let names: Vec<String> = (0..channels).map(|c| format!("/h/{c}")).collect();
            bayeux.publish(names[0].as_str(), json!(0)).await.unwrap();
            let before = LIVE.load(Ordering::Relaxed);
            let counted_before = bayeux.stats().history_bytes;
            for round in 0..per_channel {
                for name in &names {
                    bayeux.publish(name.as_str(), json!(round)).await.unwrap();
                }
            }
            let stats = bayeux.stats();
            let live = (LIVE.load(Ordering::Relaxed) - before) as f64;
            let counted = (stats.history_bytes - counted_before) as f64;
            let messages = (stats.history_messages - 1) as f64;
            println!(
                "history, {channels} channels x {per_channel} messages: {:>6.0} bytes of live \
                 heap per retained message, {:>6.0} counted against max_history_bytes",
                live / messages,
                counted / messages,
            );
        }

        let bayeux = Bayeux::builder()
            .max_interval(std::time::Duration::from_millis(100))
            .sweep_period(std::time::Duration::from_millis(50))
            .build();
        idle_session(&bayeux, 0).await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let baseline = LIVE.load(Ordering::Relaxed);
        for round in 1..=5 {
            for i in 0..10_000 {
                idle_session(&bayeux, i % 100).await;
            }
            let during = bayeux.stats().sessions;
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let left = bayeux.stats();
            println!(
                "churn round {round}: 10000 sessions came ({during} alive at the end of the round) \
                 and expired ({} left, {} channels): {:>8} bytes of live heap above the baseline",
                left.sessions,
                left.channels,
                LIVE.load(Ordering::Relaxed) - baseline
            );
        }
    });
}
