//! `/meta/subscribe` and `/meta/unsubscribe`.

use crate::protocol::{ChannelName, ErrorCode, Message};

use super::batch::unknown_session;
use super::event::ServerEvent;
use super::history::{Read as HistoryRead, Since};
use super::{Engine, ServerSession};

impl Engine {
    /// Parses the `subscription` field: every name valid and within the length limit.
    fn subscription_channels(&self, message: &Message) -> Result<Vec<ChannelName>, ErrorCode> {
        let names = match &message.subscription {
            Some(subscription) if !subscription.names().is_empty() => subscription.names(),
            _ => return Err(ErrorCode::SubscriptionMissing),
        };
        let max = self.inner.config.max_channel_length;
        names
            .iter()
            .map(|name| {
                Some(name)
                    .filter(|name| name.len() <= max)
                    .and_then(|name| ChannelName::new(name).ok())
                    .ok_or(ErrorCode::SubscriptionInvalid)
            })
            .collect()
    }

    pub(super) async fn subscribe(&self, session: &ServerSession, message: &Message) -> Message {
        let mut reply = Message::reply_to(message);
        reply.subscription = message.subscription.clone();
        let channels = match self.subscription_channels(message) {
            Ok(channels) => channels,
            Err(error) => {
                reply.fail(error);
                return reply;
            }
        };
        for channel in &channels {
            if channel.is_meta() {
                reply.fail(ErrorCode::SubscribeDenied);
                return reply;
            }
            if let Some(policy) = &self.inner.config.policy {
                let exists = self.inner.channels.read().contains(channel);
                let allowed = (exists || policy.can_create(session, message, channel).await)
                    && policy.can_subscribe(session, message, channel).await;
                if !allowed {
                    tracing::debug!(%channel, "subscription denied by the security policy");
                    reply.fail(ErrorCode::SubscribeDenied);
                    return reply;
                }
            }
        }

        // A subscription to one channel with history starts at a position: the channel's
        // latest, or where the client asks to resume (`ext.history.since`).
        let since = match Since::from_ext(message.ext.as_ref()) {
            Ok(since) => since,
            Err(()) => {
                reply.fail(ErrorCode::HistorySinceInvalid);
                return reply;
            }
        };
        let history = match channels.as_slice() {
            [channel] if channel.is_wild() && since.is_some() => {
                reply.fail(ErrorCode::HistorySinceWildcard);
                return reply;
            }
            [channel] => self
                .inner
                .history
                .retention(channel)
                .map(|retention| (channel.clone(), retention)),
            _ if since.is_some() => {
                reply.fail(ErrorCode::HistorySinceInvalid);
                return reply;
            }
            _ => None,
        };
        // In memory: held from adding the subscriber until its replay is queued, so that a
        // message published on the channel meanwhile waits, then reaches it live (it is not in
        // the replay). Kept by the broker: the channel's live messages wait in the session
        // instead, from the moment it is added until its replay is read.
        let shared = self.inner.broker.keeps_history();
        let order = match &history {
            Some((channel, _)) if !shared => Some(self.inner.history.lock(channel).await),
            _ => None,
        };

        let mut events = Vec::new();
        let mut interest = Vec::new();
        {
            // The channel table before the session's state: broadcasts lock in that order.
            let mut table = self.inner.channels.write();
            let mut state = session.0.state.lock();
            if state.removed.is_some() {
                return unknown_session(message);
            }
            let new = channels
                .iter()
                .filter(|c| !c.is_service() && !state.subscriptions.contains(*c))
                .count();
            if state.subscriptions.len() + new > self.inner.config.max_subscriptions_per_session {
                drop(state);
                drop(table);
                reply.fail(ErrorCode::SubscriptionLimit);
                return reply;
            }
            if let Some((channel, _)) = &history
                && shared
            {
                // From now on, until the replay is read (below; nothing returns before).
                state.begin_replay(channel);
            }
            // Service subscriptions succeed but are not recorded: service messages are never
            // broadcast.
            for channel in channels.into_iter().filter(|c| !c.is_service()) {
                let (entry, created) = table.entry(&channel);
                if created {
                    events.push(ServerEvent::ChannelAdded(channel.clone()));
                }
                if entry
                    .subscribers
                    .insert(session.0.id.clone(), session.clone())
                    .is_none()
                {
                    if entry.subscribers.len() == 1 {
                        // This node's first subscriber: other nodes' broadcasts must come here.
                        interest.extend(self.inner.broker.interest(&channel, true));
                    }
                    state.subscriptions.insert(channel.clone());
                    events.push(ServerEvent::Subscribed {
                        session: session.clone(),
                        channel,
                        message: message.clone(),
                    });
                }
            }
        }
        let read = match since {
            Some(since) => HistoryRead::After(since),
            None => HistoryRead::Position,
        };
        let mut replay = None;
        if let Some((channel, retention)) = &history
            && !shared
        {
            let from_memory = self.inner.history.replay(channel, *retention, &read);
            self.inner.replay_to(session, &from_memory.deliveries).await;
            replay = Some(Ok(from_memory));
        }
        drop(order);
        for event in &events {
            self.inner.emit(event);
        }
        // The reply says the subscription holds: wait (a while) until the broker receives the
        // channel's broadcasts from other nodes too.
        for ready in interest {
            let _ = tokio::time::timeout(super::broker::BROKER_WAIT, ready).await;
        }
        // If this future is dropped before the replay is read (its request went away), the live
        // messages that waited are let through.
        let mut pending = match &history {
            Some((channel, _)) if shared => Some(PendingReplay {
                session: session.clone(),
                channel: channel.clone(),
                done: false,
            }),
            _ => None,
        };
        if let Some((channel, retention)) = history
            && shared
        {
            // Read once this node receives the channel's messages: whatever the replay misses
            // arrives live (and waited in the session meanwhile).
            let read = self
                .inner
                .broker
                .read_history(&channel, retention, read)
                .await;
            let (upto, deliveries) = match &read {
                Ok(replay) => (
                    replay.offset,
                    self.inner.own_copies(session, &replay.deliveries).await,
                ),
                Err(err) => {
                    tracing::warn!(%err, %channel, "history unreadable: the subscription starts live");
                    (0, Vec::new())
                }
            };
            if let Some(pending) = &mut pending {
                pending.done = true;
            }
            for push in session.finish_replay(&channel, upto, deliveries) {
                self.inner.queued(session, Some(push));
            }
            replay = Some(read);
        }
        reply.successful = Some(true);
        if let Some(replay) = replay {
            let position = match replay {
                Ok(replay) => replay.to_json(),
                // Nothing old is sent: the client must reload, as after a lost history.
                Err(_) => serde_json::json!({"recovered": false}),
            };
            reply
                .ext
                .get_or_insert_with(Default::default)
                .insert("history".to_owned(), position);
        }
        reply
    }

    pub(super) fn unsubscribe(&self, session: &ServerSession, message: &Message) -> Message {
        let mut reply = Message::reply_to(message);
        reply.subscription = message.subscription.clone();
        let channels = match self.subscription_channels(message) {
            Ok(channels) => channels,
            Err(error) => {
                reply.fail(error);
                return reply;
            }
        };
        let mut events = Vec::new();
        {
            // The channel table before the session's state: broadcasts lock in that order.
            let mut table = self.inner.channels.write();
            let mut state = session.0.state.lock();
            for channel in channels {
                if state.subscriptions.remove(&channel) {
                    if let Some(entry) = table.get_mut(&channel)
                        && entry.subscribers.remove(&session.0.id).is_some()
                        && entry.subscribers.is_empty()
                    {
                        self.inner.broker.interest(&channel, false);
                    }
                    events.push(ServerEvent::Unsubscribed {
                        session: session.clone(),
                        channel,
                        message: Some(message.clone()),
                    });
                }
            }
        }
        for event in &events {
            self.inner.emit(event);
        }
        reply.successful = Some(true);
        reply
    }
}

/// A replay being read for a session (see [`ServerSession::finish_replay`]); dropped before the
/// replay is queued, it lets the live messages that waited through.
struct PendingReplay {
    session: ServerSession,
    channel: ChannelName,
    /// Set once the replay is queued.
    done: bool,
}

impl Drop for PendingReplay {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.session.finish_replay(&self.channel, 0, Vec::new());
        }
    }
}
