//! What only the callback-polling (JSONP) transport does, as raw HTTP requests: the script
//! format, callback validation, query limits, and the transport being off by default.
//!
//! The scenarios every transport shares run over callback-polling in `tests/transports.rs`.
#![cfg(feature = "jsonp")]

mod common;

use std::time::Duration;

use common::jsonp::{self, encode, script_arguments};
use common::{Client, Reply, browser_cookie, send};
use http::{StatusCode, header};
use serde_json::{Value, json};
use tower_bayeux::Bayeux;

fn engine() -> Bayeux {
    Bayeux::builder()
        .timeout(Duration::from_secs(10))
        .callback_polling(true)
        .build()
}

/// Calls `callback` with `messages` the way the CometD client builds its script URLs.
async fn jsonp(bayeux: &Bayeux, callback: &str, messages: Value, cookie: Option<&str>) -> Reply {
    let request = jsonp::request("/cometd/", callback, &messages.to_string(), cookie);
    send(bayeux, request).await
}

/// The script format and the cookie; the protocol over callback-polling (handshake, held
/// connects, delivery) runs in `tests/transports.rs`.
#[tokio::test(start_paused = true)]
async fn scripts_call_the_named_callback_set_the_cookie_and_escape_line_separators() {
    let bayeux = engine();
    let handshake = json!([{"id": "1", "channel": "/meta/handshake", "version": "1.0",
        "supportedConnectionTypes": ["callback-polling"]}]);
    let reply = jsonp(&bayeux, "_cometd_jsonp_0", handshake, None).await;
    let cookie = browser_cookie(&reply).expect("the browser cookie");
    let messages = script_arguments(&reply, "_cometd_jsonp_0");
    assert_eq!(messages[0]["successful"], true);
    assert_eq!(messages[0]["id"], "1");
    let client_id = messages[0]["clientId"].as_str().unwrap().to_owned();

    let connect = json!([{"id": "2", "channel": "/meta/connect",
        "connectionType": "callback-polling", "clientId": client_id, "advice": {"timeout": 0}}]);
    let first = jsonp(&bayeux, "cb.first", connect.clone(), Some(&cookie)).await;
    assert_eq!(script_arguments(&first, "cb.first")[0]["successful"], true);

    let subscribe = json!([{"id": "3", "channel": "/meta/subscribe", "subscription": "/news",
        "clientId": client_id}]);
    let reply = jsonp(&bayeux, "cb", subscribe, Some(&cookie)).await;
    assert_eq!(script_arguments(&reply, "cb")[0]["successful"], true);

    // U+2028 ends a line in scripts older than ES2019: it travels escaped.
    bayeux
        .publish("/news", json!("line\u{2028}sep"))
        .await
        .unwrap();
    let reply = jsonp(&bayeux, "cb", connect.clone(), Some(&cookie)).await;
    assert!(reply.body.contains(r"line\u2028sep"), "{}", reply.body);
    let messages = script_arguments(&reply, "cb");
    assert_eq!(
        messages[0],
        json!({"channel": "/news", "data": "line\u{2028}sep"})
    );
    assert_eq!(messages[1]["channel"], "/meta/connect");

    // And without the cookie the clientId is worth nothing.
    let stolen = jsonp(&bayeux, "cb", connect, None).await;
    assert_eq!(
        script_arguments(&stolen, "cb")[0]["error"],
        "402::session_unknown"
    );
}

#[tokio::test(start_paused = true)]
async fn sessions_move_between_long_polling_and_callback_polling_with_the_cookie() {
    let bayeux = engine();
    let client = Client::connected(&bayeux).await;
    let publish = json!([{"id": "9", "channel": "/x", "data": 1, "clientId": client.client_id}]);
    let reply = jsonp(&bayeux, "cb", publish, Some(&client.cookie)).await;
    assert_eq!(script_arguments(&reply, "cb")[0]["successful"], true);
}

#[tokio::test]
async fn unsafe_callback_names_are_refused() {
    let bayeux = engine();
    let messages = json!([{"channel": "/meta/handshake", "version": "1.0"}]);
    for callback in [
        "alert(1)//",
        "a%20b",
        "%3Cscript%3E",
        "a;b",
        "1cb",
        "a..b",
        "x%E2%80%A8",
        &"a".repeat(65),
        "",
    ] {
        let reply = jsonp(&bayeux, callback, messages.clone(), None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{callback:?}");
        assert!(
            !reply.body.contains('('),
            "the name is not echoed: {}",
            reply.body
        );
    }
    assert_eq!(bayeux.session_count(), 0);
    let two = format!("jsonp=a&jsonp=b&message={}", encode(&messages.to_string()));
    assert_eq!(
        send(&bayeux, jsonp::get("/cometd", &two, None))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn bad_messages_are_refused() {
    let bayeux = Bayeux::builder()
        .max_body_size(256)
        .callback_polling(true)
        .build();
    for query in [
        "jsonp=cb".to_owned(),
        format!("jsonp=cb&message={}", encode("not json")),
        format!("jsonp=cb&message={}", encode("[]")),
        format!(
            "jsonp=cb&message={}",
            encode(r#"[{"channel":"/a","id":{}}]"#)
        ),
    ] {
        let reply = send(&bayeux, jsonp::get("/cometd", &query, None)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
    }
    let big = json!([{"channel": "/a", "data": "x".repeat(300)}]).to_string();
    let query = format!("jsonp=cb&message={}", encode(&big));
    let reply = send(&bayeux, jsonp::get("/cometd", &query, None)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn callback_polling_is_off_by_default_refused_and_not_advertised() {
    let bayeux = Bayeux::builder().build();
    let messages = json!([{"channel": "/meta/handshake", "version": "1.0"}]);
    let reply = jsonp(&bayeux, "cb", messages, None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("disabled"), "{}", reply.body);
    assert!(!reply.body.contains("cb("), "no script: {}", reply.body);
    assert!(reply.headers.get(header::SET_COOKIE).is_none());
    assert_eq!(bayeux.session_count(), 0, "nothing was processed");
    let body = json!([common::handshake_message("1")]).to_string();
    let handshake = common::post(&bayeux, "/cometd/handshake", None, &body)
        .await
        .messages();
    assert_eq!(
        handshake[0]["supportedConnectionTypes"],
        json!(["websocket", "long-polling"])
    );
}
