//! What only the websocket transport does, over in-memory streams: frames (what goes out
//! together), close codes, idle and write timeouts, pings, sessions moving between sockets,
//! the upgrade request as context, upgrade validation and origin checks.
//!
//! The scenarios every transport shares (handshake, connect, subscriptions, delivery,
//! disconnect, expiry, batches) run over websocket in `tests/transports.rs`.
#![cfg(feature = "websocket")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::websocket::Socket;
use common::{Client, send};
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tower_bayeux::{Bayeux, context};

fn engine() -> Bayeux {
    Bayeux::builder()
        .timeout(Duration::from_secs(10))
        .max_interval(Duration::from_secs(5))
        .sweep_period(Duration::from_millis(100))
        .build()
}

#[tokio::test(start_paused = true)]
async fn what_is_ready_goes_out_in_one_frame() {
    let bayeux = engine();
    let mut socket = Socket::connected(&bayeux).await;
    socket
        .call(json!({"channel": "/meta/subscribe", "subscription": "/burst"}))
        .await;
    for i in 0..5 {
        bayeux.publish("/burst", json!(i)).await.unwrap();
    }
    let frame = socket.recv().await;
    let data: Vec<Value> = frame.iter().map(|m| m["data"].clone()).collect();
    assert_eq!(data, (0..5).map(|i| json!(i)).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn a_publish_gets_its_own_copy_and_its_reply_in_one_frame() {
    let bayeux = engine();
    let mut socket = Socket::connected(&bayeux).await;
    socket
        .call(json!({"channel": "/meta/subscribe", "subscription": "/self"}))
        .await;
    let reply = socket.call(json!({"channel": "/self", "data": 1})).await;
    assert_eq!(reply[0], json!({"channel": "/self", "data": 1}));
    assert_eq!(reply[1]["successful"], true);
    assert!(reply[1].get("data").is_none());
}

/// While a listener runs, the frames the client sends meanwhile wait for it: its messages keep
/// their order. (That deliveries are pushed meanwhile is a scenario of `tests/transports.rs`.)
#[tokio::test(start_paused = true)]
async fn frames_sent_while_a_slow_listener_runs_are_answered_after_it_in_order() {
    let bayeux = engine();
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    bayeux.channel("/service/slow").add_listener({
        let gate = gate.clone();
        move |event| {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                event.proceed()
            }
        }
    });
    let mut socket = Socket::connected(&bayeux).await;
    socket
        .send(vec![
            json!({"id": "slow", "channel": "/service/slow", "data": 1}),
        ])
        .await;
    socket
        .send(vec![
            json!({"id": "after", "channel": "/meta/subscribe", "subscription": "/b"}),
        ])
        .await;
    let early = tokio::time::timeout(Duration::from_secs(1), socket.recv()).await;
    assert!(
        early.is_err(),
        "answered before the listener ended: {early:?}"
    );
    gate.notify_one();
    let reply = socket.recv().await;
    assert_eq!(reply[0]["id"], "slow");
    assert_eq!(reply[0]["successful"], true);
    assert_eq!(socket.recv().await[0]["id"], "after");
}

#[tokio::test(start_paused = true)]
async fn a_client_reconnecting_on_a_new_socket_keeps_its_session() {
    let bayeux = engine();
    let mut first = Socket::connected(&bayeux).await;
    first
        .call(json!({"channel": "/meta/subscribe", "subscription": "/news"}))
        .await;
    let client_id = first.client_id.clone();
    drop(first.ws);
    first.server.await.unwrap();

    let mut second = Socket::open(&bayeux).await;
    second.client_id = client_id.clone();
    let reply = second.call(second.connect_message(Some(0))).await;
    assert_eq!(reply[0]["successful"], true, "{reply:?}");
    bayeux.publish("/news", json!("again")).await.unwrap();
    assert_eq!(
        second.recv().await,
        vec![json!({"channel": "/news", "data": "again"})]
    );
    assert_eq!(bayeux.session_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_session_handshaken_over_http_continues_on_a_websocket_without_another_cookie() {
    let bayeux = engine();
    let http = Client::connected(&bayeux).await;
    http.subscribe("/news").await;
    // Another browser's cookie does not reach the session.
    let other = Client::handshaken(&bayeux, None).await;
    let request = Request::get("/cometd").header(header::COOKIE, &other.cookie);
    let mut thief = Socket::open_with(&bayeux, request, 64 * 1024).await;
    thief.client_id = http.client_id.clone();
    let reply = thief.call(thief.connect_message(Some(0))).await;
    assert_eq!(reply[0]["error"], "402::session_unknown");
    // Without a cookie (Faye's client upgrades so), the clientId continues the session, as on
    // CometD's websocket transport.
    let mut cookieless = Socket::open(&bayeux).await;
    cookieless.client_id = http.client_id.clone();
    let reply = cookieless.call(cookieless.connect_message(Some(0))).await;
    assert_eq!(reply[0]["successful"], true, "{reply:?}");
    bayeux.publish("/news", json!("here")).await.unwrap();
    assert_eq!(
        cookieless.recv().await,
        vec![json!({"channel": "/news", "data": "here"})]
    );
    // With the browser cookie, the same browser may move over too.
    let request = Request::get("/cometd").header(header::COOKIE, &http.cookie);
    let mut owner = Socket::open_with(&bayeux, request, 64 * 1024).await;
    owner.client_id = http.client_id.clone();
    let reply = owner.call(owner.connect_message(Some(0))).await;
    assert_eq!(reply[0]["successful"], true);
}

#[tokio::test(start_paused = true)]
async fn acknowledged_messages_ride_connect_replies_and_survive_a_new_socket() {
    let bayeux = Bayeux::builder()
        .timeout(Duration::from_secs(10))
        .max_interval(Duration::from_secs(5))
        .extension(tower_bayeux::ext::AckExtension::new())
        .build();
    let mut socket = Socket::open(&bayeux).await;
    let reply = socket.handshake(json!({"ext": {"ack": true}})).await;
    assert_eq!(reply[0]["ext"]["ack"], true);
    socket
        .call(json!({"channel": "/meta/subscribe", "subscription": "/acked"}))
        .await;
    let connect = |ack: i64, timeout: Option<u64>| {
        let mut message = json!({"channel": "/meta/connect", "connectionType": "websocket",
            "ext": {"ack": ack}});
        if let Some(timeout) = timeout {
            message["advice"] = json!({"timeout": timeout});
        }
        message
    };
    assert_eq!(socket.call(connect(0, Some(0))).await[0]["ext"]["ack"], 1);

    // Held connect: a publish wakes it (no push), the reply carries the message and batch 2.
    socket.send(vec![connect(1, None)]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    bayeux.publish("/acked", json!("one")).await.unwrap();
    let reply = socket.recv().await;
    assert_eq!(reply[0], json!({"channel": "/acked", "data": "one"}));
    assert_eq!(reply[1]["ext"]["ack"], 2);

    // The socket dies before the client could acknowledge batch 2.
    let client_id = socket.client_id.clone();
    drop(socket.ws);
    socket.server.await.unwrap();
    bayeux.publish("/acked", json!("two")).await.unwrap();

    let mut again = Socket::open(&bayeux).await;
    again.client_id = client_id;
    let reply = again.call(connect(1, None)).await;
    let data: Vec<Value> = reply
        .iter()
        .filter_map(|m| m.get("data").cloned())
        .collect();
    assert_eq!(
        data,
        [json!("one"), json!("two")],
        "resent in order: {reply:?}"
    );
    assert_eq!(reply.last().unwrap()["ext"]["ack"], 3);
}

#[tokio::test(start_paused = true)]
async fn oversized_binary_and_malformed_frames_close_with_the_matching_code() {
    let bayeux = Bayeux::builder().max_body_size(1024).build();
    let mut socket = Socket::handshaken(&bayeux).await;
    let big = json!([{"channel": "/a", "data": "x".repeat(2000)}]).to_string();
    socket.ws.send(Frame::text(big)).await.unwrap();
    assert_eq!(socket.closed().await, Some(CloseCode::Size));

    let mut socket = Socket::open(&bayeux).await;
    socket.ws.send(Frame::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(socket.closed().await, Some(CloseCode::Unsupported));

    let mut socket = Socket::open(&bayeux).await;
    socket.ws.send(Frame::text("not json")).await.unwrap();
    assert_eq!(socket.closed().await, Some(CloseCode::Invalid));

    let mut socket = Socket::open(&bayeux).await;
    socket
        .send(vec![
            json!({"channel": "/meta/handshake"}),
            json!({"channel": "/meta/connect"}),
        ])
        .await;
    assert_eq!(socket.closed().await, Some(CloseCode::Policy));
}

#[tokio::test(start_paused = true)]
async fn an_idle_socket_is_closed() {
    let bayeux = Bayeux::builder()
        .websocket_idle_timeout(Duration::from_secs(30))
        .build();
    let mut socket = Socket::handshaken(&bayeux).await;
    let start = Instant::now();
    assert_eq!(socket.closed().await, Some(CloseCode::Away));
    assert_eq!(start.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn pings_are_answered_and_keep_the_socket_alive() {
    let bayeux = Bayeux::builder()
        .websocket_idle_timeout(Duration::from_secs(30))
        .build();
    let mut socket = Socket::handshaken(&bayeux).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(20)).await;
        socket
            .ws
            .send(Frame::Ping(Bytes::from_static(b"p")))
            .await
            .unwrap();
        match socket.ws.next().await {
            Some(Ok(Frame::Pong(payload))) => assert_eq!(&payload[..], b"p"),
            other => panic!("expected a pong, got {other:?}"),
        }
    }
    assert!(!socket.server.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_is_disconnected_after_the_write_timeout() {
    let bayeux = Bayeux::builder()
        .websocket_write_timeout(Duration::from_secs(5))
        .max_interval(Duration::from_secs(5))
        .sweep_period(Duration::from_millis(100))
        .build();
    // A tiny pipe: the server's writes block as soon as the client stops reading.
    let mut socket = Socket::open_with(&bayeux, Request::get("/cometd"), 256).await;
    socket.handshake(json!({})).await;
    socket
        .call(json!({"channel": "/meta/subscribe", "subscription": "/flood"}))
        .await;
    let start = Instant::now();
    for i in 0..100 {
        bayeux
            .publish("/flood", json!({"i": i, "pad": "x".repeat(200)}))
            .await
            .unwrap();
        tokio::task::yield_now().await;
    }
    socket.server.await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        bayeux.session_count(),
        0,
        "the stuck session expires and its queue goes"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_answers_the_held_connect_then_closes_the_socket() {
    let bayeux = engine();
    let mut socket = Socket::connected(&bayeux).await;
    socket
        .call(json!({"channel": "/meta/subscribe", "subscription": "/news"}))
        .await;
    let connect = socket.connect_message(None);
    socket.send(vec![connect]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    bayeux.shutdown().await;
    let reply = socket.recv().await;
    let connect = reply
        .iter()
        .find(|m| m["channel"] == "/meta/connect")
        .unwrap();
    assert_eq!(connect["advice"]["reconnect"], "retry", "{reply:?}");
    assert_eq!(socket.closed().await, Some(CloseCode::Away));
    socket.server.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn listeners_see_the_upgrade_request_and_no_response() {
    let bayeux = engine();
    bayeux
        .channel("/service/who")
        .add_listener(|event| async move {
            let ctx = context::current().unwrap();
            let agent = ctx.headers()[header::USER_AGENT]
                .to_str()
                .unwrap()
                .to_owned();
            let editable = ctx
                .insert_response_header(
                    header::HeaderName::from_static("x-a"),
                    header::HeaderValue::from_static("b"),
                )
                .is_ok();
            let answer =
                json!({"agent": agent, "has_response": ctx.has_response(), "editable": editable});
            let _ = event.session().deliver("/service/who", answer).await;
            event.proceed()
        });
    let request = Request::get("/cometd").header(header::USER_AGENT, "ws-test");
    let mut socket = Socket::open_with(&bayeux, request, 64 * 1024).await;
    socket.handshake(json!({})).await;
    let reply = socket
        .call(json!({"channel": "/service/who", "data": {}}))
        .await;
    assert_eq!(
        reply[0]["data"],
        json!({"agent": "ws-test", "has_response": false, "editable": false})
    );
}

#[tokio::test(start_paused = true)]
async fn a_held_connects_reply_sees_the_upgrade_request_as_context() {
    let bayeux = Bayeux::builder()
        .timeout(Duration::from_secs(10))
        .extension(common::ContextProbe)
        .build();
    let request = Request::get("/cometd").header("x-probe", "upgrade");
    let mut socket = Socket::open_with(&bayeux, request, 64 * 1024).await;
    socket.handshake(json!({})).await;
    let first = socket.call(socket.connect_message(Some(0))).await;
    assert_eq!(first[0]["ext"]["probe"], "upgrade");
    let held = socket.call(socket.connect_message(None)).await;
    assert_eq!(held[0]["ext"]["probe"], "upgrade", "{held:?}");
}

fn upgrade_request() -> http::request::Builder {
    Request::get("/cometd")
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
}

#[tokio::test]
async fn upgrade_requests_are_validated() {
    let bayeux = engine();
    let reply = |request: http::request::Builder| {
        let bayeux = bayeux.clone();
        async move { send(&bayeux, request.body(Full::new(Bytes::new())).unwrap()).await }
    };
    let no_key = Request::get("/cometd")
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13");
    assert_eq!(reply(no_key).await.status, StatusCode::BAD_REQUEST);
    let old = Request::get("/cometd")
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "8")
        .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==");
    let old = reply(old).await;
    assert_eq!(old.status, StatusCode::UPGRADE_REQUIRED);
    assert_eq!(old.headers[header::SEC_WEBSOCKET_VERSION], "13");
    let no_connection = Request::get("/cometd")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(reply(no_connection).await.status, StatusCode::BAD_REQUEST);
    // A valid request on a connection hyper cannot upgrade is refused with an explanation.
    let unsupported = reply(upgrade_request()).await;
    assert_eq!(unsupported.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        unsupported.body.contains("upgrades"),
        "{}",
        unsupported.body
    );
}

#[tokio::test]
async fn a_disabled_websocket_transport_is_refused_and_not_advertised() {
    let bayeux = Bayeux::builder().websocket(false).build();
    let refused = send(
        &bayeux,
        upgrade_request().body(Full::new(Bytes::new())).unwrap(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let client = Client::handshaken(&bayeux, None).await;
    let reply = client
        .send(vec![
            json!({"channel": "/meta/connect", "advice": {"timeout": 0}}),
        ])
        .await;
    assert_eq!(reply[0]["successful"], true);
    let body = json!([common::handshake_message("1")]).to_string();
    let handshake = common::post(&bayeux, "/cometd/handshake", None, &body)
        .await
        .messages();
    assert_eq!(
        handshake[0]["supportedConnectionTypes"],
        json!(["long-polling"])
    );
}

/// Sends a websocket upgrade for `/cometd` with these extra header lines over a new TCP
/// connection to `addr`; returns the response head (lowercase) and the stream.
async fn raw_upgrade(addr: std::net::SocketAddr, extra: &str) -> (String, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /cometd HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    (String::from_utf8(head).unwrap().to_ascii_lowercase(), tcp)
}

/// Serves `bayeux` under axum on a free port.
async fn serve(bayeux: &Bayeux) -> std::net::SocketAddr {
    let app = axum::Router::new()
        .fallback(|| async { "inner" })
        .layer(tower_bayeux::BayeuxLayer::new(bayeux.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Handshakes over an upgraded connection; returns the reply, if one came.
async fn handshake_over(tcp: tokio::net::TcpStream) -> Option<Value> {
    let mut ws = WebSocketStream::from_raw_socket(tcp, Role::Client, None).await;
    ws.send(Frame::text(
        r#"[{"id":"1","channel":"/meta/handshake","version":"1.0"}]"#,
    ))
    .await
    .unwrap();
    let Some(Ok(Frame::Text(reply))) = ws.next().await else {
        return None;
    };
    Some(serde_json::from_str(&reply).unwrap())
}

/// Whether a handshake over an upgraded connection succeeds.
async fn handshakes(tcp: tokio::net::TcpStream) -> bool {
    handshake_over(tcp)
        .await
        .is_some_and(|reply| reply[0]["successful"] == true)
}

#[tokio::test]
async fn a_real_server_upgrades_at_the_bayeux_path() {
    let bayeux = engine();
    let addr = serve(&bayeux).await;
    let (head, tcp) = raw_upgrade(addr, "").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let reply = handshake_over(tcp).await.expect("a handshake reply");
    assert_eq!(reply[0]["successful"], true);
    assert_eq!(reply[0]["id"], "1");
    assert_eq!(bayeux.session_count(), 1);
}

#[tokio::test]
async fn websocket_upgrades_from_other_sites_are_refused() {
    let bayeux = Bayeux::builder()
        .websocket_allowed_origin("https://app.example.com")
        .build();
    let addr = serve(&bayeux).await;
    for origin in [
        "http://evil.test".to_owned(),
        "null".to_owned(),
        "https://app.example.com.evil.test".to_owned(),
        format!("http://127.0.0.1:{}", addr.port() + 1),
        format!("https://localhost:{}", addr.port()),
    ] {
        let (head, _) = raw_upgrade(addr, &format!("Origin: {origin}\r\n")).await;
        assert!(head.starts_with("http/1.1 403"), "{origin}: {head}");
        assert!(!head.contains("upgrade: websocket"), "{origin}: {head}");
    }
    assert_eq!(bayeux.session_count(), 0);
    // The server keeps serving: its own origin, an allowed one, and clients without Origin.
    for extra in [
        format!("Origin: http://{addr}\r\n"),
        "Origin: https://app.example.com\r\n".to_owned(),
        String::new(),
    ] {
        let (head, tcp) = raw_upgrade(addr, &extra).await;
        assert!(head.starts_with("http/1.1 101"), "{extra}: {head}");
        assert!(handshakes(tcp).await, "{extra}");
    }
    assert_eq!(bayeux.session_count(), 3);
}

#[tokio::test]
async fn the_origin_check_can_be_turned_off() {
    let bayeux = Bayeux::builder().websocket_check_origin(false).build();
    let addr = serve(&bayeux).await;
    let (head, tcp) = raw_upgrade(addr, "Origin: http://evil.test\r\n").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(handshakes(tcp).await);
}

/// What an auth layer in front would insert.
#[derive(Clone)]
struct Claims(&'static str);

#[tokio::test]
async fn a_real_upgrade_keeps_the_requests_extensions_unless_told_not_to() {
    for keep in [true, false] {
        let bayeux = Bayeux::builder().websocket_keep_extensions(keep).build();
        bayeux
            .channel("/service/who")
            .add_listener(|event| async move {
                let ctx = context::current().unwrap();
                let answer = json!({
                    "claims": ctx.extension::<Claims>().map(|claims| claims.0),
                    "path": ctx.uri().path(),
                    "probe": ctx.headers()["x-probe"].to_str().unwrap(),
                });
                let _ = event.session().deliver("/service/who", answer).await;
                event.proceed()
            });
        let app = axum::Router::new()
            .fallback(|| async { "inner" })
            .layer(tower_bayeux::BayeuxLayer::new(bayeux.clone()))
            .layer(axum::Extension(Claims("alice")));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let (head, tcp) = raw_upgrade(addr, "X-Probe: upgrade\r\n").await;
        assert!(head.starts_with("http/1.1 101"), "{head}");
        let mut ws = WebSocketStream::from_raw_socket(tcp, Role::Client, None).await;
        let mut call = async |message: Value| {
            ws.send(Frame::text(json!([message]).to_string()))
                .await
                .unwrap();
            let Some(Ok(Frame::Text(reply))) = ws.next().await else {
                panic!("no reply");
            };
            serde_json::from_str::<Value>(&reply).unwrap()
        };
        let handshake = call(json!({"channel": "/meta/handshake", "version": "1.0"})).await;
        let client_id = handshake[0]["clientId"].clone();
        let reply =
            call(json!({"channel": "/service/who", "clientId": client_id, "data": {}})).await;
        let who = reply
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m.get("data").is_some())
            .unwrap_or_else(|| panic!("{reply}"));
        let claims = if keep { json!("alice") } else { Value::Null };
        assert_eq!(
            who["data"],
            json!({"claims": claims, "path": "/cometd", "probe": "upgrade"}),
            "keep: {keep}"
        );
    }
}
