//! Several nodes sharing one Bayeux space through a real Redis (`redis-server` started by the
//! test on a free port): cross-node publish and delivery, interest, faults.
#![cfg(feature = "redis")]

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{Client, deliveries};
use serde_json::json;
use tower_bayeux::{Bayeux, RedisBroker};

fn node(redis: &RedisServer) -> Bayeux {
    Bayeux::builder()
        .timeout(Duration::from_secs(5))
        .broker(RedisBroker::new(redis.url()).prefix("test:"))
        .build()
}

/// Connects until the broadcast shows up (or the time is up).
async fn receive(client: &Client) -> Vec<serde_json::Value> {
    let reply = client.connect(None).await;
    deliveries(&reply).into_iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_published_on_one_node_reaches_the_others() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis), node(&redis));
    let subscriber = Client::connected(&a).await;
    assert_eq!(subscriber.subscribe("/chat/room").await["successful"], true);
    let publisher = Client::connected(&b).await;
    publisher.publish("/chat/room", json!("hello from b")).await;
    let got = receive(&subscriber).await;
    assert_eq!(
        got,
        [json!({"channel": "/chat/room", "data": "hello from b"})]
    );
    assert_eq!(
        redis.channels().await.len(),
        3,
        "{:?}",
        redis.channels().await
    );
}
