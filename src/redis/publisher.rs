//! The publishing connection: sends this node's broadcasts and deliveries, in order,
//! pipelined.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::protocol::ChannelName;

use super::{CONNECT_TIMEOUT, Shared, backoff, wire};

/// Something to send.
pub(crate) enum Outgoing {
    /// A broadcast published on this node: its serialised message.
    Broadcast { channel: ChannelName, json: Bytes },
    /// A delivery to a session on another node (that node's Redis channel); `done` gets how
    /// many nodes received it, or why it could not be sent.
    Deliver {
        channel: String,
        payload: Bytes,
        done: oneshot::Sender<Result<i64, String>>,
    },
}

/// The most messages sent in one pipeline.
const BATCH: usize = 256;

/// Sends what the node hands over until the broker is dropped.
pub(crate) async fn run(
    shared: Arc<Shared>,
    client: redis::Client,
    mut outgoing: mpsc::Receiver<Outgoing>,
) {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(CONNECT_TIMEOUT))
        .set_number_of_retries(1);
    let mut connection: Option<ConnectionManager> = None;
    // While Redis cannot be reached, what comes is dropped (and counted) until the next try.
    let mut next_try = Instant::now();
    let mut failures = 0;
    let mut sequence = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    while outgoing.recv_many(&mut batch, BATCH).await > 0 {
        if connection.is_none() && Instant::now() >= next_try {
            match client
                .get_connection_manager_with_config(config.clone())
                .await
            {
                Ok(manager) => {
                    tracing::info!("publishing to Redis");
                    shared.publishing.store(true, Ordering::Release);
                    connection = Some(manager);
                    failures = 0;
                }
                Err(err) => {
                    tracing::warn!(%err, "cannot connect to Redis to publish; retrying");
                    next_try = Instant::now() + backoff(failures);
                    failures += 1;
                }
            }
        }
        let Some(manager) = connection.as_mut() else {
            shared.publishing.store(false, Ordering::Release);
            fail(&shared, batch.drain(..), "Redis is unreachable");
            continue;
        };
        let mut pipe = redis::pipe();
        for item in &batch {
            match item {
                Outgoing::Broadcast { channel, json } => {
                    sequence += 1;
                    let payload = wire::broadcast(&shared.node, sequence, channel.as_str(), json);
                    // The channel and the patterns that match it: the nodes subscribed to any
                    // of them receive it.
                    pipe.publish(shared.redis_channel(channel.as_str()), payload.as_ref())
                        .ignore();
                    channel.for_each_wild_ancestor(|pattern| {
                        pipe.publish(shared.redis_channel(pattern), payload.as_ref())
                            .ignore();
                    });
                }
                Outgoing::Deliver {
                    channel, payload, ..
                } => {
                    pipe.publish(channel, payload.as_ref());
                }
            }
        }
        match pipe.query_async::<Vec<i64>>(manager).await {
            Ok(receivers) => {
                shared.publishing.store(true, Ordering::Release);
                let mut receivers = receivers.into_iter();
                for item in batch.drain(..) {
                    if let Outgoing::Deliver { done, .. } = item {
                        let _ = done.send(Ok(receivers.next().unwrap_or(0)));
                    }
                }
            }
            Err(err) => {
                tracing::warn!(%err, messages = batch.len(), "publishing to Redis failed");
                shared.publishing.store(false, Ordering::Release);
                fail(&shared, batch.drain(..), &err.to_string());
            }
        }
    }
}

/// Counts what could not be sent, and tells the deliveries why.
fn fail(shared: &Shared, items: impl Iterator<Item = Outgoing>, reason: &str) {
    for item in items {
        shared.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
        if let Outgoing::Deliver { done, .. } = item {
            let _ = done.send(Err(reason.to_owned()));
        }
    }
}
