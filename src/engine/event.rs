//! Engine-level events and session removal reasons.

use crate::protocol::{ChannelName, Message};

use super::ServerSession;
use super::queue::QueueFullPolicy;

/// Why a session was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemoveReason {
    /// The session expired: no `/meta/connect` arrived within `interval + max_interval`.
    Timeout,
    /// The client sent `/meta/disconnect`.
    Disconnected,
    /// The server disconnected it ([`ServerSession::disconnect`]).
    ServerDisconnected,
    /// Its queue overflowed under [`QueueFullPolicy::Disconnect`](crate::QueueFullPolicy); its
    /// client is told to handshake again.
    QueueFull,
    /// The server is shutting down ([`Bayeux::shutdown`](crate::Bayeux::shutdown)).
    Shutdown,
}

impl RemoveReason {
    /// `true` when the session expired rather than being disconnected.
    pub fn is_timeout(self) -> bool {
        self == Self::Timeout
    }
}

/// Something that happened in the engine, as told to listeners registered with
/// [`Bayeux::on_event`](crate::Bayeux::on_event).
///
/// Events are delivered synchronously, in order, right after the change, outside the engine's
/// locks; a listener may call back into the engine, and should hand slow or async work to a
/// task (see [`context::spawn`](crate::context::spawn)).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A handshake succeeded and created `session`.
    SessionAdded {
        /// The new session.
        session: ServerSession,
        /// The client's handshake message.
        handshake: Message,
    },
    /// `session` was removed (its subscriptions are already gone).
    SessionRemoved {
        /// The removed session.
        session: ServerSession,
        /// Why.
        reason: RemoveReason,
    },
    /// `session` subscribed to `channel` (broadcast channels and patterns only: service
    /// subscriptions are not recorded).
    Subscribed {
        /// The subscriber.
        session: ServerSession,
        /// The channel or pattern.
        channel: ChannelName,
        /// The `/meta/subscribe` message.
        message: Message,
    },
    /// `session` unsubscribed from `channel`.
    Unsubscribed {
        /// The former subscriber.
        session: ServerSession,
        /// The channel or pattern.
        channel: ChannelName,
        /// The `/meta/unsubscribe` message, or `None` when the session was removed.
        message: Option<Message>,
    },
    /// A channel came into existence (a client published or subscribed to it, or a listener was
    /// added to it).
    ChannelAdded(ChannelName),
    /// An unused channel (no subscribers, no listeners) was swept away.
    ChannelRemoved(ChannelName),
    /// The broker connecting this node to the others (a [`RedisBroker`](crate::RedisBroker))
    /// is connected: at start, or again after losing its connection (`reconnected`), in which
    /// case broadcasts other nodes published meanwhile were missed here.
    BrokerConnected {
        /// Whether this follows a lost connection.
        reconnected: bool,
    },
    /// The broker lost its connection: until it is back, broadcasts from other nodes do not
    /// reach this node (its own clients are served as usual).
    BrokerDisconnected,
    /// `session`'s queue is full: its client does not keep up. Told once per episode (until the
    /// client catches up); `policy` says what the engine does about it.
    QueueFull {
        /// The slow session.
        session: ServerSession,
        /// Dropping its oldest messages, or removing it.
        policy: QueueFullPolicy,
    },
}
