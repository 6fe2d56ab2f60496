//! The long-polling transport and the protocol engine behind it, driven through the tower
//! service with paused time.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Client, deliveries, handshake_message, post, send, settle};
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::time::Instant;
use tower_bayeux::{Bayeux, RemoveReason, SameSite};

fn engine() -> Bayeux {
    Bayeux::builder()
        .timeout(Duration::from_secs(10))
        .max_interval(Duration::from_secs(5))
        .build()
}

#[tokio::test(start_paused = true)]
async fn handshake_reply_carries_the_protocol_fields_and_the_browser_cookie() {
    let bayeux = engine();
    let reply = post(
        &bayeux,
        "/cometd/handshake",
        None,
        &json!([handshake_message("1")]).to_string(),
    )
    .await;
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
    let messages = reply.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["id"], "1");
    assert_eq!(m["channel"], "/meta/handshake");
    assert_eq!(m["successful"], true);
    assert_eq!(m["version"], "1.0");
    assert_eq!(m["minimumVersion"], "1.0");
    assert_eq!(
        m["supportedConnectionTypes"],
        json!(["websocket", "long-polling"]),
        "callback-polling is off by default"
    );
    assert_eq!(
        m["advice"],
        json!({"reconnect": "retry", "interval": 0, "timeout": 10000})
    );
    let id = m["clientId"].as_str().unwrap();
    assert_eq!(id.len(), 40, "160 random bits as hex");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(bayeux.session(id).is_some());
}

#[tokio::test(start_paused = true)]
async fn session_and_browser_ids_are_unique() {
    let bayeux = engine();
    let mut ids = std::collections::HashSet::new();
    let mut cookies = std::collections::HashSet::new();
    for _ in 0..200 {
        let client = Client::handshaken(&bayeux, None).await;
        assert!(ids.insert(client.client_id));
        assert!(cookies.insert(client.cookie));
    }
}

#[tokio::test(start_paused = true)]
async fn a_handshake_that_brings_the_cookie_gets_no_new_one() {
    let bayeux = engine();
    let first = Client::handshaken(&bayeux, None).await;
    let body = json!([handshake_message("1")]).to_string();
    let reply = post(&bayeux, "/cometd/handshake", Some(&first.cookie), &body).await;
    assert!(reply.headers.get(header::SET_COOKIE).is_none());
    assert_eq!(reply.messages()[0]["successful"], true);
}

#[tokio::test(start_paused = true)]
async fn handshake_without_a_common_connection_type_fails() {
    let bayeux = engine();
    let body = json!([{"id": "1", "channel": "/meta/handshake", "version": "1.0",
        "supportedConnectionTypes": ["iframe"]}]);
    let messages = post(&bayeux, "/cometd/handshake", None, &body.to_string())
        .await
        .messages();
    assert_eq!(messages[0]["successful"], false);
    assert_eq!(messages[0]["error"], "403::handshake_failed");
    assert_eq!(messages[0]["advice"]["reconnect"], "none");
    assert_eq!(bayeux.session_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn first_connect_returns_at_once_and_later_ones_are_held_for_the_timeout() {
    let bayeux = engine();
    let client = Client::handshaken(&bayeux, None).await;
    let start = Instant::now();
    // No `timeout: 0`: the first connect is still answered at once, with advice.
    let first = client.connect(None).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(first[0]["successful"], true);
    assert_eq!(first[0]["advice"]["reconnect"], "retry");

    let start = Instant::now();
    let second = client.connect(None).await;
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(
        second,
        vec![json!({"id": second[0]["id"], "channel": "/meta/connect", "successful": true})]
    );
}

#[tokio::test(start_paused = true)]
async fn the_clients_advice_timeout_shortens_the_hold_but_cannot_lengthen_it() {
    let bayeux = engine();
    let client = Client::connected(&bayeux).await;
    let start = Instant::now();
    let reply = client.connect(Some(3000)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(
        reply[0]["advice"]["timeout"], 10000,
        "a client that sent advice gets advice"
    );
    let start = Instant::now();
    client.connect(Some(3_600_000)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    let start = Instant::now();
    client.connect(Some(0)).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_publish_releases_the_subscribers_held_connect_with_the_message_first() {
    let bayeux = engine();
    let a = Client::connected(&bayeux).await;
    let b = Client::connected(&bayeux).await;
    assert_eq!(a.subscribe("/chat/demo").await["successful"], true);
    let held = tokio::spawn({
        let a = a.clone();
        async move { a.connect(None).await }
    });
    settle().await;
    let start = Instant::now();
    let reply = b.publish("/chat/demo", json!({"text": "hi"})).await;
    assert_eq!(
        reply.len(),
        1,
        "b is not subscribed: only its publish reply"
    );
    assert_eq!(reply[0]["successful"], true);
    assert!(
        reply[0].get("data").is_none(),
        "publish replies carry no data"
    );
    let messages = held.await.unwrap();
    assert!(start.elapsed() < Duration::from_millis(5));
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0],
        json!({"channel": "/chat/demo", "data": {"text": "hi"}})
    );
    assert_eq!(messages[1]["channel"], "/meta/connect");
}

#[tokio::test(start_paused = true)]
async fn a_publishers_own_copy_wakes_its_held_connect_not_its_publish_reply() {
    let bayeux = engine();
    let a = Client::connected(&bayeux).await;
    a.subscribe("/chat/demo").await;
    let held = tokio::spawn({
        let a = a.clone();
        async move { (a.connect(None).await, Instant::now()) }
    });
    settle().await;
    let start = Instant::now();
    let reply = a.publish("/chat/demo", json!("mine")).await;
    assert_eq!(reply.len(), 1, "only the publish reply: {reply:?}");
    assert_eq!(reply[0]["successful"], true);
    let (connect, ended) = held.await.unwrap();
    assert!(ended - start < Duration::from_millis(5), "woken at once");
    assert_eq!(connect[0], json!({"channel": "/chat/demo", "data": "mine"}));
    assert_eq!(connect[1]["channel"], "/meta/connect");
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
async fn a_second_connect_displaces_the_held_one_with_the_configured_status() {
    let bayeux = Bayeux::builder()
        .duplicate_meta_connect_http_status(StatusCode::BAD_REQUEST)
        .build();
    let client = Client::connected(&bayeux).await;
    let first = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .post("/cometd/connect", vec![client.connect_message(None)])
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
async fn unknown_sessions_get_session_unknown_with_handshake_advice() {
    let bayeux = engine();
    let connect = json!([{"id": "9", "channel": "/meta/connect", "connectionType": "long-polling",
        "clientId": "nope"}]);
    let m = post(&bayeux, "/cometd/connect", None, &connect.to_string())
        .await
        .messages();
    assert_eq!(
        m,
        vec![
            json!({"id": "9", "channel": "/meta/connect", "successful": false,
            "error": "402::session_unknown", "advice": {"reconnect": "handshake", "interval": 0}})
        ]
    );
    let subscribe =
        json!([{"id": "3", "channel": "/meta/subscribe", "subscription": "/a", "clientId": "x"}]);
    let m = post(&bayeux, "/cometd/", None, &subscribe.to_string())
        .await
        .messages();
    assert_eq!(m[0]["error"], "402::session_unknown");
    assert_eq!(
        m[0]["subscription"], "/a",
        "the client cleans up by this field"
    );
    let publish = json!([{"id": "4", "channel": "/a", "data": 1}]);
    let m = post(&bayeux, "/cometd/", None, &publish.to_string())
        .await
        .messages();
    assert_eq!(m[0]["error"], "402::session_unknown");
    assert!(m[0].get("advice").is_none());
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
async fn subscriptions_take_strings_and_arrays_and_echo_them() {
    let bayeux = engine();
    let client = Client::connected(&bayeux).await;
    let reply = client
        .send(vec![
            json!({"channel": "/meta/subscribe", "subscription": ["/a", "/b/*"]}),
        ])
        .await;
    assert_eq!(reply[0]["subscription"], json!(["/a", "/b/*"]));
    assert_eq!(reply[0]["successful"], true);
    let session = bayeux.session(&client.client_id).unwrap();
    let mut subs: Vec<String> = session
        .subscriptions()
        .iter()
        .map(|c| c.to_string())
        .collect();
    subs.sort();
    assert_eq!(subs, ["/a", "/b/*"]);
    let reply = client
        .send(vec![
            json!({"channel": "/meta/unsubscribe", "subscription": ["/a", "/b/*", "/never"]}),
        ])
        .await;
    assert_eq!(reply[0]["successful"], true);
    assert_eq!(reply[0]["subscription"], json!(["/a", "/b/*", "/never"]));
    assert!(session.subscriptions().is_empty());
    for channel in ["/a", "/b/*"] {
        assert!(bayeux.channel(channel).subscribers().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn bad_subscriptions_fail_with_the_matching_error() {
    let bayeux = engine();
    let client = Client::connected(&bayeux).await;
    for (subscription, error) in [
        (json!("/meta/connect"), "403::subscribe_denied"),
        (json!("/meta/**"), "403::subscribe_denied"),
        (json!("/a//b"), "405::subscription_invalid"),
        (json!(["/ok", "nope"]), "405::subscription_invalid"),
        (json!([]), "403::subscription_missing"),
    ] {
        let reply = client
            .send(vec![
                json!({"channel": "/meta/subscribe", "subscription": subscription}),
            ])
            .await;
        assert_eq!(reply[0]["successful"], false, "{subscription}");
        assert_eq!(reply[0]["error"], error, "{subscription}");
    }
    let reply = client
        .send(vec![json!({"channel": "/meta/subscribe"})])
        .await;
    assert_eq!(reply[0]["error"], "403::subscription_missing");
    assert!(
        bayeux
            .session(&client.client_id)
            .unwrap()
            .subscriptions()
            .is_empty(),
        "all or nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn meta_channels_are_matched_exactly_and_clients_cannot_publish_to_them() {
    let bayeux = engine();
    let client = Client::connected(&bayeux).await;
    for channel in ["/meta/subscribe/x", "/meta/connect/x", "/meta/foo", "/meta"] {
        let reply = client
            .send(vec![
                json!({"channel": channel, "subscription": "/a", "data": 1}),
            ])
            .await;
        assert_eq!(reply[0]["successful"], false, "{channel}");
        assert_eq!(reply[0]["error"], "403::publish_denied", "{channel}");
    }
    assert!(
        bayeux
            .session(&client.client_id)
            .unwrap()
            .subscriptions()
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn publishing_to_patterns_or_invalid_names_is_refused() {
    let bayeux = engine();
    let client = Client::connected(&bayeux).await;
    let watcher = Client::connected(&bayeux).await;
    watcher.subscribe("/a/*").await;
    for channel in ["/a/*", "/a/**", "/a//b", "no-slash"] {
        let reply = client.publish(channel, json!(1)).await;
        assert_eq!(reply[0]["error"], "405::channel_invalid", "{channel}");
    }
    assert_eq!(bayeux.session(&watcher.client_id).unwrap().queue_len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_message_without_channel_fails_alone_in_its_batch() {
    let bayeux = engine();
    let client = Client::connected(&bayeux).await;
    let reply = client
        .send(vec![
            json!({"id": "a", "data": 1}),
            json!({"id": "b", "channel": "/meta/subscribe", "subscription": "/x"}),
        ])
        .await;
    assert_eq!(
        reply[0],
        json!({"id": "a", "successful": false, "error": "400::channel_missing"})
    );
    assert_eq!(reply[1]["id"], "b");
    assert_eq!(reply[1]["successful"], true);
}

#[tokio::test(start_paused = true)]
async fn service_channel_messages_are_never_broadcast() {
    let bayeux = engine();
    let a = Client::connected(&bayeux).await;
    let b = Client::connected(&bayeux).await;
    assert_eq!(b.subscribe("/service/x").await["successful"], true);
    assert_eq!(b.subscribe("/service/**").await["successful"], true);
    assert!(
        bayeux
            .session(&b.client_id)
            .unwrap()
            .subscriptions()
            .is_empty(),
        "not recorded"
    );
    let reply = a.publish("/service/x", json!("secret")).await;
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0]["successful"], true);
    assert_eq!(bayeux.session(&b.client_id).unwrap().queue_len(), 0);
}

#[tokio::test(start_paused = true)]
async fn overlapping_wildcard_subscriptions_deliver_each_message_once() {
    let bayeux = engine();
    let client = Client::connected(&bayeux).await;
    for sub in ["/x/*", "/x/**", "/x/y", "/**"] {
        client.subscribe(sub).await;
    }
    client.publish("/x/y", json!(1)).await;
    let reply = client.connect(Some(0)).await;
    assert_eq!(deliveries(&reply).len(), 1, "{reply:?}");
}

#[tokio::test(start_paused = true)]
async fn sessions_on_different_overlapping_patterns_each_get_one_copy() {
    let bayeux = engine();
    let publisher = Client::connected(&bayeux).await;
    let patterns: [&[&str]; 5] = [
        &["/x/y"],
        &["/x/*"],
        &["/x/**", "/x/y"],
        &["/**"],
        &["/**", "/x/*", "/x/**"],
    ];
    let mut clients = Vec::new();
    for subs in patterns {
        let client = Client::connected(&bayeux).await;
        for sub in subs {
            client.subscribe(sub).await;
        }
        clients.push(client);
    }
    publisher.publish("/x/y", json!("m")).await;
    for (client, subs) in clients.iter().zip(patterns) {
        let reply = client.connect(Some(0)).await;
        assert_eq!(deliveries(&reply).len(), 1, "{subs:?}: {reply:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn wildcards_match_one_or_many_segments() {
    let bayeux = engine();
    let publisher = Client::connected(&bayeux).await;
    let one = Client::connected(&bayeux).await;
    let deep = Client::connected(&bayeux).await;
    one.subscribe("/w/*").await;
    deep.subscribe("/w/**").await;
    publisher.publish("/w/a", json!("shallow")).await;
    publisher.publish("/w/a/b", json!("deep")).await;
    publisher.publish("/wx", json!("other")).await;
    let got = |client: &Client| {
        let client = client.clone();
        async move {
            let reply = client.connect(Some(0)).await;
            deliveries(&reply)
                .iter()
                .map(|m| m["data"].clone())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(got(&one).await, vec![json!("shallow")]);
    assert_eq!(got(&deep).await, vec![json!("shallow"), json!("deep")]);
}

#[tokio::test(start_paused = true)]
async fn broadcasts_carry_neither_the_publishers_id_nor_its_client_id() {
    let bayeux = engine();
    let publisher = Client::connected(&bayeux).await;
    let subscriber = Client::connected(&bayeux).await;
    subscriber.subscribe("/news").await;
    publisher
        .send(vec![json!({"id": "42", "channel": "/news", "data": {"a": 1}, "ext": {"e": true}, "custom": 5})])
        .await;
    let reply = subscriber.connect(Some(0)).await;
    assert_eq!(
        reply[0],
        json!({"channel": "/news", "data": {"a": 1}, "ext": {"e": true}, "custom": 5})
    );
    assert!(!reply[0].to_string().contains(&publisher.client_id));
    publisher.send(vec![json!({"channel": "/news"})]).await;
    let reply = subscriber.connect(Some(0)).await;
    assert_eq!(
        reply[0],
        json!({"channel": "/news", "data": null}),
        "deliveries always carry data"
    );
}

#[tokio::test(start_paused = true)]
async fn disconnect_removes_the_session_and_releases_its_held_connect() {
    let bayeux = engine();
    let client = Client::connected(&bayeux).await;
    client.subscribe("/a").await;
    let removed = std::sync::Arc::new(std::sync::Mutex::new(None));
    bayeux.session(&client.client_id).unwrap().on_removed({
        let removed = removed.clone();
        move |_, reason| {
            *removed.lock().unwrap() = Some(reason);
            async {}
        }
    });
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.connect(None).await }
    });
    settle().await;
    let reply = client
        .send(vec![json!({"channel": "/meta/disconnect"})])
        .await;
    assert_eq!(reply[0]["successful"], true);
    let connect = held.await.unwrap();
    assert_eq!(connect[0]["successful"], true);
    assert_eq!(connect[0]["advice"]["reconnect"], "none");
    assert_eq!(*removed.lock().unwrap(), Some(RemoveReason::Disconnected));
    assert!(bayeux.session(&client.client_id).is_none());
    assert!(bayeux.channel("/a").subscribers().is_empty());
    assert_eq!(
        client.connect(Some(0)).await[0]["error"],
        "402::session_unknown"
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_side_disconnect_tells_the_held_connect_to_stop() {
    let bayeux = engine();
    let client = Client::connected(&bayeux).await;
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.connect(None).await }
    });
    settle().await;
    let session = bayeux.session(&client.client_id).unwrap();
    assert!(session.disconnect().await);
    assert!(!session.disconnect().await, "only once");
    let reply = held.await.unwrap();
    assert_eq!(
        reply[0],
        json!({"channel": "/meta/disconnect", "successful": true})
    );
    assert_eq!(reply[1]["channel"], "/meta/connect");
    assert_eq!(reply[1]["advice"]["reconnect"], "none");
}

#[tokio::test(start_paused = true)]
async fn sessions_expire_interval_plus_max_interval_after_the_last_connect_reply() {
    let bayeux = Bayeux::builder()
        .timeout(Duration::from_secs(10))
        .interval(Duration::from_secs(1))
        .max_interval(Duration::from_secs(5))
        .sweep_period(Duration::from_millis(100))
        .build();
    let client = Client::connected(&bayeux).await;
    let session = bayeux.session(&client.client_id).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    session.on_removed(move |_, reason| {
        if let Some(tx) = tx.lock().unwrap().take() {
            let _ = tx.send((reason, Instant::now()));
        }
        async {}
    });
    // A held connect keeps the session alive well past the expiry period.
    let start = Instant::now();
    client.connect(None).await;
    client.connect(None).await;
    assert_eq!(start.elapsed(), Duration::from_secs(20));
    assert!(!session.is_removed());
    let last_reply = Instant::now();
    let (reason, at) = rx.await.unwrap();
    assert_eq!(reason, RemoveReason::Timeout);
    let lived = at - last_reply;
    assert!(
        lived >= Duration::from_secs(6) && lived <= Duration::from_millis(6100),
        "expired after {lived:?}"
    );
    assert!(bayeux.session(&client.client_id).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_session_that_never_connects_expires_too() {
    let bayeux = Bayeux::builder()
        .max_interval(Duration::from_secs(2))
        .sweep_period(Duration::from_millis(100))
        .build();
    let client = Client::handshaken(&bayeux, None).await;
    tokio::time::sleep(Duration::from_millis(1900)).await;
    assert!(bayeux.session(&client.client_id).is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(bayeux.session(&client.client_id).is_none());
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_held_connect_starts_the_expiry_clock() {
    let bayeux = Bayeux::builder()
        .timeout(Duration::from_secs(30))
        .max_interval(Duration::from_secs(2))
        .sweep_period(Duration::from_millis(100))
        .build();
    let client = Client::connected(&bayeux).await;
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.connect(None).await }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        bayeux.session(&client.client_id).is_some(),
        "held connects never expire"
    );
    held.abort();
    let _ = held.await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(bayeux.session(&client.client_id).is_none());
}

#[tokio::test(start_paused = true)]
async fn other_messages_keep_a_session_alive() {
    let bayeux = Bayeux::builder()
        .max_interval(Duration::from_secs(2))
        .sweep_period(Duration::from_millis(100))
        .build();
    let client = Client::connected(&bayeux).await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            client.publish("/ping", json!(1)).await[0]["successful"],
            true
        );
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(bayeux.session(&client.client_id).is_none());
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
async fn a_batch_is_processed_in_order_with_queued_messages_first() {
    let bayeux = engine();
    let client = Client::connected(&bayeux).await;
    let reply = client
        .send(vec![
            json!({"id": "s", "channel": "/meta/subscribe", "subscription": "/room"}),
            json!({"id": "p1", "channel": "/room", "data": 1}),
            json!({"id": "p2", "channel": "/room", "data": 2}),
            json!({"id": "u", "channel": "/meta/unsubscribe", "subscription": "/room"}),
            json!({"id": "p3", "channel": "/room", "data": 3}),
            json!({"id": "c", "channel": "/meta/connect", "connectionType": "long-polling"}),
        ])
        .await;
    let ids: Vec<&Value> = reply.iter().map(|m| &m["id"]).collect();
    assert_eq!(
        ids,
        [
            &Value::Null,
            &Value::Null,
            &json!("s"),
            &json!("p1"),
            &json!("p2"),
            &json!("u"),
            &json!("p3"),
            &json!("c")
        ]
    );
    assert_eq!(reply[0]["data"], 1);
    assert_eq!(reply[1]["data"], 2);
}

#[tokio::test(start_paused = true)]
async fn numeric_ids_are_echoed_as_numbers() {
    let bayeux = engine();
    let client = Client::connected(&bayeux).await;
    let reply = client
        .send(vec![
            json!({"id": 17, "channel": "/meta/subscribe", "subscription": "/a"}),
        ])
        .await;
    assert_eq!(reply[0]["id"], 17);
}

#[tokio::test(start_paused = true)]
async fn ordering_holds_under_load() {
    let bayeux = engine();
    let publisher = Client::connected(&bayeux).await;
    let subscriber = Client::connected(&bayeux).await;
    subscriber.subscribe("/load").await;
    let receiver = tokio::spawn({
        let subscriber = subscriber.clone();
        async move {
            let mut got = Vec::new();
            while got.len() < 1000 {
                let reply = subscriber.connect(None).await;
                got.extend(
                    deliveries(&reply)
                        .iter()
                        .map(|m| m["data"].as_u64().unwrap()),
                );
            }
            got
        }
    });
    for chunk in (0..1000u64).collect::<Vec<_>>().chunks(37) {
        let batch = chunk
            .iter()
            .map(|i| json!({"channel": "/load", "data": i}))
            .collect();
        publisher.send(batch).await;
        tokio::task::yield_now().await;
    }
    let got = receiver.await.unwrap();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
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
        assert_eq!(reply.headers[header::ALLOW], "GET, POST, OPTIONS");
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
    let response = tower::ServiceExt::oneshot(tower_bayeux::BayeuxService::new(bayeux), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
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
    let reply = post(
        &bayeux,
        "/cometd/handshake",
        None,
        &json!([handshake_message("1")]).to_string(),
    )
    .await;
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
async fn numbers_in_published_data_reach_subscribers_unaltered() {
    let bayeux = engine();
    let subscriber = Client::connected(&bayeux).await;
    subscriber.subscribe("/numbers").await;
    let publisher = Client::connected(&bayeux).await;
    // Sent as text: 70 nines (closest double 1e70), a 17-digit double, more digits than a
    // double holds, and the largest u64.
    let body = format!(
        r#"[{{"id":"p","channel":"/numbers","clientId":"{}","data":{{"big":{},"sum":0.30000000000000004,"pi":3.14159265358979323846264338327950288,"max":18446744073709551615}}}}]"#,
        publisher.client_id,
        "9".repeat(70)
    );
    let reply = post(&bayeux, "/cometd/", Some(&publisher.cookie), &body).await;
    assert_eq!(reply.messages()[0]["successful"], true);
    let delivered = subscriber
        .post("/cometd/connect", vec![subscriber.connect_message(Some(0))])
        .await;
    // The text, not only the value: a parser that rounds the long mantissa wrongly sends
    // 9.999999999999999e+69, which reads back as 1e70.
    assert!(
        delivered.body.contains(r#""big":1e+70"#),
        "{}",
        delivered.body
    );
    let received = delivered.messages();
    let data = &deliveries(&received)[0]["data"];
    assert_eq!(data["big"].as_f64(), Some(1e70), "{data}");
    assert_eq!(data["sum"].as_f64(), Some(0.1 + 0.2), "{data}");
    assert_eq!(data["pi"].as_f64(), Some(std::f64::consts::PI), "{data}");
    assert_eq!(data["max"].as_u64(), Some(u64::MAX), "{data}");
}

/// An engine whose `/service/slow` listener waits until the returned gate is opened.
fn slow_service_engine() -> (Bayeux, std::sync::Arc<tokio::sync::Notify>) {
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
    (bayeux, gate)
}

#[tokio::test(start_paused = true)]
async fn a_slow_service_listener_does_not_hold_back_deliveries_to_its_client() {
    let (bayeux, gate) = slow_service_engine();
    let client = Client::connected(&bayeux).await;
    client.subscribe("/news").await;
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.connect(None).await }
    });
    settle().await;
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .publish("/service/slow", json!("take your time"))
                .await
        }
    });
    settle().await;
    let start = Instant::now();
    bayeux.publish("/news", json!("now")).await.unwrap();
    let reply = held.await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "the connect returns at once"
    );
    assert_eq!(deliveries(&reply)[0]["data"], "now");
    assert!(!slow.is_finished(), "the listener still runs");
    gate.notify_one();
    assert_eq!(slow.await.unwrap()[0]["successful"], true);
}
