//! A minimal Bayeux client over the tower service, for the integration tests.
#![allow(dead_code)]

pub mod answer;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_bayeux::{Bayeux, BayeuxService};

/// An HTTP response, body as text.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body as a JSON array of messages.
    pub fn messages(&self) -> Vec<Value> {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.body);
        let value: Value = serde_json::from_str(&self.body).expect("JSON reply");
        let messages = value.as_array().expect("a JSON array").clone();
        assert!(!messages.is_empty(), "a reply array is never empty");
        messages
    }
}

/// POSTs `body` to the Bayeux service at `path`.
pub async fn post(bayeux: &Bayeux, path: &str, cookie: Option<&str>, body: &str) -> Reply {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    send(
        bayeux,
        request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap(),
    )
    .await
}

/// Sends any request to a standalone service for `bayeux`.
pub async fn send(bayeux: &Bayeux, request: Request<Full<Bytes>>) -> Reply {
    let response = BayeuxService::new(bayeux.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// A session driven by hand.
#[derive(Clone)]
pub struct Client {
    pub bayeux: Bayeux,
    pub cookie: String,
    pub client_id: String,
    next_id: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

pub fn handshake_message(id: &str) -> Value {
    json!({
        "id": id, "channel": "/meta/handshake", "version": "1.0", "minimumVersion": "1.0",
        "supportedConnectionTypes": ["long-polling"], "advice": {"timeout": 60000, "interval": 0}
    })
}

impl Client {
    /// Handshakes, then sends the first connect (with `timeout: 0`, as the JS client does).
    pub async fn connected(bayeux: &Bayeux) -> Self {
        let client = Self::handshaken(bayeux, None).await;
        let reply = client.connect(Some(0)).await;
        assert_eq!(reply.last().unwrap()["successful"], true);
        client
    }

    /// Handshakes, reusing a browser cookie if given.
    pub async fn handshaken(bayeux: &Bayeux, cookie: Option<&str>) -> Self {
        let body = json!([handshake_message("1")]).to_string();
        let reply = post(bayeux, "/cometd/handshake", cookie, &body).await;
        let cookie = match cookie {
            Some(cookie) => cookie.to_owned(),
            None => {
                let set = reply.headers[header::SET_COOKIE].to_str().unwrap();
                set.split(';').next().unwrap().to_owned()
            }
        };
        let messages = reply.messages();
        assert_eq!(messages[0]["successful"], true, "{messages:?}");
        Self {
            bayeux: bayeux.clone(),
            cookie,
            client_id: messages[0]["clientId"].as_str().unwrap().to_owned(),
            next_id: std::sync::Arc::new(2.into()),
        }
    }

    /// A client for a session handshaken by hand.
    pub fn from_parts(bayeux: &Bayeux, cookie: String, client_id: &str) -> Self {
        Self {
            bayeux: bayeux.clone(),
            cookie,
            client_id: client_id.to_owned(),
            next_id: std::sync::Arc::new(2.into()),
        }
    }

    pub fn next_id(&self) -> String {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_string()
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

    /// Posts messages, adding `clientId` and an `id` to each; returns the raw reply.
    pub async fn post(&self, path: &str, messages: Vec<Value>) -> Reply {
        let messages = self.stamp(messages);
        post(
            &self.bayeux,
            path,
            Some(&self.cookie),
            &Value::from(messages).to_string(),
        )
        .await
    }

    /// Posts messages and returns the reply array.
    pub async fn send(&self, messages: Vec<Value>) -> Vec<Value> {
        self.post("/cometd/", messages).await.messages()
    }

    pub fn connect_message(&self, timeout: Option<u64>) -> Value {
        let mut message = json!({"channel": "/meta/connect", "connectionType": "long-polling"});
        if let Some(timeout) = timeout {
            message["advice"] = json!({"timeout": timeout});
        }
        message
    }

    pub async fn connect(&self, timeout: Option<u64>) -> Vec<Value> {
        self.post("/cometd/connect", vec![self.connect_message(timeout)])
            .await
            .messages()
    }

    pub async fn subscribe(&self, channel: &str) -> Value {
        let reply = self
            .send(vec![
                json!({"channel": "/meta/subscribe", "subscription": channel}),
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

/// The deliveries (messages with `data` and no `successful`) of a reply.
pub fn deliveries(messages: &[Value]) -> Vec<&Value> {
    messages
        .iter()
        .filter(|m| m.get("successful").is_none())
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
