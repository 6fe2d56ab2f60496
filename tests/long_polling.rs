//! What only the long-polling transport does: the browser cookie (its attributes, and the
//! sessions bound to it), tabs of one browser sharing it, a held connect displaced by a newer
//! one, delivery on every reply, and HTTP status codes for bad requests and bodies.
//!
//! The scenarios every transport shares (handshake, connect, subscriptions, delivery,
//! disconnect, expiry, batches) run over long-polling in `tests/transports.rs`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{
    Client, browser_cookie, call, deliveries, handshake_body, handshake_message, post, send, settle,
};
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;
use serde_json::json;
use tokio::time::Instant;
use tower_bayeux::{Bayeux, BayeuxService, SameSite};

fn engine() -> Bayeux {
    Bayeux::builder()
        .timeout(Duration::from_secs(10))
        .max_interval(Duration::from_secs(5))
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_handshake_reply_is_json_and_sets_the_browser_cookie() {
    let bayeux = engine();
    let reply = post(&bayeux, "/cometd/handshake", None, &handshake_body()).await;
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "application/json;charset=UTF-8"
    );
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("BAYEUX_BROWSER="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert_eq!(reply.messages()[0]["successful"], true);
    // The session is bound to that cookie.
    let client_id = reply.messages()[0]["clientId"].as_str().unwrap().to_owned();
    let client = Client::from_parts(&bayeux, browser_cookie(&reply).unwrap(), &client_id);
    assert_eq!(client.connect(Some(0)).await[0]["successful"], true);
}

#[tokio::test(start_paused = true)]
async fn a_handshake_that_brings_the_cookie_gets_no_new_one() {
    let bayeux = engine();
    let first = Client::handshaken(&bayeux, None).await;
    let reply = post(
        &bayeux,
        "/cometd/handshake",
        Some(&first.cookie),
        &handshake_body(),
    )
    .await;
    assert!(reply.headers.get(header::SET_COOKIE).is_none());
    assert_eq!(reply.messages()[0]["successful"], true);
}

#[tokio::test(start_paused = true)]
async fn browser_cookie_options_reach_set_cookie() {
    let bayeux = Bayeux::builder()
        .browser_cookie_name("B")
        .browser_cookie_same_site(SameSite::Strict)
        .browser_cookie_secure(true)
        .browser_cookie_partitioned(true)
        .browser_cookie_domain("example.com")
        .browser_cookie_max_age(Duration::from_secs(3600))
        .build();
    let reply = post(&bayeux, "/cometd/handshake", None, &handshake_body()).await;
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    for part in [
        "B=",
        "SameSite=Strict",
        "Secure",
        "Partitioned",
        "Domain=example.com",
        "Max-Age=3600",
        "Path=/",
        "HttpOnly",
    ] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    // The renamed cookie is the one sessions are bound to.
    let client_id = reply.messages()[0]["clientId"].as_str().unwrap().to_owned();
    let browser = cookie.split(';').next().unwrap();
    let connect =
        json!([{"channel": "/meta/connect", "clientId": client_id, "advice": {"timeout": 0}}]);
    let ok = post(
        &bayeux,
        "/cometd/connect",
        Some(browser),
        &connect.to_string(),
    )
    .await
    .messages();
    assert_eq!(ok[0]["successful"], true);
    let renamed = browser.replacen("B=", "BAYEUX_BROWSER=", 1);
    let bad = post(
        &bayeux,
        "/cometd/connect",
        Some(&renamed),
        &connect.to_string(),
    )
    .await
    .messages();
    assert_eq!(bad[0]["error"], "402::session_unknown");
}

#[tokio::test(start_paused = true)]
async fn trusted_client_sessions_need_no_cookie_but_refuse_another_browsers() {
    let bayeux = Bayeux::builder()
        .timeout(Duration::from_secs(10))
        .trust_client_session(true)
        .build();
    let client = Client::connected(&bayeux).await;
    let other = Client::connected(&bayeux).await;
    // A client that keeps no cookie (such as one refusing cookies of an IP-address host).
    let mut cookieless = client.clone();
    cookieless.cookie = String::new();
    assert_eq!(cookieless.subscribe("/x").await["successful"], true);
    bayeux.publish("/x", json!("reached")).await.unwrap();
    let reply = cookieless.connect(Some(0)).await;
    assert_eq!(deliveries(&reply)[0]["data"], "reached");
    let mut thief = client.clone();
    thief.cookie = other.cookie.clone();
    assert_eq!(thief.subscribe("/y").await["error"], "402::session_unknown");
}

#[tokio::test(start_paused = true)]
async fn a_client_id_without_its_browser_cookie_does_not_reach_the_session() {
    let bayeux = engine();
    let victim = Client::connected(&bayeux).await;
    let other = Client::connected(&bayeux).await;
    let mut thief = victim.clone();
    thief.cookie = String::new();
    assert_eq!(thief.subscribe("/x").await["error"], "402::session_unknown");
    thief.cookie = other.cookie.clone();
    assert_eq!(thief.subscribe("/x").await["error"], "402::session_unknown");
    assert!(
        bayeux
            .session(&victim.client_id)
            .unwrap()
            .subscriptions()
            .is_empty()
    );
    assert_eq!(victim.subscribe("/x").await["successful"], true);
}

#[tokio::test(start_paused = true)]
async fn tabs_of_one_browser_beyond_the_limit_get_multiple_clients_advice() {
    let bayeux = Bayeux::builder().timeout(Duration::from_secs(10)).build();
    let first = Client::connected(&bayeux).await;
    let second = Client::handshaken(&bayeux, Some(&first.cookie)).await;
    assert_eq!(second.connect(Some(0)).await[0]["successful"], true);
    let held = tokio::spawn({
        let first = first.clone();
        async move { first.connect(None).await }
    });
    settle().await;
    let start = Instant::now();
    let reply = second.connect(None).await;
    assert_eq!(start.elapsed(), Duration::ZERO, "not held");
    assert_eq!(
        reply[0]["advice"],
        json!({"reconnect": "retry", "interval": 2000, "multiple-clients": true})
    );
    assert_eq!(reply[0]["successful"], true);
    held.await.unwrap();
    // Once the first tab's poll ended, the second may hold one.
    let start = Instant::now();
    second.connect(None).await;
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_zero_multi_session_interval_stops_the_extra_tabs() {
    let bayeux = Bayeux::builder()
        .multi_session_interval(Duration::ZERO)
        .build();
    let first = Client::connected(&bayeux).await;
    let second = Client::handshaken(&bayeux, Some(&first.cookie)).await;
    second.connect(Some(0)).await;
    let _held = tokio::spawn({
        let first = first.clone();
        async move { first.connect(None).await }
    });
    settle().await;
    let reply = second.connect(None).await;
    assert_eq!(reply[0]["successful"], false);
    assert_eq!(reply[0]["error"], "409::multiple_clients");
    assert_eq!(
        reply[0]["advice"],
        json!({"reconnect": "none", "multiple-clients": true})
    );
}

#[tokio::test(start_paused = true)]
async fn unlimited_sessions_per_browser_all_hold() {
    let bayeux = Bayeux::builder()
        .timeout(Duration::from_secs(10))
        .max_sessions_per_browser(None)
        .build();
    let first = Client::connected(&bayeux).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        let tab = Client::handshaken(&bayeux, Some(&first.cookie)).await;
        tab.connect(Some(0)).await;
        held.push(tokio::spawn(async move {
            let start = Instant::now();
            tab.connect(None).await;
            start.elapsed()
        }));
    }
    for handle in held {
        assert_eq!(handle.await.unwrap(), Duration::from_secs(10));
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_connect_displaces_the_held_one_with_the_configured_status() {
    let bayeux = Bayeux::builder()
        .duplicate_meta_connect_http_status(StatusCode::BAD_REQUEST)
        .build();
    let client = Client::connected(&bayeux).await;
    let first = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .request("/cometd/connect", vec![client.connect_message(None)])
                .await
        }
    });
    settle().await;
    let second = tokio::spawn({
        let client = client.clone();
        async move {
            let start = Instant::now();
            (client.connect(None).await, start.elapsed())
        }
    });
    settle().await;
    let displaced = first.await.unwrap();
    assert_eq!(displaced.status, StatusCode::BAD_REQUEST);
    assert!(displaced.body.is_empty());
    let (reply, held_for) = second.await.unwrap();
    assert_eq!(reply[0]["successful"], true);
    assert_eq!(
        held_for,
        Duration::from_secs(20),
        "the newer connect is held in full"
    );
}

#[tokio::test(start_paused = true)]
async fn with_delivery_on_every_reply_a_publishers_own_copy_rides_its_publish_reply() {
    let bayeux = Bayeux::builder()
        .timeout(Duration::from_secs(10))
        .meta_connect_delivery_only(false)
        .build();
    let a = Client::connected(&bayeux).await;
    a.subscribe("/chat/demo").await;
    let held = tokio::spawn({
        let a = a.clone();
        async move { (a.connect(None).await, Instant::now()) }
    });
    settle().await;
    let start = Instant::now();
    let reply = a.publish("/chat/demo", json!("mine")).await;
    assert_eq!(reply.len(), 2);
    assert_eq!(
        reply[0],
        json!({"channel": "/chat/demo", "data": "mine"}),
        "queued first"
    );
    assert_eq!(reply[1]["successful"], true);
    let (connect, ended) = held.await.unwrap();
    assert_eq!(
        ended - start,
        Duration::from_secs(10) - Duration::from_millis(1)
    );
    assert_eq!(
        connect.len(),
        1,
        "nothing left for the connect: {connect:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn malformed_requests_get_4xx_and_the_server_keeps_serving() {
    let bayeux = Bayeux::builder().max_body_size(1024).build();
    let client = Client::connected(&bayeux).await;
    let bad = |body: &'static str| {
        let bayeux = bayeux.clone();
        async move { post(&bayeux, "/cometd/", None, body).await.status }
    };
    assert_eq!(bad("not json").await, StatusCode::BAD_REQUEST);
    assert_eq!(bad("[]").await, StatusCode::BAD_REQUEST);
    assert_eq!(bad("[1,2]").await, StatusCode::BAD_REQUEST);
    assert_eq!(bad("").await, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad(r#"[{"channel":"/a","id":{"x":1}}]"#).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        bad(r#"[{"channel":"/a","subscription":5}]"#).await,
        StatusCode::BAD_REQUEST
    );
    let batched = json!([handshake_message("1"), {"channel": "/meta/connect", "clientId": "x"}]);
    let reply = post(&bayeux, "/cometd/", None, &batched.to_string()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("handshake"), "{}", reply.body);
    let too_big = format!(r#"[{{"channel":"/a","data":"{}"}}]"#, "x".repeat(2000));
    assert_eq!(
        post(&bayeux, "/cometd/", None, &too_big).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let request = Request::builder()
            .method(method.clone())
            .uri("/cometd")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let reply = send(&bayeux, request).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        // `GET` serves the websocket upgrade and callback-polling.
        let allow = if cfg!(any(feature = "websocket", feature = "jsonp")) {
            "GET, POST, OPTIONS"
        } else {
            "POST, OPTIONS"
        };
        assert_eq!(reply.headers[header::ALLOW], allow);
    }
    let options = Request::options("/cometd")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&bayeux, options).await.status, StatusCode::NO_CONTENT);

    assert_eq!(client.subscribe("/still/fine").await["successful"], true);
}

/// A body of `n` chunks of 500 bytes with no declared length.
struct Chunked(usize);

impl http_body::Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(None);
        }
        self.0 -= 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(vec![
            b' ';
            500
        ])))))
    }
}

#[tokio::test(start_paused = true)]
async fn an_oversized_body_without_content_length_is_refused_while_streaming() {
    let bayeux = Bayeux::builder().max_body_size(1024).build();
    let request = Request::post("/cometd").body(Chunked(10)).unwrap();
    let reply = call(BayeuxService::new(bayeux), request).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}
