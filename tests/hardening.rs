//! Bounded resources, slow consumers, graceful shutdown and churn.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::removal::Removals;
use common::{Client, deliveries, handshake_message, post, settle};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;
use tower_bayeux::{Bayeux, QueueFullPolicy, RemoveReason, ServerEvent};

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn batches_and_messages_over_their_limits_are_refused() {
    let bayeux = Bayeux::builder()
        .max_messages_per_batch(3)
        .max_message_size(200)
        .build();
    let client = Client::connected(&bayeux).await;
    let publishes = |n: usize| {
        (0..n)
            .map(|i| json!({"channel": "/a", "data": i}))
            .collect()
    };
    assert_eq!(
        client.request("/cometd/", publishes(3)).await.status,
        StatusCode::OK
    );
    let too_many = client.request("/cometd/", publishes(4)).await;
    assert_eq!(too_many.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        too_many.body.contains("more than 3 messages"),
        "{}",
        too_many.body
    );
    let big = vec![json!({"channel": "/a", "data": "x".repeat(300)})];
    assert_eq!(
        client.request("/cometd/", big).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(client.subscribe("/still").await["successful"], true);
}

#[tokio::test(start_paused = true)]
async fn long_channel_names_are_refused() {
    let bayeux = Bayeux::builder().max_channel_length(32).build();
    let client = Client::connected(&bayeux).await;
    let long = format!("/{}", "a".repeat(40));
    assert_eq!(
        client.publish(&long, json!(1)).await[0]["error"],
        "405::channel_invalid"
    );
    assert_eq!(
        client.subscribe(&long).await["error"],
        "405::subscription_invalid"
    );
    assert_eq!(client.subscribe("/short").await["successful"], true);
    assert_eq!(
        bayeux.channels().len(),
        1,
        "no channel was created for the long name"
    );
}

#[tokio::test(start_paused = true)]
async fn subscriptions_per_session_are_bounded() {
    let bayeux = Bayeux::builder().max_subscriptions_per_session(3).build();
    let client = Client::connected(&bayeux).await;
    for i in 0..3 {
        assert_eq!(
            client.subscribe(&format!("/s/{i}")).await["successful"],
            true
        );
    }
    assert_eq!(
        client.subscribe("/s/0").await["successful"],
        true,
        "already subscribed"
    );
    assert_eq!(
        client.subscribe("/service/x").await["successful"],
        true,
        "not recorded"
    );
    assert_eq!(
        client.subscribe("/s/3").await["error"],
        "403::subscription_limit"
    );
    client
        .send(vec![
            json!({"channel": "/meta/unsubscribe", "subscription": "/s/0"}),
        ])
        .await;
    assert_eq!(client.subscribe("/s/3").await["successful"], true);
}

#[tokio::test(start_paused = true)]
async fn sessions_per_cookie_and_in_total_are_bounded() {
    let bayeux = Bayeux::builder()
        .max_sessions_per_cookie(Some(2))
        .max_sessions(Some(3))
        .max_interval(Duration::from_secs(10))
        .build();
    let first = Client::handshaken(&bayeux, None).await;
    Client::handshaken(&bayeux, Some(&first.cookie)).await;
    let body = json!([handshake_message("1")]).to_string();
    let refused = post(&bayeux, "/cometd/handshake", Some(&first.cookie), &body)
        .await
        .messages();
    assert_eq!(refused[0]["successful"], false);
    assert_eq!(refused[0]["error"], "403::too_many_sessions");
    assert_eq!(
        refused[0]["advice"],
        json!({"reconnect": "handshake", "interval": 10000})
    );
    // Another browser may still come in, up to the server's total.
    Client::handshaken(&bayeux, None).await;
    let full = post(&bayeux, "/cometd/handshake", None, &body).await;
    assert!(full.headers.get(http::header::SET_COOKIE).is_none());
    assert_eq!(full.messages()[0]["error"], "403::too_many_sessions");
    assert_eq!(bayeux.session_count(), 3);
    // A session going away makes room.
    first
        .send(vec![json!({"channel": "/meta/disconnect"})])
        .await;
    Client::handshaken(&bayeux, Some(&first.cookie)).await;
}

// ---------------------------------------------------------------------------------------------
// Slow consumers
// ---------------------------------------------------------------------------------------------

fn queue_events(bayeux: &Bayeux) -> Arc<Mutex<Vec<String>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    bayeux.on_event({
        let events = events.clone();
        move |event| {
            if let ServerEvent::QueueFull { session, policy } = event {
                events
                    .lock()
                    .unwrap()
                    .push(format!("{} {policy:?}", session.id()));
            }
        }
    });
    events
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_loses_its_oldest_messages_with_notice_and_memory_stays_flat() {
    let bayeux = Bayeux::builder()
        .max_queue_messages(100)
        .max_queue_bytes(usize::MAX)
        .build();
    let events = queue_events(&bayeux);
    let slow = Client::connected(&bayeux).await;
    let fast = Client::connected(&bayeux).await;
    slow.subscribe("/firehose").await;
    fast.subscribe("/firehose").await;
    let mut fast_got = Vec::new();
    for round in 0..50 {
        for i in 0..100 {
            bayeux
                .publish("/firehose", json!(round * 100 + i))
                .await
                .unwrap();
        }
        assert!(
            bayeux.stats().queued_messages <= 200,
            "{:?}",
            bayeux.stats()
        );
        let reply = fast.connect(Some(0)).await;
        fast_got.extend(
            deliveries(&reply)
                .iter()
                .map(|m| m["data"].as_u64().unwrap()),
        );
    }
    assert_eq!(
        fast_got,
        (0..5000).collect::<Vec<_>>(),
        "the fast one lost nothing"
    );
    assert_eq!(
        events.lock().unwrap().clone(),
        [format!("{} DropOldest", slow.client_id)],
        "told once per episode"
    );
    let reply = slow.connect(Some(0)).await;
    let got = deliveries(&reply);
    assert_eq!(
        got[0],
        &json!({"channel": "/meta/overflow", "data": {"dropped": 4900}})
    );
    let data: Vec<u64> = got[1..]
        .iter()
        .map(|m| m["data"].as_u64().unwrap())
        .collect();
    assert_eq!(
        data,
        (4900..5000).collect::<Vec<_>>(),
        "the newest are kept, in order"
    );
    // Caught up: the next episode is told again.
    for i in 0..150 {
        bayeux.publish("/firehose", json!(i)).await.unwrap();
    }
    let slow_events = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.starts_with(&slow.client_id))
        .count();
    assert_eq!(slow_events, 2);
}

#[tokio::test(start_paused = true)]
async fn the_byte_bound_applies_too() {
    let bayeux = Bayeux::builder()
        .max_queue_messages(usize::MAX)
        .max_queue_bytes(10_000)
        .build();
    let slow = Client::connected(&bayeux).await;
    slow.subscribe("/big").await;
    for i in 0..100 {
        bayeux
            .publish("/big", json!({"i": i, "pad": "x".repeat(1000)}))
            .await
            .unwrap();
    }
    let queued = bayeux.session(&slow.client_id).unwrap().queue_len();
    assert!(
        (5..=10).contains(&queued),
        "{queued} messages of ~1 KB in 10 KB"
    );
}

#[tokio::test(start_paused = true)]
async fn the_disconnect_policy_removes_the_slow_session_and_tells_it_to_handshake() {
    let bayeux = Bayeux::builder()
        .max_queue_messages(10)
        .queue_full_policy(QueueFullPolicy::Disconnect)
        .build();
    let events = queue_events(&bayeux);
    let slow = Client::connected(&bayeux).await;
    slow.subscribe("/firehose").await;
    let removals = Removals::default();
    removals.watch_id(&bayeux, &slow.client_id);
    let held = tokio::spawn({
        let slow = slow.clone();
        async move { slow.connect(None).await }
    });
    settle().await;
    // The held connect is woken by the first message, but the rest piles up past the bound
    // before it could run: the session is removed and what it held is gone.
    for i in 0..30 {
        bayeux.publish("/firehose", json!(i)).await.unwrap();
    }
    let first = held.await.unwrap();
    assert!(deliveries(&first).is_empty(), "{first:?}");
    assert_eq!(first.last().unwrap()["advice"]["reconnect"], "handshake");
    let reply = slow.connect(Some(0)).await;
    assert_eq!(reply[0]["error"], "402::session_unknown", "{reply:?}");
    assert_eq!(reply[0]["advice"]["reconnect"], "handshake");
    assert_eq!(removals.reasons(), [RemoveReason::QueueFull]);
    assert_eq!(
        events.lock().unwrap().clone(),
        [format!("{} Disconnect", slow.client_id)]
    );
    assert_eq!(bayeux.stats().queued_messages, 0);
}

#[tokio::test(start_paused = true)]
async fn a_held_connect_of_a_session_removed_for_overflow_is_told_to_handshake() {
    let bayeux = Bayeux::builder()
        .max_queue_messages(1)
        .queue_full_policy(QueueFullPolicy::Disconnect)
        .build();
    let slow = Client::connected(&bayeux).await;
    slow.subscribe("/x").await;
    // Fill the queue while a request of the session is being processed (its batch), so the
    // held connect is not woken before the overflow.
    bayeux
        .channel("/service/fill")
        .add_listener(|event| async move {
            let session = event.session().clone();
            for i in 0..3 {
                let _ = session.deliver("/x", json!(i)).await;
            }
            event.proceed()
        });
    let held = tokio::spawn({
        let slow = slow.clone();
        async move { slow.connect(None).await }
    });
    settle().await;
    slow.request(
        "/cometd/",
        vec![json!({"channel": "/service/fill", "data": {}})],
    )
    .await;
    let reply = held.await.unwrap();
    let connect = reply.last().unwrap();
    assert_eq!(connect["advice"]["reconnect"], "handshake", "{reply:?}");
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn shutdown_answers_held_connects_and_refuses_new_sessions() {
    let bayeux = Bayeux::builder()
        .timeout(Duration::from_secs(20))
        .shutdown_jitter(Duration::from_secs(3))
        .build();
    let removals = Removals::default();
    let mut held = Vec::new();
    for i in 0..5 {
        let client = Client::connected(&bayeux).await;
        if i == 0 {
            client.subscribe("/news").await;
        }
        removals.watch_id(&bayeux, &client.client_id);
        held.push(tokio::spawn(async move {
            let start = Instant::now();
            (client.connect(None).await, start.elapsed())
        }));
    }
    settle().await;
    // Something queued for one of them goes out with the shutdown reply.
    bayeux.publish("/news", json!("last words")).await.unwrap();
    let mut intervals = Vec::new();
    for handle in held.drain(..1) {
        let (reply, _) = handle.await.unwrap();
        assert_eq!(deliveries(&reply)[0]["data"], "last words");
    }
    let start = Instant::now();
    bayeux.shutdown().await;
    assert!(bayeux.is_shut_down());
    for handle in held {
        let (reply, _) = handle.await.unwrap();
        let advice = &reply.last().unwrap()["advice"];
        assert_eq!(advice["reconnect"], "retry", "{reply:?}");
        intervals.push(advice["interval"].as_i64().unwrap());
    }
    assert!(
        start.elapsed() < Duration::from_millis(5),
        "answered at once"
    );
    assert!(
        intervals.iter().all(|i| (0..3000).contains(i)),
        "{intervals:?}"
    );
    assert_eq!(removals.reasons(), [RemoveReason::Shutdown; 5]);
    assert_eq!(bayeux.session_count(), 0);

    let body = json!([handshake_message("1")]).to_string();
    let refused = post(&bayeux, "/cometd/handshake", None, &body)
        .await
        .messages();
    assert_eq!(refused[0]["error"], "503::shutting_down");
    assert_eq!(refused[0]["advice"]["reconnect"], "handshake");
    bayeux.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_of_an_axum_server_does_not_wait_for_held_connects() {
    let bayeux = Bayeux::builder().timeout(Duration::from_secs(30)).build();
    let app = axum::Router::new().layer(tower_bayeux::BayeuxLayer::new(bayeux.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let bayeux = bayeux.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                    bayeux.shutdown().await;
                })
                .await
        }
    });
    // A real client over TCP, holding a connect.
    let url = format!("http://{addr}/cometd");
    let handshake = raw_post(&url, None, &json!([handshake_message("1")]).to_string()).await;
    let cookie = handshake.0.unwrap();
    let client_id = handshake.1[0]["clientId"].as_str().unwrap().to_owned();
    let connect = |timeout: Option<u64>| {
        let mut message = json!({"channel": "/meta/connect", "clientId": client_id});
        if let Some(timeout) = timeout {
            message["advice"] = json!({"timeout": timeout});
        }
        json!([message]).to_string()
    };
    raw_post(&url, Some(&cookie), &connect(Some(0))).await;
    let held = tokio::spawn({
        let (url, cookie, body) = (url.clone(), cookie.clone(), connect(None));
        async move { raw_post(&url, Some(&cookie), &body).await }
    });
    held_connects(&bayeux, 1).await;
    let start = std::time::Instant::now();
    stop.send(()).unwrap();
    let (_, reply) = held.await.unwrap();
    assert_eq!(reply[0]["advice"]["reconnect"], "retry");
    server.await.unwrap().unwrap();
    // The held connect would have lasted 30 s.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

/// Waits until the engine holds `n` connects.
async fn held_connects(bayeux: &Bayeux, n: usize) {
    while bayeux.stats().held_connects != n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Runs an axum server with `bayeux` on a runtime of its own, in a thread; `stop` starts its
/// graceful shutdown (which calls `Bayeux::shutdown`). When `axum::serve` returns, the runtime
/// is dropped at once, as a process exiting would drop it: whatever was not done is lost.
/// The thread's handle joins once the runtime is gone.
#[cfg(feature = "websocket")]
fn server_in_its_own_runtime(
    bayeux: &Bayeux,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let bayeux = bayeux.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().layer(tower_bayeux::BayeuxLayer::new(bayeux.clone()));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                    bayeux.shutdown().await;
                })
                .await
                .unwrap();
        });
        runtime.shutdown_background();
    });
    (addr_rx.recv().unwrap(), stop, thread)
}

#[cfg(feature = "websocket")]
#[tokio::test]
async fn websockets_get_their_close_frame_before_a_graceful_shutdown_ends() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    /// An extension that takes a while over connect replies (as one asking a database would).
    struct SlowConnectReplies;
    impl tower_bayeux::Extension for SlowConnectReplies {
        async fn outgoing(
            &self,
            _: Option<&tower_bayeux::ServerSession>,
            _: Option<&tower_bayeux::Message>,
            message: &mut tower_bayeux::Message,
        ) -> bool {
            if message.channel == "/meta/connect" {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            true
        }
    }

    let bayeux = Bayeux::builder()
        .timeout(Duration::from_secs(30))
        .extension(SlowConnectReplies)
        .build();
    let (addr, stop, server) = server_in_its_own_runtime(&bayeux);
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = tokio_tungstenite::client_async(
            format!("ws://{addr}/cometd"),
            tokio::net::TcpStream::connect(addr).await.unwrap(),
        )
        .await
        .unwrap();
        let mut call = async |message: Value| {
            ws.send(Frame::text(json!([message]).to_string()))
                .await
                .unwrap();
            let Some(Ok(Frame::Text(text))) = ws.next().await else {
                panic!("a reply")
            };
            serde_json::from_str::<Value>(&text).unwrap()
        };
        let handshake = call(json!({"channel": "/meta/handshake", "version": "1.0"})).await;
        let id = handshake[0]["clientId"].clone();
        let connect = |timeout| {
            json!({"channel": "/meta/connect", "clientId": id, "connectionType": "websocket",
                "advice": {"timeout": timeout}})
        };
        call(connect(0)).await;
        ws.send(Frame::text(json!([connect(30_000)]).to_string()))
            .await
            .unwrap();
        sockets.push(ws);
    }
    held_connects(&bayeux, 3).await;
    stop.send(()).unwrap();
    // The server's runtime is gone: what it did not send before, it never will.
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
    for mut ws in sockets {
        let Some(Ok(Frame::Text(text))) = ws.next().await else {
            panic!("the held connect's reply")
        };
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reply[0]["channel"], "/meta/connect");
        assert_eq!(reply[0]["advice"]["reconnect"], "retry");
        match ws.next().await {
            Some(Ok(Frame::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected the close frame, got {other:?}"),
        }
    }
}

/// A POST over a fresh TCP connection: (the cookie it set, the JSON reply).
async fn raw_post(url: &str, cookie: Option<&str>, body: &str) -> (Option<String>, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{cookie}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let set_cookie = head
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
        .map(|line| {
            line["set-cookie:".len()..]
                .trim()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        });
    (
        set_cookie,
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

// ---------------------------------------------------------------------------------------------
// Session-removed listeners
// ---------------------------------------------------------------------------------------------

/// A gate listeners wait at until the test opens it.
fn gate() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(0))
}

/// Adds a removal listener that waits at `gate`, then records `name`.
fn slow_listener(
    bayeux: &Bayeux,
    client: &Client,
    gate: &Arc<tokio::sync::Semaphore>,
    log: &Arc<Mutex<Vec<String>>>,
    name: &str,
) {
    let (gate, log, name) = (gate.clone(), log.clone(), name.to_owned());
    bayeux
        .session(&client.client_id)
        .unwrap()
        .on_removed(move |_, reason| async move {
            let _ = gate.acquire().await.unwrap();
            log.lock().unwrap().push(format!("{name} {reason:?}"));
        });
}

#[tokio::test(start_paused = true)]
async fn a_slow_removal_listener_holds_up_neither_a_publisher_nor_other_sessions() {
    let bayeux = Bayeux::builder()
        .max_queue_messages(1)
        .queue_full_policy(QueueFullPolicy::Disconnect)
        .max_interval(Duration::from_secs(1))
        .sweep_period(Duration::from_millis(100))
        .build();
    let closed = gate();
    let log = Arc::new(Mutex::new(Vec::new()));
    // A session whose queue overflows while its listener is stuck.
    let overflowing = Client::connected(&bayeux).await;
    overflowing.subscribe("/room").await;
    slow_listener(&bayeux, &overflowing, &closed, &log, "overflowing");
    for n in 0..3 {
        tokio::time::timeout(Duration::from_secs(1), bayeux.publish("/room", json!(n)))
            .await
            .expect("the publisher does not wait on the listener")
            .unwrap();
    }
    assert!(bayeux.session(&overflowing.client_id).is_none());
    // Two sessions expiring in the same sweep: one listener stuck, the other runs.
    let stuck = Client::connected(&bayeux).await;
    slow_listener(&bayeux, &stuck, &closed, &log, "stuck");
    let free = Client::connected(&bayeux).await;
    let open = gate();
    open.add_permits(1);
    slow_listener(&bayeux, &free, &open, &log, "free");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(bayeux.session_count(), 0);
    assert_eq!(*log.lock().unwrap(), ["free Timeout"]);
    closed.add_permits(2);
    settle().await;
    let mut ran = log.lock().unwrap().clone();
    ran.sort();
    assert_eq!(
        ran,
        ["free Timeout", "overflowing QueueFull", "stuck Timeout"]
    );
}

#[tokio::test(start_paused = true)]
async fn removal_listeners_run_in_order_past_a_panic_and_shutdown_waits_for_them() {
    let bayeux = Bayeux::builder().build();
    let log = Arc::new(Mutex::new(Vec::new()));
    let client = Client::connected(&bayeux).await;
    let session = bayeux.session(&client.client_id).unwrap();
    let first = log.clone();
    session.on_removed(move |_, _| async move {
        first.lock().unwrap().push("first".to_owned());
        panic!("a listener bug");
    });
    let closed = gate();
    slow_listener(&bayeux, &client, &closed, &log, "second");
    let shutdown = tokio::spawn({
        let bayeux = bayeux.clone();
        async move { bayeux.shutdown().await }
    });
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(*log.lock().unwrap(), ["first"]);
    assert!(!shutdown.is_finished(), "shutdown waits for the listener");
    closed.add_permits(1);
    shutdown.await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["first", "second Shutdown"]);
}

// ---------------------------------------------------------------------------------------------
// Churn
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn ten_thousand_vanishing_sessions_leave_nothing_behind() {
    let bayeux = Bayeux::builder()
        .max_interval(Duration::from_secs(2))
        .sweep_period(Duration::from_millis(500))
        .build();
    let removed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    bayeux.on_event({
        let removed = removed.clone();
        move |event| {
            if let ServerEvent::SessionRemoved { reason, .. } = event {
                assert_eq!(*reason, RemoveReason::Timeout);
                removed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    for i in 0..10_000 {
        let client = Client::handshaken(&bayeux, None).await;
        // Every other one subscribes and connects once before vanishing.
        if i % 2 == 0 {
            client.subscribe(&format!("/room/{}", i % 100)).await;
            client.connect(Some(0)).await;
        }
    }
    let during = bayeux.stats();
    assert_eq!((during.sessions, during.browsers), (10_000, 10_000));
    assert_eq!(during.channels, 50, "even rooms only");
    bayeux
        .publish("/room/0", json!("into the void"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(removed.load(std::sync::atomic::Ordering::Relaxed), 10_000);
    let after = bayeux.stats();
    // The running totals stay; everything held is gone.
    assert_eq!(
        (after.messages_published, after.messages_delivered),
        (1, 100)
    );
    let mut baseline = tower_bayeux::Stats::default();
    baseline.messages_published = after.messages_published;
    baseline.messages_delivered = after.messages_delivered;
    assert_eq!(after, baseline, "back to baseline");
}
