//! The scenarios every transport must pass alike, run over long-polling, callback-polling and
//! websocket: each scenario is a function of the [`Transport`], instantiated once per
//! transport by [`transport_suite!`] as `<transport>::<scenario>`, on paused time.
//!
//! Where a transport legitimately differs the scenario says so with a `match` on it: over HTTP
//! a session's messages travel only on `/meta/connect` replies, while a websocket pushes them
//! at once (alone, or in the frame of a reply) and its held connect stays held; a websocket
//! session is bound to no browser cookie.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::removal::{assert_lives_then_expires, removal_of};
use common::transport::TestClient;
use common::{Transport, data_of, deliveries};
use serde_json::{Value, json};
use tokio::time::Instant;
#[cfg(feature = "websocket")]
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tower_bayeux::{Bayeux, RemoveReason};

/// Runs every scenario below over `$transport`, in a module `$module`.
macro_rules! transport_suite {
    ($module:ident, $transport:expr) => {
        mod $module {
            transport_suite!(@scenarios $transport;
                handshake_reply_carries_the_protocol_fields,
                session_ids_are_unique,
                handshake_without_a_common_connection_type_fails,
                first_connect_returns_at_once_and_later_ones_are_held_for_the_timeout,
                the_clients_advice_timeout_shortens_the_hold_but_cannot_lengthen_it,
                a_publish_reaches_a_subscriber_with_a_held_connect_at_once,
                where_a_publishers_own_copy_travels,
                unknown_sessions_get_session_unknown_with_handshake_advice,
                subscriptions_take_strings_and_arrays_and_echo_them,
                bad_subscriptions_fail_with_the_matching_error,
                meta_channels_are_matched_exactly_and_clients_cannot_publish_to_them,
                publishing_to_patterns_or_invalid_names_is_refused,
                a_message_without_channel_fails_alone_in_its_batch,
                service_channel_messages_are_never_broadcast,
                overlapping_wildcard_subscriptions_deliver_each_message_once,
                sessions_on_different_overlapping_patterns_each_get_one_copy,
                wildcards_match_one_or_many_segments,
                an_unsubscribed_session_gets_nothing_more,
                broadcasts_carry_neither_the_publishers_id_nor_its_client_id,
                a_remote_call_answer_and_its_reply_are_both_recognisable,
                numbers_in_published_data_reach_subscribers_unaltered,
                disconnect_removes_the_session_and_releases_its_held_connect,
                a_server_side_disconnect_tells_the_held_connect_to_stop,
                sessions_expire_interval_plus_max_interval_after_the_last_connect_reply,
                a_session_that_never_connects_expires_too,
                a_vanished_client_with_a_held_connect_expires_after_max_interval,
                other_messages_keep_a_session_alive,
                a_batch_is_processed_in_order_with_queued_messages_first,
                numeric_ids_are_echoed_as_numbers,
                ordering_holds_under_load,
                a_slow_service_listener_does_not_hold_back_deliveries_to_its_client,
                shutdown_answers_the_held_connect_and_refuses_new_sessions,
            );
        }
    };
    (@scenarios $transport:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(start_paused = true)]
            async fn $scenario() {
                super::$scenario($transport).await;
            }
        )*
    };
}

transport_suite!(long_polling, crate::Transport::LongPolling);
#[cfg(feature = "jsonp")]
transport_suite!(callback_polling, crate::Transport::CallbackPolling);
#[cfg(feature = "websocket")]
transport_suite!(websocket, crate::Transport::WebSocket);

/// An engine serving `t`: connects held 10 s, sessions expiring 5 s after their last connect
/// reply, swept every 100 ms.
fn engine(t: Transport) -> Bayeux {
    t.builder()
        .timeout(Duration::from_secs(10))
        .max_interval(Duration::from_secs(5))
        .sweep_period(Duration::from_millis(100))
        .build()
}

// ---------------------------------------------------------------------------------------------
// Handshake and connect
// ---------------------------------------------------------------------------------------------

async fn handshake_reply_carries_the_protocol_fields(t: Transport) {
    let bayeux = engine(t);
    let mut client = t.open(&bayeux).await;
    let messages = client.handshake().await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["id"], "1");
    assert_eq!(m["channel"], "/meta/handshake");
    assert_eq!(m["successful"], true);
    assert_eq!(m["version"], "1.0");
    assert_eq!(m["minimumVersion"], "1.0");
    assert_eq!(
        m["supportedConnectionTypes"],
        t.advertised(),
        "exactly the enabled transports"
    );
    assert_eq!(
        m["advice"],
        json!({"reconnect": "retry", "interval": 0, "timeout": 10000})
    );
    let id = m["clientId"].as_str().unwrap();
    assert_eq!(id.len(), 40, "160 random bits as hex");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(bayeux.session(id).is_some());
    // Over HTTP the session is bound to the browser cookie set with the reply; a handshake
    // over a websocket (which brought no cookie) needs none.
    let browsers = match t.is_http() {
        true => {
            let cookie = client.cookie().expect("a browser cookie");
            assert!(cookie.starts_with("BAYEUX_BROWSER="), "{cookie}");
            1
        }
        false => 0,
    };
    assert_eq!(bayeux.stats().browsers, browsers);
}

async fn session_ids_are_unique(t: Transport) {
    let bayeux = engine(t);
    let mut ids = HashSet::new();
    let mut cookies = HashSet::new();
    for _ in 0..200 {
        let client = t.handshaken(&bayeux).await;
        assert!(ids.insert(client.client_id().to_owned()));
        if let Some(cookie) = client.cookie() {
            assert!(cookies.insert(cookie.to_owned()));
        }
    }
    // Over HTTP every handshake without a cookie starts a browser of its own.
    let browsers = if t.is_http() { 200 } else { 0 };
    assert_eq!(cookies.len(), browsers);
}

async fn handshake_without_a_common_connection_type_fails(t: Transport) {
    let bayeux = engine(t);
    let mut client = t.open(&bayeux).await;
    let messages = client
        .handshake_with(
            json!({"id": "1", "channel": "/meta/handshake", "version": "1.0",
            "supportedConnectionTypes": ["iframe"]}),
        )
        .await;
    assert_eq!(messages[0]["successful"], false);
    assert_eq!(messages[0]["error"], "403::handshake_failed");
    assert_eq!(messages[0]["advice"]["reconnect"], "none");
    assert_eq!(bayeux.session_count(), 0);
}

async fn first_connect_returns_at_once_and_later_ones_are_held_for_the_timeout(t: Transport) {
    let bayeux = engine(t);
    let mut client = t.handshaken(&bayeux).await;
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

async fn the_clients_advice_timeout_shortens_the_hold_but_cannot_lengthen_it(t: Transport) {
    let bayeux = engine(t);
    let mut client = t.connected(&bayeux).await;
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

// ---------------------------------------------------------------------------------------------
// Publish and delivery
// ---------------------------------------------------------------------------------------------

async fn a_publish_reaches_a_subscriber_with_a_held_connect_at_once(t: Transport) {
    let bayeux = engine(t);
    let mut a = t.connected(&bayeux).await;
    let mut b = t.connected(&bayeux).await;
    assert_eq!(a.subscribe("/chat/demo").await["successful"], true);
    let sent = Instant::now();
    let held = a.hold_connect().await;
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
    let message = json!({"channel": "/chat/demo", "data": {"text": "hi"}});
    match t.is_http() {
        // The held connect returns at once, the message first.
        true => {
            let messages = a.finish(held).await;
            assert!(start.elapsed() < Duration::from_millis(5));
            assert_eq!(messages.len(), 2);
            assert_eq!(messages[0], message);
            assert_eq!(messages[1]["channel"], "/meta/connect");
        }
        // Pushed at once in a frame of its own; the connect stays held until its timeout.
        false => {
            assert_eq!(a.next_frame().await, vec![message]);
            assert_eq!(start.elapsed(), Duration::ZERO);
            let reply = a.finish(held).await;
            assert_eq!(sent.elapsed(), Duration::from_secs(10), "at its timeout");
            assert_eq!(reply.len(), 1, "{reply:?}");
            assert_eq!(reply[0]["channel"], "/meta/connect");
            assert_eq!(reply[0]["successful"], true);
        }
    }
}

async fn where_a_publishers_own_copy_travels(t: Transport) {
    let bayeux = engine(t);
    let mut a = t.connected(&bayeux).await;
    a.subscribe("/chat/demo").await;
    let sent = Instant::now();
    let held = a.hold_connect().await;
    let start = Instant::now();
    let reply = a.publish("/chat/demo", json!("mine")).await;
    let copy = json!({"channel": "/chat/demo", "data": "mine"});
    match t.is_http() {
        // Only on the held connect, woken at once: the publisher's order is kept.
        true => {
            assert_eq!(reply.len(), 1, "only the publish reply: {reply:?}");
            assert_eq!(reply[0]["successful"], true);
            let connect = a.finish(held).await;
            assert!(start.elapsed() < Duration::from_millis(5), "woken at once");
            assert_eq!(connect[0], copy);
            assert_eq!(connect[1]["channel"], "/meta/connect");
        }
        // Pushed with the publish reply, first; the connect stays held.
        false => {
            assert_eq!(reply.len(), 2, "{reply:?}");
            assert_eq!(reply[0], copy);
            assert_eq!(reply[1]["successful"], true);
            assert!(!a.is_answered(&held));
            let connect = a.finish(held).await;
            assert_eq!(sent.elapsed(), Duration::from_secs(10), "at its timeout");
            assert_eq!(connect.len(), 1, "{connect:?}");
        }
    }
}

async fn unknown_sessions_get_session_unknown_with_handshake_advice(t: Transport) {
    let bayeux = engine(t);
    let mut stranger = t.open(&bayeux).await;
    let connect = json!({"id": "9", "channel": "/meta/connect",
        "connectionType": t.connection_type(), "clientId": "nope"});
    let m = stranger.send_raw(vec![connect]).await;
    assert_eq!(
        m,
        vec![
            json!({"id": "9", "channel": "/meta/connect", "successful": false,
            "error": "402::session_unknown", "advice": {"reconnect": "handshake", "interval": 0}})
        ]
    );
    let subscribe =
        json!({"id": "3", "channel": "/meta/subscribe", "subscription": "/a", "clientId": "x"});
    let m = stranger.send_raw(vec![subscribe]).await;
    assert_eq!(m[0]["error"], "402::session_unknown");
    assert_eq!(
        m[0]["subscription"], "/a",
        "the client cleans up by this field"
    );
    let publish = json!({"id": "4", "channel": "/a", "data": 1});
    let m = stranger.send_raw(vec![publish]).await;
    assert_eq!(m[0]["error"], "402::session_unknown");
    assert!(m[0].get("advice").is_none());
}

// ---------------------------------------------------------------------------------------------
// Subscriptions and channels
// ---------------------------------------------------------------------------------------------

async fn subscriptions_take_strings_and_arrays_and_echo_them(t: Transport) {
    let bayeux = engine(t);
    let mut client = t.connected(&bayeux).await;
    let reply = client.subscribe(json!(["/a", "/b/*"])).await;
    assert_eq!(reply["subscription"], json!(["/a", "/b/*"]));
    assert_eq!(reply["successful"], true);
    let session = bayeux.session(client.client_id()).unwrap();
    let mut subs: Vec<String> = session
        .subscriptions()
        .iter()
        .map(|c| c.to_string())
        .collect();
    subs.sort();
    assert_eq!(subs, ["/a", "/b/*"]);
    let reply = client.unsubscribe(json!(["/a", "/b/*", "/never"])).await;
    assert_eq!(reply["successful"], true);
    assert_eq!(reply["subscription"], json!(["/a", "/b/*", "/never"]));
    assert!(session.subscriptions().is_empty());
    for channel in ["/a", "/b/*"] {
        assert!(
            bayeux
                .try_channel(channel)
                .unwrap()
                .subscribers()
                .is_empty()
        );
    }
    let reply = client.subscribe("/c").await;
    assert_eq!(reply["subscription"], "/c", "a string stays a string");
}

async fn bad_subscriptions_fail_with_the_matching_error(t: Transport) {
    let bayeux = engine(t);
    let mut client = t.connected(&bayeux).await;
    for (subscription, error) in [
        (json!("/meta/connect"), "403::subscribe_denied"),
        (json!("/meta/**"), "403::subscribe_denied"),
        (json!("/a//b"), "405::subscription_invalid"),
        (json!(["/ok", "nope"]), "405::subscription_invalid"),
        (json!([]), "403::subscription_missing"),
    ] {
        let reply = client.subscribe(subscription.clone()).await;
        assert_eq!(reply["successful"], false, "{subscription}");
        assert_eq!(reply["error"], error, "{subscription}");
    }
    let reply = client
        .send(vec![json!({"channel": "/meta/subscribe"})])
        .await;
    assert_eq!(reply[0]["error"], "403::subscription_missing");
    assert!(
        bayeux
            .session(client.client_id())
            .unwrap()
            .subscriptions()
            .is_empty(),
        "all or nothing"
    );
}

async fn meta_channels_are_matched_exactly_and_clients_cannot_publish_to_them(t: Transport) {
    let bayeux = engine(t);
    let mut client = t.connected(&bayeux).await;
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
            .session(client.client_id())
            .unwrap()
            .subscriptions()
            .is_empty()
    );
}

async fn publishing_to_patterns_or_invalid_names_is_refused(t: Transport) {
    let bayeux = engine(t);
    let mut client = t.connected(&bayeux).await;
    let mut watcher = t.connected(&bayeux).await;
    watcher.subscribe("/a/*").await;
    for channel in ["/a/*", "/a/**", "/a//b", "no-slash"] {
        let reply = client.publish(channel, json!(1)).await;
        assert_eq!(reply[0]["error"], "405::channel_invalid", "{channel}");
    }
    assert_eq!(bayeux.session(watcher.client_id()).unwrap().queue_len(), 0);
    assert_eq!(watcher.poll().await, Vec::<Value>::new());
}

async fn a_message_without_channel_fails_alone_in_its_batch(t: Transport) {
    let bayeux = engine(t);
    let mut client = t.connected(&bayeux).await;
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

async fn service_channel_messages_are_never_broadcast(t: Transport) {
    let bayeux = engine(t);
    let mut a = t.connected(&bayeux).await;
    let mut b = t.connected(&bayeux).await;
    assert_eq!(b.subscribe("/service/x").await["successful"], true);
    assert_eq!(b.subscribe("/service/**").await["successful"], true);
    assert!(
        bayeux
            .session(b.client_id())
            .unwrap()
            .subscriptions()
            .is_empty(),
        "not recorded"
    );
    let reply = a.publish("/service/x", json!("secret")).await;
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0]["successful"], true);
    assert_eq!(bayeux.session(b.client_id()).unwrap().queue_len(), 0);
    assert_eq!(b.poll().await, Vec::<Value>::new());
}

/// The deliveries among `reply` (what came back to a publish: over websocket, the
/// publisher's own copy rides there) and those `client` polls next.
async fn received(client: &mut TestClient, reply: &[Value]) -> Vec<Value> {
    let mut received: Vec<Value> = deliveries(reply).into_iter().cloned().collect();
    if client.transport().is_http() {
        assert!(received.is_empty(), "a publish reply carries no deliveries");
    }
    received.extend(client.poll().await);
    received
}

async fn overlapping_wildcard_subscriptions_deliver_each_message_once(t: Transport) {
    let bayeux = engine(t);
    let mut client = t.connected(&bayeux).await;
    for sub in ["/x/*", "/x/**", "/x/y", "/**"] {
        client.subscribe(sub).await;
    }
    let reply = client.publish("/x/y", json!(1)).await;
    let got = received(&mut client, &reply).await;
    assert_eq!(got, vec![json!({"channel": "/x/y", "data": 1})]);
}

async fn sessions_on_different_overlapping_patterns_each_get_one_copy(t: Transport) {
    let bayeux = engine(t);
    let mut publisher = t.connected(&bayeux).await;
    let patterns: [&[&str]; 5] = [
        &["/x/y"],
        &["/x/*"],
        &["/x/**", "/x/y"],
        &["/**"],
        &["/**", "/x/*", "/x/**"],
    ];
    let mut clients = Vec::new();
    for subs in patterns {
        let mut client = t.connected(&bayeux).await;
        for sub in subs {
            client.subscribe(*sub).await;
        }
        clients.push(client);
    }
    publisher.publish("/x/y", json!("m")).await;
    for (client, subs) in clients.iter_mut().zip(patterns) {
        let got = client.poll().await;
        assert_eq!(got.len(), 1, "{subs:?}: {got:?}");
    }
}

async fn wildcards_match_one_or_many_segments(t: Transport) {
    let bayeux = engine(t);
    let mut publisher = t.connected(&bayeux).await;
    let mut one = t.connected(&bayeux).await;
    let mut deep = t.connected(&bayeux).await;
    one.subscribe("/w/*").await;
    deep.subscribe("/w/**").await;
    publisher.publish("/w/a", json!("shallow")).await;
    publisher.publish("/w/a/b", json!("deep")).await;
    publisher.publish("/wx", json!("other")).await;
    assert_eq!(data_of(&one.poll().await), vec![json!("shallow")]);
    assert_eq!(
        data_of(&deep.poll().await),
        vec![json!("shallow"), json!("deep")]
    );
}

async fn an_unsubscribed_session_gets_nothing_more(t: Transport) {
    let bayeux = engine(t);
    let mut client = t.connected(&bayeux).await;
    client.subscribe("/news").await;
    bayeux.publish("/news", json!("before")).await.unwrap();
    assert_eq!(data_of(&client.poll().await), vec![json!("before")]);
    assert_eq!(client.unsubscribe("/news").await["successful"], true);
    bayeux.publish("/news", json!("after")).await.unwrap();
    assert_eq!(client.poll().await, Vec::<Value>::new());
    assert!(bayeux.channel("/news").subscribers().is_empty());
}

async fn broadcasts_carry_neither_the_publishers_id_nor_its_client_id(t: Transport) {
    let bayeux = engine(t);
    let mut publisher = t.connected(&bayeux).await;
    let mut subscriber = t.connected(&bayeux).await;
    subscriber.subscribe("/news").await;
    publisher
        .send(vec![json!({"id": "42", "channel": "/news", "data": {"a": 1}, "ext": {"e": true}, "custom": 5})])
        .await;
    assert_eq!(
        subscriber.poll().await,
        vec![json!({"channel": "/news", "data": {"a": 1}, "ext": {"e": true}, "custom": 5})]
    );
    assert!(!subscriber.text().contains(publisher.client_id()));
    publisher.send(vec![json!({"channel": "/news"})]).await;
    assert_eq!(
        subscriber.poll().await,
        vec![json!({"channel": "/news", "data": null})],
        "deliveries always carry data"
    );
}

async fn a_remote_call_answer_and_its_reply_are_both_recognisable(t: Transport) {
    let bayeux = engine(t);
    bayeux
        .channel("/service/call")
        .add_listener(|mut event| async move {
            event.reply_mut().data = Some(json!({"echo": event.data().clone()}));
            event.proceed()
        });
    let mut client = t.connected(&bayeux).await;
    let reply = client
        .send(vec![
            json!({"id": "42", "channel": "/service/call", "data": "ping"}),
        ])
        .await;
    // The answer first (a message with data and the call's id completes the client's
    // remoteCall), then the reply without data (which the websocket client matches by id).
    assert_eq!(
        reply,
        vec![
            json!({"id": "42", "channel": "/service/call", "successful": true, "data": {"echo": "ping"}}),
            json!({"id": "42", "channel": "/service/call", "successful": true}),
        ]
    );
}

async fn numbers_in_published_data_reach_subscribers_unaltered(t: Transport) {
    let bayeux = engine(t);
    let mut subscriber = t.connected(&bayeux).await;
    subscriber.subscribe("/numbers").await;
    let mut publisher = t.connected(&bayeux).await;
    // Sent as text: 70 nines (closest double 1e70), a 17-digit double, more digits than a
    // double holds, and the largest u64.
    let body = format!(
        r#"[{{"id":"p","channel":"/numbers","clientId":"{}","data":{{"big":{},"sum":0.30000000000000004,"pi":3.14159265358979323846264338327950288,"max":18446744073709551615}}}}]"#,
        publisher.client_id(),
        "9".repeat(70)
    );
    let reply = publisher.send_text(body).await;
    assert_eq!(reply[0]["successful"], true);
    let received = subscriber.poll().await;
    // The text, not only the value: a parser that rounds the long mantissa wrongly sends
    // 9.999999999999999e+69, which reads back as 1e70.
    assert!(
        subscriber.text().contains(r#""big":1e+70"#),
        "{}",
        subscriber.text()
    );
    let data = &received[0]["data"];
    assert_eq!(data["big"].as_f64(), Some(1e70), "{data}");
    assert_eq!(data["sum"].as_f64(), Some(0.1 + 0.2), "{data}");
    assert_eq!(data["pi"].as_f64(), Some(std::f64::consts::PI), "{data}");
    assert_eq!(data["max"].as_u64(), Some(u64::MAX), "{data}");
}

// ---------------------------------------------------------------------------------------------
// Disconnect and expiry
// ---------------------------------------------------------------------------------------------

async fn disconnect_removes_the_session_and_releases_its_held_connect(t: Transport) {
    let bayeux = engine(t);
    let mut client = t.connected(&bayeux).await;
    client.subscribe("/a").await;
    let removal = removal_of(&bayeux, client.client_id());
    let held = client.hold_connect().await;
    let reply = client.disconnect().await;
    assert_eq!(reply.last().unwrap()["channel"], "/meta/disconnect");
    assert_eq!(reply.last().unwrap()["successful"], true);
    let connect = client.finish(held).await;
    assert_eq!(connect[0]["successful"], true);
    assert_eq!(connect[0]["advice"]["reconnect"], "none");
    assert_eq!(removal.reason(), Some(RemoveReason::Disconnected));
    assert!(bayeux.session(client.client_id()).is_none());
    assert!(bayeux.channel("/a").subscribers().is_empty());
    assert_eq!(
        client.connect(Some(0)).await[0]["error"],
        "402::session_unknown"
    );
}

async fn a_server_side_disconnect_tells_the_held_connect_to_stop(t: Transport) {
    let bayeux = engine(t);
    let mut client = t.connected(&bayeux).await;
    let held = client.hold_connect().await;
    let removal = removal_of(&bayeux, client.client_id());
    let session = bayeux.session(client.client_id()).unwrap();
    assert!(session.disconnect().await);
    assert!(!session.disconnect().await, "only once");
    let reply = client.finish(held).await;
    assert_eq!(
        reply[0],
        json!({"channel": "/meta/disconnect", "successful": true})
    );
    assert_eq!(reply[1]["channel"], "/meta/connect");
    assert_eq!(reply[1]["advice"]["reconnect"], "none");
    assert_eq!(removal.wait().await.0, RemoveReason::ServerDisconnected);
}

async fn sessions_expire_interval_plus_max_interval_after_the_last_connect_reply(t: Transport) {
    let bayeux = t
        .builder()
        .timeout(Duration::from_secs(10))
        .interval(Duration::from_secs(1))
        .max_interval(Duration::from_secs(5))
        .sweep_period(Duration::from_millis(100))
        .build();
    let mut client = t.connected(&bayeux).await;
    let session = bayeux.session(client.client_id()).unwrap();
    let removal = removal_of(&bayeux, client.client_id());
    // A held connect keeps the session alive well past the expiry period.
    let start = Instant::now();
    client.connect(None).await;
    client.connect(None).await;
    assert_eq!(start.elapsed(), Duration::from_secs(20));
    assert!(!session.is_removed());
    // A websocket left open does not keep it alive either.
    let last_reply = Instant::now();
    removal
        .assert_expires(
            last_reply,
            Duration::from_secs(6)..=Duration::from_millis(6100),
        )
        .await;
    assert!(bayeux.session(client.client_id()).is_none());
}

async fn a_session_that_never_connects_expires_too(t: Transport) {
    let bayeux = t
        .builder()
        .max_interval(Duration::from_secs(2))
        .sweep_period(Duration::from_millis(100))
        .build();
    let client = t.handshaken(&bayeux).await;
    assert_lives_then_expires(
        &bayeux,
        client.client_id(),
        Duration::from_millis(1900),
        Duration::from_millis(300),
    )
    .await;
}

async fn a_vanished_client_with_a_held_connect_expires_after_max_interval(t: Transport) {
    let bayeux = t
        .builder()
        .timeout(Duration::from_secs(30))
        .max_interval(Duration::from_secs(2))
        .sweep_period(Duration::from_millis(100))
        .build();
    let mut client = t.connected(&bayeux).await;
    let client_id = client.client_id().to_owned();
    let removal = removal_of(&bayeux, &client_id);
    let held = client.hold_connect().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        bayeux.session(&client_id).is_some(),
        "held connects never expire"
    );
    let vanished = Instant::now();
    client.vanish(held).await;
    removal
        .assert_expires(
            vanished,
            Duration::from_secs(2)..=Duration::from_millis(2200),
        )
        .await;
    assert!(bayeux.session(&client_id).is_none());
}

async fn other_messages_keep_a_session_alive(t: Transport) {
    let bayeux = t
        .builder()
        .max_interval(Duration::from_secs(2))
        .sweep_period(Duration::from_millis(100))
        .build();
    let mut client = t.connected(&bayeux).await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            client.publish("/ping", json!(1)).await[0]["successful"],
            true
        );
    }
    assert_lives_then_expires(
        &bayeux,
        client.client_id(),
        Duration::from_millis(1900),
        Duration::from_millis(300),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Batches and order
// ---------------------------------------------------------------------------------------------

async fn a_batch_is_processed_in_order_with_queued_messages_first(t: Transport) {
    let bayeux = engine(t);
    let mut client = t.connected(&bayeux).await;
    let start = Instant::now();
    let reply = client
        .send(vec![
            json!({"id": "s", "channel": "/meta/subscribe", "subscription": "/room"}),
            json!({"id": "p1", "channel": "/room", "data": 1}),
            json!({"id": "p2", "channel": "/room", "data": 2}),
            json!({"id": "u", "channel": "/meta/unsubscribe", "subscription": "/room"}),
            json!({"id": "p3", "channel": "/room", "data": 3}),
            json!({"id": "c", "channel": "/meta/connect", "connectionType": t.connection_type()}),
        ])
        .await;
    // What was queued goes first, then the replies in order: the batch's connect, which the
    // queued messages woke, last.
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
    assert_eq!(start.elapsed(), Duration::ZERO);
}

async fn numeric_ids_are_echoed_as_numbers(t: Transport) {
    let bayeux = engine(t);
    let mut client = t.connected(&bayeux).await;
    let reply = client
        .send(vec![
            json!({"id": 17, "channel": "/meta/subscribe", "subscription": "/a"}),
        ])
        .await;
    assert_eq!(reply[0]["id"], 17);
}

async fn ordering_holds_under_load(t: Transport) {
    let bayeux = engine(t);
    let mut publisher = t.connected(&bayeux).await;
    let mut subscriber = t.connected(&bayeux).await;
    subscriber.subscribe("/load").await;
    let receiver = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 1000 {
            let delivered = subscriber.next_deliveries(None).await;
            got.extend(delivered.iter().map(|m| m["data"].as_u64().unwrap()));
        }
        got
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

async fn a_slow_service_listener_does_not_hold_back_deliveries_to_its_client(t: Transport) {
    let bayeux = engine(t);
    let gate = Arc::new(tokio::sync::Notify::new());
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
    let mut client = t.connected(&bayeux).await;
    client.subscribe("/news").await;
    let held = client.hold_connect().await;
    let slow = client
        .start(vec![
            json!({"channel": "/service/slow", "data": "take your time"}),
        ])
        .await;
    let start = Instant::now();
    bayeux.publish("/news", json!("now")).await.unwrap();
    // Over HTTP the held connect returns at once; over websocket it stays held and the
    // message is pushed at once.
    let delivered = client.next_deliveries(Some(held)).await;
    assert_eq!(start.elapsed(), Duration::ZERO, "delivered at once");
    assert_eq!(delivered, vec![json!({"channel": "/news", "data": "now"})]);
    assert!(!client.is_answered(&slow), "the listener still runs");
    gate.notify_one();
    assert_eq!(client.finish(slow).await[0]["successful"], true);
}

async fn shutdown_answers_the_held_connect_and_refuses_new_sessions(t: Transport) {
    let bayeux = t
        .builder()
        .timeout(Duration::from_secs(20))
        .shutdown_jitter(Duration::from_secs(3))
        .build();
    let mut client = t.connected(&bayeux).await;
    let removal = removal_of(&bayeux, client.client_id());
    let held = client.hold_connect().await;
    let start = Instant::now();
    bayeux.shutdown().await;
    let reply = client.finish(held).await;
    assert!(
        start.elapsed() < Duration::from_millis(5),
        "answered at once"
    );
    let advice = &reply.last().unwrap()["advice"];
    assert_eq!(advice["reconnect"], "retry", "{reply:?}");
    assert!((0..3000).contains(&advice["interval"].as_i64().unwrap()));
    assert_eq!(removal.wait().await.0, RemoveReason::Shutdown);
    assert_eq!(bayeux.session_count(), 0);
    let mut late = t.open(&bayeux).await;
    match t {
        // A websocket opened meanwhile is closed at once, going away.
        #[cfg(feature = "websocket")]
        Transport::WebSocket => assert_eq!(late.socket().closed().await, Some(CloseCode::Away)),
        _ => {
            let refused = late.handshake().await;
            assert_eq!(refused[0]["error"], "503::shutting_down");
            assert_eq!(refused[0]["advice"]["reconnect"], "handshake");
        }
    }
}
