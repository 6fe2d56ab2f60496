//! The engine's [`Stats`] through the [`metrics`] facade (feature `metrics`).

use std::sync::Once;

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::{Bayeux, Stats};

impl Bayeux {
    /// Records [`Bayeux::stats`] into the [`metrics`] facade's recorder (feature `metrics`),
    /// for whichever exporter the application installs (Prometheus, StatsD, OpenTelemetry…).
    /// Counters are set to the engine's running totals (`absolute`), gauges to what it holds
    /// now.
    ///
    /// Nothing is recorded on the hot path: call this where the exporter reads the values
    /// (before a Prometheus scrape is rendered) or on an interval (push exporters).
    ///
    /// | Name | Kind | What |
    /// | --- | --- | --- |
    /// | `bayeux_sessions` | gauge, label `transport` (`long-polling`, `callback-polling`, `websocket`, `unconnected`) | live sessions |
    /// | `bayeux_channels` | gauge | channels with subscribers or listeners |
    /// | `bayeux_subscriptions` | gauge | subscriptions to channels and patterns |
    /// | `bayeux_browsers` | gauge | browser cookies with sessions |
    /// | `bayeux_queued_messages` | gauge | messages waiting for their sessions |
    /// | `bayeux_held_connects` | gauge | `/meta/connect`s held now |
    /// | `bayeux_websocket_connections` | gauge | open websocket connections |
    /// | `bayeux_messages_published_total` | counter | messages broadcast from this node |
    /// | `bayeux_messages_delivered_total` | counter | broadcast messages queued for this node's subscribers |
    /// | `bayeux_messages_dropped_total` | counter | messages dropped from full session queues |
    /// | `bayeux_history_channels`, `bayeux_history_messages`, `bayeux_history_bytes` | gauges | retained history |
    /// | `bayeux_broker_connected` | gauge (0 or 1) | with a broker: connected now |
    /// | `bayeux_broker_subscriptions` | gauge | channels this node follows at the broker |
    /// | `bayeux_broker_messages_out_total`, `bayeux_broker_messages_in_total` | counters | broadcasts and deliveries sent to / received from other nodes |
    /// | `bayeux_broker_dropped_out_total`, `bayeux_broker_dropped_in_total` | counters | of those, lost (broker unreachable, buffers full) |
    /// | `bayeux_broker_reconnects_total` | counter | reconnections to the broker |
    /// | `bayeux_broker_recovered_total` | counter | missed messages read back from history |
    ///
    /// ```
    /// # async fn run(bayeux: tower_bayeux::Bayeux) {
    /// // A push exporter: record every 10 seconds.
    /// let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
    /// loop {
    ///     every.tick().await;
    ///     bayeux.record_metrics();
    /// }
    /// # }
    /// ```
    pub fn record_metrics(&self) {
        record(&self.stats());
    }
}

fn record(stats: &Stats) {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(describe);
    let by_transport = &stats.sessions_by_transport;
    for (transport, count) in [
        ("long-polling", by_transport.long_polling),
        ("callback-polling", by_transport.callback_polling),
        ("websocket", by_transport.websocket),
        ("unconnected", by_transport.unconnected),
    ] {
        gauge!("bayeux_sessions", "transport" => transport).set(count as f64);
    }
    gauge!("bayeux_channels").set(stats.channels as f64);
    gauge!("bayeux_subscriptions").set(stats.subscriptions as f64);
    gauge!("bayeux_browsers").set(stats.browsers as f64);
    gauge!("bayeux_queued_messages").set(stats.queued_messages as f64);
    gauge!("bayeux_held_connects").set(stats.held_connects as f64);
    gauge!("bayeux_websocket_connections").set(stats.websocket_connections as f64);
    counter!("bayeux_messages_published_total").absolute(stats.messages_published);
    counter!("bayeux_messages_delivered_total").absolute(stats.messages_delivered);
    counter!("bayeux_messages_dropped_total").absolute(stats.messages_dropped);
    gauge!("bayeux_history_channels").set(stats.history_channels as f64);
    gauge!("bayeux_history_messages").set(stats.history_messages as f64);
    gauge!("bayeux_history_bytes").set(stats.history_bytes as f64);
    if let Some(broker) = &stats.broker {
        gauge!("bayeux_broker_connected").set(if broker.connected { 1.0 } else { 0.0 });
        gauge!("bayeux_broker_subscriptions").set(broker.subscriptions as f64);
        counter!("bayeux_broker_messages_out_total").absolute(broker.messages_out);
        counter!("bayeux_broker_messages_in_total").absolute(broker.messages_in);
        counter!("bayeux_broker_dropped_out_total").absolute(broker.dropped_out);
        counter!("bayeux_broker_dropped_in_total").absolute(broker.dropped_in);
        counter!("bayeux_broker_reconnects_total").absolute(broker.reconnects);
        counter!("bayeux_broker_recovered_total").absolute(broker.recovered);
    }
}

fn describe() {
    describe_gauge!(
        "bayeux_sessions",
        "Live Bayeux sessions, by the transport of their latest connect"
    );
    describe_gauge!("bayeux_channels", "Channels with subscribers or listeners");
    describe_gauge!(
        "bayeux_subscriptions",
        "Subscriptions to channels and patterns"
    );
    describe_gauge!("bayeux_browsers", "Browser cookies with live sessions");
    describe_gauge!(
        "bayeux_queued_messages",
        "Messages waiting for their sessions"
    );
    describe_gauge!("bayeux_held_connects", "Held /meta/connect requests");
    describe_gauge!("bayeux_websocket_connections", "Open websocket connections");
    describe_counter!(
        "bayeux_messages_published_total",
        "Messages broadcast from this node"
    );
    describe_counter!(
        "bayeux_messages_delivered_total",
        "Broadcast messages queued for this node's subscribers"
    );
    describe_counter!(
        "bayeux_messages_dropped_total",
        "Messages dropped from full session queues"
    );
    describe_gauge!("bayeux_history_channels", "Channels with a history");
    describe_gauge!(
        "bayeux_history_messages",
        "Messages retained in channel histories"
    );
    describe_gauge!(
        "bayeux_history_bytes",
        Unit::Bytes,
        "Cost of the retained messages, as counted against max_history_bytes"
    );
    describe_gauge!(
        "bayeux_broker_connected",
        "Whether the broker is connected (1) or not (0)"
    );
    describe_gauge!(
        "bayeux_broker_subscriptions",
        "Channels this node follows at the broker"
    );
    describe_counter!(
        "bayeux_broker_messages_out_total",
        "Broadcasts and deliveries sent to other nodes"
    );
    describe_counter!(
        "bayeux_broker_messages_in_total",
        "Broadcasts and deliveries received from other nodes"
    );
    describe_counter!(
        "bayeux_broker_dropped_out_total",
        "Messages that could not be sent to other nodes"
    );
    describe_counter!(
        "bayeux_broker_dropped_in_total",
        "Messages from other nodes dropped by a full inbound buffer"
    );
    describe_counter!(
        "bayeux_broker_reconnects_total",
        "Reconnections to the broker"
    );
    describe_counter!(
        "bayeux_broker_recovered_total",
        "Missed messages read back from channel history"
    );
}
