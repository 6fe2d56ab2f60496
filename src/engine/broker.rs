//! Where a broadcast leaves this node and where one published elsewhere enters it.
//!
//! A broadcast published on this node (by a client, or through the server API) is handed to
//! the engine's [`Broker`], which passes it on to the other nodes of the Bayeux space; then it
//! reaches this node's own subscribers. Broadcasts from other nodes enter through
//! [`Inner::fan_out`](super::Inner::fan_out), like local ones. A single node has no one to
//! pass broadcasts on to: its broker is [`Local`].

use std::sync::OnceLock;

use crate::protocol::{ChannelName, Message};

use super::session::Delivery;

/// A broadcast on its way to subscribers: its channel, its message, and the message serialised
/// once for every recipient that needs no copy of its own (and for other nodes).
pub(crate) struct Broadcast {
    channel: ChannelName,
    message: Message,
    delivery: OnceLock<Delivery>,
}

impl Broadcast {
    pub(crate) fn new(channel: ChannelName, message: Message) -> Self {
        Self {
            channel,
            message,
            delivery: OnceLock::new(),
        }
    }

    pub(crate) fn channel(&self) -> &ChannelName {
        &self.channel
    }

    pub(crate) fn message(&self) -> &Message {
        &self.message
    }

    /// The message serialised, the first time it is needed (a broadcast nobody receives is
    /// never serialised).
    pub(crate) fn delivery(&self) -> &Delivery {
        self.delivery.get_or_init(|| Delivery::new(&self.message))
    }
}

/// Passes the broadcasts published on this node on to the other nodes.
pub(crate) trait Broker: Send + Sync + 'static {
    /// Sends `broadcast`, published on this node, to the other nodes with subscribers for its
    /// channel. This node's own subscribers get it from the engine, not from here.
    fn publish(&self, broadcast: &Broadcast);
}

/// The broker of a single node: there is no other node to tell.
pub(crate) struct Local;

impl Broker for Local {
    fn publish(&self, _broadcast: &Broadcast) {}
}
