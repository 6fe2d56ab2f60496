//! Per-publisher delivery order, on every transport, with clients that do what chat clients
//! do: every one of them subscribes to the room *and* publishes to it.
//!
//! The scenario that breaks order over HTTP: a session's queue leaving through two replies at
//! once — its held `/meta/connect` and the reply to its own concurrent publish. The two travel
//! on two connections and the client processes whichever completes first, so a later batch
//! can overtake an earlier one. Subscribers that never publish cannot show it, so here each
//! client runs its connect loop and its publish loop side by side, on a multi-thread runtime,
//! and records deliveries in the order its replies complete, as the CometD clients do.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Client, Transport, deliveries};
use serde_json::{Value, json};
use tower_bayeux::Bayeux;

const CLIENTS: usize = 8;
const MESSAGES: u64 = 60;
const ROOM: &str = "/room";

/// `(publisher, n)` of every delivery on the room, in the order a client processed them.
type Log = Arc<Mutex<Vec<(u64, u64)>>>;

/// Records a reply's deliveries after a random pause, as a network would add between a reply
/// leaving the server and its client processing it (two connections, two delays).
async fn record(log: &Log, reply: &[Value]) {
    for _ in 0..jitter() {
        tokio::task::yield_now().await;
    }
    let mut log = log.lock().unwrap();
    for message in deliveries(reply) {
        if message["channel"] == ROOM {
            let data = &message["data"];
            log.push((data["from"].as_u64().unwrap(), data["n"].as_u64().unwrap()));
        }
    }
}

/// A small random number (0..16).
fn jitter() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(()) % 16
}

/// Every client publishes `MESSAGES` messages to the room it subscribes to, one request at a
/// time, while its connect loop runs; returns what each client received, in processing order.
async fn chat_room(bayeux: &Bayeux, transport: Transport) -> Vec<Vec<(u64, u64)>> {
    let total = CLIENTS * MESSAGES as usize;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let client = Client::connected_over(bayeux, transport).await;
        assert_eq!(client.subscribe(ROOM).await["successful"], true);
        clients.push(client);
    }
    let mut tasks = Vec::new();
    for (from, client) in clients.into_iter().enumerate() {
        let log = Log::default();
        let connects = tokio::spawn({
            let (client, log) = (client.clone(), log.clone());
            async move {
                while log.lock().unwrap().len() < total {
                    let connect = client.connect_message(None);
                    let reply = client.exchange("/cometd/connect", vec![connect]).await;
                    record(&log, &reply).await;
                }
            }
        });
        let publishes = tokio::spawn({
            let log = log.clone();
            async move {
                for n in 0..MESSAGES {
                    let publish = json!({"channel": ROOM, "data": {"from": from, "n": n}});
                    let reply = client.exchange("/cometd/", vec![publish]).await;
                    assert_eq!(reply.last().unwrap()["successful"], true, "{reply:?}");
                    record(&log, &reply).await;
                }
            }
        });
        tasks.push((connects, publishes, log));
    }
    let mut received = Vec::new();
    for (connects, publishes, log) in tasks {
        publishes.await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), connects)
            .await
            .expect("every message arrives")
            .unwrap();
        received.push(log.lock().unwrap().clone());
    }
    received
}

/// Asserts that every client got every publisher's messages exactly once, in publish order.
fn assert_in_order(received: &[Vec<(u64, u64)>]) {
    for (client, log) in received.iter().enumerate() {
        let mut by_publisher: HashMap<u64, Vec<u64>> = HashMap::new();
        for (from, n) in log {
            by_publisher.entry(*from).or_default().push(*n);
        }
        assert_eq!(
            by_publisher.len(),
            CLIENTS,
            "client {client} hears everyone"
        );
        for (from, sequence) in by_publisher {
            assert_eq!(
                sequence,
                (0..MESSAGES).collect::<Vec<_>>(),
                "client {client} received publisher {from}'s messages out of order or not once"
            );
        }
    }
}

fn engine(transport: Transport) -> Bayeux {
    transport
        .builder()
        .timeout(Duration::from_secs(2))
        .max_sessions_per_browser(None)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_keeps_per_publisher_order_for_clients_that_publish_too() {
    let bayeux = engine(Transport::LongPolling);
    assert_in_order(&chat_room(&bayeux, Transport::LongPolling).await);
}

#[cfg(feature = "jsonp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_polling_keeps_per_publisher_order_for_clients_that_publish_too() {
    let bayeux = engine(Transport::CallbackPolling);
    assert_in_order(&chat_room(&bayeux, Transport::CallbackPolling).await);
}

/// The same room over websocket: each client's publishes and deliveries share one socket, its
/// publishes sent without waiting for their replies (as the CometD client sends them).
#[cfg(feature = "websocket")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_keeps_per_publisher_order_for_clients_that_publish_too() {
    use common::websocket::Socket;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Frame;

    let bayeux = engine(Transport::WebSocket);
    let total = CLIENTS * MESSAGES as usize;
    let mut sockets = Vec::new();
    for _ in 0..CLIENTS {
        let mut socket = Socket::connected(&bayeux).await;
        let subscribed = socket
            .call(json!({"channel": "/meta/subscribe", "subscription": ROOM}))
            .await;
        assert_eq!(subscribed[0]["successful"], true);
        let connect = socket.connect_message(Some(2000));
        socket.send(vec![connect]).await;
        sockets.push(socket);
    }
    let mut readers = Vec::new();
    for (from, socket) in sockets.into_iter().enumerate() {
        let id = socket.client_id.clone();
        let (mut sink, mut stream) = socket.ws.split();
        readers.push(tokio::spawn(async move {
            let mut log = Vec::new();
            while log.len() < total {
                let Some(Ok(Frame::Text(text))) = stream.next().await else {
                    panic!("the socket stays open")
                };
                for message in serde_json::from_str::<Vec<Value>>(&text).unwrap() {
                    if message["channel"] == ROOM && message.get("successful").is_none() {
                        let data = &message["data"];
                        log.push((data["from"].as_u64().unwrap(), data["n"].as_u64().unwrap()));
                    }
                }
            }
            log
        }));
        tokio::spawn(async move {
            for n in 0..MESSAGES {
                let publish = json!([{"channel": ROOM, "clientId": id, "id": n.to_string(),
                    "data": {"from": from, "n": n}}]);
                sink.send(Frame::text(publish.to_string())).await.unwrap();
            }
            // Keep the socket open until the readers are done.
            std::future::pending::<()>().await;
        });
    }
    let mut received = Vec::new();
    for reader in readers {
        let log = tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .expect("every message arrives")
            .unwrap();
        received.push(log);
    }
    assert_in_order(&received);
}
