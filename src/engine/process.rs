//! The message pipeline: what the engine does with a batch of client messages.
//!
//! Transports call [`Bayeux::process_batch`] with the messages of one request and write out the
//! [`BatchOutcome`]: queued deliveries first, then the replies in request order. A lone
//! `/meta/connect` may instead come back as a [`HeldConnect`] that the transport awaits.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::Instrument;

use crate::context::RequestContext;
use crate::protocol::{
    Advice, BAYEUX_VERSION, ChannelKind, ChannelName, ErrorCode, Message, Reconnect, meta,
};

use super::channel::MessageEvent;
use super::event::{RemoveReason, ServerEvent};
use super::session::{Delivery, HeldSlot, Wake};
use super::{Bayeux, ServerSession, random_id};

/// The transport a batch arrived on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum TransportKind {
    #[default]
    LongPolling,
    #[cfg_attr(not(feature = "jsonp"), allow(dead_code))]
    CallbackPolling,
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    WebSocket,
}

/// What the transport knows about the connection a batch arrived on.
#[derive(Clone, Debug, Default)]
pub(crate) struct Connection {
    /// The browser cookie's value, if the request carried one.
    pub(crate) browser: Option<Arc<str>>,
    pub(crate) kind: TransportKind,
}

impl Connection {
    /// HTTP polling transports share a browser's few connections, so they are subject to
    /// `max_sessions_per_browser`; a websocket holds its connect on its own socket.
    fn polls_over_http(&self) -> bool {
        self.kind != TransportKind::WebSocket
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

/// How a held connect ended.
#[expect(
    clippy::large_enum_variant,
    reason = "made once per connect and consumed at once; boxing would only add an allocation"
)]
pub(crate) enum ConnectEnd {
    /// A newer connect of the session took over; answer with this HTTP status and no body.
    Displaced(StatusCode),
    /// Answer with the queued deliveries and the connect reply (`None` if an extension
    /// dropped it).
    Reply {
        queued: Vec<Delivery>,
        reply: Option<Message>,
    },
}

/// A `/meta/connect` waiting for messages, its timeout, a newer connect or the session's end.
///
/// Dropping it (the client went away) releases the long-poll and starts the session's expiry.
pub(crate) struct HeldConnect {
    bayeux: Bayeux,
    session: ServerSession,
    generation: u64,
    wake: oneshot::Receiver<Wake>,
    hold: Duration,
    request: Message,
    reply: Option<Message>,
    /// The request context the connect arrived in.
    context: Option<RequestContext>,
    /// Shutdown waits until the connect has its reply.
    _tracked: TaskTrackerToken,
}

impl HeldConnect {
    pub(crate) async fn wait(mut self) -> ConnectEnd {
        let deadline = Instant::now() + self.hold;
        let wake = loop {
            let wake = match tokio::time::timeout_at(deadline, &mut self.wake).await {
                Ok(Ok(wake)) => Some(wake),
                // The slot was dropped without a word: treat it as a wake-up and look at the
                // state.
                Ok(Err(_)) => Some(Wake::Messages),
                Err(_elapsed) => None,
            };
            if wake != Some(Wake::Messages) || !self.rearm() {
                break wake;
            }
        };
        let reply = self.reply.take().unwrap_or_default();
        self.release();
        if wake == Some(Wake::Displaced) {
            return ConnectEnd::Displaced(
                self.bayeux.inner.config.duplicate_meta_connect_http_status,
            );
        }
        let (queued, batch) = self.session.drain_for_connect();
        let mut reply = self.bayeux.finish_connect(&self.session, reply);
        if let Some(batch) = batch {
            reply.ext_mut().insert("ack".to_owned(), batch.into());
        }
        // The reply's extensions see the connect's request, as on any other reply. Only this
        // part is scoped: the wait above is polled at every wake-up of a websocket connection.
        let kept = RequestContext::scope_optional(
            self.context.take(),
            self.bayeux
                .inner
                .extend_outgoing(Some(&self.session), Some(&self.request), &mut reply),
        )
        .await;
        ConnectEnd::Reply {
            queued,
            reply: kept.then_some(reply),
        }
    }

    /// Goes back to waiting when the messages that woke this connect were taken by another
    /// reply of the session in the meantime (with delivery on every reply): an empty connect
    /// reply would only cost the client a round trip. Returns whether it waits again.
    fn rearm(&mut self) -> bool {
        let mut state = self.session.0.state.lock();
        if !state.queue.is_empty()
            || state.held.is_some()
            || state.removed.is_some()
            || state.next_generation != self.generation
        {
            return false;
        }
        let (tx, rx) = oneshot::channel();
        state.held = Some(HeldSlot {
            generation: self.generation,
            wake: tx,
        });
        self.wake = rx;
        true
    }

    /// Gives up the slot and the browser's long-poll if they are still this connect's.
    fn release(&self) {
        {
            let mut state = self.session.0.state.lock();
            if state
                .held
                .as_ref()
                .is_some_and(|slot| slot.generation == self.generation)
            {
                state.held = None;
            }
        }
        if let Some(browser) = &self.session.0.browser {
            self.bayeux
                .inner
                .release_hold(browser, &self.session.0.id, self.generation);
        }
    }
}

impl Drop for HeldConnect {
    fn drop(&mut self) {
        if self.reply.is_some() {
            // Abandoned while held: the client is gone, so the session starts to expire.
            self.release();
            let mut state = self.session.0.state.lock();
            if state.removed.is_none() && state.held.is_none() {
                state.expire_at = Some(self.bayeux.inner.expiry_from(Instant::now()));
            }
        }
    }
}

fn unknown_session(request: &Message) -> Message {
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

fn failed(request: &Message, error: ErrorCode) -> Message {
    let mut reply = Message::reply_to(request);
    reply.fail(error);
    reply
}

enum Step {
    /// The reply, with the request it answers when outgoing extensions may need it.
    Reply {
        request: Option<Message>,
        reply: Message,
    },
    Hold(HeldConnect),
}

impl Step {
    fn reply(request: Message, reply: Message) -> Self {
        Self::Reply {
            request: Some(request),
            reply,
        }
    }
}

impl Bayeux {
    /// Processes the messages of one request.
    pub(crate) async fn process_batch(
        &self,
        messages: Vec<Message>,
        connection: &Connection,
    ) -> Result<BatchOutcome, BatchError> {
        if messages.len() > 1 && messages.iter().any(|m| m.channel == meta::HANDSHAKE) {
            return Err(BatchError::HandshakeBatched);
        }
        if let [only] = messages.as_slice()
            && only.channel == meta::HANDSHAKE
        {
            let mut messages = messages;
            return Ok(self.handshake(messages.remove(0), connection).await);
        }

        let session = messages
            .iter()
            .find_map(|m| m.client_id.as_deref())
            .and_then(|id| self.lookup(id, connection));
        let single = messages.len() == 1;
        let mut answered = Vec::with_capacity(messages.len());
        let mut held = None;
        for message in messages {
            // A message may omit clientId (publish); one naming another session is unknown.
            let owner = match (&session, message.client_id.as_deref()) {
                (Some(s), Some(id)) if s.id() != id => None,
                (s, _) => s.as_ref(),
            };
            match self.process_one(message, owner, single, connection).await {
                Step::Reply { request, reply } => answered.push((owner.cloned(), request, reply)),
                Step::Hold(connect) => held = Some(connect),
            }
        }
        let queued = match (&session, &held) {
            (Some(session), None) => {
                let connect = answered.iter_mut().find(|(owner, _, reply)| {
                    owner.is_some()
                        && reply.channel == meta::CONNECT
                        && reply.successful == Some(true)
                });
                match connect {
                    Some((_, _, reply)) => {
                        let (queued, batch) = session.drain_for_connect();
                        if let Some(batch) = batch {
                            reply.ext_mut().insert("ack".to_owned(), batch.into());
                        }
                        queued
                    }
                    None if self.delivers_on_any_reply(connection) => session.drain(),
                    None => Vec::new(),
                }
            }
            _ => Vec::new(),
        };
        let mut replies = Vec::with_capacity(answered.len());
        for (owner, request, mut reply) in answered {
            if self
                .inner
                .extend_outgoing(owner.as_ref(), request.as_ref(), &mut reply)
                .await
            {
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
        }
        Ok(BatchOutcome {
            queued,
            replies,
            held,
            new_browser: None,
            session,
        })
    }

    /// Whether queued deliveries may ride on the reply to a request that holds no
    /// `/meta/connect`. Over HTTP a session's replies travel on several connections and its
    /// client processes them as they complete, so unless the user chose otherwise its queue
    /// leaves only through connect replies, one at a time, and keeps its order. A websocket's
    /// replies share one connection, in order.
    fn delivers_on_any_reply(&self, connection: &Connection) -> bool {
        connection.kind == TransportKind::WebSocket || !self.inner.config.meta_connect_delivery_only
    }

    /// The live session `id`, if the connection may use it. A request carrying a browser cookie
    /// reaches only the sessions created with that cookie (or without one). A request without
    /// the cookie reaches a cookie-bound session only over websocket (clients such as Faye's
    /// handshake over HTTP, then upgrade without the cookie) or when the user trusts client
    /// sessions; over HTTP a leaked `clientId` alone does not give access to a session.
    fn lookup(&self, id: &str, connection: &Connection) -> Option<ServerSession> {
        let session = self.session(id)?;
        let allowed = match (&session.0.browser, &connection.browser) {
            (None, _) => true,
            (Some(bound), Some(sent)) => bound == sent,
            (Some(_), None) => {
                connection.kind == TransportKind::WebSocket
                    || self.inner.config.trust_client_session
            }
        };
        allowed.then_some(session)
    }

    async fn process_one(
        &self,
        message: Message,
        session: Option<&ServerSession>,
        single: bool,
        connection: &Connection,
    ) -> Step {
        if message.channel.is_empty() {
            let reply = failed(&message, ErrorCode::ChannelMissing);
            return Step::reply(message, reply);
        }
        let session = session.filter(|s| !s.is_removed());
        let mut message = message;
        if !self.inner.extend_incoming(session, &mut message).await {
            let reply = failed(&message, ErrorCode::MessageDeleted);
            return Step::reply(message, reply);
        }
        let Some(session) = session else {
            let reply = unknown_session(&message);
            return Step::reply(message, reply);
        };
        let channel = Some(&message.channel)
            .filter(|name| name.len() <= self.inner.config.max_channel_length)
            .and_then(|name| ChannelName::new(name).ok());
        let Some(channel) = channel else {
            let reply = failed(&message, ErrorCode::ChannelInvalid);
            return Step::reply(message, reply);
        };
        if message.channel != meta::CONNECT {
            self.extend_expiry(session);
        }
        let span = tracing::debug_span!("bayeux", client_id = %session.id(), channel = %channel);
        async move {
            tracing::trace!(?message, "incoming");
            match channel.kind() {
                ChannelKind::Meta => {
                    let reply = match channel.as_str() {
                        meta::CONNECT => return self.connect(session, message, single, connection),
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
                    let (request, reply) =
                        self.publish_from_client(session, channel, message).await;
                    Step::Reply { request, reply }
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Other messages keep a session alive for at least `max_interval` more.
    fn extend_expiry(&self, session: &ServerSession) {
        let mut state = session.0.state.lock();
        if let Some(at) = state.expire_at {
            let floor = Instant::now() + self.inner.config.max_interval;
            state.expire_at = Some(at.max(floor));
        }
    }

    fn advice(&self) -> Advice {
        Advice {
            reconnect: Some(Reconnect::Retry),
            interval: Some(self.inner.config.interval_ms()),
            timeout: Some(self.inner.config.timeout_ms()),
            ..Advice::default()
        }
    }

    async fn handshake(&self, message: Message, connection: &Connection) -> BatchOutcome {
        let (session, reply, new_browser) = self.handshake_reply(message, connection).await;
        BatchOutcome {
            queued: Vec::new(),
            replies: reply.into_iter().collect(),
            held: None,
            new_browser,
            session,
        }
    }

    /// Handles a handshake; the session is the new one when it succeeded, the reply `None` if
    /// an extension dropped it.
    async fn handshake_reply(
        &self,
        mut message: Message,
        connection: &Connection,
    ) -> (Option<ServerSession>, Option<Message>, Option<Arc<str>>) {
        let mut reply = Message::reply_to(&message);
        let offered = &self.inner.connection_types;
        if let Some(types) = &message.supported_connection_types
            && !types.iter().any(|t| offered.contains(&t.as_str()))
        {
            reply.fail(ErrorCode::HandshakeFailed);
            reply.supported_connection_types = Some(offered.iter().map(|t| (*t).into()).collect());
            reply.advice = Some(Advice {
                reconnect: Some(Reconnect::None),
                ..Advice::default()
            });
            let kept = self
                .inner
                .extend_outgoing(None, Some(&message), &mut reply)
                .await;
            return (None, kept.then_some(reply), None);
        }

        // HTTP sessions are bound to the browser cookie, issued now if the request had none. A
        // websocket cannot receive a cookie after its upgrade: without one, its session is
        // bound to the connection and found again by clientId alone.
        let (browser, new_browser) = match (&connection.browser, connection.kind) {
            (Some(browser), _) => (Some(browser.clone()), None),
            (None, TransportKind::WebSocket) => (None, None),
            (None, _) => {
                let browser = random_id();
                (Some(browser.clone()), Some(browser))
            }
        };
        if self.is_shut_down() {
            reply.fail(ErrorCode::ShuttingDown);
            reply.advice = Some(Advice {
                reconnect: Some(Reconnect::Handshake),
                interval: Some(self.inner.shutdown_interval_ms()),
                ..Advice::default()
            });
            return (None, Some(reply), None);
        }
        let session = ServerSession::new(
            random_id(),
            browser.clone(),
            Arc::downgrade(&self.inner),
            self.inner.config.queue,
        );
        // Extensions see the session being created, and may attach session extensions to it.
        let refused = if !self
            .inner
            .extend_incoming(Some(&session), &mut message)
            .await
        {
            Some((ErrorCode::MessageDeleted, None))
        } else {
            match &self.inner.config.policy {
                Some(policy) if !policy.can_handshake(&session, &message).await => {
                    tracing::debug!("handshake denied by the security policy");
                    let advice = Advice {
                        reconnect: Some(Reconnect::None),
                        ..Advice::default()
                    };
                    Some((ErrorCode::HandshakeDenied, Some(advice)))
                }
                _ => None,
            }
        };
        let refused = match refused {
            Some(refused) => Some(refused),
            None => {
                self.ensure_sweeper();
                session.0.state.lock().expire_at = Some(self.inner.expiry_from(Instant::now()));
                self.inner.register(&session).err().map(|error| {
                    // Full: try again once sessions had time to expire.
                    let retry_in = i64::try_from(self.inner.config.max_interval.as_millis())
                        .unwrap_or(i64::MAX);
                    let advice = Advice {
                        reconnect: Some(Reconnect::Handshake),
                        interval: Some(retry_in),
                        ..Advice::default()
                    };
                    (error, Some(advice))
                })
            }
        };
        if let Some((error, advice)) = refused {
            reply.fail(error);
            reply.advice = advice;
            let kept = self
                .inner
                .extend_outgoing(Some(&session), Some(&message), &mut reply)
                .await;
            return (None, kept.then_some(reply), None);
        }
        tracing::debug!(client_id = %session.id(), "session added");
        self.inner.emit(&ServerEvent::SessionAdded {
            session: session.clone(),
            handshake: message.clone(),
        });

        reply.successful = Some(true);
        reply.client_id = Some(session.id().to_owned());
        reply.version = Some(BAYEUX_VERSION.to_owned());
        reply.minimum_version = Some(BAYEUX_VERSION.to_owned());
        reply.supported_connection_types = Some(offered.iter().map(|t| (*t).into()).collect());
        reply.advice = Some(self.advice());
        let channel = ChannelName::from_static(meta::HANDSHAKE);
        let (message, mut reply) = self
            .notify_meta_listeners(&session, &channel, message, reply)
            .await;
        let kept = self
            .inner
            .extend_outgoing(Some(&session), Some(&message), &mut reply)
            .await;
        (Some(session), kept.then_some(reply), new_browser)
    }

    fn connect(
        &self,
        session: &ServerSession,
        message: Message,
        single: bool,
        connection: &Connection,
    ) -> Step {
        let config = &self.inner.config;
        let mut reply = Message::reply_to(&message);
        reply.successful = Some(true);
        let client_timeout = message
            .advice
            .as_ref()
            .and_then(|a| a.timeout)
            .map(|ms| Duration::from_millis(ms.max(0).unsigned_abs()));
        let hold = client_timeout.map_or(config.timeout, |t| t.min(config.timeout));

        let (generation, displaced, first, has_messages) = {
            let mut state = session.0.state.lock();
            state.expire_at = None;
            state.next_generation += 1;
            (
                state.next_generation,
                state.held.take(),
                !state.connected,
                !state.queue.is_empty(),
            )
        };
        // One long-poll per session: the older one is answered at once.
        if let Some(slot) = displaced {
            let _ = slot.wake.send(Wake::Displaced);
        }
        if first || message.advice.is_some() {
            reply.advice = Some(self.advice());
        }
        // The first connect after a handshake returns at once (old clients send no
        // `timeout: 0` on it), as do connects in a batch and connects with messages waiting.
        let suspend = single && !first && !hold.is_zero() && !has_messages;
        if !suspend {
            return Step::reply(message, self.finish_connect(session, reply));
        }
        let limited = session
            .0
            .browser
            .as_ref()
            .filter(|_| connection.polls_over_http());
        if let Some(browser) = limited
            && !self.inner.try_hold(browser, &session.0.id, generation)
        {
            let interval = config.multi_session_interval_ms();
            let advice = reply.advice_mut();
            advice.multiple_clients = Some(true);
            if interval > 0 {
                advice.reconnect = Some(Reconnect::Retry);
                advice.interval = Some(interval);
            } else {
                advice.reconnect = Some(Reconnect::None);
                advice.interval = None;
                advice.timeout = None;
                reply.fail(ErrorCode::MultipleClients);
            }
            return Step::reply(message, self.finish_connect(session, reply));
        }

        let (tx, rx) = oneshot::channel();
        let registered = {
            let mut state = session.0.state.lock();
            // A delivery or removal may have slipped in since the check above.
            if state.removed.is_some()
                || !state.queue.is_empty()
                || state.next_generation != generation
            {
                false
            } else {
                state.held = Some(HeldSlot {
                    generation,
                    wake: tx,
                });
                true
            }
        };
        if !registered {
            if let Some(browser) = &session.0.browser {
                self.inner.release_hold(browser, &session.0.id, generation);
            }
            return Step::reply(message, self.finish_connect(session, reply));
        }
        tracing::trace!(hold_ms = hold.as_millis() as u64, "connect held");
        Step::Hold(HeldConnect {
            bayeux: self.clone(),
            session: session.clone(),
            generation,
            wake: rx,
            hold,
            request: message,
            reply: Some(reply),
            context: RequestContext::current(),
            _tracked: self.inner.tasks.token(),
        })
    }

    /// Completes a connect reply: the session now counts as connected and starts expiring;
    /// a removed session is told not to come back.
    fn finish_connect(&self, session: &ServerSession, mut reply: Message) -> Message {
        let mut state = session.0.state.lock();
        if let Some(reason) = state.removed {
            let advice = reply.advice_mut();
            advice.timeout = None;
            if reason == RemoveReason::Shutdown {
                // Come back later, to whichever instance serves then.
                advice.reconnect = Some(Reconnect::Retry);
                advice.interval = Some(self.inner.shutdown_interval_ms());
            } else if reason == RemoveReason::QueueFull {
                // It could not keep up: start over with a new session.
                advice.reconnect = Some(Reconnect::Handshake);
                advice.interval = Some(0);
            } else {
                advice.reconnect = Some(Reconnect::None);
                advice.interval = None;
            }
        } else {
            state.connected = true;
            if state.held.is_none() {
                state.expire_at = Some(self.inner.expiry_from(Instant::now()));
            }
        }
        reply
    }

    async fn disconnect(&self, session: &ServerSession, message: &Message) -> Message {
        self.inner
            .remove_session(session, RemoveReason::Disconnected);
        let mut reply = Message::reply_to(message);
        reply.successful = Some(true);
        reply
    }

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

    async fn subscribe(&self, session: &ServerSession, message: &Message) -> Message {
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

        let mut events = Vec::new();
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
                    state.subscriptions.insert(channel.clone());
                    events.push(ServerEvent::Subscribed {
                        session: session.clone(),
                        channel,
                        message: message.clone(),
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

    fn unsubscribe(&self, session: &ServerSession, message: &Message) -> Message {
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
                    if let Some(entry) = table.get_mut(&channel) {
                        entry.subscribers.remove(&session.0.id);
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

    async fn publish_from_client(
        &self,
        session: &ServerSession,
        channel: ChannelName,
        message: Message,
    ) -> (Option<Message>, Message) {
        let refuse = |message: Message, error| {
            let reply = failed(&message, error);
            (Some(message), reply)
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
                return (Some(event.message), reply);
            }
        }
        if !event.channel.is_broadcast() {
            return (Some(event.message), event.reply);
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
        if !self.inner.broadcast(&event.channel, message).await {
            reply.fail(ErrorCode::MessageDeleted);
        }
        (request, reply)
    }

    /// Meta channel listeners observe the processed message and may edit its reply.
    async fn notify_meta_listeners(
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
    use super::*;
    use serde_json::json;

    fn message(value: serde_json::Value) -> Message {
        serde_json::from_value(value).unwrap()
    }

    async fn handshake(bayeux: &Bayeux, connection: &Connection) -> (String, Option<Arc<str>>) {
        let outcome = bayeux
            .process_batch(
                vec![message(json!({"channel": "/meta/handshake"}))],
                connection,
            )
            .await
            .unwrap();
        let id = outcome.replies[0].client_id.clone().unwrap();
        (id, outcome.new_browser)
    }

    #[tokio::test(start_paused = true)]
    async fn browser_bookkeeping_is_released_with_its_sessions() {
        let bayeux = Bayeux::builder()
            .max_interval(Duration::from_secs(1))
            .sweep_period(Duration::from_millis(100))
            .build();
        let (first, browser) = handshake(&bayeux, &Connection::default()).await;
        let connection = Connection {
            browser,
            ..Connection::default()
        };
        let mut ids = vec![first];
        for _ in 0..3 {
            ids.push(handshake(&bayeux, &connection).await.0);
        }
        assert_eq!(bayeux.stats().browsers, 1);
        let connect = |id: &str, timeout: i64| {
            message(
                json!({"channel": "/meta/connect", "clientId": id, "advice": {"timeout": timeout}}),
            )
        };
        for id in &ids {
            bayeux
                .process_batch(vec![connect(id, 0)], &connection)
                .await
                .unwrap();
        }
        // One session holds a long-poll, then the client goes away mid-poll.
        let outcome = bayeux
            .process_batch(vec![connect(&ids[0], 5000)], &connection)
            .await
            .unwrap();
        let held = outcome.held.expect("held");
        drop(held);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(bayeux.session_count(), 0);
        assert_eq!(
            bayeux.stats().browsers,
            0,
            "no per-browser state left behind"
        );
    }
}
