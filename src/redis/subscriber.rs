//! The subscribing connection: keeps this node subscribed to the Redis channels it has
//! interest in (again after every reconnect), and brings what other nodes send into the
//! engine, in the order it arrives.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::engine::{Broadcast, HistoryRead, Inner, ServerEvent, Since};
use crate::protocol::{ChannelName, parse_messages};

use super::{CONNECT_TIMEOUT, Shared, backoff, wire};

/// A change in this node's interest, with the Redis channel's name.
pub(crate) enum Interest {
    /// Subscribe; `done` is told once the subscription holds (or dropped when it cannot be
    /// made now).
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String),
}

/// How many origins' sequence numbers are remembered before the oldest are forgotten (nodes
/// that restarted have new ids).
const MAX_ORIGINS: usize = 1024;

/// Keeps the node subscribed and brings messages in until the broker stops.
pub(crate) async fn run(
    shared: Arc<Shared>,
    client: redis::Client,
    engine: Weak<Inner>,
    mut interest: mpsc::UnboundedReceiver<Interest>,
) {
    // The Redis channels to be subscribed to: the node's own, and those of its interest.
    let mut wanted: HashSet<String> = HashSet::from([shared.node_channel.clone()]);
    let mut seen = Seen::default();
    let mut attempt = 0;
    let mut connected_before = false;
    loop {
        let (pushes, mut inbound) = mpsc::channel(shared.inbound_capacity);
        let disconnected = Arc::new(Notify::new());
        let sender = {
            let (shared, disconnected) = (shared.clone(), disconnected.clone());
            move |push: PushInfo| -> Result<(), ()> {
                if push.kind == PushKind::Disconnection {
                    disconnected.notify_one();
                } else if push.kind == PushKind::Message && pushes.try_send(push).is_err() {
                    let dropped = shared.counters.dropped_in.fetch_add(1, Ordering::Relaxed) + 1;
                    shared.overflowed.store(true, Ordering::Release);
                    // Logged at the 1st, 2nd, 4th, 8th… drop: a flood does not flood the log.
                    if dropped.is_power_of_two() {
                        tracing::warn!(
                            dropped,
                            capacity = shared.inbound_capacity,
                            "this node does not keep up with messages from other nodes: dropped"
                        );
                    }
                }
                Ok(())
            }
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CONNECT_TIMEOUT))
            .set_push_sender(sender);
        let connecting = tokio::select! {
            biased;
            () = shared.stop.cancelled() => return,
            connecting = connect(&client, &config, &wanted) => connecting,
        };
        shared.tried.send_replace(true);
        let connection = match connecting {
            Ok(connection) => connection,
            Err(err) => {
                tracing::warn!(%err, "cannot subscribe at Redis; retrying");
                let pause = tokio::time::sleep(backoff(attempt));
                attempt += 1;
                tokio::pin!(pause);
                // Interest keeps changing meanwhile: it is all subscribed to on connection.
                loop {
                    tokio::select! {
                        biased;
                        () = shared.stop.cancelled() => return,
                        () = &mut pause => break,
                        change = interest.recv() => match change {
                            Some(change) => apply_offline(&mut wanted, change),
                            None => return,
                        },
                    }
                }
                continue;
            }
        };
        attempt = 0;
        shared.subscribed.store(true, Ordering::Release);
        shared
            .counters
            .subscriptions
            .store(wanted.len() - 1, Ordering::Relaxed);
        if connected_before {
            shared.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "resubscribed at Redis: broadcasts from other nodes published meanwhile are lost"
            );
        } else {
            tracing::info!(subscriptions = wanted.len() - 1, "subscribed at Redis");
        }
        emit(
            &engine,
            ServerEvent::BrokerConnected {
                reconnected: connected_before,
            },
        );
        if connected_before && let Some(engine) = engine.upgrade() {
            // What the channels with history published while this node was away is read back
            // from their histories.
            catch_up(&shared, &engine, &mut seen.positions).await;
        }
        connected_before = true;

        let ended = serve(
            &shared,
            connection,
            &engine,
            &mut interest,
            &mut inbound,
            &disconnected,
            &mut wanted,
            &mut seen,
        )
        .await;
        shared.subscribed.store(false, Ordering::Release);
        match ended {
            Ended::Stopped => return,
            Ended::Disconnected => {
                tracing::warn!("lost the subscribing connection to Redis; reconnecting");
                emit(&engine, ServerEvent::BrokerDisconnected);
            }
        }
    }
}

enum Ended {
    /// The broker (and so the engine) is gone.
    Stopped,
    Disconnected,
}

async fn connect(
    client: &redis::Client,
    config: &AsyncConnectionConfig,
    wanted: &HashSet<String>,
) -> redis::RedisResult<MultiplexedConnection> {
    let mut connection = client
        .get_multiplexed_async_connection_with_config(config)
        .await?;
    let channels: Vec<&String> = wanted.iter().collect();
    connection.subscribe(&channels).await?;
    Ok(connection)
}

/// A change of interest while Redis is unreachable: only remembered.
fn apply_offline(wanted: &mut HashSet<String>, change: Interest) {
    match change {
        Interest::Subscribe(name, done) => {
            wanted.insert(name);
            // Nothing to wait for: the subscription is made on connection.
            drop(done);
        }
        Interest::Unsubscribe(name) => {
            wanted.remove(&name);
        }
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "the state of one connection's life"
)]
async fn serve(
    shared: &Shared,
    mut connection: MultiplexedConnection,
    engine: &Weak<Inner>,
    interest: &mut mpsc::UnboundedReceiver<Interest>,
    inbound: &mut mpsc::Receiver<PushInfo>,
    disconnected: &Notify,
    wanted: &mut HashSet<String>,
    seen: &mut Seen,
) -> Ended {
    loop {
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => return Ended::Stopped,
            () = disconnected.notified() => return Ended::Disconnected,
            change = interest.recv() => {
                let Some(change) = change else {
                    return Ended::Stopped;
                };
                let done = match change {
                    Interest::Subscribe(name, done) => {
                        if wanted.insert(name.clone())
                            && let Err(err) = connection.subscribe(&name).await
                        {
                            tracing::warn!(%err, channel = name, "subscribing at Redis failed");
                            return Ended::Disconnected;
                        }
                        Some(done)
                    }
                    Interest::Unsubscribe(name) => {
                        // What follows is not this node's to catch up on: forget where the
                        // channels it covered were.
                        seen.positions.forget(name.strip_prefix(shared.prefix.as_str()));
                        if wanted.remove(&name)
                            && let Err(err) = connection.unsubscribe(&name).await
                        {
                            tracing::warn!(%err, channel = name, "unsubscribing at Redis failed");
                            return Ended::Disconnected;
                        }
                        None
                    }
                };
                shared
                    .counters
                    .subscriptions
                    .store(wanted.len() - 1, Ordering::Relaxed);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            push = inbound.recv() => {
                let Some(push) = push else {
                    return Ended::Disconnected;
                };
                let Some(engine) = engine.upgrade() else {
                    return Ended::Stopped;
                };
                take(shared, &engine, push, seen).await;
                if inbound.is_empty() && shared.overflowed.swap(false, Ordering::AcqRel) {
                    // Messages were dropped here: those of channels with history are read back
                    // now rather than when each channel's next message shows the gap.
                    catch_up(shared, &engine, &mut seen.positions).await;
                }
            }
        }
    }
}

/// Brings one message from another node in.
async fn take(shared: &Shared, engine: &Inner, push: PushInfo, seen: &mut Seen) {
    // A message push: [channel, payload].
    let Some(Value::BulkString(payload)) = push.data.into_iter().nth(1) else {
        return;
    };
    let payload = Bytes::from(payload);
    match wire::parse(&payload) {
        Some(wire::Frame::Broadcast {
            node,
            sequence,
            channel,
            json,
        }) => {
            // Our own broadcast (its local subscribers have it), or another copy of one
            // already taken through another of its channels.
            if node == shared.node || !seen.origins.is_new(node, sequence) {
                return;
            }
            let Ok(channel) = ChannelName::new(channel) else {
                return;
            };
            shared.counters.messages_in.fetch_add(1, Ordering::Relaxed);
            engine.fan_out(&Broadcast::from_json(channel, json)).await;
        }
        Some(wire::Frame::History {
            node,
            sequence,
            offset,
            epoch,
            channel,
            json,
        }) => {
            // This node's own included: it fans its own out as they come back, in offset
            // order with everyone's.
            if !seen.origins.is_new(node, sequence) {
                return;
            }
            let Ok(channel) = ChannelName::new(channel) else {
                return;
            };
            shared.counters.messages_in.fetch_add(1, Ordering::Relaxed);
            match seen.positions.get(&channel) {
                Some((known, last)) if **known == *epoch && offset <= *last => return,
                Some((known, last)) if **known == *epoch && offset > last + 1 => {
                    // Missed (a lost connection, a full buffer): read them back first.
                    let last = *last;
                    if let Err(err) =
                        fill(shared, engine, &channel, epoch, last, Some(offset)).await
                    {
                        tracing::warn!(%err, %channel, "cannot read missed messages back: lost");
                    }
                }
                _ => {}
            }
            engine
                .fan_out_positioned(&Broadcast::from_json(channel.clone(), json), offset)
                .await;
            seen.positions.set(channel, epoch, offset);
        }
        Some(wire::Frame::Deliver { client_id, json }) => {
            shared.counters.messages_in.fetch_add(1, Ordering::Relaxed);
            let session = engine.sessions.read().get(client_id).cloned();
            let message = parse_messages(&json).ok().and_then(|mut m| m.pop());
            match (session, message) {
                (Some(session), Some(message)) => {
                    if let Err(err) = session.deliver_message(message).await {
                        tracing::debug!(%err, client_id, "delivery from another node not queued");
                    }
                }
                _ => tracing::debug!(client_id, "delivery from another node for no live session"),
            }
        }
        None => tracing::debug!("ignored a Redis message that is not a Bayeux one"),
    }
}

/// What this node has taken from Redis: the last sequence number of each node, to keep one copy
/// of each broadcast; the last offset of each channel with history, to notice a gap.
#[derive(Default)]
struct Seen {
    origins: Origins,
    positions: Positions,
}

/// The epoch and last offset of each channel with history this node received.
#[derive(Default)]
struct Positions(HashMap<ChannelName, (Arc<str>, u64)>);

/// How many channels' positions are remembered; past it they are forgotten (and a gap in
/// them goes unnoticed until they are known again).
const MAX_POSITIONS: usize = 65_536;

impl Positions {
    fn get(&self, channel: &ChannelName) -> Option<&(Arc<str>, u64)> {
        self.0.get(channel)
    }

    /// Forgets the channels `name` (a channel or a pattern) covers.
    fn forget(&mut self, name: Option<&str>) {
        let Some(Ok(name)) = name.map(ChannelName::new) else {
            return;
        };
        if name.is_wild() {
            self.0.retain(|channel, _| !name.matches(channel));
        } else {
            self.0.remove(&name);
        }
    }

    fn set(&mut self, channel: ChannelName, epoch: &str, offset: u64) {
        if let Some((known, last)) = self.0.get_mut(&channel) {
            if **known != *epoch {
                *known = Arc::from(epoch);
            }
            *last = offset;
            return;
        }
        if self.0.len() >= MAX_POSITIONS {
            self.0.clear();
        }
        self.0.insert(channel, (Arc::from(epoch), offset));
    }
}

/// Reads back and fans out what every channel with history this node follows published after
/// its last message here (what arrives meanwhile waits in the inbound buffer, and the copies of
/// what was read back are skipped).
async fn catch_up(shared: &Shared, engine: &Inner, positions: &mut Positions) {
    let known: Vec<(ChannelName, Arc<str>, u64)> = positions
        .0
        .iter()
        .map(|(channel, (epoch, last))| (channel.clone(), epoch.clone(), *last))
        .collect();
    for (channel, epoch, last) in known {
        match fill(shared, engine, &channel, &epoch, last, None).await {
            Ok(upto) => positions.set(channel, &epoch, upto),
            Err(err) => {
                // Redis is gone again: the next reconnect catches up (one line, not one per
                // channel).
                tracing::warn!(%err, "cannot read missed messages back: lost");
                return;
            }
        }
    }
}

/// Reads back and fans out the messages of `channel` after `last` (before `before`, if given)
/// that this node missed; returns the last offset fanned out, or why the history could not be
/// read.
async fn fill(
    shared: &Shared,
    engine: &Inner,
    channel: &ChannelName,
    epoch: &str,
    last: u64,
    before: Option<u64>,
) -> Result<u64, crate::engine::Error> {
    let Some(retention) = engine.history.retention(channel) else {
        return Ok(last);
    };
    let since = Since {
        offset: last,
        epoch: Some(epoch.to_owned()),
    };
    let read = shared
        .read_history(channel, retention, HistoryRead::After(since))
        .await;
    match read? {
        replay if replay.recovered == Some(true) => {
            let mut offset = last;
            for delivery in replay.deliveries {
                if before.is_some_and(|before| offset + 1 >= before) {
                    break;
                }
                offset += 1;
                let broadcast = Broadcast::from_json(channel.clone(), delivery.json().clone());
                engine.fan_out_positioned(&broadcast, offset).await;
                shared.counters.recovered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(offset)
        }
        _ => {
            tracing::warn!(%channel, "missed messages are no longer in the channel's history: lost");
            Ok(last)
        }
    }
}

/// The last broadcast sequence number seen from each node.
#[derive(Default)]
struct Origins {
    last: HashMap<String, (u64, u64)>,
    /// Counts messages, to forget the origins heard from longest ago.
    clock: u64,
}

impl Origins {
    /// Whether broadcast `sequence` of `node` is seen for the first time. A node's broadcasts
    /// arrive in the order it sent them, every copy of one before any of the next.
    fn is_new(&mut self, node: &str, sequence: u64) -> bool {
        self.clock += 1;
        if let Some((last, seen)) = self.last.get_mut(node) {
            if sequence <= *last {
                return false;
            }
            *last = sequence;
            *seen = self.clock;
            return true;
        }
        if self.last.len() >= MAX_ORIGINS
            && let Some(oldest) = self
                .last
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(node, _)| node.clone())
        {
            self.last.remove(&oldest);
        }
        self.last.insert(node.to_owned(), (sequence, self.clock));
        true
    }
}

fn emit(engine: &Weak<Inner>, event: ServerEvent) {
    if let Some(engine) = engine.upgrade() {
        engine.emit(&event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_broadcast_is_taken_once_per_origin() {
        let mut origins = Origins::default();
        assert!(origins.is_new("a", 1));
        assert!(!origins.is_new("a", 1), "another copy");
        assert!(origins.is_new("b", 1), "another node");
        assert!(origins.is_new("a", 2));
        assert!(!origins.is_new("a", 2));
        assert!(origins.is_new("a", 5), "a gap is not a duplicate");
        assert!(!origins.is_new("a", 3), "older than the last");
    }

    #[test]
    fn positions_are_forgotten_with_the_interest_that_covered_them() {
        let mut positions = Positions::default();
        for channel in ["/a/x", "/a/y", "/b"] {
            positions.set(ChannelName::new(channel).unwrap(), "e", 3);
        }
        positions.forget(Some("/a/x"));
        assert!(positions.get(&ChannelName::from_static("/a/x")).is_none());
        assert!(positions.get(&ChannelName::from_static("/a/y")).is_some());
        positions.forget(Some("/a/*"));
        assert!(positions.get(&ChannelName::from_static("/a/y")).is_none());
        positions.forget(Some("node:0a1b2c3d"));
        positions.forget(None);
        assert!(positions.get(&ChannelName::from_static("/b")).is_some());
    }

    #[test]
    fn the_origins_heard_from_longest_ago_are_forgotten() {
        let mut origins = Origins::default();
        for node in 0..MAX_ORIGINS + 10 {
            assert!(origins.is_new(&node.to_string(), 1));
        }
        assert_eq!(origins.last.len(), MAX_ORIGINS);
        assert!(origins.is_new("0", 1), "forgotten");
        assert!(!origins.is_new(&(MAX_ORIGINS + 9).to_string(), 1));
    }
}
