//! Tests of the `tower-bayeux` binary as a black box: each test starts the real binary (a
//! child process, killed on drop) on `127.0.0.1:0` (and unix sockets in temp dirs), then talks
//! HTTP to it: the publish/history API, status and metrics, health, shutdown on SIGTERM,
//! flags/env/config file, unix sockets and static files. See the contract in the server's docs
//! (`--help`) and README.

mod common;

use std::time::{Duration, Instant};

use common::{
    Addr, Client, Req, Server, TempDir, command, connect_reply, deliveries, exists, get, metric,
    publish, run_to_end, samples,
};
use serde_json::{Value, json};

const SECRET: &str = "s3cret-token";

/// `Server::start` with the publish API on (secret [`SECRET`]) and `args`.
fn start_with_api(args: &[&str]) -> Server {
    let mut all = vec!["--publish-secret", SECRET];
    all.extend_from_slice(args);
    Server::start(&all)
}

/// The `data` of `deliveries` on `channel`.
fn data_on(deliveries: &[Value], channel: &str) -> Vec<Value> {
    deliveries
        .iter()
        .filter(|m| m["channel"] == channel)
        .map(|m| m["data"].clone())
        .collect()
}

/// Asserts a 400 with a JSON `{"error": "…"}` body.
fn assert_bad_request(reply: &common::Reply, what: &str) {
    reply.expect(400, what);
    let body = reply.json();
    assert!(
        body["error"].is_string(),
        "{what}: a 400 has a JSON body with an `error` string, got {:?}",
        reply.body
    );
}

/// Asserts a 401 with `WWW-Authenticate: Bearer…`.
fn assert_unauthorized(reply: &common::Reply, what: &str) {
    reply.expect(401, what);
    let challenge = reply.header("www-authenticate").unwrap_or_else(|| {
        panic!("{what}: a 401 carries a WWW-Authenticate header, got {reply:?}")
    });
    assert!(
        challenge.starts_with("Bearer"),
        "{what}: WWW-Authenticate is {challenge:?}, expected a Bearer challenge"
    );
}

/// A fresh long-polling client at `/cometd`, subscribed to `channels`, first connect done.
async fn subscriber(addr: &Addr, channels: &[&str]) -> Client {
    let (mut client, _) = Client::handshake(addr, "/cometd").await;
    assert!(
        client.cookie.is_some(),
        "the handshake reply sets the BAYEUX_BROWSER cookie"
    );
    for channel in channels {
        client.subscribe(channel).await;
    }
    // The first connect returns at once; later ones hold.
    let first = client.connect(None).await;
    assert!(deliveries(&first).is_empty(), "{first:?}");
    client
}

// ---------------------------------------------------------------------------------------------
// POST /api/publish
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn publish_needs_the_secret_and_reaches_subscribers() {
    let server = start_with_api(&[]);
    let addr = server.addr();
    let mut client = subscriber(&addr, &["/foo/bar"]).await;

    let body = json!({"channel": "/foo/bar", "data": {"n": "no-auth"}}).to_string();
    let reply = publish(&addr, None, &body).await;
    assert_unauthorized(&reply, "publish without Authorization");

    let body = json!({"channel": "/foo/bar", "data": {"n": "wrong"}}).to_string();
    let reply = publish(&addr, Some("not-the-secret"), &body).await;
    assert_unauthorized(&reply, "publish with a wrong secret");
    let reply = publish(&addr, Some(&format!("{SECRET}x")), &body).await;
    assert_unauthorized(&reply, "publish with the secret plus a character");
    let reply = Req::post("/api/publish", body.clone())
        .json()
        .header("authorization", SECRET)
        .send(&addr)
        .await;
    assert_unauthorized(&reply, "publish with the secret but not as a Bearer token");

    let body = json!({"channel": "/foo/bar", "data": {"n": "ok"}}).to_string();
    let reply = publish(&addr, Some(SECRET), &body).await;
    reply.expect(200, "publish with the secret");
    assert_eq!(
        reply.json(),
        json!({"published": [{"channel": "/foo/bar"}]}),
        "publish reply"
    );

    let received = client.receive_until(|m| m["data"]["n"] == "ok").await;
    assert_eq!(
        data_on(&received, "/foo/bar"),
        vec![json!({"n": "ok"})],
        "the subscriber gets what was published with the secret, and nothing of the refused publishes: {received:?}"
    );
}

#[tokio::test]
async fn publish_array_publishes_in_order() {
    let server = start_with_api(&[]);
    let addr = server.addr();
    let mut client = subscriber(&addr, &["/list/**"]).await;

    let body = json!([
        {"channel": "/list/a", "data": 1},
        {"channel": "/list/b", "data": "two"},
        {"channel": "/list/a", "data": {"three": 3}},
        {"channel": "/elsewhere", "data": 4},
        {"channel": "/list/c", "data": [5]},
    ])
    .to_string();
    let reply = publish(&addr, Some(SECRET), &body).await;
    reply.expect(200, "array publish");
    assert_eq!(
        reply.json(),
        json!({"published": [
            {"channel": "/list/a"},
            {"channel": "/list/b"},
            {"channel": "/list/a"},
            {"channel": "/elsewhere"},
            {"channel": "/list/c"},
        ]}),
        "one `published` entry per message, in order"
    );

    let received = client.receive_until(|m| m["data"] == json!([5])).await;
    let got: Vec<(Value, Value)> = received
        .iter()
        .map(|m| (m["channel"].clone(), m["data"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (json!("/list/a"), json!(1)),
            (json!("/list/b"), json!("two")),
            (json!("/list/a"), json!({"three": 3})),
            (json!("/list/c"), json!([5])),
        ],
        "the subscriber gets the array's messages in order"
    );
}

#[tokio::test]
async fn publish_api_is_off_without_a_secret() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let body = json!({"channel": "/foo", "data": 1}).to_string();
    publish(&addr, None, &body)
        .await
        .expect(404, "publish without --publish-secret");
    publish(&addr, Some("anything"), &body)
        .await
        .expect(404, "publish with a token without --publish-secret");
    Req::get("/api/history?channel=/foo")
        .bearer("anything")
        .send(&addr)
        .await
        .expect(404, "history without --publish-secret");
}

#[tokio::test]
async fn publish_other_methods_are_405() {
    let server = start_with_api(&[]);
    let addr = server.addr();
    for method in ["GET", "PUT", "DELETE"] {
        Req::get("/api/publish")
            .method(method)
            .bearer(SECRET)
            .send(&addr)
            .await
            .expect(405, &format!("{method} /api/publish"));
    }
}

#[tokio::test]
async fn publish_rejects_bad_bodies_and_publishes_nothing() {
    let server = start_with_api(&[]);
    let addr = server.addr();
    let mut client = subscriber(&addr, &["/a", "/a/**"]).await;

    let cases: &[(&str, &str)] = &[
        ("malformed JSON", r#"{"channel": "/a", "data": "#),
        ("not JSON at all", "hello"),
        ("missing channel", r#"{"data": "missing-channel"}"#),
        (
            "channel not a string",
            r#"{"channel": 5, "data": "channel-5"}"#,
        ),
        ("missing data", r#"{"channel": "/a"}"#),
        (
            "no leading slash",
            r#"{"channel": "a", "data": "no-slash"}"#,
        ),
        ("empty channel", r#"{"channel": "", "data": "empty"}"#),
        ("root channel", r#"{"channel": "/", "data": "root"}"#),
        (
            "empty segment",
            r#"{"channel": "/a//b", "data": "empty-segment"}"#,
        ),
        (
            "bad character",
            r#"{"channel": "/a?b", "data": "question-mark"}"#,
        ),
        ("wildcard", r#"{"channel": "/a/*", "data": "wild"}"#),
        (
            "deep wildcard",
            r#"{"channel": "/a/**", "data": "deep-wild"}"#,
        ),
        ("meta channel", r#"{"channel": "/meta/x", "data": "meta"}"#),
        (
            "meta connect",
            r#"{"channel": "/meta/connect", "data": "meta-connect"}"#,
        ),
        (
            "service channel",
            r#"{"channel": "/service/x", "data": "service"}"#,
        ),
        ("empty array", "[]"),
        ("a string", r#""/a""#),
        ("a number", "42"),
        (
            "array with a meta channel last",
            r#"[{"channel": "/a", "data": "arr-1"}, {"channel": "/meta/x", "data": "arr-2"}]"#,
        ),
        (
            "array with a missing channel",
            r#"[{"channel": "/a", "data": "arr-3"}, {"data": "arr-4"}, {"channel": "/a/b", "data": "arr-5"}]"#,
        ),
        (
            "array with a wildcard",
            r#"[{"channel": "/a/b", "data": "arr-6"}, {"channel": "/a/*", "data": "arr-7"}]"#,
        ),
        (
            "array with missing data",
            r#"[{"channel": "/a", "data": "arr-8"}, {"channel": "/a"}]"#,
        ),
    ];
    for (what, body) in cases {
        let reply = publish(&addr, Some(SECRET), body).await;
        assert_bad_request(&reply, &format!("publish of {what} ({body})"));
    }

    let reply = publish(
        &addr,
        Some(SECRET),
        &json!({"channel": "/a", "data": "marker"}).to_string(),
    )
    .await;
    reply.expect(200, "marker publish");
    let received = client.receive_until(|m| m["data"] == "marker").await;
    let got: Vec<(Value, Value)> = received
        .iter()
        .map(|m| (m["channel"].clone(), m["data"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![(json!("/a"), json!("marker"))],
        "nothing of the rejected bodies (not even the valid elements of a rejected array) reaches the subscriber, only the marker"
    );
}

#[tokio::test]
async fn publish_body_over_the_limit_is_413() {
    let server = start_with_api(&["--api-max-body", "1000"]);
    let addr = server.addr();
    let mut client = subscriber(&addr, &["/big"]).await;

    let big = json!({"channel": "/big", "data": "x".repeat(5000)}).to_string();
    assert!(big.len() > 5000);
    publish(&addr, Some(SECRET), &big)
        .await
        .expect(413, "publish of 5000 bytes with --api-max-body 1000");

    let small = json!({"channel": "/big", "data": "y".repeat(800)}).to_string();
    assert!(small.len() < 1000);
    publish(&addr, Some(SECRET), &small)
        .await
        .expect(200, "publish of < 1000 bytes with --api-max-body 1000");

    let received = client.receive_until(|m| m["channel"] == "/big").await;
    assert_eq!(
        data_on(&received, "/big"),
        vec![json!("y".repeat(800))],
        "only the small message was published"
    );
}

// ---------------------------------------------------------------------------------------------
// Status, metrics, health
// ---------------------------------------------------------------------------------------------

async fn status(addr: &Addr) -> Value {
    let reply = get(addr, "/api/status").await;
    reply.expect(200, "GET /api/status");
    reply.json()
}

fn number(status: &Value, key: &str) -> u64 {
    status[key]
        .as_u64()
        .unwrap_or_else(|| panic!("status `{key}` is not a number: {status}"))
}

#[tokio::test]
async fn status_reflects_sessions_subscriptions_and_publishes() {
    let server = start_with_api(&[]);
    let addr = server.addr();

    let empty = status(&addr).await;
    assert_eq!(number(&empty, "sessions"), 0, "{empty}");
    assert_eq!(number(&empty, "subscriptions"), 0, "{empty}");
    assert_eq!(empty["shutting_down"], false, "{empty}");
    assert!(empty["version"].is_string(), "{empty}");
    assert!(empty["uptime_seconds"].is_number(), "{empty}");
    assert!(empty["broker"].is_null(), "no Redis, no broker: {empty}");
    for key in [
        "channels",
        "held_connects",
        "queued_messages",
        "websocket_connections",
        "messages_published",
        "messages_delivered",
        "messages_dropped",
    ] {
        number(&empty, key);
    }
    for key in [
        "long-polling",
        "callback-polling",
        "websocket",
        "unconnected",
    ] {
        assert!(
            empty["sessions_by_transport"][key].is_number(),
            "sessions_by_transport.{key}: {empty}"
        );
    }
    for key in ["channels", "messages", "bytes"] {
        assert!(empty["history"][key].is_number(), "history.{key}: {empty}");
    }

    let mut client = subscriber(&addr, &["/status/x"]).await;
    let before = status(&addr).await;
    assert_eq!(number(&before, "sessions"), 1, "{before}");
    assert_eq!(number(&before, "subscriptions"), 1, "{before}");
    assert!(number(&before, "channels") >= 1, "{before}");
    assert_eq!(
        before["sessions_by_transport"]["long-polling"], 1,
        "one connected long-polling session: {before}"
    );

    publish(
        &addr,
        Some(SECRET),
        &json!({"channel": "/status/x", "data": 1}).to_string(),
    )
    .await
    .expect(200, "publish");
    client.receive_until(|m| m["channel"] == "/status/x").await;
    let after = status(&addr).await;
    assert!(
        number(&after, "messages_published") > number(&before, "messages_published"),
        "messages_published grows with an API publish: before {before}, after {after}"
    );
    assert!(
        number(&after, "messages_delivered") > number(&before, "messages_delivered"),
        "messages_delivered grows with a delivery: before {before}, after {after}"
    );
    assert_eq!(number(&after, "sessions"), 1, "{after}");
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let server = start_with_api(&[]);
    let addr = server.addr();
    let _client = subscriber(&addr, &["/metrics/x"]).await;

    let scrape = |what: &'static str| {
        let addr = addr.clone();
        async move {
            let reply = get(&addr, "/metrics").await;
            reply.expect(200, what);
            reply.body
        }
    };
    let before = scrape("GET /metrics").await;
    for name in [
        "bayeux_sessions",
        "bayeux_channels",
        "bayeux_subscriptions",
        "bayeux_held_connects",
        "bayeux_queued_messages",
        "bayeux_websocket_connections",
        "bayeux_messages_published_total",
        "bayeux_messages_delivered_total",
        "bayeux_messages_dropped_total",
        "bayeux_history_messages",
        "bayeux_uptime_seconds",
    ] {
        assert!(
            !samples(&before, name).is_empty(),
            "/metrics has no `{name}` sample:\n{before}"
        );
    }
    assert!(
        samples(&before, "bayeux_sessions")
            .iter()
            .all(|(labels, _)| labels.contains("transport=")),
        "bayeux_sessions carries a transport label:\n{before}"
    );
    assert_eq!(
        metric(&before, "bayeux_sessions"),
        1.0,
        "one session:\n{before}"
    );
    assert_eq!(
        metric(&before, "bayeux_subscriptions"),
        1.0,
        "one subscription:\n{before}"
    );

    publish(
        &addr,
        Some(SECRET),
        &json!({"channel": "/metrics/x", "data": 1}).to_string(),
    )
    .await
    .expect(200, "publish");
    let after = scrape("GET /metrics after a publish").await;
    let published = metric(&after, "bayeux_messages_published_total");
    assert!(
        published >= metric(&before, "bayeux_messages_published_total") + 1.0,
        "bayeux_messages_published_total grows with a publish: before\n{before}\nafter\n{after}"
    );
    let status = status(&addr).await;
    assert_eq!(
        published,
        number(&status, "messages_published") as f64,
        "/metrics and /api/status agree on the messages published: {status}\n{after}"
    );
    assert_eq!(metric(&after, "bayeux_subscriptions"), 1.0, "{after}");
}

#[tokio::test]
async fn health_and_readiness() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let health = get(&addr, "/healthz").await;
    health.expect(200, "GET /healthz");
    assert_eq!(health.body.trim(), "ok");
    let ready = get(&addr, "/readyz").await;
    ready.expect(200, "GET /readyz");
    assert_eq!(ready.body.trim(), "ready");
}

// ---------------------------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn history_offsets_and_recovery_over_the_api() {
    let server = start_with_api(&["--history", "/h/**=10"]);
    let addr = server.addr();

    let body = json!([
        {"channel": "/h/a", "data": "one"},
        {"channel": "/h/a", "data": "two"},
        {"channel": "/h/a", "data": "three"},
    ])
    .to_string();
    let reply = publish(&addr, Some(SECRET), &body).await;
    reply.expect(200, "publish to a channel with history");
    let published = reply.json()["published"].clone();
    let entries = published
        .as_array()
        .unwrap_or_else(|| panic!("`published` is an array: {published}"));
    assert_eq!(entries.len(), 3, "{published}");
    let epoch = entries[0]["epoch"]
        .as_str()
        .unwrap_or_else(|| panic!("a history channel's entry has an epoch: {published}"))
        .to_owned();
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry["channel"], "/h/a", "{published}");
        assert_eq!(
            entry["offset"],
            i as u64 + 1,
            "offsets 1, 2, 3: {published}"
        );
        assert_eq!(entry["epoch"], epoch.as_str(), "one epoch: {published}");
    }

    // A channel without history gets no offset/epoch.
    let reply = publish(
        &addr,
        Some(SECRET),
        &json!({"channel": "/nohist", "data": 1}).to_string(),
    )
    .await;
    reply.expect(200, "publish to a channel without history");
    assert_eq!(reply.json(), json!({"published": [{"channel": "/nohist"}]}));

    let reply = Req::get(format!("/api/history?channel=/h/a&since=1&epoch={epoch}"))
        .bearer(SECRET)
        .send(&addr)
        .await;
    reply.expect(200, "history since 1");
    let history = reply.json();
    assert_eq!(history["channel"], "/h/a", "{history}");
    assert_eq!(history["epoch"], epoch.as_str(), "{history}");
    assert_eq!(history["offset"], 3, "{history}");
    assert_eq!(history["recovered"], true, "{history}");
    let messages = history["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("messages: {history}"));
    assert_eq!(messages.len(), 2, "the messages after offset 1: {history}");
    for (message, (data, offset)) in messages.iter().zip([("two", 2), ("three", 3)]) {
        assert_eq!(message["channel"], "/h/a", "{history}");
        assert_eq!(message["data"], data, "{history}");
        assert_eq!(message["ext"]["history"]["offset"], offset, "{history}");
        assert_eq!(
            message["ext"]["history"]["epoch"],
            epoch.as_str(),
            "{history}"
        );
    }

    // Without an epoch: the same messages.
    let reply = Req::get("/api/history?channel=/h/a&since=1")
        .bearer(SECRET)
        .send(&addr)
        .await;
    reply.expect(200, "history since 1 without epoch");
    let history = reply.json();
    assert_eq!(history["recovered"], true, "{history}");
    let data: Vec<&Value> = history["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("messages: {history}"))
        .iter()
        .map(|m| &m["data"])
        .collect();
    assert_eq!(data, [&json!("two"), &json!("three")], "{history}");

    let reply = Req::get("/api/history?channel=/h/a&since=1&epoch=not-the-epoch")
        .bearer(SECRET)
        .send(&addr)
        .await;
    reply.expect(200, "history with a wrong epoch");
    let history = reply.json();
    assert_eq!(history["recovered"], false, "{history}");
    assert_eq!(
        history["messages"],
        json!([]),
        "a wrong epoch recovers nothing: {history}"
    );
}

#[tokio::test]
async fn history_api_errors() {
    let server = start_with_api(&["--history", "/h/**=10"]);
    let addr = server.addr();

    let reply = Req::get("/api/history?channel=/h/a&since=0")
        .send(&addr)
        .await;
    assert_unauthorized(&reply, "history without Authorization");
    let reply = Req::get("/api/history?channel=/h/a&since=0")
        .bearer("wrong")
        .send(&addr)
        .await;
    assert_unauthorized(&reply, "history with a wrong secret");

    let reply = Req::get("/api/history?channel=/other&since=0")
        .bearer(SECRET)
        .send(&addr)
        .await;
    reply.expect(404, "history of a channel without history");
    assert!(reply.json()["error"].is_string(), "{:?}", reply.body);

    let reply = Req::get("/api/history?channel=/h/a&since=abc")
        .bearer(SECRET)
        .send(&addr)
        .await;
    assert_bad_request(&reply, "history with since=abc");
    let reply = Req::get("/api/history?since=0")
        .bearer(SECRET)
        .send(&addr)
        .await;
    assert_bad_request(&reply, "history without a channel");
    let reply = Req::get("/api/history?channel=nope&since=0")
        .bearer(SECRET)
        .send(&addr)
        .await;
    assert_bad_request(&reply, "history of an invalid channel");
}

// ---------------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_held_connects_and_exits_zero() {
    let mut server = Server::start(&["--timeout", "30s"]);
    let addr = server.addr();
    let mut client = subscriber(&addr, &["/bye"]).await;

    let message = client.connect_message(None);
    let started = Instant::now();
    let held = tokio::spawn(async move {
        // Without a shutdown, this would be answered after 30 s.
        let replies = client.send_within(message, Duration::from_secs(25)).await;
        (replies, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !held.is_finished(),
        "with --timeout 30s the second connect is held"
    );

    server.sigterm();
    let (replies, elapsed) = held.await.expect("the held connect gets a reply");
    assert!(
        elapsed < Duration::from_secs(25),
        "the held connect is answered on shutdown, not after its 30 s hold ({elapsed:?})"
    );
    let reply = connect_reply(&replies);
    assert!(
        reply.get("successful").is_some_and(Value::is_boolean),
        "the connect reply says whether it succeeded: {reply}"
    );
    assert_eq!(
        reply["advice"]["reconnect"], "retry",
        "the connect answered on shutdown tells the client to come back: {reply}"
    );

    let status = server.wait_exit().await;
    assert_eq!(
        status.code(),
        Some(0),
        "tower-bayeux exits 0 after SIGTERM ({status}); stderr:\n{}",
        server.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// Flags, environment, config file
// ---------------------------------------------------------------------------------------------

/// Handshakes and connects once at `/cometd`; `(timeout, interval)` from the handshake advice,
/// checked to equal the first connect's.
async fn advice(addr: &Addr) -> (u64, u64) {
    let (mut client, handshake) = Client::handshake(addr, "/cometd").await;
    let advice = &handshake["advice"];
    let got = (
        advice["timeout"]
            .as_u64()
            .unwrap_or_else(|| panic!("handshake advice.timeout: {handshake}")),
        advice["interval"]
            .as_u64()
            .unwrap_or_else(|| panic!("handshake advice.interval: {handshake}")),
    );
    let replies = client.connect(None).await;
    let connect = connect_reply(&replies);
    assert_eq!(
        (
            connect["advice"]["timeout"].as_u64(),
            connect["advice"]["interval"].as_u64()
        ),
        (Some(got.0), Some(got.1)),
        "first connect advice agrees with the handshake's: {connect}"
    );
    got
}

#[tokio::test]
async fn flags_set_timeout_and_interval() {
    let server = Server::start(&["--timeout", "2s", "--interval", "500ms"]);
    assert_eq!(advice(&server.addr()).await, (2000, 500));
}

/// The server's thread count, from /proc.
fn threads_of(server: &Server) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn threads_sets_the_runtime() {
    // One thread: everything on the main thread, which still serves clients (a publish from
    // one reaches another while its connect is held).
    let server = start_with_api(&["--threads", "1"]);
    let addr = server.addr();
    let mut client = subscriber(&addr, &["/t/one"]).await;
    let body = json!({"channel": "/t/one", "data": 1}).to_string();
    publish(&addr, Some(SECRET), &body)
        .await
        .expect(200, "publish");
    let received = client.receive_until(|m| m["data"] == 1).await;
    assert_eq!(data_on(&received, "/t/one"), vec![json!(1)]);
    assert_eq!(threads_of(&server), 1);

    let server = Server::start(&["--threads", "3"]);
    Client::handshake(&server.addr(), "/cometd").await;
    assert_eq!(threads_of(&server), 1 + 3, "the main thread and 3 workers");
}

#[tokio::test]
async fn default_timeout_and_interval() {
    let server = Server::start(&[]);
    assert_eq!(advice(&server.addr()).await, (30_000, 0));
}

#[tokio::test]
async fn env_vars_set_timeout_interval_and_secret() {
    let mut command = command();
    command
        .args(["--listen", "127.0.0.1:0"])
        .env("TOWER_BAYEUX_TIMEOUT", "3s")
        .env("TOWER_BAYEUX_INTERVAL", "1m")
        .env("TOWER_BAYEUX_PUBLISH_SECRET", "env-secret")
        .env("TOWER_BAYEUX_HISTORY", "/eh/**=5");
    let server = Server::spawn(command, 1, 0);
    let addr = server.addr();
    assert_eq!(advice(&addr).await, (3000, 60_000));

    let body = json!({"channel": "/eh/x", "data": 1}).to_string();
    assert_unauthorized(&publish(&addr, None, &body).await, "publish without token");
    let reply = publish(&addr, Some("env-secret"), &body).await;
    reply.expect(200, "publish with TOWER_BAYEUX_PUBLISH_SECRET");
    assert_eq!(
        reply.json()["published"][0]["offset"],
        1,
        "TOWER_BAYEUX_HISTORY gives /eh/x a history: {}",
        reply.body
    );
}

#[tokio::test]
async fn env_listen_is_comma_separated() {
    let mut command = command();
    command.env("TOWER_BAYEUX_LISTEN", "127.0.0.1:0,127.0.0.1:0");
    let server = Server::spawn(command, 2, 0);
    assert_ne!(server.http[0], server.http[1], "two listeners");
    for addr in &server.http {
        get(&Addr::Tcp(*addr), "/healthz")
            .await
            .expect(200, "healthz on each listener");
    }
}

#[tokio::test]
async fn listen_is_repeatable() {
    let server = Server::spawn(
        {
            let mut command = command();
            command.args(["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"]);
            command
        },
        2,
        0,
    );
    assert_ne!(server.http[0], server.http[1], "two listeners");
    for addr in &server.http {
        let addr = Addr::Tcp(*addr);
        get(&addr, "/healthz")
            .await
            .expect(200, "healthz on each listener");
        Client::handshake(&addr, "/cometd").await;
    }
}

#[tokio::test]
async fn config_file_sets_everything() {
    let dir = TempDir::new("config");
    let site = TempDir::new("site");
    site.write("index.html", "<h1>from config</h1>");
    let config = dir.write(
        "server.toml",
        &format!(
            r#"
listen = ["127.0.0.1:0"]
timeout = "4s"
interval = "700ms"
publish_secret = "file-secret"
history = ["/fh/**=100"]
path = "/fromfile"
static = {static_dir:?}
api_max_body = 2000
"#,
            static_dir = site.path.display().to_string()
        ),
    );
    let mut command = command();
    command.arg("--config").arg(&config);
    let server = Server::spawn(command, 1, 0);
    let addr = server.addr();

    let (mut client, handshake) = Client::handshake(&addr, "/fromfile").await;
    assert_eq!(handshake["advice"]["timeout"], 4000, "{handshake}");
    assert_eq!(handshake["advice"]["interval"], 700, "{handshake}");
    client.subscribe("/fh/x").await;
    client.connect(None).await;

    let body = json!({"channel": "/fh/x", "data": "f"}).to_string();
    assert_unauthorized(&publish(&addr, Some("s"), &body).await, "wrong token");
    let reply = publish(&addr, Some("file-secret"), &body).await;
    reply.expect(200, "publish with the config file's secret");
    assert_eq!(reply.json()["published"][0]["offset"], 1, "{}", reply.body);
    let received = client.receive_until(|m| m["data"] == "f").await;
    assert_eq!(data_on(&received, "/fh/x"), vec![json!("f")]);

    let big = json!({"channel": "/fh/x", "data": "x".repeat(3000)}).to_string();
    publish(&addr, Some("file-secret"), &big)
        .await
        .expect(413, "api_max_body = 2000 from the config file");

    let index = get(&addr, "/").await;
    index.expect(200, "GET / with static from the config file");
    assert!(index.body.contains("from config"), "{:?}", index.body);
}

#[tokio::test]
async fn precedence_flag_over_env_over_file() {
    let dir = TempDir::new("prec");
    let config = dir.write(
        "server.toml",
        "timeout = \"4s\"\ninterval = \"400ms\"\nmax_interval = \"20s\"\n",
    );

    // env over file
    let mut first = command();
    first
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("TOWER_BAYEUX_TIMEOUT", "3s");
    let server = Server::spawn(first, 1, 0);
    assert_eq!(
        advice(&server.addr()).await,
        (3000, 400),
        "TOWER_BAYEUX_TIMEOUT beats the file's timeout; the file's interval applies"
    );
    drop(server);

    // flag over env over file, and the file named by TOWER_BAYEUX_CONFIG
    let mut second = command();
    second
        .args(["--listen", "127.0.0.1:0", "--timeout", "2s"])
        .env("TOWER_BAYEUX_CONFIG", &config)
        .env("TOWER_BAYEUX_TIMEOUT", "3s")
        .env("TOWER_BAYEUX_INTERVAL", "250ms");
    let server = Server::spawn(second, 1, 0);
    assert_eq!(
        advice(&server.addr()).await,
        (2000, 250),
        "--timeout beats TOWER_BAYEUX_TIMEOUT; TOWER_BAYEUX_INTERVAL beats the file's interval"
    );
}

#[tokio::test]
async fn path_flag_moves_the_bayeux_endpoint() {
    let server = Server::start(&["--path", "/bayeux"]);
    let addr = server.addr();
    Client::handshake(&addr, "/bayeux").await;
    let handshake = json!([{
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
        "id": "1",
    }])
    .to_string();
    Req::post("/cometd", handshake)
        .json()
        .send(&addr)
        .await
        .expect(404, "POST /cometd when the Bayeux path is /bayeux");
}

/// What is tried, the arguments, the environment.
type BadCase<'a> = (&'a str, Vec<String>, Vec<(&'a str, &'a str)>);

#[test]
fn bad_values_exit_nonzero_with_an_error() {
    let dir = TempDir::new("bad");
    let bad_toml = dir.write("bad.toml", "timeout = \"2s\nthis is not toml ===\n");
    let bad_value_toml = dir.write("bad-value.toml", "timeout = \"soon\"\n");
    let missing = dir.join("missing.toml");
    let cases: Vec<BadCase> = vec![
        (
            "--timeout xyz",
            vec!["--timeout".into(), "xyz".into()],
            vec![],
        ),
        ("--interval -1s", vec!["--interval=-1s".into()], vec![]),
        (
            "--max-interval 10 parsecs",
            vec!["--max-interval".into(), "10 parsecs".into()],
            vec![],
        ),
        (
            "--shutdown-timeout x",
            vec!["--shutdown-timeout".into(), "x".into()],
            vec![],
        ),
        (
            "--history nope",
            vec!["--history".into(), "nope".into()],
            vec![],
        ),
        (
            "--history /a/**=many",
            vec!["--history".into(), "/a/**=many".into()],
            vec![],
        ),
        (
            "--history with an invalid channel pattern",
            vec!["--history".into(), "no-slash=10".into()],
            vec![],
        ),
        (
            "--log-format xml",
            vec!["--log-format".into(), "xml".into()],
            vec![],
        ),
        (
            "--api-max-body lots",
            vec!["--api-max-body".into(), "lots".into()],
            vec![],
        ),
        ("--threads 0", vec!["--threads".into(), "0".into()], vec![]),
        (
            "--threads some",
            vec!["--threads".into(), "some".into()],
            vec![],
        ),
        (
            "--unix-mode 9z9",
            vec!["--unix-mode".into(), "9z9".into()],
            vec![],
        ),
        ("an unknown flag", vec!["--no-such-flag".into()], vec![]),
        (
            "--listen not-an-address",
            vec!["--listen".into(), "not-an-address".into()],
            vec![],
        ),
        (
            "--config missing file",
            vec!["--config".into(), missing.display().to_string()],
            vec![],
        ),
        (
            "--config bad TOML",
            vec!["--config".into(), bad_toml.display().to_string()],
            vec![],
        ),
        (
            "--config bad duration",
            vec!["--config".into(), bad_value_toml.display().to_string()],
            vec![],
        ),
        (
            "TOWER_BAYEUX_TIMEOUT=xyz",
            vec![],
            vec![("TOWER_BAYEUX_TIMEOUT", "xyz")],
        ),
    ];
    let mut failures = Vec::new();
    for (what, args, envs) in &cases {
        let mut command = command();
        // A listener that cannot collide with anything, should the bad value be accepted.
        command.args(["--listen", "127.0.0.1:0"]).args(args);
        for (key, value) in envs {
            command.env(key, value);
        }
        let finished = run_to_end(command);
        match finished.status {
            None => failures.push(format!(
                "{what}: still running after {:?} (stdout {:?})",
                common::EXIT_TIMEOUT,
                finished.stdout
            )),
            Some(status) if status.success() => failures.push(format!(
                "{what}: exited 0 (stdout {:?}, stderr {:?})",
                finished.stdout, finished.stderr
            )),
            Some(_) if finished.stderr.trim().is_empty() => {
                failures.push(format!("{what}: failed without a message on stderr"))
            }
            Some(_) if finished.stdout.contains("listening on") => failures.push(format!(
                "{what}: printed `listening on` before failing: {:?}",
                finished.stdout
            )),
            Some(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "bad values must make tower-bayeux exit non-zero with an error on stderr:\n{}",
        failures.join("\n")
    );
}

/// Whether `help` mentions `flag` as a whole word (`--unix` is not found in `--unix-mode`).
fn mentions_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(at, _)| {
        let next = help[at + flag.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

#[test]
fn help_mentions_every_flag() {
    let mut command = command();
    command.arg("--help");
    let finished = run_to_end(command);
    let status = finished.status.expect("--help exits");
    assert!(
        status.success(),
        "--help exits 0: {status}, {:?}",
        finished.stderr
    );
    let help = finished.stdout;
    let missing: Vec<&str> = [
        "--config",
        "--listen",
        "--unix",
        "--unix-mode",
        "--path",
        "--timeout",
        "--interval",
        "--max-interval",
        "--publish-secret",
        "--allowed-origin",
        "--history",
        "--redis",
        "--static",
        "--log-format",
        "--api-max-body",
        "--no-websocket",
        "--no-callback-polling",
        "--threads",
        "--shutdown-timeout",
    ]
    .into_iter()
    .filter(|flag| !mentions_flag(&help, flag))
    .collect();
    assert!(
        missing.is_empty(),
        "--help does not mention {missing:?}:\n{help}"
    );
}

// ---------------------------------------------------------------------------------------------
// Unix sockets
// ---------------------------------------------------------------------------------------------

/// `tower-bayeux --listen 127.0.0.1:0 --unix <socket> <args>`, once it listens on both.
fn start_unix(socket: &std::path::Path, args: &[&str]) -> Server {
    let mut command = command();
    command
        .args(["--listen", "127.0.0.1:0", "--unix"])
        .arg(socket)
        .args(args);
    Server::spawn(command, 1, 1)
}

#[tokio::test]
async fn unix_socket_serves_http_and_bayeux() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    let dir = TempDir::new("unix");
    let socket = dir.join("bayeux.sock");
    let mut server = start_unix(&socket, &["--unix-mode", "600"]);
    assert_eq!(
        server.unix[0], socket,
        "`listening on unix:PATH` names the socket"
    );
    let meta = std::fs::metadata(&socket).expect("the socket file exists");
    assert!(meta.file_type().is_socket(), "{meta:?}");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "--unix-mode 600 gives the socket mode 0600"
    );

    let addr = server.unix_addr();
    let health = get(&addr, "/healthz").await;
    health.expect(200, "healthz over the unix socket");
    assert_eq!(health.body.trim(), "ok");
    let (mut client, _) = Client::handshake(&addr, "/cometd").await;
    client.subscribe("/unix/x").await;
    client.connect(None).await;
    // The TCP listener serves the same server.
    let status = get(&server.addr(), "/api/status").await;
    status.expect(200, "status over TCP");
    assert_eq!(status.json()["sessions"], 1, "{}", status.body);

    server.sigterm();
    let status = server.wait_exit().await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    assert!(
        !exists(&socket),
        "the socket file is removed when the server exits"
    );
}

#[tokio::test]
async fn unix_mode_640() {
    use std::os::unix::fs::PermissionsExt;

    let dir = TempDir::new("mode");
    let socket = dir.join("b.sock");
    let server = start_unix(&socket, &["--unix-mode", "640"]);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "--unix-mode 640");
    get(&server.unix_addr(), "/healthz")
        .await
        .expect(200, "healthz over the unix socket");
}

#[tokio::test]
async fn unix_stale_socket_file_is_replaced() {
    let dir = TempDir::new("stale");
    let socket = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind a unix listener"));
    assert!(exists(&socket), "dropping the listener leaves the file");

    let server = start_unix(&socket, &[]);
    let addr = server.unix_addr();
    get(&addr, "/healthz")
        .await
        .expect(200, "healthz over a socket that replaced a stale file");
    Client::handshake(&addr, "/cometd").await;
}

#[test]
fn unix_socket_in_use_is_an_error() {
    let dir = TempDir::new("live");
    let socket = dir.join("live.sock");
    let _live = std::os::unix::net::UnixListener::bind(&socket).expect("bind a unix listener");

    let mut command = command();
    command
        .args(["--listen", "127.0.0.1:0", "--unix"])
        .arg(&socket);
    let finished = run_to_end(command);
    let status = finished.status.unwrap_or_else(|| {
        panic!(
            "tower-bayeux still running with its unix socket path in use by a live listener (stdout {:?})",
            finished.stdout
        )
    });
    assert!(
        !status.success(),
        "a unix socket path in use by a live listener is an error (stdout {:?})",
        finished.stdout
    );
    assert!(
        !finished.stderr.trim().is_empty(),
        "the error is explained on stderr"
    );
    assert!(
        exists(&socket),
        "the live listener's socket file is left alone"
    );
}

// ---------------------------------------------------------------------------------------------
// Static files
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn static_dir_is_served() {
    let site = TempDir::new("static");
    site.write("index.html", "<!doctype html><title>hello static</title>");
    site.write("app.js", "console.log('app');");
    let server = Server::start(&["--static", site.path.to_str().unwrap()]);
    let addr = server.addr();

    let index = get(&addr, "/").await;
    index.expect(200, "GET / with --static");
    assert_eq!(index.body, "<!doctype html><title>hello static</title>");
    assert!(
        index
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        index.headers
    );
    let js = get(&addr, "/app.js").await;
    js.expect(200, "GET /app.js with --static");
    assert_eq!(js.body, "console.log('app');");
    get(&addr, "/missing.html")
        .await
        .expect(404, "GET of a missing file");
    // The other routes still answer.
    get(&addr, "/healthz").await.expect(200, "healthz");
    Client::handshake(&addr, "/cometd").await;
}

#[tokio::test]
async fn no_static_dir_means_404() {
    let server = Server::start(&[]);
    let addr = server.addr();
    get(&addr, "/").await.expect(404, "GET / without --static");
    get(&addr, "/index.html")
        .await
        .expect(404, "GET /index.html without --static");
}

// ---------------------------------------------------------------------------------------------
// Transports and origins
// ---------------------------------------------------------------------------------------------

/// A websocket upgrade request for `/cometd`, with `Origin` if given.
fn websocket_upgrade(origin: Option<&str>) -> Req {
    let req = Req::get("/cometd")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    match origin {
        Some(origin) => req.header("origin", origin),
        None => req,
    }
}

/// `value`, percent-encoded for a query string.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A callback-polling (JSONP) handshake: `GET /cometd?jsonp=cb&message=[…]`.
async fn jsonp_handshake(addr: &Addr) -> common::Reply {
    let message = json!([{
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["callback-polling"],
        "id": "1",
    }])
    .to_string();
    get(
        addr,
        &format!("/cometd?jsonp=cb&message={}", encode(&message)),
    )
    .await
}

/// The `supportedConnectionTypes` of a handshake reply.
fn offered(handshake: &Value) -> Vec<String> {
    handshake["supportedConnectionTypes"]
        .as_array()
        .unwrap_or_else(|| panic!("supportedConnectionTypes: {handshake}"))
        .iter()
        .map(|t| t.as_str().expect("a string").to_owned())
        .collect()
}

#[tokio::test]
async fn every_transport_is_on_by_default() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let (_, handshake) = Client::handshake(&addr, "/cometd").await;
    let types = offered(&handshake);
    for transport in ["long-polling", "callback-polling", "websocket"] {
        assert!(
            types.iter().any(|t| t == transport),
            "{transport} is offered by default: {handshake}"
        );
    }

    websocket_upgrade(None)
        .send(&addr)
        .await
        .expect(101, "websocket upgrade by default");

    let reply = jsonp_handshake(&addr).await;
    reply.expect(200, "callback-polling handshake by default");
    assert!(
        reply.body.contains("cb(") && reply.body.contains(r#""successful":true"#),
        "a JSONP handshake succeeds by default: {:?}",
        reply.body
    );
}

#[tokio::test]
async fn no_websocket_and_no_callback_polling_turn_them_off() {
    let server = Server::start(&["--no-websocket", "--no-callback-polling"]);
    let addr = server.addr();
    let (_, handshake) = Client::handshake(&addr, "/cometd").await;
    assert_eq!(
        offered(&handshake),
        ["long-polling"],
        "only long-polling is offered: {handshake}"
    );

    let reply = websocket_upgrade(None).send(&addr).await;
    assert_ne!(
        reply.status.as_u16(),
        101,
        "no websocket upgrade with --no-websocket"
    );

    let reply = jsonp_handshake(&addr).await;
    assert!(
        !(reply.status.as_u16() == 200 && reply.body.contains(r#""successful":true"#)),
        "no successful JSONP handshake with --no-callback-polling: {} {:?}",
        reply.status,
        reply.body
    );
}

#[tokio::test]
async fn allowed_origins_for_websockets_and_long_polling() {
    const GOOD: &str = "http://good.example";
    const EVIL: &str = "http://evil.example";

    let server = Server::start(&[
        "--allowed-origin",
        GOOD,
        "--allowed-origin",
        "http://other.example:8443",
    ]);
    let addr = server.addr();
    websocket_upgrade(Some(GOOD))
        .send(&addr)
        .await
        .expect(101, "websocket upgrade from an allowed origin");
    websocket_upgrade(Some("http://other.example:8443"))
        .send(&addr)
        .await
        .expect(101, "websocket upgrade from the second allowed origin");
    websocket_upgrade(Some(EVIL))
        .send(&addr)
        .await
        .expect(403, "websocket upgrade from another origin");

    // Long-polling: CORS for the allowed origins (with credentials: the browser cookie).
    let handshake = json!([{
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
        "id": "1",
    }])
    .to_string();
    let preflight = Req::get("/cometd")
        .method("OPTIONS")
        .header("origin", GOOD)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send(&addr)
        .await;
    assert!(
        preflight.status.is_success(),
        "preflight from an allowed origin: {preflight:?}"
    );
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(GOOD),
        "preflight from an allowed origin: {preflight:?}"
    );
    let reply = Req::post("/cometd", handshake.clone())
        .json()
        .header("origin", GOOD)
        .send(&addr)
        .await;
    reply.expect(200, "cross-origin handshake from an allowed origin");
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(GOOD),
        "{reply:?}"
    );
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        Some("true"),
        "the browser cookie needs credentials: {reply:?}"
    );
    let reply = Req::post("/cometd", handshake)
        .json()
        .header("origin", EVIL)
        .send(&addr)
        .await;
    assert!(
        !reply
            .header("access-control-allow-origin")
            .is_some_and(|o| o == EVIL || o == "*"),
        "no CORS grant for another origin: {reply:?}"
    );
}

#[tokio::test]
async fn foreign_origins_are_refused_without_allowed_origin() {
    let server = Server::start(&[]);
    let addr = server.addr();
    websocket_upgrade(Some("http://good.example"))
        .send(&addr)
        .await
        .expect(
            403,
            "cross-origin websocket upgrade without --allowed-origin",
        );
    let reply = Req::post(
        "/cometd",
        json!([{
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": ["long-polling"],
            "id": "1",
        }])
        .to_string(),
    )
    .json()
    .header("origin", "http://good.example")
    .send(&addr)
    .await;
    assert!(
        !reply
            .header("access-control-allow-origin")
            .is_some_and(|o| o == "http://good.example" || o == "*"),
        "no CORS grant without --allowed-origin: {reply:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn log_format_json_writes_json_lines() {
    let mut command = command();
    command
        .env_remove("RUST_LOG")
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"]);
    let server = Server::spawn(command, 1, 0);
    get(&server.addr(), "/healthz").await.expect(200, "healthz");
    common::eventually("a log line on stderr", Duration::from_secs(20), || {
        let logs = server.stderr();
        async move { !logs.trim().is_empty() }
    })
    .await;
    let logs = server.stderr();
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!("--log-format json: a log line is not JSON ({e}): {line:?}")
        });
        assert!(value.is_object(), "{line:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

/// A node with the API on, the history pattern `/rh/**=10` and Redis at `url`.
fn redis_node(url: &str) -> Server {
    start_with_api(&["--redis", url, "--history", "/rh/**=10"])
}

/// Waits until `/readyz` answers `status`.
async fn ready_becomes(addr: &Addr, status: u16, what: &str) {
    common::eventually(what, Duration::from_secs(30), || {
        let addr = addr.clone();
        async move { get(&addr, "/readyz").await.status.as_u16() == status }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_links_nodes_and_keeps_shared_history() {
    let redis = common::Redis::start().await;
    let a = redis_node(&redis.url());
    let b = redis_node(&redis.url());
    let (a_addr, b_addr) = (a.addr(), b.addr());
    ready_becomes(&a_addr, 200, "node A ready with Redis up").await;
    ready_becomes(&b_addr, 200, "node B ready with Redis up").await;

    let status = status(&a_addr).await;
    assert_eq!(
        status["broker"]["connected"], true,
        "the broker is connected: {status}"
    );
    let metrics = get(&a_addr, "/metrics").await;
    metrics.expect(200, "GET /metrics");
    assert_eq!(
        metric(&metrics.body, "bayeux_broker_connected"),
        1.0,
        "{}",
        metrics.body
    );
    for name in [
        "bayeux_broker_messages_out_total",
        "bayeux_broker_messages_in_total",
        "bayeux_broker_reconnects_total",
    ] {
        assert!(
            !samples(&metrics.body, name).is_empty(),
            "/metrics with Redis has `{name}`:\n{}",
            metrics.body
        );
    }

    // A subscriber on A gets what the API of B publishes.
    let mut client = subscriber(&a_addr, &["/r/x"]).await;
    publish(
        &b_addr,
        Some(SECRET),
        &json!({"channel": "/r/x", "data": "via-redis"}).to_string(),
    )
    .await
    .expect(200, "publish on node B");
    let received = client.receive_until(|m| m["data"] == "via-redis").await;
    assert_eq!(data_on(&received, "/r/x"), vec![json!("via-redis")]);

    // The history is shared: published on B, read on A.
    let reply = publish(
        &b_addr,
        Some(SECRET),
        &json!([
            {"channel": "/rh/a", "data": "h1"},
            {"channel": "/rh/a", "data": "h2"},
        ])
        .to_string(),
    )
    .await;
    reply.expect(200, "history publish on node B");
    let published = reply.json();
    assert_eq!(published["published"][0]["offset"], 1, "{published}");
    assert_eq!(published["published"][1]["offset"], 2, "{published}");
    let reply = Req::get("/api/history?channel=/rh/a&since=0")
        .bearer(SECRET)
        .send(&a_addr)
        .await;
    reply.expect(200, "history on node A");
    let history = reply.json();
    assert_eq!(history["offset"], 2, "{history}");
    assert_eq!(
        history["epoch"], published["published"][0]["epoch"],
        "{history}"
    );
    let data: Vec<&Value> = history["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("messages: {history}"))
        .iter()
        .map(|m| &m["data"])
        .collect();
    assert_eq!(data, [&json!("h1"), &json!("h2")], "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_not_ready_and_history_503() {
    let mut redis = common::Redis::start().await;
    let node = redis_node(&redis.url());
    let addr = node.addr();
    ready_becomes(&addr, 200, "ready with Redis up").await;

    redis.stop();
    ready_becomes(&addr, 503, "/readyz 503 with Redis down").await;
    let status = status(&addr).await;
    assert_eq!(
        status["broker"]["connected"], false,
        "the broker is disconnected: {status}"
    );
    common::eventually(
        "/api/history 503 with Redis down",
        Duration::from_secs(30),
        || {
            let addr = addr.clone();
            async move {
                Req::get("/api/history?channel=/rh/a&since=0")
                    .bearer(SECRET)
                    .send(&addr)
                    .await
                    .status
                    .as_u16()
                    == 503
            }
        },
    )
    .await;
    get(&addr, "/healthz")
        .await
        .expect(200, "healthz stays 200 with Redis down");

    redis.restart().await;
    ready_becomes(&addr, 200, "/readyz 200 once Redis is back").await;
}
