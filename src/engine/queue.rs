//! A session's outgoing queue: bounded, with optional acknowledged delivery.

use std::collections::VecDeque;

use serde_json::json;

use crate::protocol::Message;

use super::session::Delivery;

/// What to do when a session's queue is full (a client that does not keep up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueueFullPolicy {
    /// Drop the oldest messages to make room, and tell the client where the gap is: a message
    /// `{"channel": "/meta/overflow", "data": {"dropped": N}}` is delivered in their place
    /// (listen with `cometd.addListener("/meta/overflow", ...)`).
    DropOldest,
    /// Remove the session; its client is told to handshake again.
    Disconnect,
}

/// The channel of the message that marks dropped messages.
pub(crate) const OVERFLOW_CHANNEL: &str = "/meta/overflow";

/// The bound of a session's queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueLimits {
    pub(crate) max_messages: usize,
    pub(crate) max_bytes: usize,
    pub(crate) policy: QueueFullPolicy,
}

/// What queueing a delivery did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push {
    Queued,
    /// Older messages were dropped to make room; `first` is set when the queue was not
    /// overflowing before (once per episode, until the client catches up).
    DroppedOldest {
        first: bool,
        /// How many were dropped for this one.
        dropped: usize,
    },
    /// The queue is full and the policy removes the session; nothing was queued.
    Full,
}

/// Acknowledged delivery: every connect reply closes a numbered batch, and a batch is kept (and
/// sent again) until a later connect acknowledges it.
struct Ack {
    /// The batch open now; numbers start at 1.
    batch: u64,
    /// Deliveries sent in batches not acknowledged yet, oldest first.
    unacked: VecDeque<(u64, Delivery)>,
}

pub(crate) struct Queue {
    pending: VecDeque<Delivery>,
    ack: Option<Ack>,
    /// Bytes of JSON held, pending and unacknowledged.
    bytes: usize,
    /// Messages dropped since the client was last told.
    dropped: u64,
    limits: QueueLimits,
}

impl Queue {
    pub(crate) fn new(limits: QueueLimits) -> Self {
        Self {
            pending: VecDeque::new(),
            ack: None,
            bytes: 0,
            dropped: 0,
            limits,
        }
    }

    /// Whether nothing new waits to be sent.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.dropped == 0
    }

    /// Messages held: pending and sent-but-unacknowledged.
    pub(crate) fn len(&self) -> usize {
        self.pending.len() + self.ack.as_ref().map_or(0, |ack| ack.unacked.len())
    }

    pub(crate) fn ack_enabled(&self) -> bool {
        self.ack.is_some()
    }

    pub(crate) fn enable_ack(&mut self) {
        self.ack.get_or_insert(Ack {
            batch: 1,
            unacked: VecDeque::new(),
        });
    }

    fn over(&self, extra: usize) -> bool {
        self.len() + 1 > self.limits.max_messages || self.bytes + extra > self.limits.max_bytes
    }

    /// Removes the oldest message held (unacknowledged ones first); `false` if there is none.
    fn drop_oldest(&mut self) -> bool {
        let oldest = match self.ack.as_mut().and_then(|ack| ack.unacked.pop_front()) {
            Some((_, delivery)) => Some(delivery),
            None => self.pending.pop_front(),
        };
        match oldest {
            Some(delivery) => {
                self.bytes -= delivery.json().len();
                self.dropped += 1;
                true
            }
            None => false,
        }
    }

    /// Queues `delivery` within the bound.
    pub(crate) fn push(&mut self, delivery: Delivery) -> Push {
        let size = delivery.json().len();
        let mut outcome = Push::Queued;
        if self.over(size) {
            if self.limits.policy == QueueFullPolicy::Disconnect {
                return Push::Full;
            }
            let first = self.dropped == 0;
            let mut dropped = 0;
            while self.over(size) && self.drop_oldest() {
                dropped += 1;
            }
            outcome = Push::DroppedOldest { first, dropped };
        }
        self.bytes += size;
        self.pending.push_back(delivery);
        outcome
    }

    /// Queues a delivery outside the bound (a server-side `/meta/disconnect`, which must reach
    /// the client whatever its queue holds).
    pub(crate) fn push_unbounded(&mut self, delivery: Delivery) {
        self.bytes += delivery.json().len();
        self.pending.push_back(delivery);
    }

    /// The overflow marker, if messages were dropped since the client was last told.
    fn take_marker(&mut self) -> Option<Delivery> {
        if self.dropped == 0 {
            return None;
        }
        let marker = Message::with_data(OVERFLOW_CHANNEL, json!({"dropped": self.dropped}));
        self.dropped = 0;
        Some(Delivery::new(&marker))
    }

    /// Takes what may ride on a response other than a connect reply: everything pending, unless
    /// deliveries are acknowledged (those travel only on connect replies).
    pub(crate) fn drain(&mut self) -> Vec<Delivery> {
        if self.ack.is_some() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.pending.len() + 1);
        out.extend(self.take_marker());
        self.bytes = 0;
        out.extend(self.pending.drain(..));
        out
    }

    /// Takes the deliveries of a connect reply. With acknowledged delivery, the pending ones join
    /// the current batch, every unacknowledged batch is sent (again), and the number of the batch
    /// the reply closes is returned.
    pub(crate) fn drain_for_connect(&mut self) -> (Vec<Delivery>, Option<u64>) {
        let marker = self.take_marker();
        let Some(ack) = self.ack.as_mut() else {
            let mut out = Vec::with_capacity(self.pending.len() + 1);
            out.extend(marker);
            self.bytes = 0;
            out.extend(self.pending.drain(..));
            return (out, None);
        };
        let batch = ack.batch;
        ack.batch += 1;
        // The marker travels once, where the gap is: ahead of what is still held.
        let mut out = Vec::with_capacity(ack.unacked.len() + self.pending.len() + 1);
        out.extend(marker);
        ack.unacked
            .extend(self.pending.drain(..).map(|delivery| (batch, delivery)));
        out.extend(ack.unacked.iter().map(|(_, d)| d.clone()));
        (out, Some(batch))
    }

    /// The client received every batch up to `batch`. Returns whether unacknowledged deliveries
    /// remain with nothing new pending (the connect should then return at once to resend them).
    pub(crate) fn acknowledge(&mut self, batch: u64) -> bool {
        let nothing_new = self.pending.is_empty();
        let Some(ack) = self.ack.as_mut() else {
            return false;
        };
        while ack.unacked.front().is_some_and(|(b, _)| *b <= batch) {
            if let Some((_, delivery)) = ack.unacked.pop_front() {
                self.bytes -= delivery.json().len();
            }
        }
        nothing_new && !ack.unacked.is_empty()
    }

    /// Forgets everything held.
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        if let Some(ack) = self.ack.as_mut() {
            ack.unacked.clear();
        }
        self.bytes = 0;
        self.dropped = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(n: usize) -> Delivery {
        Delivery::new(&Message::with_data("/a", json!(n)))
    }

    fn data(deliveries: &[Delivery]) -> Vec<String> {
        deliveries
            .iter()
            .map(|d| String::from_utf8(d.json().to_vec()).unwrap())
            .collect()
    }

    fn queue(max_messages: usize, policy: QueueFullPolicy) -> Queue {
        Queue::new(QueueLimits {
            max_messages,
            max_bytes: usize::MAX,
            policy,
        })
    }

    #[test]
    fn dropping_the_oldest_marks_the_gap_once() {
        let mut q = queue(3, QueueFullPolicy::DropOldest);
        for n in 0..3 {
            assert_eq!(q.push(delivery(n)), Push::Queued);
        }
        assert_eq!(
            q.push(delivery(3)),
            Push::DroppedOldest {
                first: true,
                dropped: 1
            }
        );
        assert_eq!(
            q.push(delivery(4)),
            Push::DroppedOldest {
                first: false,
                dropped: 1
            }
        );
        assert_eq!(q.len(), 3);
        assert_eq!(
            data(&q.drain()),
            [
                r#"{"channel":"/meta/overflow","data":{"dropped":2}}"#,
                r#"{"channel":"/a","data":2}"#,
                r#"{"channel":"/a","data":3}"#,
                r#"{"channel":"/a","data":4}"#,
            ]
        );
        assert_eq!(q.push(delivery(5)), Push::Queued);
        assert_eq!(data(&q.drain()), [r#"{"channel":"/a","data":5}"#]);
    }

    #[test]
    fn the_byte_bound_holds_too() {
        let one = delivery(0).json().len();
        let mut q = Queue::new(QueueLimits {
            max_messages: usize::MAX,
            max_bytes: one * 2,
            policy: QueueFullPolicy::DropOldest,
        });
        for n in 0..10 {
            q.push(delivery(n));
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.bytes, one * 2);
        q.drain();
        assert_eq!(q.bytes, 0);
    }

    #[test]
    fn the_disconnect_policy_refuses_past_the_bound() {
        let mut q = queue(1, QueueFullPolicy::Disconnect);
        assert_eq!(q.push(delivery(0)), Push::Queued);
        assert_eq!(q.push(delivery(1)), Push::Full);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn unacknowledged_messages_count_against_the_bound_and_go_first() {
        let mut q = queue(3, QueueFullPolicy::DropOldest);
        q.enable_ack();
        q.push(delivery(0));
        q.push(delivery(1));
        let (sent, batch) = q.drain_for_connect();
        assert_eq!((sent.len(), batch), (2, Some(1)));
        q.push(delivery(2));
        // Full: the oldest unacknowledged message goes.
        assert_eq!(
            q.push(delivery(3)),
            Push::DroppedOldest {
                first: true,
                dropped: 1
            }
        );
        let (sent, batch) = q.drain_for_connect();
        assert_eq!(batch, Some(2));
        assert_eq!(
            data(&sent),
            [
                r#"{"channel":"/meta/overflow","data":{"dropped":1}}"#,
                r#"{"channel":"/a","data":1}"#,
                r#"{"channel":"/a","data":2}"#,
                r#"{"channel":"/a","data":3}"#,
            ]
        );
        assert!(!q.acknowledge(2));
        assert_eq!((q.len(), q.bytes), (0, 0));
    }
}
