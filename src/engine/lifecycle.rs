//! How sessions end and the engine stops: the sweeper, session removal (with its listeners,
//! off every hot path) and graceful shutdown.

use std::panic::AssertUnwindSafe;
use std::sync::Weak;
use std::sync::atomic::Ordering;

use futures_util::FutureExt;
use tokio::time::Instant;

use super::event::{RemoveReason, ServerEvent};
use super::{Engine, Inner, ServerSession, queue, session};

impl Engine {
    /// Starts the sweeper and the broker's background work if they are not running; needs a
    /// tokio runtime.
    pub(crate) fn ensure_started(&self) {
        self.inner.ensure_started();
    }

    /// See [`Bayeux::shutdown`](crate::Bayeux::shutdown).
    pub(crate) async fn shutdown(&self) {
        let inner = &self.inner;
        if !inner.closing.swap(true, Ordering::AcqRel) {
            tracing::info!(sessions = self.session_count(), "shutting down");
            for session in self.sessions() {
                inner.remove_session(&session, RemoveReason::Shutdown);
            }
            inner.shutdown.cancel();
            inner.tasks.close();
        }
        inner.tasks.wait().await;
        // Last, so that what the shutdown itself published (server-side publishes from
        // removal listeners) still leaves.
        inner.broker.stop();
    }
}

async fn sweep_loop(engine: Weak<Inner>, period: std::time::Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = engine.upgrade() else {
            return;
        };
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        inner.sweep();
    }
}

impl Inner {
    /// See [`Engine::ensure_started`].
    pub(crate) fn ensure_started(&self) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(sweep_loop(self.me.clone(), self.config.sweep_period));
        self.broker.start(self.me.clone());
    }

    /// Follows up on queueing a delivery: a full queue is reported to listeners, and under the
    /// disconnect policy its session removed. Returns whether the delivery was queued.
    pub(crate) fn queued(&self, session: &ServerSession, push: Option<queue::Push>) -> bool {
        use queue::Push;
        let Some(push) = push else {
            return false;
        };
        let dropped = match push {
            Push::Queued => 0,
            Push::Full => 1,
            Push::DroppedOldest { dropped, .. } => dropped,
        };
        self.counters.dropped(dropped);
        let full = matches!(push, Push::Full | Push::DroppedOldest { first: true, .. });
        if full {
            tracing::debug!(client_id = %session.id(), ?push, "session queue full");
            self.emit(&ServerEvent::QueueFull {
                session: session.clone(),
                policy: self.config.queue.policy,
            });
        }
        if push == Push::Full {
            self.remove_session(session, RemoveReason::QueueFull);
            return false;
        }
        true
    }

    /// Removes expired sessions and unused channels.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let expired: Vec<ServerSession> = self
            .sessions
            .read()
            .values()
            .filter(|session| {
                let state = session.0.state.lock();
                state.held.is_none() && state.expire_at.is_some_and(|at| at <= now)
            })
            .cloned()
            .collect();
        for session in expired {
            tracing::debug!(client_id = %session.id(), "session expired");
            self.remove_session(&session, RemoveReason::Timeout);
        }
        self.history.sweep();
        let removed = self.channels.write().sweep();
        for name in removed {
            self.emit(&ServerEvent::ChannelRemoved(name));
        }
    }

    /// Removes a session: unsubscribes it everywhere, wakes its held connect, and tells
    /// listeners: event listeners at once, session-removed listeners in a task of their own,
    /// so that neither the caller (a publisher whose message overflowed the session's queue,
    /// the sweeper) nor other sessions wait on them. Returns `false` if it was already removed.
    pub(crate) fn remove_session(&self, session: &ServerSession, reason: RemoveReason) -> bool {
        if self.sessions.write().remove(&session.0.id).is_none() {
            return false;
        }
        let (subscriptions, held, push) = {
            let mut state = session.0.state.lock();
            state.removed = Some(reason);
            state.expire_at = None;
            if reason == RemoveReason::QueueFull {
                // Nothing more goes to a client that could not keep up.
                state.queue.clear();
            }
            (
                std::mem::take(&mut state.subscriptions),
                state.held.take(),
                state.push.take(),
            )
        };
        if let Some(slot) = held {
            let _ = slot.wake.send(session::Wake::Removed);
        }
        if let Some(push) = push {
            // The connection writes what is left (a server-side /meta/disconnect).
            push.notify.notify_one();
        }
        if let Some(browser) = &session.0.browser {
            self.browsers.remove_session(browser);
        }
        {
            let mut channels = self.channels.write();
            for name in &subscriptions {
                if let Some(entry) = channels.get_mut(name)
                    && entry.subscribers.remove(&session.0.id).is_some()
                    && entry.subscribers.is_empty()
                {
                    self.broker.interest(name, false);
                }
            }
        }
        for channel in subscriptions {
            self.emit(&ServerEvent::Unsubscribed {
                session: session.clone(),
                channel,
                message: None,
            });
        }
        self.emit(&ServerEvent::SessionRemoved {
            session: session.clone(),
            reason,
        });
        let listeners = session.take_removed_listeners(reason);
        self.run_removed_listeners(session, reason, listeners);
        tracing::debug!(client_id = %session.id(), ?reason, "session removed");
        true
    }

    /// Runs session-removed listeners in a task of their own: in order, one after the other,
    /// each panic contained (as an extension's).
    pub(crate) fn run_removed_listeners(
        &self,
        session: &ServerSession,
        reason: RemoveReason,
        listeners: Vec<session::RemovedListener>,
    ) {
        if listeners.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                client_id = %session.id(),
                "session-removed listeners not run: no tokio runtime"
            );
            return;
        };
        let session = session.clone();
        self.tasks.spawn_on(
            async move {
                for listener in listeners {
                    let removed = session.clone();
                    let run = async move { listener(removed, reason).await };
                    if AssertUnwindSafe(run).catch_unwind().await.is_err() {
                        tracing::error!(
                            client_id = %session.id(),
                            "session-removed listener panicked"
                        );
                    }
                }
            },
            &runtime,
        );
    }

    /// A random reconnect interval for clients of a server shutting down.
    pub(crate) fn shutdown_interval_ms(&self) -> i64 {
        let jitter = u64::try_from(self.config.shutdown_jitter.as_millis()).unwrap_or(u64::MAX);
        if jitter == 0 {
            return 0;
        }
        let random = getrandom::u64().unwrap_or(jitter / 2);
        i64::try_from(random % jitter).unwrap_or(0)
    }
}
