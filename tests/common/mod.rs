//! Test clients for the integration tests, all in memory: HTTP requests through any tower
//! service ([`call`]), a long-polling or callback-polling [`Client`] through a
//! [`BayeuxService`], a websocket [`Socket`](websocket::Socket) over a duplex stream, and a
//! [`TestClient`](transport::TestClient) that drives a session the same way over any of the
//! three transports.
//!
//! Every test file compiles its own copy of this module and uses part of it.
#![allow(dead_code)]

pub mod answer;
#[cfg(feature = "jsonp")]
pub mod jsonp;
#[cfg(feature = "redis")]
pub mod redis;
pub mod removal;
pub mod transport;
#[cfg(feature = "websocket")]
pub mod websocket;

use std::fmt::Debug;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::{Service, ServiceExt};
use tower_bayeux::{Bayeux, BayeuxService};

pub use transport::Transport;

// ---------------------------------------------------------------------------------------------
// HTTP through any service
// ---------------------------------------------------------------------------------------------

/// An HTTP response, its body collected as text.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn text(&self) -> &str {
        &self.body
    }

    /// The first value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The body as a non-empty JSON array of Bayeux messages (the status must be 200).
    pub fn messages(&self) -> Vec<Value> {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.body);
        let value: Value = serde_json::from_str(&self.body).expect("JSON reply");
        let messages = value.as_array().expect("a JSON array").clone();
        assert!(!messages.is_empty(), "a reply array is never empty");
        messages
    }

    /// The last message: the reply to a request of one message.
    pub fn last(&self) -> Value {
        self.messages().pop().unwrap()
    }

    /// `(channel, data)` of the deliveries the body carries (see [`deliveries`]).
    pub fn deliveries(&self) -> Vec<(String, Value)> {
        deliveries(&self.messages())
            .into_iter()
            .map(|m| (m["channel"].as_str().unwrap().to_owned(), m["data"].clone()))
            .collect()
    }
}

/// Sends `request` to `service` and collects the response.
pub async fn call<S, B, RB>(service: S, request: Request<B>) -> Reply
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Debug,
    RB: Body,
    RB::Error: Debug,
{
    let response = service.oneshot(request).await.expect("the service answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("a readable body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).expect("a UTF-8 body"),
    }
}

/// Sends any request to a standalone service for `bayeux`.
pub async fn send(bayeux: &Bayeux, request: Request<Full<Bytes>>) -> Reply {
    call(BayeuxService::new(bayeux.clone()), request).await
}

/// A JSON POST to `uri`, body to come.
pub fn post_json(uri: &str) -> http::request::Builder {
    Request::post(uri).header(header::CONTENT_TYPE, "application/json")
}

/// `builder` with `body`.
pub fn full(builder: http::request::Builder, body: impl Into<String>) -> Request<Full<Bytes>> {
    builder.body(Full::new(Bytes::from(body.into()))).unwrap()
}

/// A JSON POST of `body` to `uri`, with the `Cookie` header if given.
pub fn post_request(uri: &str, cookie: Option<&str>, body: &str) -> Request<Full<Bytes>> {
    let mut request = post_json(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    full(request, body)
}

/// POSTs `body` to the Bayeux service at `path`.
pub async fn post(bayeux: &Bayeux, path: &str, cookie: Option<&str>, body: &str) -> Reply {
    send(bayeux, post_request(path, cookie, body)).await
}

/// A long-polling handshake message.
pub fn handshake_message(id: &str) -> Value {
    json!({
        "id": id, "channel": "/meta/handshake", "version": "1.0", "minimumVersion": "1.0",
        "supportedConnectionTypes": ["long-polling"], "advice": {"timeout": 60000, "interval": 0}
    })
}

/// The body of a long-polling handshake request.
pub fn handshake_body() -> String {
    json!([handshake_message("1")]).to_string()
}

/// A long-polling handshake POST to `uri`.
pub fn handshake_request(uri: &str) -> Request<Full<Bytes>> {
    full(post_json(uri), handshake_body())
}

/// The browser cookie (`name=value`) a response sets, if any.
pub fn browser_cookie(reply: &Reply) -> Option<String> {
    let set = reply.header(header::SET_COOKIE.as_str())?;
    Some(set.split(';').next().unwrap().to_owned())
}

/// Handshakes through `service` at `uri`.
pub async fn handshake<S, RB>(service: S, uri: &str) -> Session
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>>,
    S::Error: Debug,
    RB: Body,
    RB::Error: Debug,
{
    Session::from_handshake(&call(service, handshake_request(uri)).await)
}

// ---------------------------------------------------------------------------------------------
// A session over HTTP
// ---------------------------------------------------------------------------------------------

/// A session as an HTTP client knows it: its `clientId` and the browser cookie that goes with
/// it (empty: the client sends none). Builds its requests for any service and path.
#[derive(Clone, Debug)]
pub struct Session {
    pub client_id: String,
    pub cookie: String,
    next_id: Arc<AtomicU64>,
}

impl Session {
    pub fn new(client_id: &str, cookie: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            cookie: cookie.to_owned(),
            next_id: Arc::new(2.into()),
        }
    }

    /// Checks that `reply` is a successful handshake that set the browser cookie, and returns
    /// its session.
    pub fn from_handshake(reply: &Reply) -> Self {
        let messages = reply.messages();
        assert_eq!(messages.len(), 1, "{messages:?}");
        let handshake = &messages[0];
        assert_eq!(handshake["channel"], "/meta/handshake");
        assert_eq!(handshake["successful"], true, "{handshake}");
        let client_id = handshake["clientId"].as_str().expect("a clientId");
        let cookie = browser_cookie(reply).expect("a browser cookie");
        assert!(cookie.starts_with("BAYEUX_BROWSER="), "{cookie}");
        Self::new(client_id, &cookie)
    }

    pub fn next_id(&self) -> String {
        self.next_id.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// The cookie to send, if any.
    pub fn cookie(&self) -> Option<&str> {
        Some(self.cookie.as_str()).filter(|cookie| !cookie.is_empty())
    }

    /// Adds this session's `clientId`, and an `id` where there is none, to each message.
    pub fn stamp(&self, mut messages: Vec<Value>) -> Vec<Value> {
        for message in &mut messages {
            let object = message.as_object_mut().unwrap();
            object.insert("clientId".into(), json!(self.client_id));
            if !object.contains_key("id") {
                object.insert("id".into(), json!(self.next_id()));
            }
        }
        messages
    }

    /// `messages`, stamped, as a JSON array.
    pub fn body(&self, messages: Vec<Value>) -> String {
        Value::from(self.stamp(messages)).to_string()
    }

    /// A POST of `messages` (stamped) from this session, with its cookie, to `uri`.
    pub fn messages_request(&self, uri: &str, messages: Vec<Value>) -> Request<Full<Bytes>> {
        post_request(uri, self.cookie(), &self.body(messages))
    }

    /// A POST publishing `data` to `channel`.
    pub fn publish_request(&self, uri: &str, channel: &str, data: Value) -> Request<Full<Bytes>> {
        self.messages_request(uri, vec![json!({"channel": channel, "data": data})])
    }

    /// A POST of a `/meta/connect` that returns at once (`advice.timeout: 0`).
    pub fn connect_request(&self, uri: &str) -> Request<Full<Bytes>> {
        let connect = json!({
            "channel": "/meta/connect", "connectionType": "long-polling", "advice": {"timeout": 0}
        });
        self.messages_request(uri, vec![connect])
    }

    /// A POST subscribing to `channel`.
    pub fn subscribe_request(&self, uri: &str, channel: &str) -> Request<Full<Bytes>> {
        self.messages_request(
            uri,
            vec![json!({"channel": "/meta/subscribe", "subscription": channel})],
        )
    }
}

/// A session driven by hand over long-polling or callback-polling, through a standalone
/// [`BayeuxService`] for its engine. Dereferences to its [`Session`] (`client_id`, `cookie`).
#[derive(Clone)]
pub struct Client {
    pub bayeux: Bayeux,
    /// [`Transport::LongPolling`] or [`Transport::CallbackPolling`].
    pub transport: Transport,
    session: Session,
}

impl Deref for Client {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

impl Client {
    /// Handshakes over long-polling, then sends the first connect (with `timeout: 0`, as the
    /// JS client does).
    pub async fn connected(bayeux: &Bayeux) -> Self {
        Self::connected_over(bayeux, Transport::LongPolling).await
    }

    /// Handshakes over long-polling, reusing a browser cookie if given.
    pub async fn handshaken(bayeux: &Bayeux, cookie: Option<&str>) -> Self {
        Self::handshaken_over(bayeux, Transport::LongPolling, cookie).await
    }

    /// Handshakes over `transport`, then sends the first connect (with `timeout: 0`).
    pub async fn connected_over(bayeux: &Bayeux, transport: Transport) -> Self {
        let client = Self::handshaken_over(bayeux, transport, None).await;
        let reply = client.connect(Some(0)).await;
        assert_eq!(reply.last().unwrap()["successful"], true, "{reply:?}");
        client
    }

    /// Handshakes over `transport` (long-polling or callback-polling), reusing a browser
    /// cookie if given.
    pub async fn handshaken_over(
        bayeux: &Bayeux,
        transport: Transport,
        cookie: Option<&str>,
    ) -> Self {
        let mut client = Self::unknown(bayeux, transport);
        client.cookie = cookie.unwrap_or_default().to_owned();
        let reply = client
            .raw("/cometd/handshake", vec![transport.handshake_message()])
            .await;
        let set_cookie = browser_cookie(&reply);
        let messages = client.parse(&reply);
        assert_eq!(messages[0]["successful"], true, "{messages:?}");
        client.client_id = messages[0]["clientId"].as_str().unwrap().to_owned();
        if cookie.is_none() {
            client.cookie = set_cookie.expect("a browser cookie");
        }
        client
    }

    /// A client of no session yet, without a cookie.
    pub fn unknown(bayeux: &Bayeux, transport: Transport) -> Self {
        assert!(
            transport.is_http(),
            "{transport:?} is not an HTTP transport"
        );
        Self {
            bayeux: bayeux.clone(),
            transport,
            session: Session::new("", ""),
        }
    }

    /// A long-polling client for a session handshaken by hand.
    pub fn from_parts(bayeux: &Bayeux, cookie: String, client_id: &str) -> Self {
        Self {
            bayeux: bayeux.clone(),
            transport: Transport::LongPolling,
            session: Session::new(client_id, &cookie),
        }
    }

    /// The request carrying `messages` (a JSON array) as they are, with the cookie: a POST
    /// over long-polling, a JSONP `GET` (callback `cb`) over callback-polling.
    pub fn http_request(&self, path: &str, messages: &str) -> Request<Full<Bytes>> {
        match self.transport {
            Transport::LongPolling => post_request(path, self.cookie(), messages),
            #[cfg(feature = "jsonp")]
            Transport::CallbackPolling => jsonp::request(path, "cb", messages, self.cookie()),
            #[allow(unreachable_patterns)]
            other => panic!("{other:?} is not an HTTP transport"),
        }
    }

    /// Sends `messages` (a JSON array) as they are; returns the raw response.
    pub async fn raw_text(&self, path: &str, messages: &str) -> Reply {
        send(&self.bayeux, self.http_request(path, messages)).await
    }

    /// Sends `messages` as they are; returns the raw response.
    pub async fn raw(&self, path: &str, messages: Vec<Value>) -> Reply {
        self.raw_text(path, &Value::from(messages).to_string())
            .await
    }

    /// Sends `messages`, adding `clientId` and an `id` to each; returns the raw response.
    pub async fn request(&self, path: &str, messages: Vec<Value>) -> Reply {
        self.raw(path, self.stamp(messages)).await
    }

    /// The messages of a response of this client's transport: a JSON array, or the array a
    /// JSONP script passes to its callback.
    pub fn parse(&self, reply: &Reply) -> Vec<Value> {
        match self.transport {
            #[cfg(feature = "jsonp")]
            Transport::CallbackPolling => jsonp::script_arguments(reply, "cb"),
            _ => reply.messages(),
        }
    }

    /// Sends `messages` (stamped) to `path` and returns the reply array.
    pub async fn exchange(&self, path: &str, messages: Vec<Value>) -> Vec<Value> {
        let reply = self.request(path, messages).await;
        self.parse(&reply)
    }

    /// Sends `messages` (stamped) and returns the reply array.
    pub async fn send(&self, messages: Vec<Value>) -> Vec<Value> {
        self.exchange("/cometd/", messages).await
    }

    pub fn connect_message(&self, timeout: Option<u64>) -> Value {
        self.transport.connect_message(timeout)
    }

    pub async fn connect(&self, timeout: Option<u64>) -> Vec<Value> {
        self.exchange("/cometd/connect", vec![self.connect_message(timeout)])
            .await
    }

    pub async fn subscribe(&self, channel: &str) -> Value {
        let reply = self
            .send(vec![
                json!({"channel": "/meta/subscribe", "subscription": channel}),
            ])
            .await;
        reply.last().unwrap().clone()
    }

    pub async fn unsubscribe(&self, channel: &str) -> Value {
        let reply = self
            .send(vec![
                json!({"channel": "/meta/unsubscribe", "subscription": channel}),
            ])
            .await;
        reply.last().unwrap().clone()
    }

    pub async fn publish(&self, channel: &str, data: Value) -> Vec<Value> {
        self.send(vec![json!({"channel": channel, "data": data})])
            .await
    }
}

/// Lets every task run until it waits (on paused time: without advancing the clock further
/// than needed).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// The deliveries of a reply or frame: the messages that answer no request (no `successful`).
pub fn deliveries(messages: &[Value]) -> Vec<&Value> {
    messages
        .iter()
        .filter(|m| m.get("successful").is_none())
        .collect()
}

/// The `data` of each delivery in `messages`.
pub fn data_of(messages: &[Value]) -> Vec<Value> {
    deliveries(messages)
        .into_iter()
        .map(|m| m["data"].clone())
        .collect()
}

/// An extension that writes, into the `ext.probe` of every `/meta/connect` reply, the
/// `X-Probe` header of the request context its outgoing hook sees (`null` without a context).
pub struct ContextProbe;

impl tower_bayeux::Extension for ContextProbe {
    async fn outgoing(
        &self,
        _: Option<&tower_bayeux::ServerSession>,
        _: Option<&tower_bayeux::Message>,
        message: &mut tower_bayeux::Message,
    ) -> bool {
        if message.channel == "/meta/connect" {
            let probe = tower_bayeux::context::current()
                .and_then(|ctx| Some(ctx.headers().get("x-probe")?.to_str().ok()?.to_owned()));
            message.ext_mut().insert("probe".into(), json!(probe));
        }
        true
    }
}
