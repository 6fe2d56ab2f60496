//! Acknowledged messages: reliable, ordered delivery from server to client.

use crate::protocol::meta;
use crate::{Extension, Message, ServerSession};

use super::ext;

/// Acknowledged delivery, negotiated with the CometD clients' `AckExtension`.
///
/// A client that sends `ext: {ack: true}` in its handshake gets `ext: {ack: true}` back, and
/// from then on:
/// - messages for it travel only on `/meta/connect` replies, each reply closing a numbered
///   batch carried in `ext.ack`;
/// - each connect acknowledges, in `ext.ack`, the last batch the client received;
/// - whatever was sent but not acknowledged is sent again, in order, before newer messages
///   (a connect that acknowledges an older batch returns at once to resend).
///
/// So a client whose connection drops while a reply is in flight loses nothing, as long as it
/// reconnects before its session expires (`max_interval`). Works over long-polling and
/// websocket.
#[derive(Clone, Copy, Debug, Default)]
pub struct AckExtension {
    _private: (),
}

impl AckExtension {
    /// The extension; add it with [`BayeuxBuilder::extension`](crate::BayeuxBuilder::extension).
    pub fn new() -> Self {
        Self::default()
    }
}

impl Extension for AckExtension {
    async fn incoming(&self, session: Option<&ServerSession>, message: &mut Message) -> bool {
        let Some(session) = session else {
            return true;
        };
        match message.channel.as_str() {
            meta::HANDSHAKE if ext(message, "ack").and_then(|v| v.as_bool()) == Some(true) => {
                session.enable_ack();
            }
            meta::CONNECT if session.is_ack_enabled() => {
                // The client sends 0 (or -1) before it received any batch.
                let acked = ext(message, "ack").and_then(|v| v.as_u64()).unwrap_or(0);
                let resend = session.acknowledge(acked);
                let asked = message.advice.as_ref().and_then(|a| a.timeout);
                if resend && asked.is_none() {
                    message.advice_mut().timeout = Some(0);
                }
            }
            _ => {}
        }
        true
    }

    async fn outgoing(
        &self,
        session: Option<&ServerSession>,
        _request: Option<&Message>,
        message: &mut Message,
    ) -> bool {
        if message.channel == meta::HANDSHAKE
            && message.successful == Some(true)
            && session.is_some_and(ServerSession::is_ack_enabled)
        {
            message.ext_mut().insert("ack".to_owned(), true.into());
        }
        true
    }
}
