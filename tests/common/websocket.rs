//! A websocket client over an in-memory duplex stream, served by
//! [`tower_bayeux::serve_websocket`] as an upgraded connection would be.

use futures_util::{SinkExt, StreamExt};
use http::Request;
use serde_json::{Value, json};
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tower_bayeux::Bayeux;

/// One websocket connection and the server task serving it.
pub struct Socket {
    pub ws: WebSocketStream<DuplexStream>,
    pub server: JoinHandle<()>,
    /// Added to every message [`send`](Self::send) sends, once known.
    pub client_id: String,
    next_id: u64,
}

impl Socket {
    /// Opens a connection as the upgrade request `request` would, over a pipe of `buffer`
    /// bytes.
    pub async fn open_with(
        bayeux: &Bayeux,
        request: http::request::Builder,
        buffer: usize,
    ) -> Self {
        let (client, server) = tokio::io::duplex(buffer);
        let (parts, ()) = request.body(()).unwrap().into_parts();
        let bayeux = bayeux.clone();
        let server =
            tokio::spawn(
                async move { tower_bayeux::serve_websocket(&bayeux, server, parts).await },
            );
        let ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        Self {
            ws,
            server,
            client_id: String::new(),
            next_id: 1,
        }
    }

    /// Opens a connection with a plain upgrade request (no cookie, no origin).
    pub async fn open(bayeux: &Bayeux) -> Self {
        Self::open_with(bayeux, Request::get("/cometd"), 64 * 1024).await
    }

    /// Opens a connection and handshakes on it.
    pub async fn handshaken(bayeux: &Bayeux) -> Self {
        let mut socket = Self::open(bayeux).await;
        socket.handshake(json!({})).await;
        socket
    }

    /// Opens a connection, handshakes and sends the first connect (`timeout: 0`).
    pub async fn connected(bayeux: &Bayeux) -> Self {
        let mut socket = Self::handshaken(bayeux).await;
        let reply = socket.call(socket.connect_message(Some(0))).await;
        assert_eq!(reply[0]["successful"], true);
        socket
    }

    /// Handshakes with a websocket handshake message with the fields of `extra` added;
    /// asserts success, records the `clientId` and returns the reply frame.
    pub async fn handshake(&mut self, extra: Value) -> Vec<Value> {
        let mut message = json!({"channel": "/meta/handshake", "version": "1.0",
            "supportedConnectionTypes": ["websocket"]});
        for (key, value) in extra.as_object().unwrap() {
            message[key] = value.clone();
        }
        let reply = self.call(message).await;
        assert_eq!(reply[0]["successful"], true, "{reply:?}");
        self.client_id = reply[0]["clientId"].as_str().unwrap().to_owned();
        reply
    }

    pub fn connect_message(&self, timeout: Option<u64>) -> Value {
        let mut message = json!({"channel": "/meta/connect", "connectionType": "websocket"});
        if let Some(timeout) = timeout {
            message["advice"] = json!({"timeout": timeout});
        }
        message
    }

    /// The next message id.
    pub fn next_id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    /// Adds an `id` where there is none and, once known, the `clientId` to each message.
    pub fn stamp(&mut self, mut messages: Vec<Value>) -> Vec<Value> {
        for message in &mut messages {
            if message.get("id").is_none() {
                message["id"] = json!(self.next_id());
            }
            if !self.client_id.is_empty() {
                message["clientId"] = json!(self.client_id);
            }
        }
        messages
    }

    /// Sends one frame with these messages (stamped).
    pub async fn send(&mut self, messages: Vec<Value>) {
        let messages = self.stamp(messages);
        self.send_raw(messages).await;
    }

    /// Sends one frame with these messages as they are.
    pub async fn send_raw(&mut self, messages: Vec<Value>) {
        self.send_text(Value::from(messages).to_string()).await;
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Frame::text(text)).await.unwrap();
    }

    /// The next text frame's messages (pings and pongs skipped).
    pub async fn recv(&mut self) -> Vec<Value> {
        serde_json::from_str(&self.recv_text().await).unwrap()
    }

    /// The next text frame, a non-empty JSON array (pings and pongs skipped).
    pub async fn recv_text(&mut self) -> String {
        loop {
            match self.ws.next().await {
                Some(Ok(Frame::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    let messages = value.as_array().expect("an array of messages");
                    assert!(!messages.is_empty(), "never an empty array");
                    return text.to_string();
                }
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Sends one message and returns the next frame.
    pub async fn call(&mut self, message: Value) -> Vec<Value> {
        self.send(vec![message]).await;
        self.recv().await
    }

    /// Reads until the server closes, returning its close code.
    pub async fn closed(&mut self) -> Option<CloseCode> {
        loop {
            match self.ws.next().await {
                Some(Ok(Frame::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return None,
            }
        }
    }

    /// Closes the connection (a close frame) and waits for the server to end it.
    pub async fn close(mut self) {
        self.ws.close(None).await.unwrap();
        self.server.await.unwrap();
    }

    /// Drops the connection without a close frame (as a network failure would) and waits for
    /// the server to notice.
    pub async fn cut(self) {
        drop(self.ws);
        self.server.await.unwrap();
    }
}
