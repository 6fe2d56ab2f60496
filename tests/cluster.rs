//! Several nodes sharing one Bayeux space through a real Redis (`redis-server` started by the
//! test on a free port, without persistence): cross-node publish and delivery, interest,
//! faults.
//!
//! Each guarantee is tested against the scenario that would break it:
//! - exactly once: a node subscribed to a channel and to patterns matching it receives one
//!   Redis copy per subscription, and a session subscribed to several of them must still get
//!   one delivery;
//! - per-publisher order: publishers on both nodes, each also subscribed, racing each other;
//! - interest: a node must leave a Redis channel when its last local subscriber leaves (by
//!   unsubscribing or by going away), and a node with no subscriber must get no traffic;
//! - faults: Redis restarted or the subscriber connection killed during traffic must end in
//!   traffic flowing again with the gap reported, a flood must not grow memory, and a node
//!   gone must turn deliveries to its sessions into errors.
#![cfg(feature = "redis")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::redis::RedisServer;
use common::{Client, data_of, deliveries};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout};
use tower_bayeux::{
    Bayeux, BayeuxBuilder, Error, Message, RedisBroker, Retention, ServerEvent, ServerSession,
    SessionExtension,
};

/// Every test is bounded: a hang is a failure.
const LIMIT: Duration = Duration::from_secs(60);

fn builder(redis: &RedisServer) -> BayeuxBuilder {
    Bayeux::builder()
        .timeout(Duration::from_millis(500))
        .broker(RedisBroker::new(redis.url()).prefix("test:"))
}

fn node(redis: &RedisServer) -> Bayeux {
    builder(redis).build()
}

/// Connects (each connect held at most half a second) until the `data` of the deliveries
/// received satisfy `done`, or fails after ten seconds.
async fn receive_until(client: &Client, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while !done(&got) {
        assert!(
            Instant::now() < deadline,
            "not received in time; got {got:?}"
        );
        got.extend(data_of(&client.connect(None).await));
    }
    got
}

/// Receives until `n` deliveries have come.
async fn receive(client: &Client, n: usize) -> Vec<Value> {
    receive_until(client, |got| got.len() >= n).await
}

/// Waits (up to ten seconds) until `condition` holds.
async fn eventually(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many subscribers Redis has on the Redis channel of Bayeux channel `name`.
async fn subscribers(redis: &RedisServer, name: &str) -> i64 {
    let counts: Vec<(String, i64)> = redis
        .query(
            redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(format!("test:{name}")),
        )
        .await;
    counts[0].1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_nodes_both_ways() {
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let (a, b) = (node(&redis), node(&redis));
        let on_a = Client::connected(&a).await;
        let on_b = Client::connected(&b).await;
        for client in [&on_a, &on_b] {
            assert_eq!(client.subscribe("/chat/room").await["successful"], true);
        }

        on_b.publish("/chat/room", json!("from b")).await;
        on_a.publish("/chat/room", json!("from a")).await;
        for client in [&on_a, &on_b] {
            let mut got = receive(client, 2).await;
            // Two publishers: no order between them (a node's own publish may overtake one
            // that crosses Redis).
            got.sort_by_key(Value::to_string);
            assert_eq!(got, [json!("from a"), json!("from b")], "one of each");
        }
        // The message as queued on the other node is the message as published.
        let published = Client::connected(&b).await;
        published.publish("/chat/room", json!({"n": 1})).await;
        let reply = on_a.connect(None).await;
        assert_eq!(
            deliveries(&reply),
            [&json!({"channel": "/chat/room", "data": {"n": 1}})]
        );

        let (stats_a, stats_b) = (a.stats().broker.unwrap(), b.stats().broker.unwrap());
        assert!(stats_a.connected && stats_b.connected);
        assert_eq!((stats_a.messages_out, stats_a.messages_in), (1, 2));
        assert_eq!((stats_b.messages_out, stats_b.messages_in), (2, 1));
        assert_eq!((stats_a.subscriptions, stats_b.subscriptions), (1, 1));
        assert_eq!(stats_a.dropped_in + stats_a.dropped_out, 0);
        // The clientIds name their node.
        assert_ne!(on_a.client_id[..8], on_b.client_id[..8]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_wildcard_subscriptions_deliver_one_copy() {
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let (a, b) = (node(&redis), node(&redis));
        // On A, one session subscribed to the channel and every pattern matching it (A gets
        // four Redis copies of each message), one to a single pattern; on B, the publisher's
        // own node, a local subscriber with overlapping subscriptions too.
        let everything = Client::connected(&a).await;
        for subscription in ["/chat/room", "/chat/*", "/chat/**", "/**"] {
            assert_eq!(everything.subscribe(subscription).await["successful"], true);
        }
        let pattern = Client::connected(&a).await;
        pattern.subscribe("/chat/*").await;
        let local = Client::connected(&b).await;
        local.subscribe("/chat/**").await;
        local.subscribe("/chat/room").await;
        assert_eq!(
            redis.channels().await.len(),
            2 + 4,
            "the node channels and A's four: {:?}",
            redis.channels().await
        );

        let publisher = Client::connected(&b).await;
        for n in 0..20 {
            publisher.publish("/chat/room", json!(n)).await;
        }
        publisher.publish("/chat/room", json!("end")).await;
        // Every copy of a message arrives before any copy of the next: once "end" is here, a
        // duplicate would have shown.
        let expected: Vec<Value> = (0..20).map(Value::from).chain([json!("end")]).collect();
        for client in [&everything, &pattern, &local] {
            let got = receive_until(client, |got| got.last() == Some(&json!("end"))).await;
            assert_eq!(got, expected);
        }
        assert_eq!(a.stats().broker.unwrap().messages_in, 21);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_publish_reaches_every_node_and_listeners_run_where_published() {
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let (a, b) = (node(&redis), node(&redis));
        let heard = |bayeux: &Bayeux| {
            let count = Arc::new(AtomicUsize::new(0));
            let counter = count.clone();
            bayeux.channel("/news").add_listener(move |event| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move { event.proceed() }
            });
            count
        };
        let (heard_a, heard_b) = (heard(&a), heard(&b));
        let reader = Client::connected(&a).await;
        reader.subscribe("/news").await;

        b.publish("/news", json!("server-side on b")).await.unwrap();
        let publisher = Client::connected(&b).await;
        publisher.publish("/news", json!("client on b")).await;
        assert_eq!(
            receive(&reader, 2).await,
            [json!("server-side on b"), json!("client on b")]
        );
        // A client's publish runs the channel's listeners on the node of its session only.
        assert_eq!(heard_b.load(Ordering::SeqCst), 1);
        assert_eq!(heard_a.load(Ordering::SeqCst), 0);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_reaches_a_session_on_another_node_and_fails_once_that_node_is_gone() {
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let (a, b) = (node(&redis), node(&redis));
        let on_a = Client::connected(&a).await;
        // B has started its broker (it works once it has handshaken someone).
        let _on_b = Client::connected(&b).await;

        b.deliver(&on_a.client_id, "/direct", json!("to you"))
            .await
            .unwrap();
        let reply = on_a.connect(None).await;
        assert_eq!(
            deliveries(&reply),
            [&json!({"channel": "/direct", "data": "to you"})]
        );

        // From a node that has served nobody yet (its broker starts on demand).
        let c = node(&redis);
        c.deliver(&on_a.client_id, "/direct", json!("from c"))
            .await
            .unwrap();
        assert_eq!(data_of(&on_a.connect(None).await), [json!("from c")]);

        // Not an id of this space: no node could hold it.
        let err = b
            .deliver("not-an-id", "/direct", json!(1))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::SessionUnknown(_)), "{err:?}");

        let gone = on_a.client_id.clone();
        a.shutdown().await;
        // B's and C's node channels are left.
        eventually("A leaves Redis", async || redis.channels().await.len() == 2).await;
        let err = b.deliver(&gone, "/direct", json!(1)).await.unwrap_err();
        assert!(
            matches!(&err, Error::NodeUnreachable { client_id, .. } if *client_id == gone),
            "{err:?}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_listens_to_a_channel_only_while_it_has_subscribers_for_it() {
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let (a, b) = (node(&redis), node(&redis));
        let first = Client::connected(&a).await;
        let second = Client::connected(&a).await;
        let on_b = Client::connected(&b).await;
        assert_eq!(subscribers(&redis, "/chat/room").await, 0);

        first.subscribe("/chat/room").await;
        // The subscribe reply came after the Redis subscription held.
        assert_eq!(subscribers(&redis, "/chat/room").await, 1);
        second.subscribe("/chat/room").await;
        on_b.subscribe("/chat/room").await;
        assert_eq!(subscribers(&redis, "/chat/room").await, 2, "one per node");
        assert_eq!(a.stats().broker.unwrap().subscriptions, 1);

        first.unsubscribe("/chat/room").await;
        // One subscriber left on A: A stays.
        on_b.unsubscribe("/chat/room").await;
        eventually("B leaves", async || {
            subscribers(&redis, "/chat/room").await == 1
        })
        .await;
        // The last subscriber on A goes away without unsubscribing.
        second
            .send(vec![json!({"channel": "/meta/disconnect"})])
            .await;
        eventually("A leaves", async || {
            subscribers(&redis, "/chat/room").await == 0
        })
        .await;
        assert_eq!(redis.channels().await.len(), 2, "the node channels only");
        assert_eq!(a.stats().broker.unwrap().subscriptions, 0);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_subscribers_for_a_channel_receives_nothing_for_it() {
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let (a, b) = (node(&redis), node(&redis));
        let reader = Client::connected(&a).await;
        reader.subscribe("/chat/room").await;
        let elsewhere = Client::connected(&b).await;
        elsewhere.subscribe("/other/room").await;
        elsewhere.subscribe("/chat/lobby").await;

        let publisher = Client::connected(&a).await;
        for n in 0..50 {
            publisher.publish("/chat/room", json!(n)).await;
        }
        assert_eq!(receive(&reader, 50).await.len(), 50);
        // B is subscribed elsewhere in the same tree; nothing of /chat/room reached it.
        let stats = b.stats().broker.unwrap();
        assert_eq!((stats.messages_in, stats.dropped_in), (0, 0));
        assert_eq!(a.stats().broker.unwrap().messages_out, 50);
    })
    .await
    .unwrap();
}

/// Records the broker events of a node.
fn record_events(bayeux: &Bayeux) -> Arc<Mutex<Vec<String>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    bayeux.on_event(move |event| match event {
        ServerEvent::BrokerConnected { reconnected } => {
            sink.lock()
                .push(format!("connected reconnected={reconnected}"));
        }
        ServerEvent::BrokerDisconnected => sink.lock().push("disconnected".to_owned()),
        _ => {}
    });
    events
}

/// Publishes `{"n": k}` for k = 0, 1, … on `/chat/room` from a client of `bayeux` every few
/// milliseconds until the returned handle is aborted.
async fn publish_forever(bayeux: &Bayeux) -> tokio::task::JoinHandle<()> {
    let publisher = Client::connected(bayeux).await;
    tokio::spawn(async move {
        for n in 0.. {
            publisher.publish("/chat/room", json!({"n": n})).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

/// The numbers of `{"n": k}` deliveries: strictly increasing (in order, no duplicate).
fn numbers(got: &[Value]) -> Vec<u64> {
    let numbers: Vec<u64> = got.iter().map(|d| d["n"].as_u64().unwrap()).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "out of order or duplicated: {numbers:?}"
    );
    numbers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_resumes_after_redis_restarts_and_the_gap_is_reported() {
    timeout(LIMIT, async {
        let mut redis = RedisServer::start().await;
        let (a, b) = (node(&redis), node(&redis));
        let events = record_events(&a);
        let reader = Client::connected(&a).await;
        reader.subscribe("/chat/room").await;
        let publishing = publish_forever(&b).await;
        let before = receive(&reader, 20).await;

        redis.stop();
        // Both nodes keep serving their own clients meanwhile.
        let local = Client::connected(&a).await;
        local.publish("/chat/room", json!({"n": 1_000_000})).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        redis.restart().await;

        // Traffic from B flows again once A has subscribed anew.
        let last_before = *numbers(&before).last().unwrap();
        let after = receive_until(&reader, |got| {
            got.iter()
                .filter_map(|d| d["n"].as_u64())
                .any(|n| n > last_before + 200 && n < 1_000_000)
        })
        .await;
        publishing.abort();
        let mut all = before;
        all.extend(after.iter().filter(|d| d["n"] != 1_000_000).cloned());
        numbers(&all);
        assert!(after.contains(&json!({"n": 1_000_000})), "A served its own");

        // Its publishing connection comes back on its own, not only when A publishes.
        eventually("A connected both ways", async || {
            a.stats().broker.unwrap().connected
        })
        .await;
        let stats = a.stats().broker.unwrap();
        assert!(stats.reconnects >= 1, "{stats:?}");
        assert_eq!(stats.subscriptions, 1, "re-subscribed");
        let events = events.lock().clone();
        assert!(
            events.starts_with(&["connected reconnected=false".to_owned()])
                && events.contains(&"disconnected".to_owned())
                && events.ends_with(&["connected reconnected=true".to_owned()]),
            "{events:?}"
        );
        // What B could not send while Redis was down is counted.
        assert!(b.stats().broker.unwrap().dropped_out >= 1);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_while_redis_is_down_serve_alone_then_join() {
    timeout(LIMIT, async {
        let mut redis = RedisServer::not_started();
        let (a, b) = (node(&redis), node(&redis));
        let reader = Client::connected(&a).await;
        assert_eq!(reader.subscribe("/chat/room").await["successful"], true);
        let local = Client::connected(&a).await;
        local.publish("/chat/room", json!("alone")).await;
        assert_eq!(receive(&reader, 1).await, [json!("alone")]);
        let remote = Client::connected(&b).await;
        remote.publish("/chat/room", json!("lost")).await;
        let stats = a.stats().broker.unwrap();
        assert!(!stats.connected);
        assert_eq!(stats.subscriptions, 0, "none made yet");

        redis.restart().await;
        eventually("both nodes connect", async || {
            a.stats().broker.unwrap().connected && b.stats().broker.unwrap().connected
        })
        .await;
        // A subscribed to the channel its client had asked for while Redis was down.
        assert_eq!(a.stats().broker.unwrap().subscriptions, 1);
        remote.publish("/chat/room", json!("joined")).await;
        let got = receive_until(&reader, |got| got.contains(&json!("joined"))).await;
        // What B published before it could reach Redis was dropped and counted, or sent late
        // (B was still trying to connect), when A may not have been subscribed yet: Redis
        // pub/sub is at most once.
        let dropped = b.stats().broker.unwrap().dropped_out;
        match dropped {
            0 => assert!(got == [json!("joined")] || got == [json!("lost"), json!("joined")]),
            1 => assert_eq!(got, [json!("joined")]),
            _ => panic!("dropped {dropped}"),
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscriber_connection_is_recovered_during_a_burst() {
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let (a, b) = (node(&redis), node(&redis));
        let reader = Client::connected(&a).await;
        reader.subscribe("/chat/room").await;
        let publishing = publish_forever(&b).await;
        let before = receive(&reader, 10).await;

        // What Redis does to a subscriber past its `client-output-buffer-limit pubsub`.
        let killed: i64 = redis
            .query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"))
            .await;
        assert_eq!(killed, 2, "both nodes' subscribing connections");

        let last_before = *numbers(&before).last().unwrap();
        let after = receive_until(&reader, |got| {
            got.iter()
                .any(|d| d["n"].as_u64().unwrap() > last_before + 100)
        })
        .await;
        publishing.abort();
        let mut all = before;
        all.extend(after);
        numbers(&all);
        let stats = a.stats().broker.unwrap();
        assert_eq!(stats.reconnects, 1, "{stats:?}");
        assert_eq!(stats.subscriptions, 1);
    })
    .await
    .unwrap();
}

/// Holds every delivery to its session until the test lets it pass.
struct Gate(Arc<Semaphore>);

impl SessionExtension for Gate {
    async fn outgoing(&self, _: &ServerSession, _: Option<&Message>, _: &mut Message) -> bool {
        self.0.acquire().await.unwrap().forget();
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_falls_behind_drops_and_counts_what_does_not_fit_its_inbound_buffer() {
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let a = builder(&redis)
            .broker(
                RedisBroker::new(redis.url())
                    .prefix("test:")
                    .inbound_capacity(4),
            )
            .build();
        let b = node(&redis);
        let reader = Client::connected(&a).await;
        reader.subscribe("/chat/room").await;
        let gate = Arc::new(Semaphore::new(0));
        a.session(&reader.client_id)
            .unwrap()
            .add_extension(Gate(gate.clone()));

        // A takes one message and waits in the gated extension; 4 more fit its buffer, the
        // rest is dropped (all of it if the 50 come before A takes the first).
        let publisher = Client::connected(&b).await;
        for n in 0..50 {
            publisher.publish("/chat/room", json!({"n": n})).await;
        }
        eventually("A drops what does not fit", async || {
            a.stats().broker.unwrap().dropped_in >= 45
        })
        .await;
        gate.add_permits(1_000);
        let dropped = a.stats().broker.unwrap().dropped_in;
        assert!(dropped <= 46, "{dropped}");
        let got = receive(&reader, 50 - dropped as usize).await;
        assert_eq!(numbers(&got)[..4], [0, 1, 2, 3]);
        // Once through, traffic flows as usual.
        publisher.publish("/chat/room", json!({"n": 50})).await;
        assert_eq!(receive(&reader, 1).await, [json!({"n": 50})]);
        let stats = a.stats().broker.unwrap();
        assert_eq!(
            (stats.messages_in, stats.dropped_in),
            (51 - dropped, dropped)
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_of_a_stopped_node_handshake_again_on_another_and_work() {
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let (a, b) = (node(&redis), node(&redis));
        let moving = Client::connected(&a).await;
        moving.subscribe("/chat/room").await;
        let on_b = Client::connected(&b).await;
        a.shutdown().await;

        // The load balancer now sends the client to B, which does not know its session.
        let mut moved = Client::from_parts(&b, moving.cookie.clone(), &moving.client_id);
        let reply = moved.connect(None).await;
        let reply = reply.last().unwrap();
        assert_eq!(reply["successful"], false);
        assert!(
            reply["error"].as_str().unwrap().starts_with("402"),
            "{reply}"
        );
        assert_eq!(reply["advice"]["reconnect"], "handshake");

        // As the client does on that advice: handshake, subscribe again, connect.
        let fresh = Client::connected(&b).await;
        moved.client_id = fresh.client_id.clone();
        moved.cookie = fresh.cookie.clone();
        moved.subscribe("/chat/room").await;
        on_b.publish("/chat/room", json!("welcome back")).await;
        assert_eq!(receive(&moved, 1).await, [json!("welcome back")]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_publishers_messages_arrive_once_and_in_order_with_publishers_on_both_nodes() {
    const CLIENTS_PER_NODE: usize = 3;
    const MESSAGES: u64 = 40;
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let (a, b) = (node(&redis), node(&redis));
        // Every client subscribes, then publishes its own numbered messages while receiving
        // everyone's, its own included, the two racing on the same session.
        let mut clients = Vec::new();
        for (index, bayeux) in [&a, &b]
            .into_iter()
            .cycle()
            .take(2 * CLIENTS_PER_NODE)
            .enumerate()
        {
            let client = Client::connected(bayeux).await;
            client.subscribe("/chat/room").await;
            clients.push((index, Arc::new(client)));
        }
        let total = clients.len() * MESSAGES as usize;
        let mut tasks = Vec::new();
        for (index, client) in &clients {
            let (index, publisher) = (*index, client.clone());
            tasks.push(tokio::spawn(async move {
                for n in 0..MESSAGES {
                    publisher
                        .publish("/chat/room", json!({"from": index, "n": n}))
                        .await;
                    if (n + index as u64).is_multiple_of(7) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }));
            let receiver = client.clone();
            tasks.push(tokio::spawn(async move {
                let got = receive(&receiver, total).await;
                assert_eq!(got.len(), total, "client {index}: more than expected");
                for from in 0..2 * CLIENTS_PER_NODE {
                    let sequence: Vec<u64> = got
                        .iter()
                        .filter(|d| d["from"] == from)
                        .map(|d| d["n"].as_u64().unwrap())
                        .collect();
                    assert_eq!(
                        sequence,
                        (0..MESSAGES).collect::<Vec<_>>(),
                        "client {index} received publisher {from}'s messages so"
                    );
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Channel history kept in Redis, shared by the nodes
// ---------------------------------------------------------------------------------------------

fn history_node(redis: &RedisServer) -> Bayeux {
    builder(redis)
        .history("/chat/**", Retention::last(100))
        .build()
}

/// Connects until `n` deliveries came (or ten seconds passed); returns the whole messages.
async fn receive_messages(client: &Client, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "not received in time; got {got:?}"
        );
        got.extend(deliveries(&client.connect(None).await).into_iter().cloned());
    }
    assert_eq!(got.len(), n, "more than expected: {got:?}");
    got
}

fn offsets(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["ext"]["history"]["offset"].as_u64().unwrap())
        .collect()
}

/// Subscribes resuming after `since` in `epoch`; returns the reply.
async fn resume(client: &Client, channel: &str, since: u64, epoch: &str) -> Value {
    let reply = client
        .send(vec![json!({
            "channel": "/meta/subscribe",
            "subscription": channel,
            "ext": {"history": {"since": since, "epoch": epoch}},
        })])
        .await;
    reply.last().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_share_one_history_with_one_order_of_offsets() {
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let (a, b) = (history_node(&redis), history_node(&redis));
        // Readers on both nodes; publishers on both, racing.
        let readers = [Client::connected(&a).await, Client::connected(&b).await];
        let mut epochs = Vec::new();
        for reader in &readers {
            let reply = reader.subscribe("/chat/room").await;
            epochs.push(reply["ext"]["history"]["epoch"].clone());
            assert_eq!(reply["ext"]["history"]["offset"], 0);
        }
        assert_eq!(
            epochs[0], epochs[1],
            "one epoch for the channel in the whole space"
        );
        let mut publishing = Vec::new();
        for (from, bayeux) in [&a, &b, &a, &b].into_iter().enumerate() {
            let publisher = Client::connected(bayeux).await;
            publishing.push(tokio::spawn(async move {
                let mut positions = Vec::new();
                for n in 0..25 {
                    let reply = publisher
                        .publish("/chat/room", json!({"from": from, "n": n}))
                        .await;
                    positions.push(reply.last().unwrap()["ext"]["history"]["offset"].clone());
                }
                positions
            }));
        }
        let mut published = Vec::new();
        for task in publishing {
            published.extend(task.await.unwrap());
        }
        published.sort_by_key(|offset| offset.as_u64());
        assert_eq!(
            published,
            (1..=100).map(Value::from).collect::<Vec<_>>(),
            "every publish got its own offset"
        );
        let mut orders = Vec::new();
        for reader in &readers {
            let got = receive_messages(reader, 100).await;
            assert_eq!(
                offsets(&got),
                (1..=100).collect::<Vec<_>>(),
                "in offset order"
            );
            for from in 0..4 {
                let sequence: Vec<u64> = got
                    .iter()
                    .filter(|m| m["data"]["from"] == from)
                    .map(|m| m["data"]["n"].as_u64().unwrap())
                    .collect();
                assert_eq!(sequence, (0..25).collect::<Vec<_>>());
            }
            orders.push(got);
        }
        assert_eq!(
            orders[0], orders[1],
            "the same messages in the same order on both nodes"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_node_after_its_node_stopped() {
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let (a, b) = (history_node(&redis), history_node(&redis));
        let writer = Client::connected(&b).await;
        let moving = Client::connected(&a).await;
        let epoch = moving.subscribe("/chat/room").await["ext"]["history"]["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
        for n in 1..=3 {
            writer.publish("/chat/room", json!(n)).await;
        }
        assert_eq!(offsets(&receive_messages(&moving, 3).await), [1, 2, 3]);
        a.shutdown().await;
        for n in 4..=6 {
            writer.publish("/chat/room", json!(n)).await;
        }

        // On B, a new session resumes where the old one stopped.
        let moved = Client::connected(&b).await;
        let reply = resume(&moved, "/chat/room", 3, &epoch).await;
        assert_eq!(
            reply["ext"]["history"],
            json!({"recovered": true, "epoch": epoch, "offset": 6})
        );
        writer.publish("/chat/room", json!(7)).await;
        let got = receive_messages(&moved, 4).await;
        assert_eq!(offsets(&got), [4, 5, 6, 7]);
        assert_eq!(data_of(&got), [json!(4), json!(5), json!(6), json!(7)]);
        let page = b
            .history("/chat/room", Some(5), Some(&epoch))
            .await
            .unwrap();
        assert!(page.recovered);
        assert_eq!(page.messages.len(), 2);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_subscription_racing_publishes_on_another_node_gets_every_offset_once() {
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let (a, b) = (history_node(&redis), history_node(&redis));
        const MESSAGES: u64 = 200;
        let publisher = Client::connected(&a).await;
        let publishing = tokio::spawn(async move {
            for n in 0..MESSAGES {
                publisher.publish("/chat/race", json!(n)).await;
            }
        });
        // Readers join on B while A publishes, each resuming a few messages back.
        let mut readers = Vec::new();
        for reader in 0..6u64 {
            let b = b.clone();
            readers.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(reader * 7)).await;
                let client = Client::connected(&b).await;
                let page = b.history("/chat/race", None, None).await.unwrap();
                let since = page.offset.saturating_sub(3);
                let reply = resume(&client, "/chat/race", since, &page.epoch).await;
                assert_eq!(reply["ext"]["history"]["recovered"], true, "{reply}");
                let got = receive_messages(&client, (MESSAGES - since) as usize).await;
                assert_eq!(
                    offsets(&got),
                    (since + 1..=MESSAGES).collect::<Vec<_>>(),
                    "reader {reader} after {since}"
                );
            }));
        }
        publishing.await.unwrap();
        for reader in readers {
            reader.await.unwrap();
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_node_missed_is_read_back_from_the_history() {
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let a = builder(&redis)
            .broker(
                RedisBroker::new(redis.url())
                    .prefix("test:")
                    .inbound_capacity(4),
            )
            .history("/chat/**", Retention::last(100))
            .build();
        let b = history_node(&redis);
        let reader = Client::connected(&a).await;
        reader.subscribe("/chat/room").await;
        let gate = Arc::new(Semaphore::new(0));
        a.session(&reader.client_id)
            .unwrap()
            .add_extension(Gate(gate.clone()));
        // A holds one message in the gated extension, 4 wait in its buffer, the rest is
        // dropped there.
        let publisher = Client::connected(&b).await;
        for n in 1..=50 {
            publisher.publish("/chat/room", json!(n)).await;
        }
        eventually("A drops what does not fit", async || {
            a.stats().broker.unwrap().dropped_in >= 45
        })
        .await;
        gate.add_permits(10_000);
        // The next message shows the gap: A reads the missing ones back first.
        publisher.publish("/chat/room", json!(51)).await;
        let got = receive_messages(&reader, 51).await;
        assert_eq!(offsets(&got), (1..=51).collect::<Vec<_>>());
        let stats = a.stats().broker.unwrap();
        // Every dropped message was read back (and the 51st too, if it was published by the
        // time A read the history back: its live copy was then skipped).
        assert!(
            (stats.dropped_in..=stats.dropped_in + 1).contains(&stats.recovered),
            "{stats:?}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_starts_a_new_epoch_and_old_positions_are_not_recovered() {
    timeout(LIMIT, async {
        let mut redis = RedisServer::start().await;
        let (a, b) = (history_node(&redis), history_node(&redis));
        let writer = Client::connected(&a).await;
        for n in 1..=3 {
            writer.publish("/chat/room", json!(n)).await;
        }
        let old = b.history("/chat/room", None, None).await.unwrap();
        assert_eq!((old.offset, old.messages.len()), (3, 3));

        redis.restart().await;
        // While the nodes reconnect, a publish on a channel with history may be refused (it
        // cannot get its offset); once they are back it goes through.
        eventually("both nodes reconnect", async || {
            a.stats().broker.unwrap().connected && b.stats().broker.unwrap().connected
        })
        .await;
        let reply = writer.publish("/chat/room", json!(4)).await;
        let position = &reply.last().unwrap()["ext"]["history"];
        assert_eq!(position["offset"], 1, "the history was lost with Redis");
        assert_ne!(position["epoch"], old.epoch.as_str());

        let late = Client::connected(&b).await;
        let reply = resume(&late, "/chat/room", 3, &old.epoch).await;
        assert_eq!(reply["ext"]["history"]["recovered"], false);
        assert_eq!(reply["ext"]["history"]["offset"], 1);
        writer.publish("/chat/room", json!(5)).await;
        let got = receive_messages(&late, 1).await;
        assert_eq!(offsets(&got), [2], "nothing old, then live");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_publish_with_history_is_refused_not_lost() {
    timeout(LIMIT, async {
        let redis = RedisServer::not_started();
        let a = history_node(&redis);
        let client = Client::connected(&a).await;
        let reply = client.subscribe("/chat/room").await;
        assert_eq!(reply["successful"], true);
        assert_eq!(reply["ext"]["history"], json!({"recovered": false}));
        let reply = client.publish("/chat/room", json!("x")).await;
        assert_eq!(reply.last().unwrap()["successful"], false);
        assert_eq!(reply.last().unwrap()["error"], "503::history_unavailable");
        let err = a.publish("/chat/room", json!("y")).await.unwrap_err();
        assert!(matches!(err, Error::HistoryUnavailable(_)), "{err:?}");
        // Channels without history still work locally.
        client.subscribe("/plain").await;
        client.publish("/plain", json!("z")).await;
        assert_eq!(data_of(&client.connect(None).await), [json!("z")]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publishes_of_one_request_get_their_positions_in_order() {
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let a = history_node(&redis);
        let reader = Client::connected(&a).await;
        reader.subscribe("/chat/room").await;
        // Sent to Redis one after the other without waiting; answered in that order.
        let replies = reader
            .send(
                (1..=5)
                    .map(|n| json!({"channel": "/chat/room", "data": n}))
                    .collect(),
            )
            .await;
        let positions: Vec<u64> = replies
            .iter()
            .filter(|m| m["successful"] == true)
            .map(|m| m["ext"]["history"]["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(positions, [1, 2, 3, 4, 5]);
        let got = receive_messages(&reader, 5).await;
        assert_eq!(offsets(&got), [1, 2, 3, 4, 5]);
        assert_eq!(data_of(&got), (1..=5).map(Value::from).collect::<Vec<_>>());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_redis_lost_are_loaded_again_and_the_publish_goes_through() {
    timeout(LIMIT, async {
        let redis = RedisServer::start().await;
        let a = history_node(&redis);
        let reader = Client::connected(&a).await;
        reader.subscribe("/chat/room").await;
        reader.publish("/chat/room", json!(1)).await;
        // What a restarted Redis does to the scripts (called by their SHA-1).
        let () = redis.query(redis::cmd("SCRIPT").arg("FLUSH")).await;
        let replies = reader
            .send(vec![
                json!({"channel": "/chat/room", "data": 2}),
                json!({"channel": "/plain", "data": "between"}),
                json!({"channel": "/chat/room", "data": 3}),
            ])
            .await;
        let positions: Vec<Value> = replies
            .iter()
            .filter(|m| m["channel"] == "/chat/room")
            .map(|m| m["ext"]["history"]["offset"].clone())
            .collect();
        assert_eq!(positions, [json!(2), json!(3)], "{replies:?}");
        let page = a.history("/chat/room", Some(0), None).await.unwrap();
        assert_eq!(page.offset, 3);
        assert_eq!(offsets(&receive_messages(&reader, 3).await), [1, 2, 3]);
    })
    .await
    .unwrap();
}
