//! Publishing: a client's publish through the policy and the channel's listeners, and a
//! broadcast's way to every subscriber.

use crate::context::RequestContext;
use crate::protocol::{ChannelName, ErrorCode, Message};

use super::Error;
use super::batch::failed;
use super::broker::Broadcast;
use super::channel::MessageEvent;
use super::event::ServerEvent;
use super::history::{self, Position, Unpositioned};
use super::queue::Push;
use super::session::Delivery;
use super::{Engine, Inner, ServerSession};

impl Engine {
    pub(super) async fn publish_from_client(
        &self,
        session: &ServerSession,
        channel: ChannelName,
        message: Message,
    ) -> (Option<Message>, Message, Option<PendingPosition>) {
        let refuse = |message: Message, error| {
            let reply = failed(&message, error);
            (Some(message), reply, None)
        };
        if channel.is_wild() {
            return refuse(message, ErrorCode::ChannelInvalid);
        }
        let exists = self.inner.channels.read().contains(&channel);
        if let Some(policy) = &self.inner.config.policy {
            if !exists && !policy.can_create(session, &message, &channel).await {
                return refuse(message, ErrorCode::ChannelDenied);
            }
            if !policy.can_publish(session, &message, &channel).await {
                tracing::debug!("publish denied by the security policy");
                return refuse(message, ErrorCode::PublishDenied);
            }
        }
        if !exists {
            let created = self.inner.channels.write().entry(&channel).1;
            if created {
                self.inner.emit(&ServerEvent::ChannelAdded(channel.clone()));
            }
        }

        let mut reply = Message::reply_to(&message);
        reply.successful = Some(true);
        let listeners = self.inner.channels.read().listeners_for(&channel);
        let mut event = MessageEvent {
            session: session.clone(),
            channel,
            message,
            reply,
            context: RequestContext::current(),
        };
        for listener in listeners {
            let verdict = listener(event).await;
            event = verdict.event;
            if verdict.vetoed {
                let mut reply = event.reply;
                if reply.successful != Some(false) {
                    reply.fail(ErrorCode::MessageDeleted);
                }
                return (Some(event.message), reply, None);
            }
        }
        if !event.channel.is_broadcast() {
            return (Some(event.message), event.reply, None);
        }
        // The request is kept for the reply's outgoing extensions only if there are any.
        let request = (self.inner.has_extensions() || session.has_extensions())
            .then(|| event.message.clone());
        let mut message = event.message;
        // Never leak the publisher's clientId, nor let its id collide with the recipients'.
        message.id = None;
        message.client_id = None;
        message.channel = event.channel.as_str().to_owned();
        // Deliveries must carry `data`; clients dispatch to subscribers by it.
        message.data.get_or_insert(serde_json::Value::Null);
        let mut reply = event.reply;
        let mut pending = None;
        match self.inner.broadcast(&event.channel, message).await {
            Broadcasted::Dropped => reply.fail(ErrorCode::MessageDeleted),
            Broadcasted::Failed(_) => reply.fail(ErrorCode::HistoryUnavailable),
            // The publisher learns its message's position.
            Broadcasted::Sent(Some(position)) => history::stamp(&mut reply.ext, &position),
            Broadcasted::Sent(None) => {}
            // Known once the broker answers: the request's other messages go on meanwhile.
            Broadcasted::Pending(position) => pending = Some(position),
        }
        (request, reply, pending)
    }
}

/// What became of a broadcast.
pub(crate) enum Broadcasted {
    /// An extension dropped it.
    Dropped,
    /// Sent, at this position on a channel with history.
    Sent(Option<Position>),
    /// Not sent: the channel's history, kept by the broker, cannot be reached.
    Failed(Error),
    /// Handed to the broker that keeps the channel's history, which gives it its position
    /// (or fails) in the order it was handed over.
    Pending(PendingPosition),
}

/// The position a broker will give a broadcast (see [`Broadcasted::Pending`]).
pub(crate) type PendingPosition = super::BoxFuture<'static, Result<Position, Error>>;

impl Broadcasted {
    /// Waits for a pending position.
    pub(crate) async fn settled(self) -> Self {
        match self {
            Self::Pending(position) => match position.await {
                Ok(position) => Self::Sent(Some(position)),
                Err(err) => Self::Failed(err),
            },
            done => done,
        }
    }
}

impl Inner {
    /// Publishes `message` on `channel` from this node (a client's publish or the server API's):
    /// server extensions see it once, then it leaves for other nodes through the broker and
    /// reaches this node's subscribers.
    ///
    /// On a channel with history the message gets its position (`ext.history`) and is
    /// retained, and all that happens under the channel's history lock, so that a subscription
    /// resuming from a position sees it either in its replay or live.
    pub(crate) async fn broadcast(
        &self,
        channel: &ChannelName,
        mut message: Message,
    ) -> Broadcasted {
        if self.has_extensions() && !self.extend_outgoing(None, None, &mut message).await {
            return Broadcasted::Dropped;
        }
        self.ensure_started();
        let Some(retention) = self.history.retention(channel) else {
            let broadcast = Broadcast::new(channel.clone(), message);
            self.counters.published();
            self.broker.publish(&broadcast);
            self.fan_out(&broadcast).await;
            return Broadcasted::Sent(None);
        };
        if self.broker.keeps_history() {
            // The broker gives the position and sends the message to every node with
            // subscribers, this one included: all of them fan it out in offset order.
            let unpositioned = Unpositioned::new(&message);
            let position = self
                .broker
                .publish_history(channel, retention, unpositioned);
            let channel = channel.clone();
            let me = self.me.clone();
            return Broadcasted::Pending(Box::pin(async move {
                let position = position.await;
                match &position {
                    Ok(_) => {
                        if let Some(inner) = me.upgrade() {
                            inner.counters.published();
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%err, %channel, "not published: its history is unreachable");
                    }
                }
                position
            }));
        }
        let _order = self.history.lock(channel).await;
        let position = self.history.next_position(channel, retention);
        history::stamp(&mut message.ext, &position);
        let broadcast = Broadcast::new(channel.clone(), message);
        self.history
            .append(channel, &position, broadcast.delivery().clone());
        self.counters.published();
        self.broker.publish(&broadcast);
        self.fan_out(&broadcast).await;
        Broadcasted::Sent(Some(position))
    }

    /// Reads `channel`'s history: from this node's memory, or from the broker that keeps it.
    pub(crate) async fn read_history(
        &self,
        channel: &ChannelName,
        read: history::Read,
    ) -> Result<history::Replay, Error> {
        let retention = self
            .history
            .retention(channel)
            .ok_or_else(|| Error::NoHistory(channel.clone()))?;
        if self.broker.keeps_history() {
            // Perhaps the first thing this node does.
            self.ensure_started();
            self.broker.read_history(channel, retention, read).await
        } else {
            Ok(self.history.replay(channel, retention, &read))
        }
    }

    /// Queues a subscription's replay for `session`, oldest first (each through the session's
    /// extensions if it has any).
    pub(crate) async fn replay_to(&self, session: &ServerSession, deliveries: &[Delivery]) {
        for delivery in self.own_copies(session, deliveries).await {
            let push = session.enqueue(delivery);
            if matches!(push, Some(Push::Queued | Push::DroppedOldest { .. })) {
                self.counters.delivered(1);
            }
            if !matches!(push, Some(Push::Queued)) {
                self.queued(session, push);
            }
        }
    }

    /// `deliveries` as `session` receives them: through its extensions, if it has any.
    pub(crate) async fn own_copies(
        &self,
        session: &ServerSession,
        deliveries: &[Delivery],
    ) -> Vec<Delivery> {
        if !session.has_extensions() {
            return deliveries.to_vec();
        }
        let mut own = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let Some(mut message) = crate::protocol::parse_messages(delivery.json())
                .ok()
                .and_then(|mut messages| messages.pop())
            else {
                continue;
            };
            if session.extend_outgoing(None, &mut message).await {
                own.push(Delivery::new(&message));
            }
        }
        own
    }

    /// Where a broadcast enters this node, published here or arriving from another node: it
    /// is queued for every local subscriber of its channel and of the patterns matching it,
    /// once per session. The serialised bytes are shared by every recipient; only a recipient
    /// with session extensions gets a copy of its own.
    pub(crate) async fn fan_out(&self, broadcast: &Broadcast) {
        self.fan_out_at(broadcast, None).await;
    }

    /// Fans out a broadcast at `offset` of its channel's history, kept by the broker, as it
    /// arrives from the broker (in offset order): a session whose replay of the channel is
    /// being read gets it after the replay, one whose replay had it does not get it again.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) async fn fan_out_positioned(&self, broadcast: &Broadcast, offset: u64) {
        self.fan_out_at(broadcast, Some(offset)).await;
    }

    async fn fan_out_at(&self, broadcast: &Broadcast, offset: Option<u64>) {
        // Under the table's read lock (taken before any session's state, as everywhere), the
        // shared bytes are queued for every subscriber that needs nothing more; only those that
        // need an await are kept, by clone: a recipient with session extensions (its own copy)
        // or one whose queue is full (listeners to tell, perhaps a session to remove).
        let mut own_copy = Vec::new();
        let mut full = Vec::new();
        let mut delivered = 0;
        self.channels
            .read()
            .for_each_subscriber(broadcast.channel(), |session| {
                if session.has_extensions() {
                    own_copy.push(session.clone());
                    return;
                }
                let delivery = broadcast.delivery().clone();
                let push = match offset {
                    Some(offset) => session.enqueue_at(delivery, broadcast.channel(), offset),
                    None => session.enqueue(delivery),
                };
                match push {
                    Some(Push::Queued) => delivered += 1,
                    // The session is being removed.
                    None => {}
                    Some(push) => {
                        // Queued, older ones dropped (counted there); or refused.
                        delivered += usize::from(push != Push::Full);
                        full.push((session.clone(), push));
                    }
                }
            });
        self.counters.delivered(delivered);
        for (session, push) in full {
            self.queued(&session, Some(push));
        }
        for session in own_copy {
            let Some(message) = broadcast.message() else {
                tracing::warn!(
                    channel = %broadcast.channel(),
                    "a broadcast from another node is not a message; not sent to sessions with extensions"
                );
                break;
            };
            let mut own = message.clone();
            if !session.extend_outgoing(None, &mut own).await {
                continue;
            }
            let own = Delivery::new(&own);
            let push = match offset {
                Some(offset) => session.enqueue_at(own, broadcast.channel(), offset),
                None => session.enqueue(own),
            };
            if matches!(push, Some(Push::Queued | Push::DroppedOldest { .. })) {
                self.counters.delivered(1);
            }
            if !matches!(push, Some(Push::Queued)) {
                self.queued(&session, push);
            }
        }
    }
}
