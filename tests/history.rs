//! Channel history and replay on one node: positions on live messages, resuming a
//! subscription after a position, the retained window and the epoch, the bounds.
//!
//! The scenarios that would break the guarantees:
//! - a message published while a resuming subscription is being set up: if the subscriber is
//!   added after the replay is read, the message is in neither (a gap); if it is added before
//!   and the replay read later, it is in both (a duplicate). Publishers racing subscribers on a
//!   multi-thread runtime, each subscriber checking it got every offset once, in order;
//! - a client resuming from a position that is no longer retained, or from another epoch: it
//!   must be told (`recovered: false`) and get nothing old, never a silent gap;
//! - many channels with history: the total bound must hold.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Client, data_of, deliveries};
use serde_json::{Value, json};
use tower_bayeux::{Bayeux, Error, Retention};

fn server() -> Bayeux {
    Bayeux::builder()
        .timeout(Duration::from_millis(200))
        .history("/chat/**", Retention::last(5))
        .history("/all/**", Retention::last(10_000))
        .build()
}

/// Subscribes with `ext` on the subscribe message; returns the reply.
async fn subscribe_with(client: &Client, channel: &str, ext: Value) -> Value {
    let reply = client
        .send(vec![
            json!({"channel": "/meta/subscribe", "subscription": channel, "ext": ext}),
        ])
        .await;
    reply.last().unwrap().clone()
}

/// Subscribes resuming after `since` in `epoch`.
async fn resume(client: &Client, channel: &str, since: u64, epoch: &str) -> Value {
    subscribe_with(
        client,
        channel,
        json!({"history": {"since": since, "epoch": epoch}}),
    )
    .await
}

/// Connects until `n` deliveries came; returns the whole messages.
async fn receive(client: &Client, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    for _ in 0..100 {
        if got.len() >= n {
            break;
        }
        got.extend(deliveries(&client.connect(None).await).into_iter().cloned());
    }
    assert_eq!(got.len(), n, "{got:?}");
    got
}

fn offsets(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["ext"]["history"]["offset"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn live_messages_carry_their_position_and_subscribers_learn_where_they_start() {
    let bayeux = server();
    let reader = Client::connected(&bayeux).await;
    let reply = reader.subscribe("/chat/room").await;
    assert_eq!(reply["successful"], true);
    let epoch = reply["ext"]["history"]["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        reply["ext"]["history"],
        json!({"epoch": epoch, "offset": 0})
    );

    let writer = Client::connected(&bayeux).await;
    let published = writer.publish("/chat/room", json!("one")).await;
    assert_eq!(
        published.last().unwrap()["ext"]["history"],
        json!({"offset": 1, "epoch": epoch}),
        "the publisher learns its message's position"
    );
    writer.publish("/chat/room", json!("two")).await;
    let got = receive(&reader, 2).await;
    assert_eq!(
        got,
        [
            json!({"channel": "/chat/room", "data": "one", "ext": {"history": {"offset": 1, "epoch": epoch}}}),
            json!({"channel": "/chat/room", "data": "two", "ext": {"history": {"offset": 2, "epoch": epoch}}}),
        ]
    );
    // Per channel: another room counts from one, with an epoch of its own.
    writer.publish("/chat/other", json!("x")).await;
    let other = bayeux.history("/chat/other", None, None).await.unwrap();
    assert_eq!(other.offset, 1);
    assert_ne!(other.epoch, epoch);
    // A wildcard subscriber sees the channel's positions too.
    let wild = Client::connected(&bayeux).await;
    wild.subscribe("/chat/*").await;
    writer.publish("/chat/room", json!("three")).await;
    assert_eq!(offsets(&receive(&wild, 1).await), [3]);
    // Channels without history are as they were.
    let plain = Client::connected(&bayeux).await;
    let reply = plain.subscribe("/plain").await;
    assert!(reply.get("ext").is_none(), "{reply}");
    writer.publish("/plain", json!("p")).await;
    assert_eq!(
        deliveries(&plain.connect(None).await),
        [&json!({"channel": "/plain", "data": "p"})]
    );
}

#[tokio::test]
async fn a_client_that_was_away_gets_what_it_missed_then_live_messages() {
    let bayeux = server();
    let writer = Client::connected(&bayeux).await;
    let reader = Client::connected(&bayeux).await;
    let epoch = reader.subscribe("/chat/room").await["ext"]["history"]["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 1..=2 {
        writer.publish("/chat/room", json!(n)).await;
    }
    assert_eq!(offsets(&receive(&reader, 2).await), [1, 2]);
    // The reader goes away; two messages are published meanwhile.
    reader
        .send(vec![json!({"channel": "/meta/disconnect"})])
        .await;
    for n in 3..=4 {
        writer.publish("/chat/room", json!(n)).await;
    }

    let back = Client::connected(&bayeux).await;
    let reply = resume(&back, "/chat/room", 2, &epoch).await;
    assert_eq!(reply["successful"], true);
    assert_eq!(
        reply["ext"]["history"],
        json!({"recovered": true, "epoch": epoch, "offset": 4})
    );
    writer.publish("/chat/room", json!(5)).await;
    let got = receive(&back, 3).await;
    assert_eq!(data_of(&got), [json!(3), json!(4), json!(5)]);
    assert_eq!(offsets(&got), [3, 4, 5]);

    // Up to date: nothing to replay, still recovered.
    let current = Client::connected(&bayeux).await;
    let reply = resume(&current, "/chat/room", 5, &epoch).await;
    assert_eq!(reply["ext"]["history"]["recovered"], true);
    writer.publish("/chat/room", json!(6)).await;
    assert_eq!(offsets(&receive(&current, 1).await), [6]);
}

#[tokio::test]
async fn a_position_out_of_the_window_or_of_another_epoch_is_not_recovered() {
    for (since, same_epoch, recovered) in [
        (3, true, true),
        (2, false, false),
        (2, true, false),
        (0, true, false),
        (9, true, false),
    ] {
        let bayeux = server();
        let writer = Client::connected(&bayeux).await;
        for n in 1..=8 {
            writer.publish("/chat/room", json!(n)).await;
        }
        let page = bayeux.history("/chat/room", None, None).await.unwrap();
        // Retained: the last five, 4 to 8.
        assert_eq!(page.messages.len(), 5);
        let epoch = if same_epoch {
            page.epoch.as_str()
        } else {
            "another"
        };

        let client = Client::connected(&bayeux).await;
        let reply = resume(&client, "/chat/room", since, epoch).await;
        let case = format!("since {since} in {epoch}");
        assert_eq!(reply["successful"], true, "{case}");
        assert_eq!(
            reply["ext"]["history"],
            json!({"recovered": recovered, "epoch": page.epoch, "offset": 8}),
            "{case}"
        );
        // Not recovered: nothing old comes, only what is published from now on.
        writer.publish("/chat/room", json!("live")).await;
        let got = receive(&client, if recovered { 6 } else { 1 }).await;
        let expected: Vec<u64> = if recovered {
            (4..=9).collect()
        } else {
            vec![9]
        };
        assert_eq!(offsets(&got), expected, "{case}");
    }
}

#[tokio::test]
async fn malformed_or_wildcard_positions_are_refused_clearly() {
    let bayeux = server();
    let client = Client::connected(&bayeux).await;
    let reply = resume(&client, "/chat/*", 0, "e").await;
    assert_eq!(reply["successful"], false);
    assert_eq!(reply["error"], "400::history_since_wildcard");
    for ext in [
        json!({"history": {"since": -1}}),
        json!({"history": {"since": "3"}}),
        json!({"history": {"since": 3, "epoch": 1}}),
    ] {
        let reply = subscribe_with(&client, "/chat/room", ext.clone()).await;
        assert_eq!(reply["error"], "400::history_since_invalid", "{ext}");
    }
    let reply = client
        .send(vec![json!({
            "channel": "/meta/subscribe",
            "subscription": ["/chat/a", "/chat/b"],
            "ext": {"history": {"since": 0}},
        })])
        .await;
    assert_eq!(reply[0]["error"], "400::history_since_invalid");
    let session = bayeux.session(&client.client_id).unwrap();
    assert!(session.subscriptions().is_empty());
    // On a channel without history a position is ignored.
    let reply = resume(&client, "/plain", 3, "e").await;
    assert_eq!(reply["successful"], true);
    assert!(reply.get("ext").is_none());

    assert!(matches!(
        bayeux.history("/plain", None, None).await,
        Err(Error::NoHistory(_))
    ));
}

/// Publishers and readers of the race below.
const PUBLISHERS: u64 = 4;
const MESSAGES: u64 = 150;
const READERS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_published_while_a_replay_is_assembled_arrives_exactly_once() {
    // A lost race shows only now and then: run the scenario several times.
    for _ in 0..8 {
        race().await;
    }
}

async fn race() {
    let bayeux = server();
    let room = "/all/room";
    let mut publishers = Vec::new();
    for from in 0..PUBLISHERS {
        let writer = Client::connected(&bayeux).await;
        publishers.push(tokio::spawn(async move {
            for n in 0..MESSAGES {
                writer.publish(room, json!({"from": from, "n": n})).await;
                if (n + from).is_multiple_of(5) {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    // Readers join while the publishers run, each resuming a few messages back from the
    // position it reads: part of what it gets is replayed, the rest live, and messages are
    // published while its replay is put together.
    let total = PUBLISHERS * MESSAGES;
    let mut readers = Vec::new();
    for reader in 0..READERS {
        let bayeux = bayeux.clone();
        readers.push(tokio::spawn(async move {
            for _ in 0..reader * 3 {
                tokio::task::yield_now().await;
            }
            let client = Arc::new(Client::connected(&bayeux).await);
            let page = bayeux.history(room, None, None).await.unwrap();
            let since = page.offset.saturating_sub(3);
            let reply = resume(&client, room, since, &page.epoch).await;
            assert_eq!(reply["ext"]["history"]["recovered"], true, "{reply}");
            let mut got = Vec::new();
            while got.last().copied() != Some(total) {
                let reply = client.connect(None).await;
                got.extend(offsets(
                    &deliveries(&reply).into_iter().cloned().collect::<Vec<_>>(),
                ));
                assert!(got.len() <= total as usize, "duplicates: {got:?}");
            }
            assert_eq!(
                got,
                (since + 1..=total).collect::<Vec<_>>(),
                "reader {reader} resuming after {since}: every offset once, in order"
            );
        }));
    }
    for task in publishers.into_iter().chain(readers) {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn the_histories_of_ten_thousand_channels_stay_within_the_total_bound() {
    const BOUND: usize = 1024 * 1024;
    let bayeux = Bayeux::builder()
        .history("/many/**", Retention::last(3))
        .max_history_bytes(BOUND)
        .build();
    let payload = "x".repeat(200);
    let mut first_epoch = None;
    for round in 0..4 {
        for channel in 0..10_000 {
            bayeux
                .publish(
                    format!("/many/{channel}"),
                    json!({"round": round, "p": payload}),
                )
                .await
                .unwrap();
            if first_epoch.is_none() {
                first_epoch = Some(bayeux.history("/many/0", None, None).await.unwrap().epoch);
            }
        }
        let stats = bayeux.stats();
        assert!(stats.history_bytes <= BOUND, "{stats:?}");
    }
    let stats = bayeux.stats();
    // A message: its entry, its JSON (the payload, the round, the channel and the position),
    // and while it is its channel's only one, the channel.
    let per_message = tower_bayeux::HISTORY_ENTRY_COST + 200 + 130 + 160;
    assert!(
        stats.history_messages >= BOUND / per_message - 100,
        "the bound is used, not wasted: {stats:?}"
    );
    assert!(stats.history_channels <= stats.history_messages);
    // The newest messages survive, the oldest went first, and with them their channels'
    // positions: a client resuming there is told.
    let last = bayeux.history("/many/9999", None, None).await.unwrap();
    assert_eq!(last.messages.len(), 1);
    assert_eq!(last.messages[0].data.as_ref().unwrap()["round"], 3);
    let first = bayeux
        .history("/many/0", Some(0), first_epoch.as_deref())
        .await
        .unwrap();
    assert!(!first.recovered);
    assert!(first.messages.is_empty());
}

#[tokio::test(start_paused = true)]
async fn messages_older_than_the_retention_age_are_dropped() {
    let bayeux = Bayeux::builder()
        .history(
            "/news",
            Retention::last(100).max_age(Duration::from_secs(30)),
        )
        .sweep_period(Duration::from_secs(1))
        .build();
    // The sweeper runs once the engine works.
    let _client = Client::connected(&bayeux).await;
    bayeux.publish("/news", json!("old")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    bayeux.publish("/news", json!("new")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let page = bayeux.history("/news", None, None).await.unwrap();
    assert_eq!(page.offset, 2);
    let data: Vec<Value> = page
        .messages
        .iter()
        .map(|m| m.data.clone().unwrap())
        .collect();
    assert_eq!(data, [json!("new")]);
    assert!(
        !bayeux
            .history("/news", Some(0), None)
            .await
            .unwrap()
            .recovered
    );
    assert!(
        bayeux
            .history("/news", Some(1), None)
            .await
            .unwrap()
            .recovered
    );
}
