//! The message pipeline: what the engine does with a batch of client messages.
//!
//! Transports call [`Engine::process_batch`] with the messages of one request and a [`Link`]
//! describing the connection, and write out the [`BatchOutcome`]: queued deliveries first,
//! then the replies in request order. A lone `/meta/connect` may instead come back as a
//! [`HeldConnect`] that the transport awaits.

use std::sync::Arc;

use tokio::time::Instant;
use tracing::Instrument;

use crate::context::RequestContext;
use crate::protocol::{Advice, ChannelKind, ChannelName, ErrorCode, Message, Reconnect, meta};

use super::channel::MessageEvent;
use super::connect::HeldConnect;
use super::event::RemoveReason;
use super::history;
use super::publish::PendingPosition;
use super::session::Delivery;
use super::{Engine, ServerSession};

/// How a transport carries a client's messages, as far as the engine is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// Requests over HTTP (long-polling, callback-polling): a client's replies travel on
    /// several connections and complete in any order, a browser has few connections to share
    /// between its tabs, and a reply can hand out a browser id (a cookie).
    Polling {
        /// Whether a request without a browser id may continue a session by its clientId.
        trust_client_session: bool,
    },
    /// One connection that keeps its order (websocket): it cannot be handed a browser id, and
    /// without one it may continue a session by its clientId.
    Stream,
}

impl Carrier {
    /// Whether the client's replies may complete out of order and share a browser's few
    /// connections.
    pub(super) fn polls(self) -> bool {
        matches!(self, Self::Polling { .. })
    }
}

/// What the engine needs to know about the connection a batch arrived on.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    /// The browser id the request carried (the transport's browser cookie), if any.
    pub(crate) browser: Option<Arc<str>>,
    pub(crate) carrier: Carrier,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            browser: None,
            carrier: Carrier::Polling {
                trust_client_session: false,
            },
        }
    }
}

/// A batch the engine refuses as a whole (the transport answers with a 4xx).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BatchError {
    #[error("a /meta/handshake must be sent alone, not batched with other messages")]
    HandshakeBatched,
}

/// The result of processing one batch.
pub(crate) struct BatchOutcome {
    /// Deliveries to write before the replies.
    pub(crate) queued: Vec<Delivery>,
    /// One reply per request message, in order.
    pub(crate) replies: Vec<Message>,
    /// Set when the batch was a `/meta/connect` the engine holds.
    pub(crate) held: Option<HeldConnect>,
    /// A browser id to set as the browser cookie (after a handshake without one).
    pub(crate) new_browser: Option<Arc<str>>,
    /// The session the batch belonged to (the new one, after a successful handshake).
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    pub(crate) session: Option<ServerSession>,
}

pub(super) fn unknown_session(request: &Message) -> Message {
    let mut reply = Message::reply_to(request);
    reply.fail(ErrorCode::SessionUnknown);
    if request.channel == meta::CONNECT || request.channel == meta::HANDSHAKE {
        reply.advice = Some(Advice {
            reconnect: Some(Reconnect::Handshake),
            interval: Some(0),
            ..Advice::default()
        });
    }
    if request.channel == meta::SUBSCRIBE || request.channel == meta::UNSUBSCRIBE {
        // The client cleans up failed subscriptions by this field.
        reply.subscription = request.subscription.clone();
    }
    reply
}

pub(super) fn failed(request: &Message, error: ErrorCode) -> Message {
    let mut reply = Message::reply_to(request);
    reply.fail(error);
    reply
}

/// A message's reply on its way out, with what its outgoing extensions may need.
struct Answered {
    owner: Option<ServerSession>,
    request: Option<Message>,
    reply: Message,
    /// A publish's position, still to come from the broker.
    pending: Option<PendingPosition>,
    /// Whether the outgoing extensions let the reply go.
    sent: bool,
}

#[expect(
    clippy::large_enum_variant,
    reason = "made and consumed at once for each message; boxing the reply would only add an allocation"
)]
pub(super) enum Step {
    /// The reply, with the request it answers when outgoing extensions may need it.
    Reply {
        request: Option<Message>,
        reply: Message,
        /// A publish's position, still to come from the broker.
        pending: Option<PendingPosition>,
    },
    Hold(HeldConnect),
}

impl Step {
    pub(super) fn reply(request: Message, reply: Message) -> Self {
        Self::Reply {
            request: Some(request),
            reply,
            pending: None,
        }
    }
}

impl Engine {
    /// Processes the messages of one request.
    pub(crate) async fn process_batch(
        &self,
        messages: Vec<Message>,
        link: &Link,
    ) -> Result<BatchOutcome, BatchError> {
        if messages.len() > 1 && messages.iter().any(|m| m.channel == meta::HANDSHAKE) {
            return Err(BatchError::HandshakeBatched);
        }
        if let [only] = messages.as_slice()
            && only.channel == meta::HANDSHAKE
        {
            let mut messages = messages;
            return Ok(Box::pin(self.handshake(messages.remove(0), link)).await);
        }

        let session = messages
            .iter()
            .find_map(|m| m.client_id.as_deref())
            .and_then(|id| self.lookup(id, link));
        let single = messages.len() == 1;
        let mut answered = Vec::with_capacity(messages.len());
        let mut held = None;
        for message in messages {
            // A message may omit clientId (publish); one naming another session is unknown.
            let owner = match (&session, message.client_id.as_deref()) {
                (Some(s), Some(id)) if s.id() != id => None,
                (s, _) => s.as_ref(),
            };
            match self.process_one(message, owner, single, link).await {
                Step::Reply {
                    request,
                    reply,
                    pending,
                } => answered.push(Answered {
                    owner: owner.cloned(),
                    request,
                    reply,
                    pending,
                    sent: false,
                }),
                Step::Hold(connect) => held = Some(connect),
            }
        }
        let queued = match (&session, &held) {
            (Some(session), None) => {
                let connect = answered.iter_mut().find(|answer| {
                    answer.owner.is_some()
                        && answer.reply.channel == meta::CONNECT
                        && answer.reply.successful == Some(true)
                });
                match connect {
                    Some(answer) => session.drain_into_connect_reply(&mut answer.reply),
                    None if self.delivers_on_any_reply(link) => session.drain(),
                    None => Vec::new(),
                }
            }
            _ => Vec::new(),
        };
        let replies = self.finish_replies(answered).await;
        Ok(BatchOutcome {
            queued,
            replies,
            held,
            new_browser: None,
            session,
        })
    }

    /// The replies of a request's messages once the broker gave its publishes' positions and
    /// outgoing extensions ran. The answers stay in their vector while the awaits work on them
    /// by reference, so that this future (part of the request's, boxed for every request)
    /// holds no message itself.
    async fn finish_replies(&self, mut answered: Vec<Answered>) -> Vec<Message> {
        for answer in &mut answered {
            // The broker answers in the order the publishes were handed over: all of the
            // request's were sent before the first answer is awaited.
            if let Some(position) = answer.pending.take() {
                match position.await {
                    Ok(position) => history::stamp(&mut answer.reply.ext, &position),
                    Err(_) => answer.reply.fail(ErrorCode::HistoryUnavailable),
                }
            }
            answer.sent = self
                .inner
                .extend_outgoing(
                    answer.owner.as_ref(),
                    answer.request.as_ref(),
                    &mut answer.reply,
                )
                .await;
        }
        let mut replies = Vec::with_capacity(answered.len());
        for Answered {
            mut reply, sent, ..
        } in answered
        {
            if !sent {
                continue;
            }
            // A publish reply carrying data (a remote call's answer) goes out as the CometD
            // servers send it: the data in a message of its own with the request's id, then
            // the plain reply. The websocket client takes a message with data for a delivery,
            // so a reply with data would never be matched to its request.
            if !reply.channel.starts_with("/meta/") && reply.data.is_some() {
                replies.push(Message {
                    id: reply.id.clone(),
                    channel: reply.channel.clone(),
                    successful: reply.successful,
                    data: reply.data.take(),
                    ..Message::default()
                });
            }
            replies.push(reply);
        }
        replies
    }

    /// Whether queued deliveries may ride on the reply to a request that holds no
    /// `/meta/connect`. Over HTTP a session's replies travel on several connections and its
    /// client processes them as they complete, so unless the user chose otherwise its queue
    /// leaves only through connect replies, one at a time, and keeps its order. A websocket's
    /// replies share one connection, in order.
    fn delivers_on_any_reply(&self, link: &Link) -> bool {
        link.carrier == Carrier::Stream || !self.inner.config.meta_connect_delivery_only
    }

    /// The live session `id`, if the connection may use it. A request carrying a browser cookie
    /// reaches only the sessions created with that cookie (or without one). A request without
    /// the cookie reaches a cookie-bound session only over websocket (clients such as Faye's
    /// handshake over HTTP, then upgrade without the cookie) or when the user trusts client
    /// sessions; over HTTP a leaked `clientId` alone does not give access to a session.
    fn lookup(&self, id: &str, link: &Link) -> Option<ServerSession> {
        let session = self.session(id)?;
        let allowed = match (&session.0.browser, &link.browser) {
            (None, _) => true,
            (Some(bound), Some(sent)) => bound == sent,
            (Some(_), None) => match link.carrier {
                Carrier::Stream => true,
                Carrier::Polling {
                    trust_client_session,
                } => trust_client_session,
            },
        };
        allowed.then_some(session)
    }

    /// One message of a request. A `/meta/connect` (most requests) is answered or held here
    /// without a further await; the other messages' processing is boxed, so that the request's
    /// future, boxed for every request, stays small.
    async fn process_one(
        &self,
        message: Message,
        session: Option<&ServerSession>,
        single: bool,
        link: &Link,
    ) -> Step {
        let (message, session, channel) = match self.admit(message, session).await {
            Ok(admitted) => admitted,
            Err(step) => return step,
        };
        if message.channel != meta::CONNECT {
            self.extend_expiry(session);
        }
        let span = tracing::debug_span!("bayeux", client_id = %session.id(), channel = %channel);
        if channel.as_str() == meta::CONNECT {
            let _entered = span.enter();
            tracing::trace!(?message, "incoming");
            return self.connect(session, message, single, link);
        }
        Box::pin(self.dispatch(session, channel, message).instrument(span)).await
    }

    /// Runs the incoming extensions on `message`, then checks its session and channel: what
    /// to process, or the reply refusing it.
    async fn admit<'s>(
        &self,
        mut message: Message,
        session: Option<&'s ServerSession>,
    ) -> Result<(Message, &'s ServerSession, ChannelName), Step> {
        if message.channel.is_empty() {
            let reply = failed(&message, ErrorCode::ChannelMissing);
            return Err(Step::reply(message, reply));
        }
        let session = session.filter(|s| !s.is_removed());
        if !self.inner.extend_incoming(session, &mut message).await {
            let reply = failed(&message, ErrorCode::MessageDeleted);
            return Err(Step::reply(message, reply));
        }
        let Some(session) = session else {
            let reply = unknown_session(&message);
            return Err(Step::reply(message, reply));
        };
        let channel = Some(&message.channel)
            .filter(|name| name.len() <= self.inner.config.max_channel_length)
            .and_then(|name| ChannelName::new(name).ok());
        let Some(channel) = channel else {
            let reply = failed(&message, ErrorCode::ChannelInvalid);
            return Err(Step::reply(message, reply));
        };
        Ok((message, session, channel))
    }

    /// Processes an admitted message other than `/meta/connect`.
    async fn dispatch(
        &self,
        session: &ServerSession,
        channel: ChannelName,
        message: Message,
    ) -> Step {
        tracing::trace!(?message, "incoming");
        match channel.kind() {
            ChannelKind::Meta => {
                let reply = match channel.as_str() {
                    meta::SUBSCRIBE => self.subscribe(session, &message).await,
                    meta::UNSUBSCRIBE => self.unsubscribe(session, &message),
                    meta::DISCONNECT => self.disconnect(session, &message).await,
                    _ => failed(&message, ErrorCode::PublishDenied),
                };
                let (message, reply) = self
                    .notify_meta_listeners(session, &channel, message, reply)
                    .await;
                Step::reply(message, reply)
            }
            ChannelKind::Service | ChannelKind::Broadcast => {
                let (request, reply, pending) =
                    self.publish_from_client(session, channel, message).await;
                Step::Reply {
                    request,
                    reply,
                    pending,
                }
            }
        }
    }

    /// Other messages keep a session alive for at least `max_interval` more.
    fn extend_expiry(&self, session: &ServerSession) {
        let mut state = session.0.state.lock();
        if let Some(at) = state.expire_at {
            let floor = Instant::now() + self.inner.config.max_interval;
            state.expire_at = Some(at.max(floor));
        }
    }

    pub(super) fn advice(&self) -> Advice {
        Advice {
            reconnect: Some(Reconnect::Retry),
            interval: Some(self.inner.config.interval_ms()),
            timeout: Some(self.inner.config.timeout_ms()),
            ..Advice::default()
        }
    }

    pub(super) async fn disconnect(&self, session: &ServerSession, message: &Message) -> Message {
        self.inner
            .remove_session(session, RemoveReason::Disconnected);
        let mut reply = Message::reply_to(message);
        reply.successful = Some(true);
        reply
    }

    /// Meta channel listeners observe the processed message and may edit its reply.
    pub(super) async fn notify_meta_listeners(
        &self,
        session: &ServerSession,
        channel: &ChannelName,
        message: Message,
        reply: Message,
    ) -> (Message, Message) {
        let listeners = self.inner.channels.read().listeners_for(channel);
        if listeners.is_empty() {
            return (message, reply);
        }
        let mut event = MessageEvent {
            session: session.clone(),
            channel: channel.clone(),
            message,
            reply,
            context: RequestContext::current(),
        };
        for listener in listeners {
            event = listener(event).await.event;
        }
        (event.message, event.reply)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use serde_json::json;

    fn message(value: serde_json::Value) -> Message {
        serde_json::from_value(value).unwrap()
    }

    async fn handshake(engine: &Engine, link: &Link) -> (String, Option<Arc<str>>) {
        let outcome = engine
            .process_batch(vec![message(json!({"channel": "/meta/handshake"}))], link)
            .await
            .unwrap();
        let id = outcome.replies[0].client_id.clone().unwrap();
        (id, outcome.new_browser)
    }

    #[tokio::test(start_paused = true)]
    async fn browser_bookkeeping_is_released_with_its_sessions() {
        let engine = Engine::new(super::super::Config {
            max_interval: Duration::from_secs(1),
            sweep_period: Duration::from_millis(100),
            ..Default::default()
        });
        let (first, browser) = handshake(&engine, &Link::default()).await;
        let link = Link {
            browser,
            ..Link::default()
        };
        let mut ids = vec![first];
        for _ in 0..3 {
            ids.push(handshake(&engine, &link).await.0);
        }
        assert_eq!(engine.stats().browsers, 1);
        let connect = |id: &str, timeout: i64| {
            message(
                json!({"channel": "/meta/connect", "clientId": id, "advice": {"timeout": timeout}}),
            )
        };
        for id in &ids {
            engine
                .process_batch(vec![connect(id, 0)], &link)
                .await
                .unwrap();
        }
        // One session holds a long-poll, then the client goes away mid-poll.
        let outcome = engine
            .process_batch(vec![connect(&ids[0], 5000)], &link)
            .await
            .unwrap();
        let held = outcome.held.expect("held");
        drop(held);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(engine.session_count(), 0);
        assert_eq!(
            engine.stats().browsers,
            0,
            "no per-browser state left behind"
        );
    }
}
