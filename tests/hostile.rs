//! Property tests over hostile input: the message parser, the channel grammar and the whole
//! request pipeline never panic, and always answer with a 4xx or a well-formed Bayeux reply.

mod common;

use std::sync::OnceLock;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tower_bayeux::protocol::parse_messages;
use tower_bayeux::{Bayeux, ChannelName};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Arbitrary JSON values, nested, with edge-case numbers and strings.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("/meta/handshake"),
            Just("/meta/connect"),
            Just("/meta/subscribe"),
            Just("/meta/subscribe/x"),
            Just("/meta/unsubscribe"),
            Just("/meta/disconnect"),
            Just("/meta/**"),
            Just("/service/echo"),
            Just("/chat/*"),
            Just("/chat/**"),
            Just("/**"),
            Just("/a/b"),
            Just("/a/../b"),
            Just("\u{2028}"),
            Just("\u{0}"),
            Just(""),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Messages whose known fields take arbitrary values (often of the wrong type).
fn hostile_message() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("id"),
        Just("channel"),
        Just("clientId"),
        Just("data"),
        Just("subscription"),
        Just("advice"),
        Just("ext"),
        Just("version"),
        Just("supportedConnectionTypes"),
        Just("connectionType"),
        Just("successful"),
        Just("timestamp"),
        Just("other"),
    ];
    prop::collection::vec((field, json_value()), 0..6).prop_map(|fields| {
        let mut message = Map::new();
        for (name, value) in fields {
            message.insert(name.to_owned(), value);
        }
        Value::Object(message)
    })
}

/// A request body: a batch of hostile messages, sometimes not even an array.
fn hostile_body() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(hostile_message(), 0..5).prop_map(|m| Value::Array(m).to_string()),
        json_value().prop_map(|v| v.to_string()),
        "\\PC{0,40}",
    ]
}

/// An engine with one live session, and that session's cookie and clientId.
fn engine_with_session() -> (Bayeux, String, String) {
    runtime().block_on(async {
        let bayeux = Bayeux::builder().build();
        let client = common::Client::connected(&bayeux).await;
        (bayeux, client.cookie.clone(), client.client_id.clone())
    })
}

fn post(bayeux: &Bayeux, cookie: &str, body: String) -> common::Reply {
    runtime().block_on(async {
        let request = Request::post("/cometd/")
            .header(header::COOKIE, cookie)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        // A hostile batch may hold a connect the engine holds: it must still answer in time.
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            common::send(bayeux, request),
        )
        .await
        .expect("answered")
    })
}

/// Every answer is a 4xx, or a 200 with one reply per message (each echoing its id) possibly
/// after deliveries, never an empty array.
fn check_answer(reply: &common::Reply, sent: &str) {
    common::answer::check_answer(reply.status, reply.body.as_bytes(), sent.as_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_parser_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_messages(&body);
    }

    #[test]
    fn the_parser_never_panics_on_hostile_json(body in hostile_body()) {
        let _ = parse_messages(body.as_bytes());
    }

    #[test]
    fn channel_names_never_panic_and_valid_ones_round_trip(name in "\\PC{0,30}|(/[a-z*]{0,3}){0,5}") {
        if let Ok(channel) = ChannelName::new(&name) {
            prop_assert_eq!(channel.as_str(), name.as_str());
            for pattern in channel.wild_ancestors() {
                prop_assert!(pattern.matches(&channel));
            }
        }
    }

    #[test]
    fn wildcard_matching_agrees_with_segment_logic(
        pattern in "(/[ab]){0,3}/(\\*|\\*\\*|[ab])",
        name in "(/[ab]){1,4}",
    ) {
        let pattern = ChannelName::new(&pattern).unwrap();
        let channel = ChannelName::new(&name).unwrap();
        let p: Vec<&str> = pattern.as_str()[1..].split('/').collect();
        let c: Vec<&str> = channel.as_str()[1..].split('/').collect();
        let (last, prefix) = p.split_last().unwrap();
        let expected = match *last {
            "*" => c.len() == p.len() && c[..prefix.len()] == *prefix,
            "**" => c.len() > prefix.len() && c[..prefix.len()] == *prefix,
            _ => p == c,
        };
        prop_assert_eq!(pattern.matches(&channel), expected);
        prop_assert_eq!(
            channel.wild_ancestors().contains(&pattern),
            expected && pattern.is_wild()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_pipeline_answers_hostile_batches_without_panicking(
        messages in prop::collection::vec(hostile_message(), 1..5),
        with_client_id in any::<bool>(),
    ) {
        // A fresh session each time: a hostile batch may well disconnect it.
        let (bayeux, cookie, client_id) = engine_with_session();
        let mut messages = messages;
        for message in &mut messages {
            let object = message.as_object_mut().unwrap();
            if with_client_id {
                object.insert("clientId".into(), json!(client_id));
            }
            // Keep hostile connects from holding the test for the whole long-poll timeout.
            object.insert("advice".into(), json!({"timeout": 0}));
        }
        let body = Value::Array(messages).to_string();
        let reply = post(&bayeux, &cookie, body.clone());
        check_answer(&reply, &body);
    }

    #[test]
    fn the_pipeline_answers_any_body(body in hostile_body()) {
        static ENGINE: OnceLock<(Bayeux, String, String)> = OnceLock::new();
        let (bayeux, cookie, _) = ENGINE.get_or_init(engine_with_session);
        let reply = post(bayeux, cookie, body.clone());
        if reply.status == StatusCode::OK {
            check_answer(&reply, &body);
        } else {
            prop_assert!(reply.status.is_client_error(), "{} -> {}", body, reply.status);
        }
    }
}

#[test]
fn deep_nesting_in_any_field_is_refused_cleanly() {
    let (bayeux, cookie, client_id) = engine_with_session();
    for field in ["data", "ext", "advice", "id", "subscription", "other"] {
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let body = format!(r#"[{{"channel":"/a","clientId":"{client_id}","{field}":{deep}}}]"#);
        assert_eq!(
            post(&bayeux, &cookie, body).status,
            StatusCode::BAD_REQUEST,
            "{field}"
        );
    }
}

#[test]
fn unicode_edge_cases_are_handled() {
    let (bayeux, cookie, client_id) = engine_with_session();
    let cases = [
        // A lone surrogate is not valid JSON text.
        (r#""\ud800""#, StatusCode::BAD_REQUEST),
        (
            r#""\u0000 \u2028 \u2029 \uffff \ud83d\ude00""#,
            StatusCode::OK,
        ),
        (r#""é Ω 𝄞 \u200b""#, StatusCode::OK),
    ];
    for (data, status) in cases {
        let body =
            format!(r#"[{{"id":"1","channel":"/u","clientId":"{client_id}","data":{data}}}]"#);
        let reply = post(&bayeux, &cookie, body.clone());
        assert_eq!(reply.status, status, "{body}");
        if status == StatusCode::OK {
            check_answer(&reply, &body);
        }
    }
    // Invalid UTF-8 bytes.
    let reply = runtime().block_on(async {
        let request = Request::post("/cometd/")
            .header(header::COOKIE, &cookie)
            .body(Full::new(Bytes::from_static(b"[{\"channel\":\"/a\xff\"}]")))
            .unwrap();
        common::send(&bayeux, request).await
    });
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}
