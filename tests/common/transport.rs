//! One session driven the same way over any transport, for the scenarios every transport must
//! pass alike (`tests/transports.rs`).
//!
//! Over long-polling and callback-polling a [`TestClient`] is a [`Client`] (requests through a
//! [`BayeuxService`](tower_bayeux::BayeuxService) with the browser cookie); over websocket it
//! is a [`Socket`] on an in-memory duplex stream. The operations are the same; what differs is
//! where deliveries travel: over HTTP only on `/meta/connect` replies, over websocket pushed at
//! once, in frames of their own or in the frame of a reply.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_bayeux::{Bayeux, BayeuxBuilder};

#[cfg(feature = "websocket")]
use super::websocket::Socket;
use super::{Client, Reply, browser_cookie, deliveries, handshake_message, settle};

/// A Bayeux transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    LongPolling,
    /// Off by default: engines for it come from [`Transport::builder`].
    #[cfg(feature = "jsonp")]
    CallbackPolling,
    #[cfg(feature = "websocket")]
    WebSocket,
}

impl Transport {
    /// The `connectionType` of its connects.
    pub fn connection_type(self) -> &'static str {
        match self {
            Self::LongPolling => "long-polling",
            #[cfg(feature = "jsonp")]
            Self::CallbackPolling => "callback-polling",
            #[cfg(feature = "websocket")]
            Self::WebSocket => "websocket",
        }
    }

    /// Whether it carries messages over HTTP requests (whose replies alone carry deliveries).
    pub fn is_http(self) -> bool {
        match self {
            #[cfg(feature = "websocket")]
            Self::WebSocket => false,
            _ => true,
        }
    }

    /// A builder for an engine that serves this transport.
    pub fn builder(self) -> BayeuxBuilder {
        let builder = Bayeux::builder();
        match self {
            #[cfg(feature = "jsonp")]
            Self::CallbackPolling => builder.callback_polling(true),
            _ => builder,
        }
    }

    /// The transports an engine from [`builder`](Self::builder) lists in handshake replies.
    pub fn advertised(self) -> Value {
        let mut types = Vec::new();
        if cfg!(feature = "websocket") {
            types.push("websocket");
        }
        types.push("long-polling");
        #[cfg(feature = "jsonp")]
        if self == Self::CallbackPolling {
            types.push("callback-polling");
        }
        json!(types)
    }

    /// A handshake message offering this transport only.
    pub fn handshake_message(self) -> Value {
        let mut message = handshake_message("1");
        message["supportedConnectionTypes"] = json!([self.connection_type()]);
        message
    }

    /// A `/meta/connect`, with `advice.timeout` if given.
    pub fn connect_message(self, timeout: Option<u64>) -> Value {
        let mut message =
            json!({"channel": "/meta/connect", "connectionType": self.connection_type()});
        if let Some(timeout) = timeout {
            message["advice"] = json!({"timeout": timeout});
        }
        message
    }

    /// A client of no session yet: over HTTP without a cookie, over websocket an open socket.
    pub async fn open(self, bayeux: &Bayeux) -> TestClient {
        let inner = match self {
            #[cfg(feature = "websocket")]
            Self::WebSocket => Inner::WebSocket {
                socket: Box::new(Socket::open(bayeux).await),
                outstanding: Vec::new(),
                stash: Vec::new(),
            },
            _ => Inner::Http(Client::unknown(bayeux, self)),
        };
        TestClient {
            transport: self,
            inner,
            text: String::new(),
        }
    }

    /// A client that handshook.
    pub async fn handshaken(self, bayeux: &Bayeux) -> TestClient {
        let mut client = self.open(bayeux).await;
        let reply = client.handshake().await;
        assert_eq!(reply[0]["successful"], true, "{reply:?}");
        client
    }

    /// A client that handshook and sent its first connect (`timeout: 0`, as the JS client
    /// does).
    pub async fn connected(self, bayeux: &Bayeux) -> TestClient {
        let mut client = self.handshaken(bayeux).await;
        let reply = client.connect(Some(0)).await;
        assert_eq!(reply.last().unwrap()["successful"], true, "{reply:?}");
        client
    }
}

/// A session driven by hand over one transport.
pub struct TestClient {
    transport: Transport,
    inner: Inner,
    /// The text of the last response, or of the frames the last operation read.
    text: String,
}

enum Inner {
    Http(Client),
    #[cfg(feature = "websocket")]
    WebSocket {
        socket: Box<Socket>,
        /// `(channel, id)` of the messages of [`Pending`] requests not answered yet.
        outstanding: Vec<(Value, Value)>,
        /// Replies to pending requests read while waiting for something else.
        stash: Vec<Value>,
    },
}

/// Messages sent and not answered yet, such as a held connect.
pub struct Pending(PendingInner);

enum PendingInner {
    /// The request, in a task of its own.
    Http(JoinHandle<(Vec<Value>, String)>),
    /// `(channel, id)` of the messages sent.
    #[cfg(feature = "websocket")]
    WebSocket(Vec<(Value, Value)>),
}

/// How long a test waits for the server before failing (paused time: no real wait).
const PATIENCE: Duration = Duration::from_secs(3600);

/// What answers `message`: a reply with its `channel` and `id` (null when absent).
#[cfg(feature = "websocket")]
fn key(message: &Value) -> (Value, Value) {
    (message["channel"].clone(), message["id"].clone())
}

/// Whether `message` is a reply (not a delivery) to the message of `key`.
#[cfg(feature = "websocket")]
fn answers(message: &Value, (channel, id): &(Value, Value)) -> bool {
    message.get("successful").is_some() && message["channel"] == *channel && message["id"] == *id
}

impl TestClient {
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The session's `clientId` (empty before a handshake).
    pub fn client_id(&self) -> &str {
        match &self.inner {
            Inner::Http(client) => &client.client_id,
            #[cfg(feature = "websocket")]
            Inner::WebSocket { socket, .. } => &socket.client_id,
        }
    }

    /// The browser cookie it sends: over HTTP the one its handshake got, over websocket none.
    pub fn cookie(&self) -> Option<&str> {
        match &self.inner {
            Inner::Http(client) => client.cookie(),
            #[cfg(feature = "websocket")]
            Inner::WebSocket { .. } => None,
        }
    }

    /// The websocket connection (panics over HTTP).
    #[cfg(feature = "websocket")]
    pub fn socket(&mut self) -> &mut Socket {
        match &mut self.inner {
            Inner::WebSocket { socket, .. } => socket,
            Inner::Http(_) => panic!("not a websocket client"),
        }
    }

    /// The text of the last HTTP response, or of the frames the last operation read.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Sends a handshake offering this transport; on success records the `clientId` (and over
    /// HTTP the browser cookie set). Returns the reply.
    pub async fn handshake(&mut self) -> Vec<Value> {
        self.handshake_with(self.transport.handshake_message())
            .await
    }

    /// Sends `message` as the handshake; on success records the `clientId` (and over HTTP the
    /// browser cookie set). Returns the reply.
    pub async fn handshake_with(&mut self, message: Value) -> Vec<Value> {
        let text = Value::from(vec![message]).to_string();
        let (reply, cookie) = match &self.inner {
            Inner::Http(client) => {
                let reply = client.raw_text("/cometd/handshake", &text).await;
                self.text = reply.body.clone();
                (client.parse(&reply), browser_cookie(&reply))
            }
            #[cfg(feature = "websocket")]
            Inner::WebSocket { .. } => (self.send_text(text).await, None),
        };
        if reply[0]["successful"] == true {
            let client_id = reply[0]["clientId"].as_str().unwrap().to_owned();
            match &mut self.inner {
                Inner::Http(client) => {
                    client.client_id = client_id;
                    if let Some(cookie) = cookie {
                        client.cookie = cookie;
                    }
                }
                #[cfg(feature = "websocket")]
                Inner::WebSocket { socket, .. } => socket.client_id = client_id,
            }
        }
        reply
    }

    /// Adds the session's `clientId`, and an `id` where there is none, to each message.
    pub fn stamp(&mut self, messages: Vec<Value>) -> Vec<Value> {
        match &mut self.inner {
            Inner::Http(client) => client.stamp(messages),
            #[cfg(feature = "websocket")]
            Inner::WebSocket { socket, .. } => socket.stamp(messages),
        }
    }

    /// Sends `messages` (stamped) in one request or frame; returns what came back with their
    /// replies (see [`send_raw`](Self::send_raw)).
    pub async fn send(&mut self, messages: Vec<Value>) -> Vec<Value> {
        let messages = self.stamp(messages);
        self.send_raw(messages).await
    }

    /// Sends `messages` as they are in one request or frame. Over HTTP, returns the reply
    /// array; over websocket, the messages of the frames read until each message had its
    /// reply (deliveries pushed meanwhile included; replies to [`Pending`] requests kept for
    /// them).
    pub async fn send_raw(&mut self, messages: Vec<Value>) -> Vec<Value> {
        self.send_text(Value::from(messages).to_string()).await
    }

    /// Sends `text` (a JSON array of messages) as the body or frame, as it is (see
    /// [`send_raw`](Self::send_raw)).
    pub async fn send_text(&mut self, text: String) -> Vec<Value> {
        match &self.inner {
            Inner::Http(client) => {
                let reply = client.raw_text(path_for(&text), &text).await;
                self.text = reply.body.clone();
                client.parse(&reply)
            }
            #[cfg(feature = "websocket")]
            Inner::WebSocket { .. } => {
                let pending = self.start_text(text).await;
                self.finish(pending).await
            }
        }
    }

    /// Sends `messages` (stamped) and returns without waiting for their replies (over HTTP,
    /// the request runs in a task of its own, so others can go meanwhile); once the server
    /// had the time to take them.
    pub async fn start(&mut self, messages: Vec<Value>) -> Pending {
        let messages = self.stamp(messages);
        let pending = self.start_text(Value::from(messages).to_string()).await;
        settle().await;
        pending
    }

    async fn start_text(&mut self, text: String) -> Pending {
        match &mut self.inner {
            Inner::Http(client) => {
                let client = client.clone();
                Pending(PendingInner::Http(tokio::spawn(async move {
                    let reply: Reply = client.raw_text(path_for(&text), &text).await;
                    (client.parse(&reply), reply.body)
                })))
            }
            #[cfg(feature = "websocket")]
            Inner::WebSocket {
                socket,
                outstanding,
                ..
            } => {
                let messages: Vec<Value> = serde_json::from_str(&text).unwrap();
                let keys: Vec<_> = messages.iter().map(key).collect();
                outstanding.extend(keys.iter().cloned());
                socket.send_text(text).await;
                Pending(PendingInner::WebSocket(keys))
            }
        }
    }

    /// The replies to `pending`, with what came before them: over HTTP its response; over
    /// websocket the messages of the frames read until its last reply.
    pub async fn finish(&mut self, pending: Pending) -> Vec<Value> {
        match (&mut self.inner, pending.0) {
            (Inner::Http(_), PendingInner::Http(request)) => {
                let (reply, text) = tokio::time::timeout(PATIENCE, request)
                    .await
                    .expect("a reply")
                    .unwrap();
                self.text = text;
                reply
            }
            #[cfg(feature = "websocket")]
            (
                Inner::WebSocket {
                    socket,
                    outstanding,
                    stash,
                },
                PendingInner::WebSocket(mut keys),
            ) => {
                self.text.clear();
                let mut received = Vec::new();
                // Replies that came while waiting for something else came first.
                stash.retain(|message| {
                    let Some(i) = keys.iter().position(|key| answers(message, key)) else {
                        return true;
                    };
                    keys.remove(i);
                    received.push(message.clone());
                    false
                });
                while !keys.is_empty() {
                    let frame = tokio::time::timeout(PATIENCE, socket.recv_text())
                        .await
                        .expect("a reply frame");
                    self.text.push_str(&frame);
                    for message in serde_json::from_str::<Vec<Value>>(&frame).unwrap() {
                        if let Some(i) = keys.iter().position(|key| answers(&message, key)) {
                            let key = keys.remove(i);
                            let j = outstanding.iter().position(|k| *k == key).unwrap();
                            outstanding.remove(j);
                        } else if outstanding.iter().any(|key| answers(&message, key)) {
                            stash.push(message);
                            continue;
                        }
                        received.push(message);
                    }
                }
                received
            }
            #[allow(unreachable_patterns)]
            _ => unreachable!("a request of another client"),
        }
    }

    /// Whether the server answered `pending` (over websocket: whether its replies came in the
    /// frames read so far).
    pub fn is_answered(&self, pending: &Pending) -> bool {
        match (&self.inner, &pending.0) {
            (Inner::Http(_), PendingInner::Http(request)) => request.is_finished(),
            #[cfg(feature = "websocket")]
            (Inner::WebSocket { stash, .. }, PendingInner::WebSocket(keys)) => keys
                .iter()
                .all(|key| stash.iter().any(|message| answers(message, key))),
            #[allow(unreachable_patterns)]
            _ => unreachable!("a request of another client"),
        }
    }

    /// Sends a `/meta/connect` (with `advice.timeout` if given) and waits for its reply
    /// (with the deliveries that came before it).
    pub async fn connect(&mut self, timeout: Option<u64>) -> Vec<Value> {
        let connect = self.transport.connect_message(timeout);
        self.send(vec![connect]).await
    }

    /// Sends a `/meta/connect` without `advice.timeout` and returns once the server holds it
    /// (unless something is queued): [`finish`](Self::finish) it for its reply.
    pub async fn hold_connect(&mut self) -> Pending {
        let connect = self.transport.connect_message(None);
        self.start(vec![connect]).await
    }

    /// What is queued for the session or on its way: the deliveries that come back with a
    /// connect that returns at once (`advice.timeout: 0`).
    pub async fn poll(&mut self) -> Vec<Value> {
        let reply = self.connect(Some(0)).await;
        assert_eq!(reply.last().unwrap()["successful"], true, "{reply:?}");
        deliveries(&reply).into_iter().cloned().collect()
    }

    /// The next deliveries the server sends: over HTTP those of the reply to `held` (or, with
    /// none, to a new connect, held until something comes); over websocket the next frame,
    /// `held` staying held.
    pub async fn next_deliveries(&mut self, held: Option<Pending>) -> Vec<Value> {
        if self.transport.is_http() {
            let reply = match held {
                Some(held) => self.finish(held).await,
                None => self.connect(None).await,
            };
            return deliveries(&reply).into_iter().cloned().collect();
        }
        self.next_frame().await
    }

    /// Over websocket, the messages of the next frame (replies to [`Pending`] requests kept
    /// for them).
    pub async fn next_frame(&mut self) -> Vec<Value> {
        match &mut self.inner {
            Inner::Http(_) => panic!("HTTP has no frames"),
            #[cfg(feature = "websocket")]
            Inner::WebSocket {
                socket,
                outstanding,
                stash,
            } => {
                let frame = tokio::time::timeout(PATIENCE, socket.recv_text())
                    .await
                    .expect("a frame");
                let mut received = Vec::new();
                for message in serde_json::from_str::<Vec<Value>>(&frame).unwrap() {
                    if outstanding.iter().any(|key| answers(&message, key)) {
                        stash.push(message);
                    } else {
                        received.push(message);
                    }
                }
                self.text = frame;
                received
            }
        }
    }

    /// Subscribes to `channel` (a name, or an array of them); returns the reply.
    pub async fn subscribe(&mut self, channel: impl Into<Value>) -> Value {
        let subscribe = json!({"channel": "/meta/subscribe", "subscription": channel.into()});
        self.reply_to(subscribe).await
    }

    /// Unsubscribes from `channel` (a name, or an array of them); returns the reply.
    pub async fn unsubscribe(&mut self, channel: impl Into<Value>) -> Value {
        let unsubscribe = json!({"channel": "/meta/unsubscribe", "subscription": channel.into()});
        self.reply_to(unsubscribe).await
    }

    /// Publishes `data` to `channel`; returns what came back (see [`send`](Self::send)).
    pub async fn publish(&mut self, channel: &str, data: Value) -> Vec<Value> {
        self.send(vec![json!({"channel": channel, "data": data})])
            .await
    }

    /// Sends a `/meta/disconnect`; returns what came back (see [`send`](Self::send)).
    pub async fn disconnect(&mut self) -> Vec<Value> {
        self.send(vec![json!({"channel": "/meta/disconnect"})])
            .await
    }

    /// Sends `message`, returns its reply (the last message that came back).
    async fn reply_to(&mut self, message: Value) -> Value {
        let reply = self.send(vec![message]).await;
        reply.last().unwrap().clone()
    }

    /// Goes away leaving `held` unanswered: over HTTP the request is dropped, over websocket
    /// the client closes the connection.
    pub async fn vanish(self, held: Pending) {
        match (self.inner, held.0) {
            (Inner::Http(_), PendingInner::Http(request)) => {
                request.abort();
                let _ = request.await;
            }
            #[cfg(feature = "websocket")]
            (Inner::WebSocket { socket, .. }, PendingInner::WebSocket(_)) => socket.close().await,
            #[allow(unreachable_patterns)]
            _ => unreachable!("a request of another client"),
        }
    }
}

/// Where the CometD client posts a request: connects (alone) to `/connect`.
fn path_for(text: &str) -> &'static str {
    match serde_json::from_str::<Vec<Value>>(text).as_deref() {
        Ok([one]) if one["channel"] == "/meta/connect" => "/cometd/connect",
        _ => "/cometd/",
    }
}
