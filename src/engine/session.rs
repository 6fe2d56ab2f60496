//! Server sessions: their message queues, held connects and lifecycle.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::protocol::{ChannelName, Message, meta};

use super::attributes::SessionAttributes;
use super::event::RemoveReason;
use super::extension::SessionExtensions;
use super::queue::{Push, Queue, QueueLimits};
use super::{BoxFuture, Error, Inner, IntoChannelName, ListenerId};

/// A message ready to be written to a client: serialised once, shared by every recipient.
#[derive(Clone)]
pub(crate) struct Delivery(Arc<DeliveryInner>);

struct DeliveryInner {
    json: Bytes,
}

impl Delivery {
    pub(crate) fn new(message: &Message) -> Self {
        Self(Arc::new(DeliveryInner {
            json: Bytes::from(message.to_json()),
        }))
    }

    /// A message serialised elsewhere (another node), queued as it is.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn from_json(json: Bytes) -> Self {
        Self(Arc::new(DeliveryInner { json }))
    }

    /// The message as a JSON object.
    pub(crate) fn json(&self) -> &Bytes {
        &self.0.json
    }
}

/// Why a held `/meta/connect` was woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Messages are queued.
    Messages,
    /// A newer connect of the same session took its place.
    Displaced,
    /// The session was removed.
    Removed,
}

pub(crate) struct HeldSlot {
    pub(crate) generation: u64,
    pub(crate) wake: oneshot::Sender<Wake>,
}

pub(crate) struct SessionState {
    pub(crate) queue: Queue,
    pub(crate) subscriptions: HashSet<ChannelName>,
    pub(crate) held: Option<HeldSlot>,
    pub(crate) next_generation: u64,
    /// Whether a connect reply has been sent (the first connect is never held).
    pub(crate) connected: bool,
    /// When the sweeper removes the session; `None` while a connect is being processed or held.
    pub(crate) expire_at: Option<Instant>,
    pub(crate) removed: Option<RemoveReason>,
    /// The websocket connection the session is bound to: deliveries are pushed to it at once
    /// instead of waking the held connect.
    pub(crate) push: Option<PushTarget>,
    /// Channels whose history (kept by the broker) is being or was replayed to the session:
    /// see [`Replaying`].
    pub(crate) replayed: Vec<(ChannelName, Replaying)>,
    /// The transport of the latest `/meta/connect`, for [`Stats`](super::Stats).
    pub(crate) transport: super::Transport,
}

/// Where a session's replay of a channel's history (kept by the broker) stands.
pub(crate) enum Replaying {
    /// The replay is being read: live messages of the channel wait here, to follow it.
    Pending(Vec<(u64, Delivery)>),
    /// Replayed up to this offset: live copies of those messages (still on their way from the
    /// broker) are skipped.
    Done(u64),
}

impl SessionState {
    /// Live messages of `channel` wait until [`ServerSession::finish_replay`].
    pub(crate) fn begin_replay(&mut self, channel: &ChannelName) {
        self.replayed.retain(|(c, _)| c != channel);
        self.replayed
            .push((channel.clone(), Replaying::Pending(Vec::new())));
    }
}

/// A connection that writes a session's deliveries as soon as they are queued.
#[cfg_attr(not(feature = "websocket"), allow(dead_code))]
pub(crate) struct PushTarget {
    pub(crate) connection: u64,
    pub(crate) notify: Arc<Notify>,
}

/// Who to tell that deliveries are waiting.
enum Flush {
    Nobody,
    Held(HeldSlot),
    Push(Arc<Notify>),
}

impl Flush {
    fn send(self) {
        match self {
            Self::Nobody => {}
            Self::Held(slot) => {
                let _ = slot.wake.send(Wake::Messages);
            }
            Self::Push(notify) => notify.notify_one(),
        }
    }
}

impl SessionState {
    /// Who to wake for the queued deliveries, if anyone should be woken now. Deliveries wake
    /// the session's writer at once, also while a request of the session is being processed:
    /// holding them for that request's reply would make its queue leave through two replies.
    fn flush(&mut self) -> Flush {
        if self.queue.is_empty() {
            return Flush::Nobody;
        }
        match &self.push {
            // Acknowledged deliveries travel only on connect replies.
            Some(target) if !self.queue.ack_enabled() => Flush::Push(target.notify.clone()),
            _ => self.held.take().map_or(Flush::Nobody, Flush::Held),
        }
    }
}

pub(crate) type RemovedListener =
    Box<dyn FnOnce(ServerSession, RemoveReason) -> BoxFuture<'static, ()> + Send>;

/// The session-removed listeners, until the removal takes them.
#[derive(Default)]
struct RemovedListeners {
    waiting: Vec<(ListenerId, RemovedListener)>,
    /// Set when the removal took the listeners: later ones run at once.
    fired: Option<RemoveReason>,
}

pub(crate) struct SessionInner {
    pub(crate) id: Arc<str>,
    pub(crate) browser: Option<Arc<str>>,
    pub(crate) engine: Weak<Inner>,
    pub(crate) state: Mutex<SessionState>,
    removed_listeners: Mutex<RemovedListeners>,
    pub(crate) extensions: SessionExtensions,
    attributes: SessionAttributes,
}

/// A client session on the server. Cheap to clone; clones refer to the same session.
///
/// Obtained from events, listeners and the policy, or with
/// [`Bayeux::session`](crate::Bayeux::session).
#[derive(Clone)]
pub struct ServerSession(pub(crate) Arc<SessionInner>);

impl fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSession")
            .field("id", &self.0.id)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ServerSession {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ServerSession {}

impl std::hash::Hash for ServerSession {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

impl ServerSession {
    pub(crate) fn new(
        id: Arc<str>,
        browser: Option<Arc<str>>,
        engine: Weak<Inner>,
        limits: QueueLimits,
    ) -> Self {
        Self(Arc::new(SessionInner {
            id,
            browser,
            engine,
            state: Mutex::new(SessionState {
                queue: Queue::new(limits),
                subscriptions: HashSet::new(),
                held: None,
                next_generation: 0,
                connected: false,
                expire_at: None,
                removed: None,
                push: None,
                replayed: Vec::new(),
                transport: super::Transport::None,
            }),
            removed_listeners: Mutex::default(),
            extensions: SessionExtensions::default(),
            attributes: SessionAttributes::default(),
        }))
    }

    /// The session id (the `clientId` of its messages).
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The values the application keeps on this session, one per type: an identity found once
    /// at handshake stays with the session. See [`SessionAttributes`].
    pub fn attributes(&self) -> &SessionAttributes {
        &self.0.attributes
    }

    /// Whether the session has been removed (expired or disconnected).
    pub fn is_removed(&self) -> bool {
        self.0.state.lock().removed.is_some()
    }

    /// The channels and patterns the session subscribes to.
    pub fn subscriptions(&self) -> Vec<ChannelName> {
        self.0.state.lock().subscriptions.iter().cloned().collect()
    }

    /// How many messages wait to be sent to the client (with acknowledged delivery, sent ones
    /// not acknowledged yet included).
    pub fn queue_len(&self) -> usize {
        self.0.state.lock().queue.len()
    }

    /// Delivers `data` on `channel` to this session only, whatever its subscriptions (use it
    /// to answer on a `/service` channel). The message goes out with the next response to the
    /// client, waking its held `/meta/connect`.
    ///
    /// Fails if `channel` is not a valid name or the session has been removed.
    pub async fn deliver(&self, channel: impl IntoChannelName, data: Value) -> Result<(), Error> {
        let channel = channel.into_channel_name()?;
        self.deliver_message(Message::with_data(channel.as_str(), data))
            .await
    }

    /// Delivers a whole message (with `ext` or other fields) to this session only. Outgoing
    /// extensions see it first; fails with [`Error::MessageDeleted`] if one drops it.
    pub async fn deliver_message(&self, mut message: Message) -> Result<(), Error> {
        let removed = || Error::SessionRemoved(self.id().to_owned());
        let engine = self.0.engine.upgrade().ok_or_else(removed)?;
        if !engine.extend_outgoing(Some(self), None, &mut message).await {
            return Err(Error::MessageDeleted);
        }
        let push = self.enqueue(Delivery::new(&message));
        if engine.queued(self, push) {
            Ok(())
        } else {
            Err(removed())
        }
    }

    /// Disconnects the session from the server side: it is removed (listeners hear
    /// [`RemoveReason::ServerDisconnected`]), and a held `/meta/connect` returns carrying a
    /// `/meta/disconnect` message and `reconnect: none` advice, so the client stops.
    ///
    /// Returns `false` if the session was already removed.
    pub async fn disconnect(&self) -> bool {
        let Some(engine) = self.0.engine.upgrade() else {
            return false;
        };
        {
            let mut state = self.0.state.lock();
            if state.removed.is_some() {
                return false;
            }
            let mut message = Message::new(meta::DISCONNECT);
            message.successful = Some(true);
            state.queue.push_unbounded(Delivery::new(&message));
        }
        engine.remove_session(self, RemoveReason::ServerDisconnected)
    }

    /// Adds a listener called once when the session is removed, with the reason (timeout or
    /// disconnect).
    ///
    /// Listeners run in a task of their own once the session's subscriptions are gone, so a
    /// slow one holds up neither the engine nor other sessions; those of one session run one
    /// after the other, in the order they were added, and one that panics is logged and the
    /// next runs. [`Bayeux::shutdown`](crate::Bayeux::shutdown) waits for them. A listener
    /// added to a session that is already removed runs at once, with the reason it was removed
    /// for, so nothing registered on a session can miss its end. With several nodes, they run
    /// on the node that holds the session.
    ///
    /// ```
    /// # fn example(session: tower_bayeux::ServerSession) {
    /// session.on_removed(|session, reason| async move {
    ///     if reason.is_timeout() {
    ///         println!("{} timed out", session.id());
    ///     }
    /// });
    /// # }
    /// ```
    pub fn on_removed<F, Fut>(&self, listener: F) -> ListenerId
    where
        F: FnOnce(ServerSession, RemoveReason) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let id = ListenerId::next();
        let listener: RemovedListener = Box::new(move |session, reason| {
            Box::pin(listener(session, reason)) as BoxFuture<'static, ()>
        });
        let mut listeners = self.0.removed_listeners.lock();
        match listeners.fired {
            None => listeners.waiting.push((id, listener)),
            Some(reason) => {
                drop(listeners);
                match self.0.engine.upgrade() {
                    Some(engine) => engine.run_removed_listeners(self, reason, vec![listener]),
                    None => tracing::warn!(
                        client_id = %self.id(),
                        "session-removed listener added after its engine was dropped: not run"
                    ),
                }
            }
        }
        id
    }

    /// Removes a listener added with [`on_removed`](Self::on_removed) that has not run yet.
    /// Returns whether it was there.
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        let mut listeners = self.0.removed_listeners.lock();
        let before = listeners.waiting.len();
        listeners
            .waiting
            .retain(|(listener_id, _)| *listener_id != id);
        before != listeners.waiting.len()
    }

    /// Takes the listeners for the removal; any added later runs at once.
    pub(crate) fn take_removed_listeners(&self, reason: RemoveReason) -> Vec<RemovedListener> {
        let mut listeners = self.0.removed_listeners.lock();
        listeners.fired = Some(reason);
        std::mem::take(&mut listeners.waiting)
            .into_iter()
            .map(|(_, listener)| listener)
            .collect()
    }

    /// Queues a delivery within the queue's bound and wakes whoever writes it (the websocket
    /// connection, or else the held connect). `None` if the session is removed.
    pub(crate) fn enqueue(&self, delivery: Delivery) -> Option<Push> {
        let (push, flush) = {
            let mut state = self.0.state.lock();
            if state.removed.is_some() {
                return None;
            }
            let push = state.queue.push(delivery);
            (push, state.flush())
        };
        flush.send();
        Some(push)
    }

    /// Queues a broadcast at `offset` of `channel`'s history (kept by the broker): held back
    /// while the session's replay of the channel is read, skipped if the replay had it.
    pub(crate) fn enqueue_at(
        &self,
        delivery: Delivery,
        channel: &ChannelName,
        offset: u64,
    ) -> Option<Push> {
        let (push, flush) = {
            let mut state = self.0.state.lock();
            if state.removed.is_some() {
                return None;
            }
            if let Some(index) = state.replayed.iter().position(|(c, _)| c == channel) {
                match &mut state.replayed[index].1 {
                    Replaying::Pending(waiting) => {
                        waiting.push((offset, delivery));
                        return Some(Push::Queued);
                    }
                    Replaying::Done(upto) if offset <= *upto => return Some(Push::Queued),
                    Replaying::Done(_) => {
                        // Past the replay: live from now on.
                        state.replayed.swap_remove(index);
                    }
                }
            }
            let push = state.queue.push(delivery);
            (push, state.flush())
        };
        flush.send();
        Some(push)
    }

    /// Queues the replay of `channel` (messages up to offset `upto`), then the live messages
    /// that waited for it and are newer; returns the pushes that did not simply queue.
    pub(crate) fn finish_replay(
        &self,
        channel: &ChannelName,
        upto: u64,
        replay: Vec<Delivery>,
    ) -> Vec<Push> {
        let mut unusual = Vec::new();
        let flush = {
            let mut state = self.0.state.lock();
            if state.removed.is_some() {
                return unusual;
            }
            let waiting = match state.replayed.iter_mut().find(|(c, _)| c == channel) {
                Some((_, entry)) => match std::mem::replace(entry, Replaying::Done(upto)) {
                    Replaying::Pending(waiting) => waiting,
                    Replaying::Done(_) => Vec::new(),
                },
                None => Vec::new(),
            };
            let newer = waiting
                .into_iter()
                .filter(|(offset, _)| *offset > upto)
                .map(|(_, delivery)| delivery);
            for delivery in replay.into_iter().chain(newer) {
                let push = state.queue.push(delivery);
                if push != Push::Queued {
                    unusual.push(push);
                }
            }
            state.flush()
        };
        flush.send();
        unusual
    }

    /// Binds the session to a websocket connection that writes its deliveries as they come.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    pub(crate) fn attach_push(&self, connection: u64, notify: Arc<Notify>) {
        let flush = {
            let mut state = self.0.state.lock();
            state.push = Some(PushTarget { connection, notify });
            state.flush()
        };
        flush.send();
    }

    /// Unbinds the session from `connection`, if it is still bound to it.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    pub(crate) fn detach_push(&self, connection: u64) {
        let mut state = self.0.state.lock();
        if state
            .push
            .as_ref()
            .is_some_and(|p| p.connection == connection)
        {
            state.push = None;
        }
    }

    /// Whether the session is bound to websocket `connection`.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    pub(crate) fn is_pushed_to(&self, connection: u64) -> bool {
        let state = self.0.state.lock();
        state
            .push
            .as_ref()
            .is_some_and(|p| p.connection == connection)
    }

    /// Whether deliveries wait to be sent (or a gap to be reported).
    #[cfg(feature = "websocket")]
    pub(crate) fn has_queued(&self) -> bool {
        !self.0.state.lock().queue.is_empty()
    }

    /// Takes the deliveries that may ride on a response other than a connect reply.
    pub(crate) fn drain(&self) -> Vec<Delivery> {
        self.0.state.lock().queue.drain()
    }

    /// Whether deliveries to this session are acknowledged (the client negotiated the
    /// [ack extension](crate::ext::AckExtension)).
    pub fn is_ack_enabled(&self) -> bool {
        self.0.state.lock().queue.ack_enabled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::QueueFullPolicy;

    fn session() -> ServerSession {
        let limits = QueueLimits {
            max_messages: 100,
            max_bytes: 1 << 20,
            policy: QueueFullPolicy::DropOldest,
        };
        ServerSession::new(Arc::from("s"), None, Weak::new(), limits)
    }

    fn delivery(n: u64) -> Delivery {
        Delivery::from_json(Bytes::from(n.to_string()))
    }

    fn queued(session: &ServerSession) -> Vec<String> {
        session
            .0
            .state
            .lock()
            .queue
            .drain()
            .iter()
            .map(|d| String::from_utf8(d.json().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn live_messages_wait_for_the_replay_then_follow_it_without_repeating_it() {
        let (session, channel) = (session(), ChannelName::from_static("/c"));
        let other = ChannelName::from_static("/other");
        session.0.state.lock().begin_replay(&channel);
        // Live messages arrive while the replay (up to 5) is read: 5 is in it, 6 and 7 not.
        for offset in [5, 6, 7] {
            assert_eq!(
                session.enqueue_at(delivery(offset), &channel, offset),
                Some(Push::Queued)
            );
        }
        session.enqueue_at(delivery(100), &other, 1);
        assert_eq!(queued(&session), ["100"], "other channels are not held");
        let unusual = session.finish_replay(&channel, 5, vec![delivery(4), delivery(5)]);
        assert!(unusual.is_empty());
        assert_eq!(queued(&session), ["4", "5", "6", "7"]);
        // A late live copy of a replayed message is skipped; newer ones pass.
        session.enqueue_at(delivery(5), &channel, 5);
        session.enqueue_at(delivery(8), &channel, 8);
        assert_eq!(queued(&session), ["8"]);
        assert!(
            session.0.state.lock().replayed.is_empty(),
            "live from now on"
        );
    }

    #[test]
    fn an_abandoned_replay_lets_the_waiting_messages_through() {
        let (session, channel) = (session(), ChannelName::from_static("/c"));
        session.0.state.lock().begin_replay(&channel);
        session.enqueue_at(delivery(1), &channel, 1);
        session.finish_replay(&channel, 0, Vec::new());
        assert_eq!(queued(&session), ["1"]);
    }
}
