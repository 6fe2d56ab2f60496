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

use bytes::Bytes;
use common::{Client, Reply, deliveries, send};
use http::{Request, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use tower_bayeux::Bayeux;

const CLIENTS: usize = 8;
const MESSAGES: u64 = 60;
const ROOM: &str = "/room";

/// How the test clients carry their messages.
#[derive(Clone, Copy, Debug)]
enum Http {
    LongPolling,
    #[cfg(feature = "jsonp")]
    CallbackPolling,
}

impl Http {
    /// Sends `messages` for `client` and returns the reply array.
    async fn exchange(self, client: &Client, path: &str, messages: Vec<Value>) -> Vec<Value> {
        match self {
            Self::LongPolling => client.post(path, messages).await.messages(),
            #[cfg(feature = "jsonp")]
            Self::CallbackPolling => {
                let messages = client.stamp(messages);
                let encoded: String =
                    form_urlencoded::byte_serialize(Value::from(messages).to_string().as_bytes())
                        .collect();
                let request = Request::get(format!("{path}?jsonp=cb&message={encoded}"))
                    .header(header::COOKIE, &client.cookie)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let reply: Reply = send(&client.bayeux, request).await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
                let array = reply
                    .body
                    .strip_prefix("/**/cb(")
                    .and_then(|rest| rest.strip_suffix(");"))
                    .unwrap_or_else(|| panic!("not a script: {}", reply.body));
                serde_json::from_str::<Vec<Value>>(array).unwrap()
            }
        }
    }
}

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
async fn chat_room(bayeux: &Bayeux, http: Http) -> Vec<Vec<(u64, u64)>> {
    let total = CLIENTS * MESSAGES as usize;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let client = Client::connected(bayeux).await;
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
                    let reply = http
                        .exchange(&client, "/cometd/connect", vec![connect])
                        .await;
                    record(&log, &reply).await;
                }
            }
        });
        let publishes = tokio::spawn({
            let log = log.clone();
            async move {
                for n in 0..MESSAGES {
                    let publish = json!({"channel": ROOM, "data": {"from": from, "n": n}});
                    let reply = http.exchange(&client, "/cometd/", vec![publish]).await;
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

fn engine() -> Bayeux {
    Bayeux::builder()
        .timeout(Duration::from_secs(2))
        .max_sessions_per_browser(None)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_keeps_per_publisher_order_for_clients_that_publish_too() {
    let bayeux = engine();
    assert_in_order(&chat_room(&bayeux, Http::LongPolling).await);
}

#[cfg(feature = "jsonp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_polling_keeps_per_publisher_order_for_clients_that_publish_too() {
    let bayeux = Bayeux::builder()
        .timeout(Duration::from_secs(2))
        .max_sessions_per_browser(None)
        .callback_polling(true)
        .build();
    assert_in_order(&chat_room(&bayeux, Http::CallbackPolling).await);
}

/// The same room over websocket: each client's publishes and deliveries share one socket, its
/// publishes sent without waiting for their replies (as the CometD client sends them).
#[cfg(feature = "websocket")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_keeps_per_publisher_order_for_clients_that_publish_too() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message as Frame;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let bayeux = engine();
    let total = CLIENTS * MESSAGES as usize;
    let mut sockets = Vec::new();
    for _ in 0..CLIENTS {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (parts, ()) = Request::get("/cometd").body(()).unwrap().into_parts();
        let engine = bayeux.clone();
        tokio::spawn(async move { tower_bayeux::serve_websocket(&engine, server, parts).await });
        let mut ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let mut call = async |message: Value| {
            ws.send(Frame::text(json!([message]).to_string()))
                .await
                .unwrap();
            let Some(Ok(Frame::Text(text))) = ws.next().await else {
                panic!("a reply frame")
            };
            serde_json::from_str::<Vec<Value>>(&text).unwrap()
        };
        let handshake = call(json!({"channel": "/meta/handshake", "version": "1.0",
            "supportedConnectionTypes": ["websocket"]}))
        .await;
        let id = handshake[0]["clientId"].as_str().unwrap().to_owned();
        let connect = |timeout: u64| {
            json!({"channel": "/meta/connect", "clientId": id, "connectionType": "websocket",
                "advice": {"timeout": timeout}})
        };
        call(connect(0)).await;
        let subscribed =
            call(json!({"channel": "/meta/subscribe", "clientId": id, "subscription": ROOM})).await;
        assert_eq!(subscribed[0]["successful"], true);
        ws.send(Frame::text(json!([connect(2000)]).to_string()))
            .await
            .unwrap();
        sockets.push((ws, id));
    }
    let mut readers = Vec::new();
    for (from, (ws, id)) in sockets.into_iter().enumerate() {
        let (mut sink, mut stream) = ws.split();
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
