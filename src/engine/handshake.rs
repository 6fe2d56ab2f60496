//! The handshake: a new session, within the limits and the security policy.

use std::sync::Arc;

use tokio::time::Instant;

use crate::protocol::{Advice, BAYEUX_VERSION, ChannelName, ErrorCode, Message, Reconnect, meta};

use super::batch::{BatchOutcome, Carrier, Link};
use super::event::ServerEvent;
use super::{Engine, ServerSession, random_id};

impl Engine {
    pub(super) async fn handshake(&self, message: Message, link: &Link) -> BatchOutcome {
        let (session, reply, new_browser) = self.handshake_reply(message, link).await;
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
        link: &Link,
    ) -> (Option<ServerSession>, Option<Message>, Option<Arc<str>>) {
        let mut reply = Message::reply_to(&message);
        let offered = &self.inner.config.connection_types;
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
        let (browser, new_browser) = match (&link.browser, link.carrier) {
            (Some(browser), _) => (Some(browser.clone()), None),
            (None, Carrier::Stream) => (None, None),
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
            self.inner.new_session_id(),
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
                self.ensure_started();
                if let Some(ready) = self.inner.broker.ready() {
                    let _ = tokio::time::timeout(super::broker::BROKER_WAIT, ready).await;
                }
                session.0.state.lock().expire_at = Some(self.inner.expiry_from(Instant::now()));
                self.inner.register(&session).err().map(|error| {
                    // Full: try again once sessions had time to expire.
                    let retry_in = self.inner.config.max_interval_ms();
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
}
