//! The extension API and the built-in ack, timesync and timestamp extensions.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Client, deliveries, handshake_message, post, settle};
use http::StatusCode;
use serde_json::{Value, json};
use tower_bayeux::ext::{AckExtension, TimestampExtension, TimesyncExtension};
use tower_bayeux::{Bayeux, Extension, Message, ServerSession, SessionExtension};

type Log = Arc<Mutex<Vec<String>>>;

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// Records its calls; adds a session extension during handshakes when asked to.
struct Recording {
    name: &'static str,
    log: Log,
    session_extensions: Vec<&'static str>,
}

struct RecordingSession {
    name: &'static str,
    log: Log,
}

impl Extension for Recording {
    async fn incoming(&self, session: Option<&ServerSession>, message: &mut Message) -> bool {
        if message.channel == "/meta/handshake" {
            self.log.lock().unwrap().push(format!("{}.in", self.name));
            if let Some(session) = session {
                for name in &self.session_extensions {
                    session.add_extension(RecordingSession {
                        name,
                        log: self.log.clone(),
                    });
                }
            }
        }
        true
    }

    async fn outgoing(
        &self,
        _session: Option<&ServerSession>,
        request: Option<&Message>,
        message: &mut Message,
    ) -> bool {
        if message.channel == "/meta/handshake" {
            assert_eq!(request.unwrap().channel, "/meta/handshake");
            self.log.lock().unwrap().push(format!("{}.out", self.name));
        }
        true
    }
}

impl SessionExtension for RecordingSession {
    async fn incoming(&self, _session: &ServerSession, message: &mut Message) -> bool {
        if message.channel == "/meta/handshake" {
            self.log.lock().unwrap().push(format!("{}.in", self.name));
        }
        true
    }

    async fn outgoing(
        &self,
        _session: &ServerSession,
        _request: Option<&Message>,
        message: &mut Message,
    ) -> bool {
        if message.channel == "/meta/handshake" {
            self.log.lock().unwrap().push(format!("{}.out", self.name));
        }
        true
    }
}

async fn handshake(bayeux: &Bayeux, extra: Value) -> Vec<Value> {
    let mut message = handshake_message("1");
    if let (Some(message), Some(extra)) = (message.as_object_mut(), extra.as_object()) {
        message.extend(extra.clone());
    }
    post(
        bayeux,
        "/cometd/handshake",
        None,
        &json!([message]).to_string(),
    )
    .await
    .messages()
}

#[tokio::test(start_paused = true)]
async fn incoming_runs_in_order_and_outgoing_in_reverse_server_before_session() {
    let log = Log::default();
    let bayeux = Bayeux::builder()
        .extension(Recording {
            name: "srv1",
            log: log.clone(),
            session_extensions: vec!["sess1", "sess2"],
        })
        .extension(Recording {
            name: "srv2",
            log: log.clone(),
            session_extensions: vec![],
        })
        .build();
    let reply = handshake(&bayeux, json!({})).await;
    assert_eq!(reply[0]["successful"], true);
    assert_eq!(
        entries(&log),
        [
            "srv1.in",
            "srv2.in",
            "sess1.in",
            "sess2.in",
            "srv2.out",
            "srv1.out",
            "sess2.out",
            "sess1.out"
        ]
    );
}

/// Drops incoming messages on a channel, or outgoing ones, as configured.
struct Dropper {
    incoming: &'static str,
    outgoing: &'static str,
}

impl Extension for Dropper {
    async fn incoming(&self, _: Option<&ServerSession>, message: &mut Message) -> bool {
        message.channel != self.incoming
    }

    async fn outgoing(
        &self,
        _: Option<&ServerSession>,
        _: Option<&Message>,
        message: &mut Message,
    ) -> bool {
        message.channel != self.outgoing
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_incoming_message_gets_message_deleted() {
    let bayeux = Bayeux::builder()
        .extension(Dropper {
            incoming: "/meta/handshake",
            outgoing: "",
        })
        .build();
    let reply = handshake(&bayeux, json!({})).await;
    assert_eq!(reply[0]["successful"], false);
    assert_eq!(reply[0]["error"], "404::message_deleted");
    assert_eq!(bayeux.session_count(), 0);

    let bayeux = Bayeux::builder()
        .extension(Dropper {
            incoming: "/dropped",
            outgoing: "",
        })
        .build();
    let client = Client::connected(&bayeux).await;
    client.subscribe("/dropped").await;
    let reply = client.publish("/dropped", json!(1)).await;
    assert_eq!(
        reply,
        vec![json!({"id": reply[0]["id"], "channel": "/dropped",
        "successful": false, "error": "404::message_deleted"})]
    );
}

#[tokio::test(start_paused = true)]
async fn a_session_extension_drops_its_sessions_messages_only() {
    struct DropAll;
    impl SessionExtension for DropAll {
        async fn incoming(&self, _: &ServerSession, message: &mut Message) -> bool {
            message.channel != "/quiet"
        }
    }
    let bayeux = Bayeux::builder().build();
    let muted = Client::connected(&bayeux).await;
    let other = Client::connected(&bayeux).await;
    bayeux
        .session(&muted.client_id)
        .unwrap()
        .add_extension(DropAll);
    assert_eq!(
        muted.publish("/quiet", json!(1)).await[0]["error"],
        "404::message_deleted"
    );
    assert_eq!(
        other.publish("/quiet", json!(1)).await[0]["successful"],
        true
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_reply_is_not_sent() {
    let bayeux = Bayeux::builder()
        .extension(Dropper {
            incoming: "",
            outgoing: "/meta/subscribe",
        })
        .build();
    let client = Client::connected(&bayeux).await;
    let reply = client
        .request(
            "/cometd/",
            vec![
                json!({"channel": "/meta/subscribe", "subscription": "/a"}),
                json!({"channel": "/b", "data": 1}),
            ],
        )
        .await
        .messages();
    assert_eq!(reply.len(), 1, "{reply:?}");
    assert_eq!(reply[0]["channel"], "/b");
    // Nothing left to send at all: the response says so instead of sending `[]`.
    let alone = client
        .request(
            "/cometd/",
            vec![json!({"channel": "/meta/subscribe", "subscription": "/c"})],
        )
        .await;
    assert_eq!(alone.status, StatusCode::NO_CONTENT);
    assert!(alone.body.is_empty());
}

/// Counts broadcasts seen by the server extension and edits them.
struct Counting {
    broadcasts: Arc<AtomicUsize>,
}

impl Extension for Counting {
    async fn outgoing(
        &self,
        session: Option<&ServerSession>,
        _request: Option<&Message>,
        message: &mut Message,
    ) -> bool {
        if session.is_none() {
            self.broadcasts.fetch_add(1, Ordering::SeqCst);
            message.ext_mut().insert("server".into(), json!(true));
        }
        message.data != Some(json!("drop me"))
    }
}

struct Personal;

impl SessionExtension for Personal {
    async fn outgoing(
        &self,
        session: &ServerSession,
        _: Option<&Message>,
        message: &mut Message,
    ) -> bool {
        if message.data.is_some() {
            message.ext_mut().insert("for".into(), json!(session.id()));
        }
        true
    }
}

#[tokio::test(start_paused = true)]
async fn a_broadcast_meets_server_extensions_once_and_session_extensions_per_recipient() {
    let broadcasts = Arc::new(AtomicUsize::new(0));
    let bayeux = Bayeux::builder()
        .extension(Counting {
            broadcasts: broadcasts.clone(),
        })
        .build();
    let mut clients = Vec::new();
    for _ in 0..5 {
        let client = Client::connected(&bayeux).await;
        client.subscribe("/room").await;
        clients.push(client);
    }
    bayeux
        .session(&clients[0].client_id)
        .unwrap()
        .add_extension(Personal);
    bayeux.publish("/room", json!("hello")).await.unwrap();
    assert_eq!(broadcasts.load(Ordering::SeqCst), 1);
    for (i, client) in clients.iter().enumerate() {
        let reply = client.connect(Some(0)).await;
        let message = deliveries(&reply)[0].clone();
        assert_eq!(message["ext"]["server"], true);
        if i == 0 {
            assert_eq!(message["ext"]["for"], json!(client.client_id));
        } else {
            assert!(message["ext"].get("for").is_none(), "{message}");
        }
    }
    // A broadcast a server extension drops reaches nobody and its publisher hears it.
    let reply = clients[1].publish("/room", json!("drop me")).await;
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0]["error"], "404::message_deleted");
    assert!(matches!(
        bayeux.publish("/room", json!("drop me")).await,
        Err(tower_bayeux::Error::MessageDeleted)
    ));
    for client in &clients {
        assert_eq!(bayeux.session(&client.client_id).unwrap().queue_len(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn direct_deliveries_pass_outgoing_extensions() {
    let broadcasts = Arc::new(AtomicUsize::new(0));
    let bayeux = Bayeux::builder()
        .extension(Counting {
            broadcasts: broadcasts.clone(),
        })
        .build();
    let client = Client::connected(&bayeux).await;
    let session = bayeux.session(&client.client_id).unwrap();
    session.add_extension(Personal);
    session.deliver("/direct", json!(1)).await.unwrap();
    assert!(matches!(
        session.deliver("/direct", json!("drop me")).await,
        Err(tower_bayeux::Error::MessageDeleted)
    ));
    let reply = client.connect(Some(0)).await;
    assert_eq!(reply[0]["ext"]["for"], json!(client.client_id));
    assert_eq!(
        broadcasts.load(Ordering::SeqCst),
        0,
        "a direct delivery is not a broadcast"
    );
}

#[tokio::test(start_paused = true)]
async fn incoming_edits_reach_listeners_and_the_broadcast() {
    struct Stamp;
    impl Extension for Stamp {
        async fn incoming(&self, _: Option<&ServerSession>, message: &mut Message) -> bool {
            message.ext_mut().insert("checked".into(), json!(true));
            true
        }
    }
    let bayeux = Bayeux::builder().extension(Stamp).build();
    let seen = Arc::new(Mutex::new(None));
    bayeux.channel("/e").add_listener({
        let seen = seen.clone();
        move |event| {
            *seen.lock().unwrap() = event.message().ext.clone();
            async move { event.proceed() }
        }
    });
    let client = Client::connected(&bayeux).await;
    client.subscribe("/e").await;
    client.publish("/e", json!(1)).await;
    let reply = client.connect(Some(0)).await;
    assert_eq!(reply[0]["ext"], json!({"checked": true}));
    assert_eq!(seen.lock().unwrap().as_ref().unwrap()["checked"], true);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_extension_is_contained() {
    struct Panics;
    impl Extension for Panics {
        async fn incoming(&self, _: Option<&ServerSession>, message: &mut Message) -> bool {
            if message.channel == "/boom" {
                panic!("extension bug");
            }
            true
        }
        async fn outgoing(
            &self,
            _: Option<&ServerSession>,
            _: Option<&Message>,
            message: &mut Message,
        ) -> bool {
            if message.data == Some(json!("boom")) {
                panic!("extension bug");
            }
            true
        }
    }
    let bayeux = Bayeux::builder().extension(Panics).build();
    let client = Client::connected(&bayeux).await;
    client.subscribe("/boom").await;
    let reply = client.publish("/boom", json!("boom")).await;
    assert_eq!(reply.last().unwrap()["successful"], true);
    let reply = client.connect(Some(0)).await;
    assert_eq!(
        deliveries(&reply).len(),
        1,
        "the message went on: {reply:?}"
    );
    assert_eq!(client.subscribe("/fine").await["successful"], true);
}

// ---------------------------------------------------------------------------------------------
// Acknowledged delivery
// ---------------------------------------------------------------------------------------------

fn ack_engine() -> Bayeux {
    Bayeux::builder()
        .timeout(Duration::from_secs(10))
        .max_interval(Duration::from_secs(5))
        .extension(AckExtension::new())
        .build()
}

/// A client that negotiated acks, subscribed to `/acked`, with its first connect done.
async fn ack_client(bayeux: &Bayeux) -> Client {
    let body =
        json!([{"id": "1", "channel": "/meta/handshake", "version": "1.0", "ext": {"ack": true}}]);
    let reply = post(bayeux, "/cometd/handshake", None, &body.to_string()).await;
    let cookie = reply.headers[http::header::SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let messages = reply.messages();
    assert_eq!(messages[0]["ext"]["ack"], true, "{messages:?}");
    let client = Client::from_parts(bayeux, cookie, messages[0]["clientId"].as_str().unwrap());
    client.subscribe("/acked").await;
    let first = ack_connect(&client, Some(0), 0).await;
    assert_eq!(first.last().unwrap()["ext"]["ack"], 1);
    client
}

/// A connect acknowledging `acked`.
async fn ack_connect(client: &Client, timeout: Option<u64>, acked: i64) -> Vec<Value> {
    let mut message = client.connect_message(timeout);
    message["ext"] = json!({"ack": acked});
    client
        .request("/cometd/connect", vec![message])
        .await
        .messages()
}

fn data_of(reply: &[Value]) -> Vec<Value> {
    deliveries(reply)
        .iter()
        .map(|m| m["data"].clone())
        .collect()
}

fn batch_of(reply: &[Value]) -> i64 {
    reply.last().unwrap()["ext"]["ack"].as_i64().unwrap()
}

#[tokio::test(start_paused = true)]
async fn acked_sessions_get_messages_only_on_connect_replies_with_batch_numbers() {
    let bayeux = ack_engine();
    let client = ack_client(&bayeux).await;
    let reply = client.publish("/acked", json!(1)).await;
    assert_eq!(
        deliveries(&reply).len(),
        0,
        "not on a publish reply: {reply:?}"
    );
    let reply = ack_connect(&client, None, 1).await;
    assert_eq!(data_of(&reply), [json!(1)]);
    assert_eq!(batch_of(&reply), 2);
    let reply = ack_connect(&client, Some(0), 2).await;
    assert!(data_of(&reply).is_empty());
    assert_eq!(batch_of(&reply), 3);
}

#[tokio::test(start_paused = true)]
async fn a_lost_connect_reply_is_sent_again_before_newer_messages() {
    let bayeux = ack_engine();
    let client = ack_client(&bayeux).await;
    bayeux.publish("/acked", json!(1)).await.unwrap();
    bayeux.publish("/acked", json!(2)).await.unwrap();
    // This reply is "lost": the client never sees batch 2.
    let lost = ack_connect(&client, None, 1).await;
    assert_eq!(data_of(&lost), [json!(1), json!(2)]);
    bayeux.publish("/acked", json!(3)).await.unwrap();
    // The client acknowledges the last batch it got (1): 1 and 2 come again, then 3, at once.
    let start = tokio::time::Instant::now();
    let again = ack_connect(&client, None, 1).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(data_of(&again), [json!(1), json!(2), json!(3)]);
    let batch = batch_of(&again);
    // Acknowledged: nothing is sent twice from now on.
    bayeux.publish("/acked", json!(4)).await.unwrap();
    let next = ack_connect(&client, None, batch).await;
    assert_eq!(data_of(&next), [json!(4)]);
}

#[tokio::test(start_paused = true)]
async fn unacknowledged_messages_make_the_next_connect_return_at_once() {
    let bayeux = ack_engine();
    let client = ack_client(&bayeux).await;
    bayeux.publish("/acked", json!("x")).await.unwrap();
    ack_connect(&client, None, 1).await;
    // Nothing new is queued, but batch 2 was not acknowledged: no hold.
    let start = tokio::time::Instant::now();
    let reply = ack_connect(&client, None, 1).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(data_of(&reply), [json!("x")]);
    // Everything acknowledged: held again.
    let start = tokio::time::Instant::now();
    ack_connect(&client, None, batch_of(&reply)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn messages_published_while_the_held_connect_was_dropped_arrive_on_the_next() {
    let bayeux = ack_engine();
    let client = ack_client(&bayeux).await;
    let held = tokio::spawn({
        let client = client.clone();
        async move { ack_connect(&client, None, 1).await }
    });
    settle().await;
    // The connection goes away while the connect is held...
    held.abort();
    let _ = held.await;
    // ...and messages keep coming.
    for i in 0..5 {
        bayeux.publish("/acked", json!(i)).await.unwrap();
    }
    let reply = ack_connect(&client, None, 1).await;
    assert_eq!(
        data_of(&reply),
        (0..5).map(|i| json!(i)).collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn a_connect_reply_woken_by_messages_and_then_lost_is_resent() {
    let bayeux = ack_engine();
    let client = ack_client(&bayeux).await;
    let held = tokio::spawn({
        let client = client.clone();
        async move { ack_connect(&client, None, 1).await }
    });
    settle().await;
    bayeux.publish("/acked", json!("in flight")).await.unwrap();
    // The reply is produced (the client's connection drops while it travels).
    let lost = held.await.unwrap();
    assert_eq!(data_of(&lost), [json!("in flight")]);
    bayeux.publish("/acked", json!("after")).await.unwrap();
    let reply = ack_connect(&client, None, 1).await;
    assert_eq!(data_of(&reply), [json!("in flight"), json!("after")]);
}

#[tokio::test(start_paused = true)]
async fn clients_without_ack_are_unaffected() {
    let bayeux = ack_engine();
    let client = Client::connected(&bayeux).await;
    client.subscribe("/plain").await;
    client.publish("/plain", json!(1)).await;
    let reply = client.connect(Some(0)).await;
    assert_eq!(data_of(&reply), [json!(1)]);
    let connect = reply.last().unwrap();
    assert!(connect.get("ext").is_none(), "no ack batch: {reply:?}");
}

// ---------------------------------------------------------------------------------------------
// Timesync and timestamp
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn timesync_answers_with_tc_ts_p_and_a() {
    let bayeux = Bayeux::builder()
        .extension(TimesyncExtension::new())
        .build();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let reply = handshake(
        &bayeux,
        json!({"ext": {"timesync": {"tc": now, "l": 0, "o": 0}}}),
    )
    .await;
    let timesync = &reply[0]["ext"]["timesync"];
    assert_eq!(timesync["tc"], now);
    let ts = timesync["ts"].as_i64().unwrap();
    assert!(
        (ts - now).abs() < 1000,
        "server time {ts} vs client time {now}"
    );
    assert!(timesync["p"].as_i64().unwrap() >= 0);
    assert_eq!(timesync["a"].as_i64().unwrap(), now - ts);

    // An accurate estimate with a measured lag gets no answer; a poor one does.
    let accurate = json!({"ext": {"timesync": {"tc": now, "l": 1, "o": ts - now - 1}}});
    let reply = handshake(&bayeux, accurate).await;
    assert!(reply[0]["ext"].get("timesync").is_none(), "{reply:?}");
    let poor = json!({"ext": {"timesync": {"tc": now, "l": 1, "o": 5000}}});
    let reply = handshake(&bayeux, poor).await;
    assert!(reply[0]["ext"]["timesync"]["a"].as_i64().unwrap() > 4000);

    // Old clients send only tc.
    let reply = handshake(&bayeux, json!({"ext": {"timesync": {"tc": now}}})).await;
    let timesync = reply[0]["ext"]["timesync"].as_object().unwrap();
    let mut keys: Vec<&String> = timesync.keys().collect();
    keys.sort();
    assert_eq!(keys, ["p", "tc", "ts"]);
}

#[tokio::test]
async fn timestamps_are_http_dates_on_replies_and_broadcasts() {
    let bayeux = Bayeux::builder()
        .extension(TimestampExtension::new())
        .build();
    let client = Client::connected(&bayeux).await;
    client.subscribe("/t").await;
    let reply = client.publish("/t", json!(1)).await;
    for message in &reply {
        let stamp = message["timestamp"].as_str().unwrap();
        let parsed = httpdate::parse_http_date(stamp).unwrap();
        let age = std::time::SystemTime::now()
            .duration_since(parsed)
            .unwrap_or_default();
        assert!(age < Duration::from_secs(5), "{stamp}");
        assert!(stamp.ends_with(" GMT"));
    }
}

#[tokio::test(start_paused = true)]
async fn outgoing_extensions_see_the_request_context_on_a_held_connects_reply() {
    let bayeux = Bayeux::builder()
        .timeout(Duration::from_secs(10))
        .extension(common::ContextProbe)
        .build();
    let client = Client::connected(&bayeux).await;
    let connect = |probe: &'static str| {
        let mut request =
            client.messages_request("/cometd/connect", vec![client.connect_message(None)]);
        let probe = http::HeaderValue::from_static(probe);
        request.headers_mut().insert("x-probe", probe);
        request
    };
    // Answered at its timeout.
    let reply = common::send(&bayeux, connect("timed out")).await.messages();
    assert_eq!(reply[0]["ext"]["probe"], "timed out");
    // Answered when a message wakes it, from a publish made outside any request.
    client.subscribe("/wake").await;
    let held = tokio::spawn({
        let bayeux = bayeux.clone();
        let request = connect("woken");
        async move { common::send(&bayeux, request).await.messages() }
    });
    settle().await;
    bayeux.publish("/wake", json!(1)).await.unwrap();
    let reply = held.await.unwrap();
    assert_eq!(reply.last().unwrap()["ext"]["probe"], "woken", "{reply:?}");
}
