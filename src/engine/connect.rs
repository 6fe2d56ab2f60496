//! `/meta/connect`: holding it until messages come, its timeout, a newer connect or the
//! session's end, within the per-browser limit; and the reply that tells the client when to
//! come back.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::context::RequestContext;
use crate::protocol::{ErrorCode, Message, Reconnect};

use super::batch::{Link, Step};
use super::event::RemoveReason;
use super::session::{Delivery, HeldSlot, Wake};
use super::{Engine, ServerSession};

/// How a held connect ended.
#[expect(
    clippy::large_enum_variant,
    reason = "made once per connect and consumed at once; boxing would only add an allocation"
)]
pub(crate) enum ConnectEnd {
    /// A newer connect of the session took over: it will be answered, this one gets no reply
    /// (over HTTP, an error status).
    Displaced,
    /// Answer with the queued deliveries and the connect reply (`None` if an extension
    /// dropped it).
    Reply {
        queued: Vec<Delivery>,
        reply: Option<Message>,
    },
}

/// A held connect's request, and its reply until it is answered (`None` after).
struct Exchange {
    request: Message,
    reply: Option<Message>,
}

/// A `/meta/connect` waiting for messages, its timeout, a newer connect or the session's end.
///
/// Dropping it (the client went away) releases the long-poll and starts the session's expiry.
pub(crate) struct HeldConnect {
    engine: Engine,
    session: ServerSession,
    generation: u64,
    wake: oneshot::Receiver<Wake>,
    hold: Duration,
    /// Boxed: the wait's future keeps the held connect in more than one place.
    exchange: Box<Exchange>,
    /// The request context the connect arrived in.
    context: Option<RequestContext>,
    /// Shutdown waits until the connect has its reply.
    _tracked: TaskTrackerToken,
}

impl HeldConnect {
    pub(crate) async fn wait(mut self) -> ConnectEnd {
        let wake = self.woken().await;
        let reply = self.exchange.reply.take().unwrap_or_default();
        self.release();
        if wake == Some(Wake::Displaced) {
            return ConnectEnd::Displaced;
        }
        let mut reply = self.engine.finish_connect(&self.session, reply);
        let queued = self.session.drain_into_connect_reply(&mut reply);
        // The reply's extensions see the connect's request, as on any other reply. Only this
        // part is scoped: the wait above is polled at every wake-up of a websocket connection.
        // Boxed, with the reply moved in, and only with extensions: inline, their future and
        // the reply would take room in every held connect's for the whole wait.
        let inner = &self.engine.inner;
        let reply = if inner.has_extensions() || self.session.has_extensions() {
            let context = self.context.take();
            let session = &self.session;
            let request = &self.exchange.request;
            Box::pin(async move {
                let kept = RequestContext::scope_optional(
                    context,
                    inner.extend_outgoing(Some(session), Some(request), &mut reply),
                )
                .await;
                kept.then_some(reply)
            })
            .await
        } else {
            Some(reply)
        };
        ConnectEnd::Reply { queued, reply }
    }

    /// Waits for a wake-up that ends the hold (`None`: the timeout).
    async fn woken(&mut self) -> Option<Wake> {
        let deadline = Instant::now() + self.hold;
        loop {
            let wake = match tokio::time::timeout_at(deadline, &mut self.wake).await {
                Ok(Ok(wake)) => Some(wake),
                // The slot was dropped without a word: treat it as a wake-up and look at the
                // state.
                Ok(Err(_)) => Some(Wake::Messages),
                Err(_elapsed) => None,
            };
            if wake != Some(Wake::Messages) || !self.rearm() {
                return wake;
            }
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
            self.engine
                .inner
                .browsers
                .release_hold(browser, &self.session.0.id, self.generation);
        }
    }
}

impl Drop for HeldConnect {
    fn drop(&mut self) {
        if self.exchange.reply.is_some() {
            // Abandoned while held: the client is gone, so the session starts to expire.
            self.release();
            let mut state = self.session.0.state.lock();
            if state.removed.is_none() && state.held.is_none() {
                state.expire_at = Some(self.engine.inner.expiry_from(Instant::now()));
            }
        }
    }
}

impl Engine {
    pub(super) fn connect(
        &self,
        session: &ServerSession,
        message: Message,
        single: bool,
        link: &Link,
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
            state.transport = super::Transport::of_connect(message.connection_type.as_deref());
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
        let limited = session.0.browser.as_ref().filter(|_| link.carrier.polls());
        if let Some(browser) = limited
            && !self
                .inner
                .browsers
                .try_hold(browser, &session.0.id, generation)
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
                self.inner
                    .browsers
                    .release_hold(browser, &session.0.id, generation);
            }
            return Step::reply(message, self.finish_connect(session, reply));
        }
        tracing::trace!(hold_ms = hold.as_millis() as u64, "connect held");
        Step::Hold(HeldConnect {
            engine: self.clone(),
            session: session.clone(),
            generation,
            wake: rx,
            hold,
            exchange: Box::new(Exchange {
                request: message,
                reply: Some(reply),
            }),
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
}
