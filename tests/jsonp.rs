//! The callback-polling (JSONP) transport, as raw HTTP requests.
#![cfg(feature = "jsonp")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Client, Reply, send};
use http::{Request, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::time::Instant;
use tower_bayeux::Bayeux;

fn engine() -> Bayeux {
    Bayeux::builder()
        .timeout(Duration::from_secs(10))
        .callback_polling(true)
        .build()
}

fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn get(bayeux: &Bayeux, path: &str, query: &str, cookie: Option<&str>) -> Reply {
    let mut request = Request::get(format!("{path}?{query}"));
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    send(bayeux, request.body(Full::new(Bytes::new())).unwrap()).await
}

/// Calls `callback` with `messages` the way the CometD client builds its script URLs.
async fn jsonp(bayeux: &Bayeux, callback: &str, messages: Value, cookie: Option<&str>) -> Reply {
    let query = format!("jsonp={callback}&message={}", encode(&messages.to_string()));
    get(bayeux, "/cometd/", &query, cookie).await
}

/// The array a script passes to its callback.
fn script_arguments(reply: &Reply, callback: &str) -> Vec<Value> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "text/javascript;charset=UTF-8"
    );
    let prefix = format!("/**/{callback}(");
    let inner = reply
        .body
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(");"))
        .unwrap_or_else(|| panic!("not a call of {callback}: {}", reply.body));
    serde_json::from_str::<Value>(inner)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(start_paused = true)]
async fn a_session_runs_entirely_over_callback_polling() {
    let bayeux = engine();
    let handshake = json!([{"id": "1", "channel": "/meta/handshake", "version": "1.0",
        "supportedConnectionTypes": ["callback-polling"]}]);
    let reply = jsonp(&bayeux, "_cometd_jsonp_0", handshake, None).await;
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let messages = script_arguments(&reply, "_cometd_jsonp_0");
    assert_eq!(messages[0]["successful"], true);
    assert_eq!(messages[0]["id"], "1");
    let client_id = messages[0]["clientId"].as_str().unwrap().to_owned();

    let connect = |timeout: Option<u64>| {
        let mut message = json!({"id": "2", "channel": "/meta/connect",
            "connectionType": "callback-polling", "clientId": client_id});
        if let Some(timeout) = timeout {
            message["advice"] = json!({"timeout": timeout});
        }
        json!([message])
    };
    let first = jsonp(&bayeux, "cb.first", connect(Some(0)), Some(&cookie)).await;
    assert_eq!(script_arguments(&first, "cb.first")[0]["successful"], true);

    let subscribe = json!([{"id": "3", "channel": "/meta/subscribe", "subscription": "/news",
        "clientId": client_id}]);
    let reply = jsonp(&bayeux, "cb", subscribe, Some(&cookie)).await;
    assert_eq!(script_arguments(&reply, "cb")[0]["successful"], true);

    // Held like a long-poll, released by a delivery.
    let held = tokio::spawn({
        let bayeux = bayeux.clone();
        let cookie = cookie.clone();
        let message = connect(None);
        async move {
            let start = Instant::now();
            (
                jsonp(&bayeux, "cb", message, Some(&cookie)).await,
                start.elapsed(),
            )
        }
    });
    common::settle().await;
    bayeux
        .publish("/news", json!("line\u{2028}sep"))
        .await
        .unwrap();
    let (reply, held_for) = held.await.unwrap();
    assert!(held_for < Duration::from_millis(5));
    assert!(reply.body.contains(r"line\u2028sep"), "{}", reply.body);
    let messages = script_arguments(&reply, "cb");
    assert_eq!(
        messages[0],
        json!({"channel": "/news", "data": "line\u{2028}sep"})
    );
    assert_eq!(messages[1]["channel"], "/meta/connect");

    // And without the cookie the clientId is worth nothing.
    let stolen = jsonp(&bayeux, "cb", connect(Some(0)), None).await;
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
        get(&bayeux, "/cometd", &two, None).await.status,
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
        let reply = get(&bayeux, "/cometd", &query, None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
    }
    let big = json!([{"channel": "/a", "data": "x".repeat(300)}]).to_string();
    let reply = get(
        &bayeux,
        "/cometd",
        &format!("jsonp=cb&message={}", encode(&big)),
        None,
    )
    .await;
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
