//! The engine's settings (users set them on [`BayeuxBuilder`](crate::BayeuxBuilder)).

use std::sync::Arc;
use std::time::Duration;

use crate::protocol::ChannelName;

use super::broker::Broker;
use super::extension::ErasedExtension;
use super::history::Retention;
use super::policy::ErasedPolicy;
use super::queue::{QueueFullPolicy, QueueLimits};

/// Engine settings, fixed when the engine is built.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) timeout: Duration,
    pub(crate) interval: Duration,
    pub(crate) max_interval: Duration,
    pub(crate) sweep_period: Duration,
    pub(crate) max_sessions_per_browser: Option<usize>,
    pub(crate) multi_session_interval: Duration,
    pub(crate) max_channel_length: usize,
    pub(crate) max_subscriptions_per_session: usize,
    pub(crate) max_sessions_per_cookie: Option<usize>,
    pub(crate) max_sessions: Option<usize>,
    pub(crate) queue: QueueLimits,
    pub(crate) shutdown_jitter: Duration,
    pub(crate) meta_connect_delivery_only: bool,
    pub(crate) policy: Option<Arc<dyn ErasedPolicy>>,
    pub(crate) extensions: Vec<Arc<dyn ErasedExtension>>,
    /// `None`: a single node.
    pub(crate) broker: Option<Arc<dyn Broker>>,
    /// Channel patterns with history, the first match applying.
    pub(crate) history: Vec<(ChannelName, Retention)>,
    pub(crate) max_history_bytes: usize,
    /// The connection types the transports offer, for the handshake reply.
    pub(crate) connection_types: Vec<&'static str>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(20),
            interval: Duration::ZERO,
            max_interval: Duration::from_secs(10),
            sweep_period: Duration::from_secs(1),
            max_sessions_per_browser: Some(1),
            multi_session_interval: Duration::from_secs(2),
            max_channel_length: 256,
            max_subscriptions_per_session: 1000,
            max_sessions_per_cookie: Some(100),
            max_sessions: None,
            queue: QueueLimits {
                max_messages: 1000,
                max_bytes: 1024 * 1024,
                policy: QueueFullPolicy::DropOldest,
            },
            shutdown_jitter: Duration::from_secs(5),
            meta_connect_delivery_only: true,
            policy: None,
            extensions: Vec::new(),
            broker: None,
            history: Vec::new(),
            max_history_bytes: 64 * 1024 * 1024,
            connection_types: vec!["long-polling"],
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Config {
    pub(crate) fn timeout_ms(&self) -> i64 {
        millis(self.timeout)
    }

    pub(crate) fn interval_ms(&self) -> i64 {
        millis(self.interval)
    }

    pub(crate) fn multi_session_interval_ms(&self) -> i64 {
        millis(self.multi_session_interval)
    }

    pub(crate) fn max_interval_ms(&self) -> i64 {
        millis(self.max_interval)
    }

    /// How long a client may go without a connect before its session expires, counted from its
    /// last connect reply: what a connection that hears nothing for that long can give up after.
    #[cfg(feature = "websocket")]
    pub(crate) fn session_lifetime(&self) -> Duration {
        self.timeout + self.interval + self.max_interval
    }
}
