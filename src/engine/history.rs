//! Channel history: the last messages of the channels configured for it, kept in memory, with
//! a position (`offset`, `epoch`) on every message, so that a client that was away can ask for
//! what it missed.
//!
//! - A channel's first message has offset 1; each next one, one more. The epoch names one
//!   unbroken run of offsets: a new one starts whenever the channel's history is lost (a
//!   restart, or every retained message gone and the channel quiet for a while).
//! - Publishing on such a channel and subscribing to it with a position to resume from are
//!   ordered by the channel's lock (a striped async mutex): a subscriber is added and its
//!   replay taken from the history in one step that no publish on the channel can interleave
//!   with, so a message published meanwhile is either replayed or delivered live, never both,
//!   never neither.
//! - Memory: each retained message costs [`ENTRY_COST`] bytes plus its serialised JSON, which
//!   it shares with the queues of the sessions it was delivered to, and each channel with
//!   history [`CHANNEL_COST`]. Per channel the retention bounds it (count, age); in total
//!   `max_history_bytes`, past which the oldest messages of all channels go first (and a
//!   channel left without messages with them).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::protocol::ChannelName;

use super::session::Delivery;

/// How much of a channel's history to keep: the last messages, those younger than an age, or
/// both (whichever keeps fewer).
///
/// ```
/// use std::time::Duration;
/// use tower_bayeux::{Bayeux, Retention};
///
/// let bayeux = Bayeux::builder()
///     .history("/chat/**", Retention::last(100).max_age(Duration::from_secs(600)))
///     .build();
/// # let _ = bayeux;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    max_messages: Option<usize>,
    max_age: Option<Duration>,
}

impl Retention {
    /// Keeps the last `messages` messages (at least one).
    pub fn last(messages: usize) -> Self {
        Self {
            max_messages: Some(messages.max(1)),
            max_age: None,
        }
    }

    /// Keeps the messages younger than `age`, however many.
    pub fn younger_than(age: Duration) -> Self {
        Self {
            max_messages: None,
            max_age: Some(age),
        }
    }

    /// Also drops messages older than `age`.
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// The most messages kept, if bounded by count.
    pub fn max_messages(&self) -> Option<usize> {
        self.max_messages
    }

    /// The oldest a message kept may be, if bounded by age.
    pub fn age(&self) -> Option<Duration> {
        self.max_age
    }
}

/// A channel's history as [`Bayeux::history`](crate::Bayeux::history) returns it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HistoryPage {
    /// The channel's current epoch.
    pub epoch: String,
    /// The offset of the channel's latest message (0 before its first).
    pub offset: u64,
    /// Whether `messages` are every message after the position asked for: `false` when the
    /// epoch asked for is not the current one or a message after that offset is no longer
    /// retained, and then `messages` is empty.
    pub recovered: bool,
    /// The retained messages after the position asked for, oldest first, each with its
    /// `ext.history`.
    pub messages: Vec<crate::Message>,
}

/// The position of one message: its offset in its channel's epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) offset: u64,
    pub(crate) epoch: Arc<str>,
}

impl Position {
    /// `{"offset": N, "epoch": "E"}`.
    pub(crate) fn to_json(&self) -> Value {
        json!({"offset": self.offset, "epoch": &*self.epoch})
    }
}

/// Where a client asks to resume from (`ext.history` of its `/meta/subscribe`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Since {
    pub(crate) offset: u64,
    /// `None`: any epoch (the caller knows offsets only).
    pub(crate) epoch: Option<String>,
}

impl Since {
    /// Reads `ext.history = {"since": N, "epoch": "E"}`: `Ok(None)` without `since`, `Err` when
    /// it is malformed.
    pub(crate) fn from_ext(ext: Option<&Map<String, Value>>) -> Result<Option<Self>, ()> {
        let Some(history) = ext.and_then(|ext| ext.get("history")) else {
            return Ok(None);
        };
        let Some(since) = history.get("since") else {
            return Ok(None);
        };
        let offset = since.as_u64().ok_or(())?;
        let epoch = match history.get("epoch") {
            None | Some(Value::Null) => None,
            Some(Value::String(epoch)) => Some(epoch.clone()),
            Some(_) => return Err(()),
        };
        Ok(Some(Self { offset, epoch }))
    }
}

/// What to read of a channel's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// Its position only.
    Position,
    /// The messages after a position.
    After(Since),
    /// Every retained message.
    All,
}

/// What a subscription with history starts with.
pub(crate) struct Replay {
    pub(crate) epoch: Arc<str>,
    /// The latest offset.
    pub(crate) offset: u64,
    /// `None` when no position was asked for.
    pub(crate) recovered: Option<bool>,
    /// The messages to send first, oldest first.
    pub(crate) deliveries: Vec<Delivery>,
}

impl Replay {
    /// As the server API returns it.
    pub(crate) fn into_page(self) -> HistoryPage {
        HistoryPage {
            epoch: self.epoch.to_string(),
            offset: self.offset,
            recovered: self.recovered.unwrap_or(true),
            messages: messages(&self.deliveries),
        }
    }

    /// The subscribe reply's `ext.history`.
    pub(crate) fn to_json(&self) -> Value {
        let mut value = json!({"epoch": &*self.epoch, "offset": self.offset});
        if let Some(recovered) = self.recovered {
            value["recovered"] = Value::Bool(recovered);
        }
        value
    }
}

/// What one retained message costs besides its JSON: its entry, the allocation that shares
/// the JSON, and its place in the eviction order.
pub const ENTRY_COST: usize = 104;

/// What a channel with history costs besides its messages: its entry in the table, its state
/// and its epoch.
pub const CHANNEL_COST: usize = 160;

/// How many order locks the channels share.
const STRIPES: usize = 64;

/// How long a channel whose retained messages are all gone keeps its epoch and offset without
/// new messages.
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// The history of every channel with a retention rule.
pub(crate) struct History {
    rules: Vec<(ChannelName, Retention)>,
    max_bytes: usize,
    stripes: Box<[tokio::sync::Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
    store: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    channels: HashMap<ChannelName, Log>,
    /// Every retained message, oldest first, by channel and offset: what the total bound
    /// drops first. Entries of messages a channel already dropped are skipped (and compacted
    /// away once they are many).
    order: VecDeque<(ChannelName, u64)>,
    bytes: usize,
    retained: usize,
}

struct Log {
    epoch: Arc<str>,
    /// The offset of the latest message.
    offset: u64,
    retention: Retention,
    entries: VecDeque<Entry>,
    /// When the latest message came (or the log was made).
    active: Instant,
    /// A message has its position but is not appended yet.
    pending: bool,
}

struct Entry {
    offset: u64,
    at: Instant,
    delivery: Delivery,
}

impl Entry {
    fn cost(&self) -> usize {
        ENTRY_COST + self.delivery.json().len()
    }
}

/// What [`Stats`](super::Stats) reports of the history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HistoryStats {
    pub(crate) channels: usize,
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
}

impl History {
    pub(crate) fn new(rules: Vec<(ChannelName, Retention)>, max_bytes: usize) -> Self {
        Self {
            rules,
            max_bytes,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            store: Mutex::default(),
        }
    }

    /// The retention of `channel` (a literal channel): the first rule whose pattern matches.
    pub(crate) fn retention(&self, channel: &ChannelName) -> Option<Retention> {
        if self.rules.is_empty() || channel.is_wild() || !channel.is_broadcast() {
            return None;
        }
        self.rules
            .iter()
            .find(|(pattern, _)| pattern == channel || pattern.matches(channel))
            .map(|(_, retention)| *retention)
    }

    /// The lock that orders the publishes on `channel` and the subscriptions resuming on it.
    pub(crate) async fn lock(&self, channel: &ChannelName) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = (self.hasher.hash_one(channel.as_str()) % STRIPES as u64) as usize;
        self.stripes[stripe].lock().await
    }

    /// The position of the next message on `channel` (under its lock).
    pub(crate) fn next_position(&self, channel: &ChannelName, retention: Retention) -> Position {
        let now = Instant::now();
        let mut store = self.store.lock();
        let log = store.log(channel, retention, now);
        // Kept until `append`, even if the total bound must drop empty channels meanwhile.
        log.pending = true;
        Position {
            offset: log.offset + 1,
            epoch: log.epoch.clone(),
        }
    }

    /// Keeps the message at `position` (under the channel's lock, after
    /// [`next_position`](Self::next_position)).
    pub(crate) fn append(&self, channel: &ChannelName, position: &Position, delivery: Delivery) {
        let now = Instant::now();
        let mut store = self.store.lock();
        let Some(log) = store.channels.get_mut(channel) else {
            return;
        };
        if log.epoch != position.epoch {
            // Forgotten meanwhile (it cannot be, under the channel's lock; kept safe anyway).
            return;
        }
        log.offset = position.offset;
        log.active = now;
        log.pending = false;
        let entry = Entry {
            offset: position.offset,
            at: now,
            delivery,
        };
        let cost = entry.cost();
        log.entries.push_back(entry);
        let (freed, dropped) = log.trim(now);
        store.bytes = store.bytes + cost - freed;
        store.retained = store.retained + 1 - dropped;
        store.order.push_back((channel.clone(), position.offset));
        store.enforce(self.max_bytes);
    }

    /// The start of a subscription to `channel` (under its lock): its position, and what to
    /// replay after `since`.
    pub(crate) fn replay(
        &self,
        channel: &ChannelName,
        retention: Retention,
        read: &Read,
    ) -> Replay {
        let now = Instant::now();
        let mut store = self.store.lock();
        store.log(channel, retention, now);
        // A new channel counts against the bound too.
        store.enforce(self.max_bytes);
        let log = store.log(channel, retention, now);
        let mut replay = Replay {
            epoch: log.epoch.clone(),
            offset: log.offset,
            recovered: None,
            deliveries: Vec::new(),
        };
        match read {
            Read::Position => {}
            Read::After(since) => {
                let (recovered, deliveries) = log.after(since);
                replay.recovered = Some(recovered);
                replay.deliveries = deliveries;
            }
            Read::All => {
                replay.recovered = Some(true);
                replay.deliveries = log.entries.iter().map(|e| e.delivery.clone()).collect();
            }
        }
        replay
    }

    /// Drops expired messages, and forgets channels left without messages for a while.
    pub(crate) fn sweep(&self) {
        if self.rules.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut store = self.store.lock();
        let (mut freed, mut dropped) = (0, 0);
        store.channels.retain(|_, log| {
            let (f, d) = log.trim(now);
            freed += f;
            dropped += d;
            let keep = !log.entries.is_empty()
                || log.pending
                || now.saturating_duration_since(log.active) < FORGET_AFTER;
            if !keep {
                freed += CHANNEL_COST;
            }
            keep
        });
        store.bytes -= freed;
        store.retained -= dropped;
        store.compact();
    }

    pub(crate) fn stats(&self) -> HistoryStats {
        let store = self.store.lock();
        HistoryStats {
            channels: store.channels.len(),
            messages: store.retained,
            bytes: store.bytes,
        }
    }
}

impl Store {
    fn log(&mut self, channel: &ChannelName, retention: Retention, now: Instant) -> &mut Log {
        let bytes = &mut self.bytes;
        self.channels.entry(channel.clone()).or_insert_with(|| {
            *bytes += CHANNEL_COST;
            Log {
                epoch: new_epoch(),
                offset: 0,
                retention,
                entries: VecDeque::new(),
                active: now,
                pending: false,
            }
        })
    }

    /// Drops the oldest messages of all channels until the total fits; a channel left without
    /// messages goes too (its next message starts a new epoch).
    fn enforce(&mut self, max_bytes: usize) {
        while self.bytes > max_bytes {
            let Some((channel, offset)) = self.order.pop_front() else {
                // Only channels without messages are left to drop.
                let bytes = &mut self.bytes;
                self.channels.retain(|_, log| {
                    let keep = !log.entries.is_empty() || log.pending;
                    if !keep {
                        *bytes -= CHANNEL_COST;
                    }
                    keep
                });
                break;
            };
            let Some(log) = self.channels.get_mut(&channel) else {
                continue;
            };
            if log
                .entries
                .front()
                .is_some_and(|entry| entry.offset == offset)
            {
                let entry = log.entries.pop_front().expect("a front entry");
                self.bytes -= entry.cost();
                self.retained -= 1;
                if log.entries.is_empty() && !log.pending {
                    self.channels.remove(&channel);
                    self.bytes -= CHANNEL_COST;
                }
            }
        }
        self.compact();
    }

    /// Removes the eviction order's entries of messages already dropped, once they outnumber
    /// the retained ones: amortised, the order stays within twice the retained messages.
    fn compact(&mut self) {
        if self.order.len() <= 2 * self.retained + 1024 {
            return;
        }
        let channels = &self.channels;
        self.order.retain(|(channel, offset)| {
            channels.get(channel).is_some_and(|log| {
                log.entries
                    .front()
                    .is_some_and(|entry| entry.offset <= *offset)
            })
        });
    }
}

impl Log {
    /// Drops what the retention no longer keeps; returns the bytes and messages freed.
    fn trim(&mut self, now: Instant) -> (usize, usize) {
        let (mut freed, mut dropped) = (0, 0);
        let too_many = |log: &Self| {
            log.retention
                .max_messages
                .is_some_and(|max| log.entries.len() > max)
        };
        let too_old = |log: &Self| {
            log.retention.max_age.is_some_and(|age| {
                log.entries
                    .front()
                    .is_some_and(|entry| now.saturating_duration_since(entry.at) > age)
            })
        };
        while too_many(self) || too_old(self) {
            let entry = self.entries.pop_front().expect("a front entry");
            freed += entry.cost();
            dropped += 1;
        }
        (freed, dropped)
    }

    /// Whether every message after `since` is retained, and if so those messages.
    fn after(&self, since: &Since) -> (bool, Vec<Delivery>) {
        after(
            since,
            &self.epoch,
            self.offset,
            self.entries
                .iter()
                .map(|entry| (entry.offset, &entry.delivery)),
        )
    }
}

/// Whether every message of a channel after `since` is among `retained` (its retained
/// messages, oldest first, the latest being `latest` in `epoch`), and if so those messages.
pub(crate) fn after<'a>(
    since: &Since,
    epoch: &str,
    latest: u64,
    retained: impl Iterator<Item = (u64, &'a Delivery)>,
) -> (bool, Vec<Delivery>) {
    if since.epoch.as_deref().is_some_and(|asked| asked != epoch) || since.offset > latest {
        return (false, Vec::new());
    }
    let mut deliveries = Vec::new();
    // The next offset the client needs.
    let mut next = since.offset + 1;
    for (offset, delivery) in retained {
        if offset < next {
            continue;
        }
        if offset > next {
            // A message after `since` is gone.
            return (false, Vec::new());
        }
        deliveries.push(delivery.clone());
        next += 1;
    }
    if next <= latest {
        return (false, Vec::new());
    }
    (true, deliveries)
}

/// A broadcast serialised around the place of its position: `prefix`, then
/// `{"offset":N,"epoch":"E"}`, then `suffix` is the message with its `ext.history`, for a
/// broker that gives the position itself.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct Unpositioned {
    pub(crate) prefix: Bytes,
    pub(crate) suffix: Bytes,
}

impl Unpositioned {
    pub(crate) fn new(message: &crate::Message) -> Self {
        // A marker no message can contain: random per process.
        static MARKER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let marker = MARKER.get_or_init(|| format!("\u{0}{}", super::random_id()));
        let mut marked = message.clone();
        marked
            .ext
            .get_or_insert_with(Map::new)
            .insert("history".to_owned(), Value::String(marker.clone()));
        let json = Bytes::from(marked.to_json());
        let needle = serde_json::to_vec(marker).unwrap_or_default();
        let at = json
            .windows(needle.len())
            .position(|window| window == needle.as_slice())
            .expect("the marker is in the message");
        Self {
            prefix: json.slice(..at),
            suffix: json.slice(at + needle.len()..),
        }
    }
}

/// 64 random bits as 16 hex digits.
fn new_epoch() -> Arc<str> {
    let random = getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    Arc::from(format!("{random:016x}"))
}

/// The `ext.history` of a message at `position`, added to the ext it has.
pub(crate) fn stamp(ext: &mut Option<Map<String, Value>>, position: &Position) {
    ext.get_or_insert_with(Map::new)
        .insert("history".to_owned(), position.to_json());
}

/// The messages of `deliveries`, parsed back (for the server API).
fn messages(deliveries: &[Delivery]) -> Vec<crate::Message> {
    deliveries
        .iter()
        .filter_map(|delivery| {
            let json: &Bytes = delivery.json();
            crate::protocol::parse_messages(json).ok()?.pop()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(n: u64) -> Delivery {
        Delivery::from_json(Bytes::from(format!(r#"{{"channel":"/a","data":{n}}}"#)))
    }

    fn publish(history: &History, channel: &ChannelName, n: u64) -> Position {
        let retention = history.retention(channel).unwrap();
        let position = history.next_position(channel, retention);
        history.append(channel, &position, delivery(n));
        position
    }

    fn since(offset: u64, epoch: &str) -> Since {
        Since {
            offset,
            epoch: Some(epoch.to_owned()),
        }
    }

    fn data(replay: &[Delivery]) -> Vec<String> {
        replay
            .iter()
            .map(|d| String::from_utf8(d.json().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn offsets_count_from_one_per_channel_and_the_epoch_stays() {
        let history = History::new(
            vec![(ChannelName::from_static("/a/**"), Retention::last(10))],
            1 << 20,
        );
        let (a, b) = (
            ChannelName::from_static("/a/x"),
            ChannelName::from_static("/a/y"),
        );
        let first = publish(&history, &a, 1);
        assert_eq!(first.offset, 1);
        assert_eq!(publish(&history, &a, 2).offset, 2);
        assert_eq!(publish(&history, &b, 1).offset, 1, "per channel");
        assert_eq!(publish(&history, &a, 3).epoch, first.epoch);
        assert!(history.retention(&ChannelName::from_static("/b")).is_none());
        assert!(
            history
                .retention(&ChannelName::from_static("/a/*"))
                .is_none(),
            "patterns have no history of their own"
        );
    }

    #[test]
    fn a_replay_is_every_message_after_the_position_or_nothing() {
        let history = History::new(
            vec![(ChannelName::from_static("/a"), Retention::last(3))],
            1 << 20,
        );
        let a = ChannelName::from_static("/a");
        let retention = Retention::last(3);
        let epoch = publish(&history, &a, 1).epoch;
        for n in 2..=5 {
            publish(&history, &a, n);
        }
        // Retained: 3, 4, 5.
        let replay = history.replay(&a, retention, &Read::After(since(3, &epoch)));
        assert_eq!(replay.recovered, Some(true));
        assert_eq!(replay.offset, 5);
        assert_eq!(data(&replay.deliveries).len(), 2);
        assert!(data(&replay.deliveries)[0].contains(":4}"));
        let replay = history.replay(&a, retention, &Read::After(since(2, &epoch)));
        assert_eq!(replay.recovered, Some(true), "3 is still there");
        assert_eq!(replay.deliveries.len(), 3);
        let replay = history.replay(&a, retention, &Read::After(since(1, &epoch)));
        assert_eq!(replay.recovered, Some(false), "2 is gone");
        assert!(replay.deliveries.is_empty());
        let replay = history.replay(&a, retention, &Read::After(since(5, &epoch)));
        assert_eq!((replay.recovered, replay.deliveries.len()), (Some(true), 0));
        let replay = history.replay(&a, retention, &Read::After(since(3, "other")));
        assert_eq!(replay.recovered, Some(false), "another epoch");
        let replay = history.replay(&a, retention, &Read::After(since(9, &epoch)));
        assert_eq!(replay.recovered, Some(false), "from the future");
        let replay = history.replay(&a, retention, &Read::Position);
        assert_eq!((replay.recovered, replay.offset), (None, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn old_messages_expire_and_a_quiet_empty_channel_is_forgotten() {
        let retention = Retention::younger_than(Duration::from_secs(10));
        let history = History::new(vec![(ChannelName::from_static("/a"), retention)], 1 << 20);
        let a = ChannelName::from_static("/a");
        let epoch = publish(&history, &a, 1).epoch;
        tokio::time::advance(Duration::from_secs(6)).await;
        publish(&history, &a, 2);
        tokio::time::advance(Duration::from_secs(6)).await;
        history.sweep();
        assert_eq!(history.stats().messages, 1);
        let replay = history.replay(&a, retention, &Read::After(since(0, &epoch)));
        assert_eq!(replay.recovered, Some(false), "1 expired");
        let replay = history.replay(&a, retention, &Read::After(since(1, &epoch)));
        assert_eq!(replay.deliveries.len(), 1);
        tokio::time::advance(Duration::from_secs(10)).await;
        history.sweep();
        assert_eq!(history.stats().messages, 0);
        assert_eq!(history.stats().channels, 1, "kept a while");
        tokio::time::advance(FORGET_AFTER).await;
        history.sweep();
        assert_eq!(history.stats(), HistoryStats::default(), "forgotten");
        assert_ne!(publish(&history, &a, 3).epoch, epoch, "a new epoch");
    }

    #[test]
    fn the_total_bound_drops_the_oldest_messages_of_all_channels() {
        let one = ENTRY_COST + delivery(1).json().len();
        let bound = 10 * (one + CHANNEL_COST);
        let history = History::new(
            vec![(ChannelName::from_static("/**"), Retention::last(1000))],
            bound,
        );
        let channel = |n: u64| ChannelName::new(format!("/c{}", n % 20)).unwrap();
        let first = publish(&history, &channel(0), 0);
        for n in 1..100 {
            publish(&history, &channel(n), n % 10);
        }
        // The newest ten messages fit, one on each of /c10 to /c19; the channels emptied by
        // the bound went with their last message.
        let stats = history.stats();
        assert_eq!(
            (stats.channels, stats.messages, stats.bytes),
            (10, 10, bound)
        );
        let newest = history.replay(&channel(19), Retention::last(1000), &Read::All);
        assert_eq!(newest.deliveries.len(), 1);
        // /c0 lost its history: its old position is not recovered.
        let replay = history.replay(
            &channel(0),
            Retention::last(1000),
            &Read::After(since(0, &first.epoch)),
        );
        assert_eq!((replay.recovered, replay.offset), (Some(false), 0));
        assert_ne!(replay.epoch, first.epoch);
        assert!(history.stats().bytes <= bound);
    }

    #[test]
    fn the_eviction_order_stays_bounded_when_channels_trim_themselves() {
        let history = History::new(
            vec![(ChannelName::from_static("/a"), Retention::last(2))],
            1 << 30,
        );
        let a = ChannelName::from_static("/a");
        for n in 0..10_000 {
            publish(&history, &a, n);
        }
        let store = history.store.lock();
        assert_eq!(store.retained, 2);
        assert!(
            store.order.len() <= 2 * 2 + 1024 + 1,
            "{}",
            store.order.len()
        );
    }

    #[test]
    fn since_is_read_from_the_subscribe_ext() {
        let ext = |value: Value| value.as_object().cloned();
        assert_eq!(Since::from_ext(None), Ok(None));
        assert_eq!(Since::from_ext(ext(json!({"ack": 1})).as_ref()), Ok(None));
        assert_eq!(
            Since::from_ext(ext(json!({"history": {"since": 4, "epoch": "e"}})).as_ref()),
            Ok(Some(since(4, "e")))
        );
        assert_eq!(
            Since::from_ext(ext(json!({"history": {"since": 4}})).as_ref()),
            Ok(Some(Since {
                offset: 4,
                epoch: None
            }))
        );
        for bad in [
            json!({"history": {"since": -1}}),
            json!({"history": {"since": "4"}}),
            json!({"history": {"since": 4, "epoch": 7}}),
        ] {
            assert_eq!(Since::from_ext(ext(bad).as_ref()), Err(()));
        }
    }
}
