//! The security policy: who may handshake, create channels, subscribe and publish.

use std::future::Future;

use crate::protocol::{ChannelName, Message};

use super::{BoxFuture, ServerSession};

/// Decides what clients may do. Every method is async and defaults to allowing.
///
/// The policy sees the client's message (with its `ext` and any custom fields, such as the
/// credentials of a handshake) and the session. The request that carried the message is
/// reachable through [`context::current()`](crate::context::current) in every method (over
/// websocket: the upgrade request), so an identity set by an outer auth layer can be checked;
/// one found at handshake can be kept on the session with
/// [`attributes`](ServerSession::attributes) for later decisions. The policy is not consulted
/// for server-side publishes and deliveries.
///
/// With several nodes (a broker), the policy runs on the node that holds the session asking:
/// a broadcast that another node allowed is delivered here without a second check.
///
/// ```
/// use tower_bayeux::{ChannelName, Message, SecurityPolicy, ServerSession, context};
///
/// /// Who an outer auth layer said the request came from (a request extension).
/// #[derive(Clone)]
/// struct User(String);
///
/// struct Policy;
///
/// impl SecurityPolicy for Policy {
///     async fn can_handshake(&self, session: &ServerSession, _message: &Message) -> bool {
///         let user = context::current().and_then(|ctx| ctx.extension::<User>().cloned());
///         match user {
///             Some(user) => {
///                 // Found once, kept with the session.
///                 session.attributes().insert(user);
///                 true
///             }
///             None => false,
///         }
///     }
///
///     async fn can_publish(&self, session: &ServerSession, _: &Message, channel: &ChannelName) -> bool {
///         let admin = session.attributes().get::<User>().is_some_and(|user| user.0 == "admin");
///         admin || !channel.as_str().starts_with("/readonly/")
///     }
/// }
///
/// let bayeux = tower_bayeux::Bayeux::builder().security_policy(Policy).build();
/// # let _ = bayeux;
/// ```
pub trait SecurityPolicy: Send + Sync + 'static {
    /// Whether the handshake `message` may create `session`. Denied handshakes get
    /// `403::handshake_denied` with `reconnect: none` advice.
    fn can_handshake(
        &self,
        session: &ServerSession,
        message: &Message,
    ) -> impl Future<Output = bool> + Send {
        let _ = (session, message);
        async { true }
    }

    /// Whether a client message may create `channel`, which does not exist yet (a publish to it
    /// or a subscription to it). Denied: `403::channel_denied` for publishes,
    /// `403::subscribe_denied` for subscriptions.
    fn can_create(
        &self,
        session: &ServerSession,
        message: &Message,
        channel: &ChannelName,
    ) -> impl Future<Output = bool> + Send {
        let _ = (session, message, channel);
        async { true }
    }

    /// Whether `session` may subscribe to `channel` (a name or a wildcard pattern). Denied:
    /// `403::subscribe_denied`.
    fn can_subscribe(
        &self,
        session: &ServerSession,
        message: &Message,
        channel: &ChannelName,
    ) -> impl Future<Output = bool> + Send {
        let _ = (session, message, channel);
        async { true }
    }

    /// Whether `session` may publish `message` to `channel` (a broadcast or a service channel).
    /// Denied: `403::publish_denied`.
    fn can_publish(
        &self,
        session: &ServerSession,
        message: &Message,
        channel: &ChannelName,
    ) -> impl Future<Output = bool> + Send {
        let _ = (session, message, channel);
        async { true }
    }
}

/// The object-safe form of [`SecurityPolicy`] the engine stores.
pub(crate) trait ErasedPolicy: Send + Sync + 'static {
    fn can_handshake<'a>(&'a self, s: &'a ServerSession, m: &'a Message) -> BoxFuture<'a, bool>;
    fn can_create<'a>(
        &'a self,
        s: &'a ServerSession,
        m: &'a Message,
        c: &'a ChannelName,
    ) -> BoxFuture<'a, bool>;
    fn can_subscribe<'a>(
        &'a self,
        s: &'a ServerSession,
        m: &'a Message,
        c: &'a ChannelName,
    ) -> BoxFuture<'a, bool>;
    fn can_publish<'a>(
        &'a self,
        s: &'a ServerSession,
        m: &'a Message,
        c: &'a ChannelName,
    ) -> BoxFuture<'a, bool>;
}

impl<P: SecurityPolicy> ErasedPolicy for P {
    fn can_handshake<'a>(&'a self, s: &'a ServerSession, m: &'a Message) -> BoxFuture<'a, bool> {
        Box::pin(SecurityPolicy::can_handshake(self, s, m))
    }

    fn can_create<'a>(
        &'a self,
        s: &'a ServerSession,
        m: &'a Message,
        c: &'a ChannelName,
    ) -> BoxFuture<'a, bool> {
        Box::pin(SecurityPolicy::can_create(self, s, m, c))
    }

    fn can_subscribe<'a>(
        &'a self,
        s: &'a ServerSession,
        m: &'a Message,
        c: &'a ChannelName,
    ) -> BoxFuture<'a, bool> {
        Box::pin(SecurityPolicy::can_subscribe(self, s, m, c))
    }

    fn can_publish<'a>(
        &'a self,
        s: &'a ServerSession,
        m: &'a Message,
        c: &'a ChannelName,
    ) -> BoxFuture<'a, bool> {
        Box::pin(SecurityPolicy::can_publish(self, s, m, c))
    }
}
