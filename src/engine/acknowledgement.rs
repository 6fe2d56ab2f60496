//! The engine's side of acknowledged delivery ([`AckExtension`](crate::ext::AckExtension)).
//!
//! Acknowledged delivery changes how a session's queue works: messages stay queued until the
//! client acknowledges them, are sent again in order after a lost reply, and leave only on
//! `/meta/connect` replies, each of which closes a numbered batch. The queue is the engine's,
//! and no [`Extension`](crate::Extension) hook reaches it, so these few crate-private functions
//! are the ack extension's only way in (it negotiates the feature and reads the client's
//! acknowledgements), and this is the only place the engine writes `ext.ack`.

use crate::protocol::Message;

use super::session::{Delivery, ServerSession};

impl ServerSession {
    /// Turns acknowledged delivery on (the ack extension does, when the client asks for it).
    pub(crate) fn enable_ack(&self) {
        self.0.state.lock().queue.enable_ack();
    }

    /// The client received every batch up to `batch`. Returns whether unacknowledged messages
    /// remain with nothing new (its connect should then return at once to resend them).
    pub(crate) fn acknowledge(&self, batch: u64) -> bool {
        self.0.state.lock().queue.acknowledge(batch)
    }

    /// Takes the deliveries a connect reply carries. With acknowledged delivery, the reply
    /// closes a batch: its number goes into the reply's `ext.ack`, and the deliveries include
    /// every unacknowledged one, oldest first.
    pub(crate) fn drain_into_connect_reply(&self, reply: &mut Message) -> Vec<Delivery> {
        let (queued, batch) = self.0.state.lock().queue.drain_for_connect();
        if let Some(batch) = batch {
            reply.ext_mut().insert("ack".to_owned(), batch.into());
        }
        queued
    }
}
