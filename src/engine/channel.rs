//! Server channels: subscribers, message listeners and the channel table.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde_json::Value;

use crate::context::RequestContext;
use crate::protocol::{ChannelName, Message};

use super::event::ServerEvent;
use super::{BoxFuture, Engine, Error, ListenerId, ServerSession};

pub(crate) type MessageListener =
    Arc<dyn Fn(MessageEvent) -> BoxFuture<'static, Verdict> + Send + Sync>;

#[derive(Default)]
pub(crate) struct ChannelEntry {
    pub(crate) subscribers: HashMap<Arc<str>, ServerSession>,
    pub(crate) listeners: Vec<(ListenerId, MessageListener)>,
}

impl ChannelEntry {
    fn is_unused(&self) -> bool {
        self.subscribers.is_empty() && self.listeners.is_empty()
    }
}

/// Every channel that has subscribers or listeners (or was used since the last sweep).
#[derive(Default)]
pub(crate) struct ChannelTable {
    entries: HashMap<ChannelName, ChannelEntry>,
}

impl ChannelTable {
    pub(crate) fn contains(&self, name: &ChannelName) -> bool {
        self.entries.contains_key(name)
    }

    /// Gets or creates an entry; the flag tells whether it was created.
    pub(crate) fn entry(&mut self, name: &ChannelName) -> (&mut ChannelEntry, bool) {
        let created = !self.entries.contains_key(name);
        (self.entries.entry(name.clone()).or_default(), created)
    }

    pub(crate) fn get_mut(&mut self, name: &ChannelName) -> Option<&mut ChannelEntry> {
        self.entries.get_mut(name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&ChannelEntry> {
        self.entries.get(name)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Subscriptions to all channels and patterns.
    pub(crate) fn subscriptions(&self) -> usize {
        self.entries.values().map(|e| e.subscribers.len()).sum()
    }

    pub(crate) fn names(&self) -> Vec<ChannelName> {
        self.entries.keys().cloned().collect()
    }

    /// The listeners for a message on `channel`: those of matching wildcard patterns first,
    /// then the channel's own. Meta messages reach only `/meta/...` patterns, so a listener on
    /// `/**` watches application traffic, not the protocol.
    pub(crate) fn listeners_for(&self, channel: &ChannelName) -> Vec<MessageListener> {
        let meta = channel.is_meta();
        let mut out = Vec::new();
        let mut push = |name: &str| {
            if meta && !name.starts_with("/meta/") {
                return;
            }
            if let Some(entry) = self.entries.get(name) {
                out.extend(entry.listeners.iter().map(|(_, l)| l.clone()));
            }
        };
        channel.for_each_wild_ancestor(&mut push);
        push(channel.as_str());
        out
    }

    /// Calls `f` with every session a message on `channel` goes to: subscribers of the channel
    /// and of every matching pattern, each session once.
    ///
    /// A session reached through several of them is kept at its first source: a subscriber of
    /// a later source is skipped when an earlier source's map holds its id. That costs a lookup
    /// per (subscriber, earlier source) pair, at most the channel's depth plus two sources, and
    /// no allocation besides the short list of sources; sessions are lent, not cloned.
    pub(crate) fn for_each_subscriber(
        &self,
        channel: &ChannelName,
        mut f: impl FnMut(&ServerSession),
    ) {
        // The channel itself, then its wild ancestors: at most `depth + 2` entries.
        let mut sources: Vec<&ChannelEntry> = Vec::new();
        let mut push = |name: &str| {
            if let Some(entry) = self.entries.get(name).filter(|e| !e.subscribers.is_empty()) {
                sources.push(entry);
            }
        };
        push(channel.as_str());
        channel.for_each_wild_ancestor(&mut push);
        for (k, entry) in sources.iter().enumerate() {
            let earlier = &sources[..k];
            for (id, session) in &entry.subscribers {
                if !earlier.iter().any(|e| e.subscribers.contains_key(id)) {
                    f(session);
                }
            }
        }
    }

    /// Removes unused channels, returning their names.
    pub(crate) fn sweep(&mut self) -> Vec<ChannelName> {
        let mut removed = Vec::new();
        self.entries.retain(|name, entry| {
            let unused = entry.is_unused();
            if unused {
                removed.push(name.clone());
            }
            !unused
        });
        removed
    }
}

/// A message a client published, as a channel listener sees it.
///
/// The listener reads the message, may edit it (a broadcast goes out as the last listener left
/// it) and the reply the client will get, and hands the event back with
/// [`proceed`](Self::proceed) or [`veto`](Self::veto).
pub struct MessageEvent {
    pub(crate) session: ServerSession,
    pub(crate) channel: ChannelName,
    pub(crate) message: Message,
    pub(crate) reply: Message,
    pub(crate) context: Option<RequestContext>,
}

impl fmt::Debug for MessageEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageEvent")
            .field("session", &self.session)
            .field("channel", &self.channel)
            .field("message", &self.message)
            .field("reply", &self.reply)
            .finish_non_exhaustive()
    }
}

impl MessageEvent {
    /// The session that sent the message.
    pub fn session(&self) -> &ServerSession {
        &self.session
    }

    /// The channel the message was published to (not the pattern the listener is on).
    pub fn channel(&self) -> &ChannelName {
        &self.channel
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The message, to edit before it is broadcast.
    pub fn message_mut(&mut self) -> &mut Message {
        &mut self.message
    }

    /// The message's `data`, or `Null`.
    pub fn data(&self) -> &Value {
        self.message.data.as_ref().unwrap_or(&Value::Null)
    }

    /// The message's `data` as a `T`, deserialised with serde (without copying the JSON); an
    /// error says what did not fit.
    ///
    /// ```
    /// # fn example(event: tower_bayeux::MessageEvent) -> tower_bayeux::Verdict {
    /// #[derive(serde::Deserialize)]
    /// struct Chat {
    ///     text: String,
    /// }
    ///
    /// match event.data_as::<Chat>() {
    ///     Ok(chat) if !chat.text.is_empty() => event.proceed(),
    ///     _ => event.veto(),
    /// }
    /// # }
    /// ```
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(self.data())
    }

    /// The reply the client will receive (`successful: true` unless a listener changes it).
    pub fn reply(&self) -> &Message {
        &self.reply
    }

    /// The reply, to edit (add `ext`, fail it, or set `data` to answer a client's
    /// `remoteCall`: a reply with data is sent as a message carrying the request's `id` and the
    /// data, followed by the plain reply, which is what the CometD clients expect).
    pub fn reply_mut(&mut self) -> &mut Message {
        &mut self.reply
    }

    /// The HTTP request that carried the message, when it came over HTTP. The same as
    /// [`context::current()`](crate::context::current) inside the listener, but it also
    /// survives being moved into spawned tasks.
    pub fn context(&self) -> Option<&RequestContext> {
        self.context.as_ref()
    }

    /// Lets the message go on to the next listener and then to subscribers.
    pub fn proceed(self) -> Verdict {
        Verdict {
            event: self,
            vetoed: false,
        }
    }

    /// Stops the message: no further listener sees it and it is not broadcast. Unless the
    /// listener failed the reply itself, the client gets `404::message_deleted`.
    pub fn veto(self) -> Verdict {
        Verdict {
            event: self,
            vetoed: true,
        }
    }
}

/// What a channel listener decided; made by [`MessageEvent::proceed`] or
/// [`MessageEvent::veto`].
#[derive(Debug)]
pub struct Verdict {
    pub(crate) event: MessageEvent,
    pub(crate) vetoed: bool,
}

impl Verdict {
    /// Whether the message was vetoed.
    pub fn is_veto(&self) -> bool {
        self.vetoed
    }
}

/// A channel on the server: add listeners to it, publish to it, list its subscribers.
///
/// A handle names a channel; the channel itself exists while it has subscribers or listeners.
/// Cheap to clone.
///
/// ```
/// # async fn example() -> Result<(), tower_bayeux::Error> {
/// use tower_bayeux::Bayeux;
///
/// let bayeux = Bayeux::builder().build();
/// let echo = bayeux.channel("/service/echo");
/// echo.add_listener(|event| async move {
///     let data = event.data().clone();
///     let _ = event.session().deliver("/service/echo", data).await;
///     event.proceed()
/// });
/// bayeux.channel("/news").publish(serde_json::json!({"headline": "hello"})).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ServerChannel {
    pub(crate) engine: Engine,
    pub(crate) name: ChannelName,
}

impl fmt::Debug for ServerChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ServerChannel").field(&self.name).finish()
    }
}

impl ServerChannel {
    /// The channel name.
    pub fn name(&self) -> &ChannelName {
        &self.name
    }

    /// Adds an async listener called for every message a client publishes to this channel (or,
    /// for a pattern such as `/chat/**`, to any channel it matches); listeners of patterns run
    /// before those of the exact channel, each in the order added. On a meta channel the
    /// listener sees the protocol message after the engine handled it, may edit the reply, and
    /// its verdict is ignored.
    ///
    /// Server-side publishes do not reach listeners. With several nodes (a broker), a message
    /// runs the listeners of the node its publisher's session is on, not those of the nodes it
    /// is then delivered on.
    pub fn add_listener<F, Fut>(&self, listener: F) -> ListenerId
    where
        F: Fn(MessageEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Verdict> + Send + 'static,
    {
        let id = ListenerId::next();
        let listener: MessageListener = Arc::new(move |event| Box::pin(listener(event)));
        let created = {
            let mut table = self.engine.inner.channels.write();
            let (entry, created) = table.entry(&self.name);
            entry.listeners.push((id, listener));
            created
        };
        if created {
            self.engine
                .inner
                .emit(&ServerEvent::ChannelAdded(self.name.clone()));
        }
        id
    }

    /// Adds a listener that gets a clone of `state` with every event: shared state (a
    /// database pool, the [`Bayeux`](crate::Bayeux) handle) without cloning it into the closure
    /// and again into each future. Otherwise as [`add_listener`](Self::add_listener).
    ///
    /// ```
    /// use tower_bayeux::Bayeux;
    ///
    /// let bayeux = Bayeux::builder().build();
    /// // Republishes what clients send to /service/shout on /shouts.
    /// bayeux.channel("/service/shout").add_listener_with_state(
    ///     bayeux.clone(),
    ///     |bayeux, event| async move {
    ///         let _ = bayeux.publish("/shouts", event.data().clone()).await;
    ///         event.proceed()
    ///     },
    /// );
    /// ```
    pub fn add_listener_with_state<S, F, Fut>(&self, state: S, listener: F) -> ListenerId
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(S, MessageEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Verdict> + Send + 'static,
    {
        self.add_listener(move |event| listener(state.clone(), event))
    }

    /// Removes a listener. Returns whether it was there.
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        let mut table = self.engine.inner.channels.write();
        let Some(entry) = table.get_mut(&self.name) else {
            return false;
        };
        let before = entry.listeners.len();
        entry
            .listeners
            .retain(|(listener_id, _)| *listener_id != id);
        before != entry.listeners.len()
    }

    /// The sessions subscribed to exactly this channel or pattern.
    pub fn subscribers(&self) -> Vec<ServerSession> {
        self.engine
            .inner
            .channels
            .read()
            .get(self.name.as_str())
            .map(|entry| entry.subscribers.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Publishes `data` from the server to this channel's subscribers and those of matching
    /// patterns. The security policy is not consulted.
    ///
    /// On a channel with history the answer holds the message's position
    /// ([`Published::position`]).
    ///
    /// Fails with [`Error::NotBroadcast`] for meta, service and wildcard channels: use
    /// [`ServerSession::deliver`] to answer on a service channel.
    pub async fn publish(&self, data: Value) -> Result<Published, Error> {
        self.publish_message(Message::with_data(self.name.as_str(), data))
            .await
    }

    /// Publishes a whole message (its `channel` is set to this channel; `id` and `clientId`
    /// are removed). Fails with [`Error::MessageDeleted`] if an extension dropped it.
    pub async fn publish_message(&self, mut message: Message) -> Result<Published, Error> {
        if !self.name.is_broadcast() || self.name.is_wild() {
            return Err(Error::NotBroadcast(self.name.clone()));
        }
        message.channel = self.name.as_str().to_owned();
        message.id = None;
        message.client_id = None;
        match self
            .engine
            .inner
            .broadcast(&self.name, message)
            .await
            .settled()
            .await
        {
            super::publish::Broadcasted::Sent(position) => Ok(Published {
                position: position.map(|p| HistoryPosition {
                    offset: p.offset,
                    epoch: p.epoch.to_string(),
                }),
            }),
            super::publish::Broadcasted::Dropped => Err(Error::MessageDeleted),
            super::publish::Broadcasted::Failed(err) => Err(err),
            super::publish::Broadcasted::Pending(_) => unreachable!("settled"),
        }
    }
}

/// What a server-side publish did, from [`ServerChannel::publish`] and
/// [`Bayeux::publish`](crate::Bayeux::publish).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The message's position in its channel's history (`None` on a channel without history):
    /// the `ext.history` its subscribers receive it with.
    pub position: Option<HistoryPosition>,
}

/// A message's position in its channel's history: `{"offset": N, "epoch": "E"}` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct HistoryPosition {
    /// 1 for the channel's first message, one more for each next one.
    pub offset: u64,
    /// Changes whenever the channel's history is lost.
    pub epoch: String,
}
