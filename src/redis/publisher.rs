//! The publishing connection: sends this node's broadcasts and deliveries, in order,
//! pipelined.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::engine::{HistoryRead, Position, Replay, Retention, Unpositioned};
use crate::protocol::ChannelName;

use super::{CONNECT_TIMEOUT, Shared, backoff, history, wire};

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
    /// A broadcast on a channel with history: `done` gets its position.
    History {
        channel: ChannelName,
        retention: Retention,
        message: Unpositioned,
        done: oneshot::Sender<Result<Position, String>>,
    },
    /// A read of a channel's history.
    Read {
        channel: ChannelName,
        retention: Retention,
        read: HistoryRead,
        done: oneshot::Sender<Result<Replay, String>>,
    },
}

/// The most messages sent in one pipeline.
const BATCH: usize = 256;

/// Sends what the node hands over until the broker stops.
pub(crate) async fn run(
    shared: Arc<Shared>,
    client: redis::Client,
    mut outgoing: mpsc::Receiver<Outgoing>,
) {
    let mut link = Link::new(client);
    let mut sequence = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    // The script calls of a batch, in order, in case they must be sent again.
    let mut scripted = Vec::new();
    loop {
        scripted.clear();
        // The index of the next answer: broadcasts' are ignored.
        let mut answered = 0;
        let received = tokio::select! {
            biased;
            received = outgoing.recv_many(&mut batch, BATCH) => received,
            () = shared.stop.cancelled(), if !outgoing.is_closed() => {
                // Nothing more comes in; what is queued still leaves, then the task ends.
                outgoing.close();
                continue;
            }
            // Connects at start, and after a failure checks the connection again (with
            // backoff) without waiting for something to send, so that the node's stats say
            // whether it can publish.
            () = tokio::time::sleep_until(link.next_try), if !link.healthy => {
                link.check(&shared).await;
                continue;
            }
        };
        if received == 0 {
            return;
        }
        if !link.healthy && Instant::now() >= link.next_try {
            link.check(&shared).await;
        }
        let Some(manager) = link.connection.as_mut().filter(|_| link.healthy) else {
            // While Redis cannot be reached, what comes is dropped (and counted) at once.
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
                    answered += 1;
                }
                Outgoing::History {
                    channel,
                    retention,
                    message,
                    ..
                } => {
                    sequence += 1;
                    let command = publish_history(&shared, sequence, channel, *retention, message);
                    pipe.add_command(command.clone());
                    scripted.push((answered, command));
                    answered += 1;
                }
                Outgoing::Read {
                    channel,
                    retention,
                    read,
                    ..
                } => {
                    let new_epoch = format!("{}{:x}", shared.node, sequence);
                    let command = history::read_command(
                        &shared.prefix,
                        channel,
                        *retention,
                        read,
                        &new_epoch,
                    );
                    pipe.add_command(command.clone());
                    scripted.push((answered, command));
                    answered += 1;
                }
            }
        }
        // An error answer to one command (a script Redis does not have) leaves the others'.
        pipe.ignore_errors();
        let answers = match pipe.query_async::<Vec<redis::Value>>(manager).await {
            Ok(answers) => rerun_unknown_scripts(manager, answers, &scripted).await,
            Err(err) => Err(err),
        };
        match answers {
            Ok(answers) => {
                let mut answers = answers.into_iter();
                for item in batch.drain(..) {
                    match item {
                        Outgoing::Broadcast { .. } => {}
                        Outgoing::Deliver { done, .. } => {
                            let receivers = match answers.next() {
                                Some(redis::Value::Int(n)) => n,
                                _ => 0,
                            };
                            let _ = done.send(Ok(receivers));
                        }
                        Outgoing::History { done, .. } => {
                            let answer = answers.next().unwrap_or(redis::Value::Nil);
                            let _ = done.send(history::position(answer));
                        }
                        Outgoing::Read {
                            retention,
                            read,
                            done,
                            ..
                        } => {
                            let answer = answers.next().unwrap_or(redis::Value::Nil);
                            let _ = done.send(history::replay(answer, retention, &read));
                        }
                    }
                }
            }
            Err(err) => {
                tracing::warn!(%err, messages = batch.len(), "publishing to Redis failed");
                link.failed(&shared);
                fail(&shared, batch.drain(..), &err.to_string());
            }
        }
    }
}

/// Sends again, once the scripts are loaded, the script calls Redis answered `NOSCRIPT` (it
/// restarted and lost them), in their order; returns the batch's answers with theirs.
async fn rerun_unknown_scripts(
    manager: &mut ConnectionManager,
    mut answers: Vec<redis::Value>,
    scripted: &[(usize, redis::Cmd)],
) -> redis::RedisResult<Vec<redis::Value>> {
    let unknown = |value: &redis::Value| {
        matches!(value, redis::Value::ServerError(err)
            if err.kind() == Some(redis::ServerErrorKind::NoScript))
    };
    if !answers.iter().any(unknown) {
        return Ok(answers);
    }
    load_scripts(manager).await?;
    let mut again = redis::pipe();
    again.ignore_errors();
    let mut positions = Vec::new();
    for (index, command) in scripted {
        if answers.get(*index).is_some_and(unknown) {
            again.add_command(command.clone());
            positions.push(*index);
        }
    }
    let rerun: Vec<redis::Value> = again.query_async(manager).await?;
    for (index, value) in positions.into_iter().zip(rerun) {
        answers[index] = value;
    }
    Ok(answers)
}

async fn load_scripts(manager: &mut ConnectionManager) -> redis::RedisResult<()> {
    for script in history::scripts() {
        script.prepare_invoke().load_async(manager).await?;
    }
    Ok(())
}

/// The publishing connection and what is known of its health.
struct Link {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// Made on the first successful check; it reconnects by itself afterwards.
    connection: Option<ConnectionManager>,
    /// Whether the last command went through.
    healthy: bool,
    /// When to check again while not healthy.
    next_try: Instant,
    failures: u32,
}

impl Link {
    fn new(client: redis::Client) -> Self {
        Self {
            client,
            config: ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(CONNECT_TIMEOUT))
                .set_number_of_retries(1),
            connection: None,
            healthy: false,
            next_try: Instant::now(),
            failures: 0,
        }
    }

    /// Connects, or checks the connection with a `PING`, and loads the history scripts.
    async fn check(&mut self, shared: &Shared) {
        let mut outcome = match self.connection.as_mut() {
            Some(manager) => redis::cmd("PING").query_async::<()>(manager).await,
            None => self
                .client
                .get_connection_manager_with_config(self.config.clone())
                .await
                .map(|manager| self.connection = Some(manager)),
        };
        if outcome.is_ok()
            && let Some(manager) = self.connection.as_mut()
        {
            outcome = load_scripts(manager).await;
        }
        match outcome {
            Ok(()) => {
                if self.failures > 0 {
                    tracing::info!("publishing to Redis again");
                }
                self.healthy = true;
                self.failures = 0;
                shared.publishing.store(true, Ordering::Release);
            }
            Err(err) => {
                if self.failures == 0 {
                    tracing::warn!(%err, "cannot publish to Redis; retrying");
                }
                self.failed(shared);
            }
        }
    }

    fn failed(&mut self, shared: &Shared) {
        self.healthy = false;
        self.next_try = Instant::now() + backoff(self.failures);
        self.failures += 1;
        shared.publishing.store(false, Ordering::Release);
    }
}

/// Counts what could not be sent, and tells the deliveries, publishes with history and reads
/// why.
fn fail(shared: &Shared, items: impl Iterator<Item = Outgoing>, reason: &str) {
    for item in items {
        match item {
            Outgoing::Broadcast { .. } => {
                shared.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
            }
            Outgoing::Deliver { done, .. } => {
                shared.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
                let _ = done.send(Err(reason.to_owned()));
            }
            Outgoing::History { done, .. } => {
                shared.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
                let _ = done.send(Err(reason.to_owned()));
            }
            Outgoing::Read { done, .. } => {
                let _ = done.send(Err(reason.to_owned()));
            }
        }
    }
}

/// The script call that gives a broadcast its place in its channel's history and publishes it
/// on the Redis channels of the channel and of the patterns matching it.
fn publish_history(
    shared: &Shared,
    sequence: u64,
    channel: &ChannelName,
    retention: Retention,
    message: &Unpositioned,
) -> redis::Cmd {
    let mut command = history::call(
        &history::scripts()[0],
        history::keys(&shared.prefix, channel),
    );
    command
        // A new epoch if the channel has none: unique, as the node's id is.
        .arg(format!("{}{sequence:x}", shared.node))
        .arg(retention.max_messages().unwrap_or(0))
        .arg(history::ttl_ms(retention))
        .arg(message.prefix.as_ref())
        .arg(message.suffix.as_ref())
        .arg(format!("h{} {sequence} ", shared.node))
        .arg(channel.as_str())
        .arg(shared.redis_channel(channel.as_str()));
    channel.for_each_wild_ancestor(|pattern| {
        command.arg(shared.redis_channel(pattern));
    });
    command
}
