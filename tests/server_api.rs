//! The server-side API: channel listeners, publish, deliver, sessions, events and the policy.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Client, deliveries, handshake_message, post, settle};
use serde_json::{Value, json};
use tokio::time::Instant;
use tower_bayeux::{
    Bayeux, ChannelName, Error, Message, RemoveReason, SecurityPolicy, ServerEvent, ServerSession,
    context,
};

fn engine() -> Bayeux {
    Bayeux::builder().timeout(Duration::from_secs(10)).build()
}

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::default()
}

fn push(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn listeners_run_wildcards_first_then_exact_in_order_added() {
    let bayeux = engine();
    let calls = log();
    for (channel, name) in [
        ("/a/b", "exact1"),
        ("/a/*", "one"),
        ("/a/b", "exact2"),
        ("/**", "deep"),
        ("/a/c", "other"),
    ] {
        let calls = calls.clone();
        bayeux.channel(channel).add_listener(move |event| {
            push(&calls, format!("{name}:{}", event.channel()));
            async move { event.proceed() }
        });
    }
    let client = Client::connected(&bayeux).await;
    assert_eq!(
        client.publish("/a/b", json!(1)).await[0]["successful"],
        true
    );
    assert_eq!(
        entries(&calls),
        ["one:/a/b", "deep:/a/b", "exact1:/a/b", "exact2:/a/b"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_veto_stops_later_listeners_and_the_broadcast() {
    let bayeux = engine();
    let calls = log();
    let channel = bayeux.channel("/guarded");
    channel.add_listener({
        let calls = calls.clone();
        move |event| {
            push(&calls, "first");
            async move {
                if event.data() == "bad" {
                    event.veto()
                } else {
                    event.proceed()
                }
            }
        }
    });
    channel.add_listener({
        let calls = calls.clone();
        move |event| {
            push(&calls, "second");
            async move { event.proceed() }
        }
    });
    let subscriber = Client::connected(&bayeux).await;
    subscriber.subscribe("/guarded").await;
    let publisher = Client::connected(&bayeux).await;
    let reply = publisher.publish("/guarded", json!("bad")).await;
    assert_eq!(reply[0]["successful"], false);
    assert_eq!(reply[0]["error"], "404::message_deleted");
    assert_eq!(entries(&calls), ["first"]);
    assert_eq!(
        bayeux.session(&subscriber.client_id).unwrap().queue_len(),
        0
    );
    assert_eq!(
        publisher.publish("/guarded", json!("good")).await[0]["successful"],
        true
    );
    assert_eq!(entries(&calls), ["first", "first", "second"]);
    assert_eq!(
        bayeux.session(&subscriber.client_id).unwrap().queue_len(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn listeners_edit_the_broadcast_and_the_reply() {
    let bayeux = engine();
    bayeux
        .channel("/edited")
        .add_listener(|mut event| async move {
            event.message_mut().data = Some(json!({"wrapped": event.data().clone()}));
            event.reply_mut().data = Some(json!("receipt"));
            event
                .reply_mut()
                .ext_mut()
                .insert("seen".into(), json!(true));
            event.proceed()
        });
    bayeux
        .channel("/refused")
        .add_listener(|mut event| async move {
            event.reply_mut().fail("403::custom");
            event.veto()
        });
    let client = Client::connected(&bayeux).await;
    client.subscribe("/edited").await;
    let reply = client.publish("/edited", json!(5)).await;
    // A reply with data goes out as the data, carrying the request's id, then the plain reply.
    let id = reply[1]["id"].clone();
    assert_eq!(
        reply[0],
        json!({"id": id, "channel": "/edited", "successful": true, "data": "receipt"})
    );
    assert_eq!(
        reply[1],
        json!({"id": id, "channel": "/edited", "successful": true, "ext": {"seen": true}})
    );
    let connect = client.connect(Some(0)).await;
    assert_eq!(
        connect[0],
        json!({"channel": "/edited", "data": {"wrapped": 5}})
    );
    let reply = client.publish("/refused", json!(5)).await;
    assert_eq!(
        reply[0]["error"], "403::custom",
        "a listener's own failure is kept"
    );
}

#[tokio::test(start_paused = true)]
async fn removed_listeners_are_not_called() {
    let bayeux = engine();
    let calls = log();
    let channel = bayeux.channel("/r");
    let id = channel.add_listener({
        let calls = calls.clone();
        move |event| {
            push(&calls, "called");
            async move { event.proceed() }
        }
    });
    let client = Client::connected(&bayeux).await;
    client.publish("/r", json!(1)).await;
    assert!(channel.remove_listener(id));
    assert!(!channel.remove_listener(id));
    client.publish("/r", json!(2)).await;
    assert_eq!(entries(&calls), ["called"]);
}

#[tokio::test(start_paused = true)]
async fn a_service_listener_answers_the_sender_only() {
    let bayeux = engine();
    bayeux
        .channel("/service/echo")
        .add_listener(|event| async move {
            let data = event.data().clone();
            event
                .session()
                .deliver("/service/echo", data)
                .await
                .unwrap();
            event.proceed()
        });
    let a = Client::connected(&bayeux).await;
    let b = Client::connected(&bayeux).await;
    let reply = a.publish("/service/echo", json!({"n": 1})).await;
    assert_eq!(reply.len(), 1, "{reply:?}");
    assert_eq!(reply[0]["successful"], true);
    let connect = a.connect(Some(0)).await;
    assert_eq!(
        connect[0],
        json!({"channel": "/service/echo", "data": {"n": 1}})
    );
    assert_eq!(bayeux.session(&b.client_id).unwrap().queue_len(), 0);
}

#[tokio::test(start_paused = true)]
async fn server_side_publish_wakes_subscribers_and_refuses_non_broadcast_channels() {
    let bayeux = engine();
    let client = Client::connected(&bayeux).await;
    client.subscribe("/news/*").await;
    let held = tokio::spawn({
        let client = client.clone();
        async move {
            let start = Instant::now();
            (client.connect(None).await, start.elapsed())
        }
    });
    settle().await;
    bayeux.publish("/news/today", json!("extra")).await.unwrap();
    let (reply, held_for) = held.await.unwrap();
    assert!(held_for < Duration::from_millis(5));
    assert_eq!(reply[0], json!({"channel": "/news/today", "data": "extra"}));
    for channel in ["/service/x", "/meta/connect", "/news/*"] {
        assert!(matches!(
            bayeux.publish(channel, json!(1)).await,
            Err(Error::NotBroadcast(_))
        ));
    }
    assert!(matches!(
        bayeux.publish("bad name", json!(1)).await,
        Err(Error::InvalidChannel(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn server_side_publish_does_not_reach_listeners() {
    let bayeux = engine();
    let calls = log();
    bayeux.channel("/quiet").add_listener({
        let calls = calls.clone();
        move |event| {
            push(&calls, "called");
            async move { event.proceed() }
        }
    });
    bayeux.publish("/quiet", json!(1)).await.unwrap();
    assert!(entries(&calls).is_empty());
}

#[tokio::test(start_paused = true)]
async fn deliver_before_the_first_connect_rides_that_connect() {
    let bayeux = engine();
    let client = Client::handshaken(&bayeux, None).await;
    let session = bayeux.session(&client.client_id).unwrap();
    session.deliver("/private", json!("early")).await.unwrap();
    assert!(matches!(
        session.deliver("bad", json!(1)).await,
        Err(Error::InvalidChannel(_))
    ));
    let reply = client.connect(Some(0)).await;
    assert_eq!(reply[0], json!({"channel": "/private", "data": "early"}));
    assert_eq!(reply[1]["channel"], "/meta/connect");
    session.disconnect().await;
    assert!(matches!(
        session.deliver("/private", json!(1)).await,
        Err(Error::SessionRemoved(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn events_tell_sessions_subscriptions_and_channels() {
    let bayeux = Bayeux::builder()
        .max_interval(Duration::from_secs(1))
        .sweep_period(Duration::from_millis(100))
        .build();
    let events = log();
    let id = bayeux.on_event({
        let events = events.clone();
        move |event| {
            let entry = match event {
                ServerEvent::SessionAdded { handshake, .. } => {
                    format!("added {:?}", handshake.other.get("custom"))
                }
                ServerEvent::SessionRemoved { reason, .. } => format!("removed {reason:?}"),
                ServerEvent::Subscribed { channel, .. } => format!("subscribed {channel}"),
                ServerEvent::Unsubscribed {
                    channel, message, ..
                } => format!("unsubscribed {channel} {}", message.is_some()),
                ServerEvent::ChannelAdded(channel) => format!("channel+ {channel}"),
                ServerEvent::ChannelRemoved(channel) => format!("channel- {channel}"),
                _ => "other".to_owned(),
            };
            push(&events, entry);
        }
    });
    let mut handshake = handshake_message("1");
    handshake["custom"] = json!("x");
    post(
        &bayeux,
        "/cometd/handshake",
        None,
        &json!([handshake]).to_string(),
    )
    .await;
    // The second session expires half a second after the first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = Client::connected(&bayeux).await;
    client.subscribe("/e").await;
    client.subscribe("/e").await;
    client
        .send(vec![
            json!({"channel": "/meta/unsubscribe", "subscription": "/e"}),
        ])
        .await;
    client.subscribe("/f").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        entries(&events),
        [
            "added Some(String(\"x\"))",
            "added None",
            "channel+ /e",
            "subscribed /e",
            "unsubscribed /e true",
            "channel+ /f",
            "subscribed /f",
            "channel- /e",
            "removed Timeout",
            "unsubscribed /f false",
            "removed Timeout",
            "channel- /f",
        ]
    );
    assert!(bayeux.remove_event_listener(id));
    assert!(bayeux.channels().is_empty());
}

#[tokio::test(start_paused = true)]
async fn channels_with_listeners_are_not_swept() {
    let bayeux = Bayeux::builder()
        .sweep_period(Duration::from_millis(100))
        .build();
    bayeux
        .channel("/kept")
        .add_listener(|event| async move { event.proceed() });
    Client::connected(&bayeux).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(bayeux.channels(), [ChannelName::new("/kept").unwrap()]);
}

#[tokio::test(start_paused = true)]
async fn a_meta_listener_sees_the_handshake_and_edits_its_reply() {
    let bayeux = engine();
    bayeux
        .channel("/meta/handshake")
        .add_listener(|mut event| async move {
            let agent = event.message().other.get("agent").cloned();
            event
                .reply_mut()
                .ext_mut()
                .insert("hello".into(), agent.unwrap_or(Value::Null));
            event.veto()
        });
    let everything = log();
    bayeux.channel("/**").add_listener({
        let everything = everything.clone();
        move |event| {
            push(&everything, event.channel().as_str());
            async move { event.proceed() }
        }
    });
    let mut handshake = handshake_message("1");
    handshake["agent"] = json!("rust");
    let reply = post(
        &bayeux,
        "/cometd/handshake",
        None,
        &json!([handshake]).to_string(),
    )
    .await
    .messages();
    assert_eq!(
        reply[0]["successful"], true,
        "a meta listener's verdict is ignored"
    );
    assert_eq!(reply[0]["ext"], json!({"hello": "rust"}));
    assert!(
        entries(&everything).is_empty(),
        "/** does not see meta messages"
    );
}

#[derive(Default)]
struct RecordingPolicy {
    calls: Log,
}

impl SecurityPolicy for RecordingPolicy {
    async fn can_handshake(&self, session: &ServerSession, message: &Message) -> bool {
        push(&self.calls, format!("handshake {}", session.id().len()));
        message.other.get("credentials") == Some(&json!("secret"))
    }

    async fn can_create(&self, _: &ServerSession, _: &Message, channel: &ChannelName) -> bool {
        push(&self.calls, format!("create {channel}"));
        !channel.as_str().starts_with("/nocreate")
    }

    async fn can_subscribe(&self, _: &ServerSession, _: &Message, channel: &ChannelName) -> bool {
        push(&self.calls, format!("subscribe {channel}"));
        !channel.as_str().starts_with("/private")
    }

    async fn can_publish(
        &self,
        _: &ServerSession,
        message: &Message,
        channel: &ChannelName,
    ) -> bool {
        push(&self.calls, format!("publish {channel}"));
        // The request context is reachable from the policy.
        let header = context::current().and_then(|ctx| ctx.headers().get("x-role").cloned());
        header.is_some() || message.data != Some(json!("needs-role"))
    }
}

#[tokio::test(start_paused = true)]
async fn the_policy_decides_handshakes_creation_subscriptions_and_publishes() {
    let policy = RecordingPolicy::default();
    let calls = policy.calls.clone();
    let bayeux = Bayeux::builder().security_policy(policy).build();

    let denied = post(
        &bayeux,
        "/cometd/handshake",
        None,
        &json!([handshake_message("1")]).to_string(),
    )
    .await;
    assert!(denied.headers.get(http::header::SET_COOKIE).is_none());
    let denied = denied.messages();
    assert_eq!(denied[0]["successful"], false);
    assert_eq!(denied[0]["error"], "403::handshake_denied");
    assert_eq!(denied[0]["advice"], json!({"reconnect": "none"}));
    assert_eq!(bayeux.session_count(), 0);

    let mut handshake = handshake_message("1");
    handshake["credentials"] = json!("secret");
    let reply = post(
        &bayeux,
        "/cometd/handshake",
        None,
        &json!([handshake]).to_string(),
    )
    .await;
    let cookie = reply.headers[http::header::SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let client_id = reply.messages()[0]["clientId"].as_str().unwrap().to_owned();
    let send = |messages: Value| {
        let bayeux = bayeux.clone();
        let cookie = cookie.clone();
        let client_id = client_id.clone();
        async move {
            let mut messages = messages;
            for m in messages.as_array_mut().unwrap() {
                m["clientId"] = json!(client_id);
            }
            post(&bayeux, "/cometd/", Some(&cookie), &messages.to_string())
                .await
                .messages()
        }
    };
    let r = send(json!([{"channel": "/meta/subscribe", "subscription": "/nocreate/a"}])).await;
    assert_eq!(r[0]["error"], "403::subscribe_denied");
    let r = send(json!([{"channel": "/meta/subscribe", "subscription": "/private/a"}])).await;
    assert_eq!(r[0]["error"], "403::subscribe_denied");
    let r = send(json!([{"channel": "/nocreate/b", "data": 1}])).await;
    assert_eq!(r[0]["error"], "403::channel_denied");
    let r = send(json!([{"channel": "/service/x", "data": "needs-role"}])).await;
    assert_eq!(
        r[0]["error"], "403::publish_denied",
        "service publishes are checked too"
    );
    let r = send(json!([{"channel": "/open", "data": "needs-role"}])).await;
    assert_eq!(r[0]["error"], "403::publish_denied");
    let r = send(json!([{"channel": "/open", "data": "fine"}])).await;
    assert_eq!(r[0]["successful"], true);

    let mut request = http::Request::post("/cometd/")
        .header("cookie", &cookie)
        .header("x-role", "admin");
    request = request.header("content-type", "application/json");
    let body = json!([{"channel": "/open", "data": "needs-role", "clientId": client_id}]);
    let reply = common::send(
        &bayeux,
        request
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap(),
    )
    .await
    .messages();
    assert_eq!(
        reply[0]["successful"], true,
        "the header reached the policy"
    );

    assert_eq!(
        entries(&calls),
        [
            "handshake 40",
            "handshake 40",
            "create /nocreate/a",
            "create /private/a",
            "subscribe /private/a",
            "create /nocreate/b",
            "create /service/x",
            "publish /service/x",
            "create /open",
            "publish /open",
            "create /open",
            "publish /open",
            "publish /open",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn removal_listeners_tell_timeout_from_disconnect() {
    let bayeux = Bayeux::builder()
        .max_interval(Duration::from_secs(1))
        .sweep_period(Duration::from_millis(100))
        .build();
    let reasons = log();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let client = Client::connected(&bayeux).await;
        let session = bayeux.session(&client.client_id).unwrap();
        let reasons = reasons.clone();
        session.on_removed(move |session, reason| {
            let reasons = reasons.clone();
            async move {
                assert!(session.is_removed());
                assert!(session.subscriptions().is_empty());
                push(&reasons, format!("{reason:?}"));
            }
        });
        client.subscribe("/s").await;
        clients.push(client);
    }
    clients[0]
        .send(vec![json!({"channel": "/meta/disconnect"})])
        .await;
    bayeux
        .session(&clients[1].client_id)
        .unwrap()
        .disconnect()
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        entries(&reasons),
        ["Disconnected", "ServerDisconnected", "Timeout"]
    );
    assert!(RemoveReason::Timeout.is_timeout());
    assert!(bayeux.channel("/s").subscribers().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_removal_listener_added_too_late_runs_at_once_with_the_reason() {
    let bayeux = engine();
    let client = Client::connected(&bayeux).await;
    let session = bayeux.session(&client.client_id).unwrap();
    client
        .send(vec![json!({"channel": "/meta/disconnect"})])
        .await;
    assert!(session.is_removed());
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A plain `FnOnce`: it owns the sender and runs once.
    session.on_removed(move |removed, reason| async move {
        tx.send((removed.id().to_owned(), reason)).unwrap();
    });
    assert_eq!(
        rx.await.unwrap(),
        (client.client_id.clone(), RemoveReason::Disconnected)
    );
}

#[tokio::test(start_paused = true)]
async fn the_context_reaches_listeners_and_edits_the_response() {
    let bayeux = engine();
    let seen = log();
    bayeux.channel("/service/ctx").add_listener({
        let seen = seen.clone();
        move |event| {
            let seen = seen.clone();
            async move {
                let ctx = context::current().expect("inside a request");
                push(&seen, ctx.headers()["x-test"].to_str().unwrap());
                assert_eq!(ctx.uri().path(), event.context().unwrap().uri().path());
                ctx.insert_response_header(
                    http::HeaderName::from_static("x-reply"),
                    http::HeaderValue::from_static("yes"),
                )
                .unwrap();
                let spawned = context::spawn(async { context::current().is_some() });
                push(&seen, format!("spawned {}", spawned.await.unwrap()));
                event.proceed()
            }
        }
    });
    let client = Client::connected(&bayeux).await;
    let body = json!([{"channel": "/service/ctx", "data": 1, "clientId": client.client_id}]);
    let request = http::Request::post("/cometd/")
        .header("cookie", &client.cookie)
        .header("x-test", "hello")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let reply = common::send(&bayeux, request).await;
    assert_eq!(reply.headers["x-reply"], "yes");
    assert_eq!(entries(&seen), ["hello", "spawned true"]);
    assert!(context::current().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_in_many_rooms_gets_each_rooms_messages() {
    let bayeux = engine();
    let client = Client::connected(&bayeux).await;
    for room in 0..10 {
        client.subscribe(&format!("/rooms/{room}")).await;
    }
    for room in 0..10 {
        bayeux
            .publish(format!("/rooms/{room}"), json!(room))
            .await
            .unwrap();
    }
    let reply = client.connect(Some(0)).await;
    let data: Vec<Value> = deliveries(&reply)
        .iter()
        .map(|m| m["data"].clone())
        .collect();
    assert_eq!(data, (0..10).map(|r| json!(r)).collect::<Vec<_>>());
}

/// The counts and totals of `Bayeux::stats`: what would break them is a session counted under
/// the wrong transport, a subscription to a pattern not counted, a delivery counted per
/// broadcast instead of per recipient, or drops from a full queue not counted.
#[cfg(all(feature = "jsonp", feature = "websocket"))]
#[tokio::test(start_paused = true)]
async fn stats_count_sessions_by_transport_subscriptions_and_messages() {
    use common::transport::Transport;
    use common::websocket::Socket;

    let bayeux = Bayeux::builder()
        .timeout(Duration::from_secs(10))
        .callback_polling(true)
        .max_queue_messages(2)
        .history("/h/**", tower_bayeux::Retention::last(10))
        .build();
    let polling = Client::connected(&bayeux).await;
    let jsonp = Client::connected_over(&bayeux, Transport::CallbackPolling).await;
    let _unconnected = Client::handshaken(&bayeux, None).await;
    let socket = Socket::connected(&bayeux).await;

    let stats = bayeux.stats();
    assert_eq!(stats.sessions, 4);
    let by = stats.sessions_by_transport;
    assert_eq!(
        (
            by.long_polling,
            by.callback_polling,
            by.websocket,
            by.unconnected
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(stats.websocket_connections, 1);

    polling.subscribe("/news").await;
    polling.subscribe("/news/*").await;
    jsonp.subscribe("/news").await;
    assert_eq!(bayeux.stats().subscriptions, 3);

    // One broadcast, two recipients (`/news/*` does not match `/news`).
    let published = bayeux.publish("/news", json!(1)).await.unwrap();
    assert_eq!(published.position, None);
    let stats = bayeux.stats();
    assert_eq!((stats.messages_published, stats.messages_delivered), (1, 2));
    assert_eq!(stats.messages_dropped, 0);

    // Three more while nobody polls: each queue holds 2, so 2 are dropped from each.
    for n in 2..5 {
        bayeux.publish("/news", json!(n)).await.unwrap();
    }
    let stats = bayeux.stats();
    assert_eq!((stats.messages_published, stats.messages_delivered), (4, 8));
    assert_eq!(stats.messages_dropped, 4);

    // On a channel with history the publish answers the message's position.
    let first = bayeux.publish("/h/a", json!("x")).await.unwrap();
    let second = bayeux.publish("/h/a", json!("y")).await.unwrap();
    let (first, second) = (first.position.unwrap(), second.position.unwrap());
    assert_eq!((first.offset, second.offset), (1, 2));
    assert_eq!(first.epoch, second.epoch);

    drop(socket);
    settle().await;
    assert_eq!(bayeux.stats().websocket_connections, 0);

    // A connection's future dropped before it ever ran counts no connection.
    let (_client, server) = tokio::io::duplex(64);
    let (head, ()) = http::Request::get("/cometd").body(()).unwrap().into_parts();
    drop(tower_bayeux::serve_websocket(&bayeux, server, head));
    assert_eq!(bayeux.stats().websocket_connections, 0);
}
