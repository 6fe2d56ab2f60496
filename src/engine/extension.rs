//! Extensions: hooks on every message in and out, server-wide or per session.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;

use crate::protocol::Message;

use super::{BoxFuture, Inner, ServerSession};

/// A server-wide extension: sees every message a client sends before the engine handles it, and
/// every message the server sends.
///
/// Incoming, extensions run in the order they were added, server extensions before session
/// ones; outgoing, in reverse order, server extensions before session ones. Both hooks may edit
/// the message (typically its `ext`) or drop it by returning `false`.
///
/// An extension that panics is contained: the panic is logged and the message goes on as the
/// extension left it.
///
/// The request behind a message is reachable through
/// [`context::current()`](crate::context::current) in both hooks: for an incoming message and
/// its reply, the request that carried it (over websocket, the upgrade request), also when the
/// reply is a held `/meta/connect`'s sent later; for a broadcast, the request of the client
/// that published it (none for a publish made by the server).
///
/// ```
/// use tower_bayeux::{Extension, Message, ServerSession};
///
/// /// Tags every message the server sends with the server's name.
/// struct Tag;
///
/// impl Extension for Tag {
///     async fn outgoing(
///         &self,
///         _session: Option<&ServerSession>,
///         _request: Option<&Message>,
///         message: &mut Message,
///     ) -> bool {
///         message.ext_mut().insert("server".into(), "eu-1".into());
///         true
///     }
/// }
///
/// let bayeux = tower_bayeux::Bayeux::builder().extension(Tag).build();
/// # let _ = bayeux;
/// ```
pub trait Extension: Send + Sync + 'static {
    /// Called for every message a client sends, before the engine handles it. `session` is the
    /// sender's session: for a handshake, the session being created (an extension may add
    /// [session extensions](ServerSession::add_extension) to it, which then see this handshake
    /// too); `None` when the message names no live session.
    ///
    /// Returning `false` drops the message: the client gets `404::message_deleted`.
    fn incoming(
        &self,
        session: Option<&ServerSession>,
        message: &mut Message,
    ) -> impl Future<Output = bool> + Send {
        let _ = (session, message);
        async { true }
    }

    /// Called for every message the server sends:
    /// - a reply: `request` is the message it answers, `session` the client's session;
    /// - a message delivered to one session: `session` is the recipient;
    /// - a broadcast: once per publish whatever the number of subscribers, with `session`
    ///   `None`, so its serialised form is shared by every recipient.
    ///
    /// Returning `false` drops the message: a dropped reply is not sent, a dropped broadcast
    /// reaches nobody and its publisher's reply becomes `404::message_deleted`.
    fn outgoing(
        &self,
        session: Option<&ServerSession>,
        request: Option<&Message>,
        message: &mut Message,
    ) -> impl Future<Output = bool> + Send {
        let _ = (session, request, message);
        async { true }
    }
}

/// An extension attached to one session (with [`ServerSession::add_extension`]): sees that
/// session's incoming messages and the messages sent to it.
///
/// Broadcasts are serialised once for all recipients; a session with session extensions gets
/// its own copy, edited by its extensions, so keep them for sessions that need them.
pub trait SessionExtension: Send + Sync + 'static {
    /// Called for every message the session's client sends, after the server extensions.
    /// Returning `false` drops it (`404::message_deleted`).
    fn incoming(
        &self,
        session: &ServerSession,
        message: &mut Message,
    ) -> impl Future<Output = bool> + Send {
        let _ = (session, message);
        async { true }
    }

    /// Called for every message sent to the session (replies, with the `request` they answer,
    /// and deliveries), after the server extensions. Returning `false` drops it.
    fn outgoing(
        &self,
        session: &ServerSession,
        request: Option<&Message>,
        message: &mut Message,
    ) -> impl Future<Output = bool> + Send {
        let _ = (session, request, message);
        async { true }
    }
}

pub(crate) trait ErasedExtension: Send + Sync + 'static {
    fn incoming<'a>(
        &'a self,
        session: Option<&'a ServerSession>,
        message: &'a mut Message,
    ) -> BoxFuture<'a, bool>;
    fn outgoing<'a>(
        &'a self,
        session: Option<&'a ServerSession>,
        request: Option<&'a Message>,
        message: &'a mut Message,
    ) -> BoxFuture<'a, bool>;
    fn name(&self) -> &'static str;
}

impl<E: Extension> ErasedExtension for E {
    fn incoming<'a>(
        &'a self,
        session: Option<&'a ServerSession>,
        message: &'a mut Message,
    ) -> BoxFuture<'a, bool> {
        Box::pin(Extension::incoming(self, session, message))
    }

    fn outgoing<'a>(
        &'a self,
        session: Option<&'a ServerSession>,
        request: Option<&'a Message>,
        message: &'a mut Message,
    ) -> BoxFuture<'a, bool> {
        Box::pin(Extension::outgoing(self, session, request, message))
    }

    fn name(&self) -> &'static str {
        std::any::type_name::<E>()
    }
}

pub(crate) trait ErasedSessionExtension: Send + Sync + 'static {
    fn incoming<'a>(
        &'a self,
        session: &'a ServerSession,
        message: &'a mut Message,
    ) -> BoxFuture<'a, bool>;
    fn outgoing<'a>(
        &'a self,
        session: &'a ServerSession,
        request: Option<&'a Message>,
        message: &'a mut Message,
    ) -> BoxFuture<'a, bool>;
    fn name(&self) -> &'static str;
}

impl<E: SessionExtension> ErasedSessionExtension for E {
    fn incoming<'a>(
        &'a self,
        session: &'a ServerSession,
        message: &'a mut Message,
    ) -> BoxFuture<'a, bool> {
        Box::pin(SessionExtension::incoming(self, session, message))
    }

    fn outgoing<'a>(
        &'a self,
        session: &'a ServerSession,
        request: Option<&'a Message>,
        message: &'a mut Message,
    ) -> BoxFuture<'a, bool> {
        Box::pin(SessionExtension::outgoing(self, session, request, message))
    }

    fn name(&self) -> &'static str {
        std::any::type_name::<E>()
    }
}

/// Runs one extension hook; a panic is logged and counts as "keep the message".
async fn contained(name: &str, hook: &str, future: BoxFuture<'_, bool>) -> bool {
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(keep) => keep,
        Err(_) => {
            tracing::error!(
                extension = name,
                hook,
                "extension panicked; the message goes on"
            );
            true
        }
    }
}

impl Inner {
    /// Server then session extensions, incoming, in registration order.
    pub(crate) async fn extend_incoming(
        &self,
        session: Option<&ServerSession>,
        message: &mut Message,
    ) -> bool {
        for extension in &self.config.extensions {
            let future = extension.incoming(session, message);
            if !contained(extension.name(), "incoming", future).await {
                return false;
            }
        }
        match session {
            Some(session) => session.extend_incoming(message).await,
            None => true,
        }
    }

    /// Server then session extensions, outgoing, in reverse registration order.
    pub(crate) async fn extend_outgoing(
        &self,
        session: Option<&ServerSession>,
        request: Option<&Message>,
        message: &mut Message,
    ) -> bool {
        for extension in self.config.extensions.iter().rev() {
            let future = extension.outgoing(session, request, message);
            if !contained(extension.name(), "outgoing", future).await {
                return false;
            }
        }
        match session {
            Some(session) => session.extend_outgoing(request, message).await,
            None => true,
        }
    }

    pub(crate) fn has_extensions(&self) -> bool {
        !self.config.extensions.is_empty()
    }
}

/// The extensions of one session.
#[derive(Default)]
pub(crate) struct SessionExtensions {
    list: parking_lot::RwLock<Arc<Vec<Arc<dyn ErasedSessionExtension>>>>,
    /// Set once the first extension is added: every broadcast asks each recipient, and a plain
    /// load keeps that question off the lock's cache line when several threads publish to the
    /// same sessions.
    any: std::sync::atomic::AtomicBool,
}

impl SessionExtensions {
    pub(crate) fn add(&self, extension: Arc<dyn ErasedSessionExtension>) {
        let mut list = self.list.write();
        let mut next = Vec::clone(&list);
        next.push(extension);
        *list = Arc::new(next);
        self.any.store(true, std::sync::atomic::Ordering::Release);
    }

    pub(crate) fn snapshot(&self) -> Arc<Vec<Arc<dyn ErasedSessionExtension>>> {
        self.list.read().clone()
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.any.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl ServerSession {
    /// Adds an extension that sees this session's messages (see [`SessionExtension`]).
    /// Added by a server extension during the handshake, it already sees that handshake.
    pub fn add_extension(&self, extension: impl SessionExtension) {
        self.0.extensions.add(Arc::new(extension));
    }

    pub(crate) async fn extend_incoming(&self, message: &mut Message) -> bool {
        // Most sessions have none: not even the list's lock and reference count then.
        if self.0.extensions.is_empty() {
            return true;
        }
        // Re-read after each call: an extension may add another that must see this message.
        let mut index = 0;
        loop {
            let extensions = self.0.extensions.snapshot();
            let Some(extension) = extensions.get(index) else {
                return true;
            };
            let future = extension.incoming(self, message);
            if !contained(extension.name(), "incoming", future).await {
                return false;
            }
            index += 1;
        }
    }

    pub(crate) async fn extend_outgoing(
        &self,
        request: Option<&Message>,
        message: &mut Message,
    ) -> bool {
        if self.0.extensions.is_empty() {
            return true;
        }
        let extensions = self.0.extensions.snapshot();
        for extension in extensions.iter().rev() {
            let future = extension.outgoing(self, request, message);
            if !contained(extension.name(), "outgoing", future).await {
                return false;
            }
        }
        true
    }

    pub(crate) fn has_extensions(&self) -> bool {
        !self.0.extensions.is_empty()
    }
}
