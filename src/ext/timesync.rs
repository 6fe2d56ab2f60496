//! Time synchronisation between client and server clocks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::{Extension, Message, ServerSession};

use super::ext;

/// Answers the CometD clients' `TimeSyncExtension`, which sends
/// `ext: {timesync: {tc, l, o}}` (client time, lag and offset it measured so far) on its meta
/// messages. The replies carry `ext: {timesync: {tc, ts, p, a}}`: the client's `tc` back, the
/// server time `ts` the request arrived, the time `p` the server spent before replying (a held
/// connect's hold included) and the accuracy `a = tc + o + l - ts` of the client's estimate, from
/// which the client works out its lag and its offset to the server's clock.
///
/// As the CometD servers, it answers when the client has no lag measured yet or its estimate is
/// off by at least the [accuracy target](Self::accuracy_target).
#[derive(Clone, Copy, Debug)]
pub struct TimesyncExtension {
    accuracy_target: Duration,
}

impl Default for TimesyncExtension {
    fn default() -> Self {
        Self {
            accuracy_target: Duration::from_millis(25),
        }
    }
}

impl TimesyncExtension {
    /// The extension with the default accuracy target (25 ms).
    pub fn new() -> Self {
        Self::default()
    }

    /// How far off the client's estimate must be before the server answers again; zero answers
    /// every message.
    ///
    /// Default: 25 ms.
    pub fn accuracy_target(mut self, target: Duration) -> Self {
        self.accuracy_target = target;
        self
    }
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn number(value: &Value, key: &str) -> Option<i64> {
    let field = value.get(key)?;
    field.as_i64().or_else(|| field.as_f64().map(|f| f as i64))
}

/// Where the arrival time is kept on the request, for the reply to read.
const ARRIVAL: &str = "ts";

impl Extension for TimesyncExtension {
    async fn incoming(&self, _session: Option<&ServerSession>, message: &mut Message) -> bool {
        if message.channel.starts_with("/meta/")
            && let Some(Value::Object(timesync)) =
                message.ext.as_mut().and_then(|ext| ext.get_mut("timesync"))
        {
            timesync.insert(ARRIVAL.to_owned(), now_ms().into());
        }
        true
    }

    async fn outgoing(
        &self,
        _session: Option<&ServerSession>,
        request: Option<&Message>,
        message: &mut Message,
    ) -> bool {
        if !message.channel.starts_with("/meta/") {
            return true;
        }
        let Some(timesync) = request.and_then(|request| ext(request, "timesync")) else {
            return true;
        };
        let (Some(tc), Some(ts)) = (number(timesync, "tc"), number(timesync, ARRIVAL)) else {
            return true;
        };
        let p = now_ms().saturating_sub(ts);
        let answer = match (number(timesync, "l"), number(timesync, "o")) {
            (Some(lag), Some(offset)) => {
                let accuracy = tc
                    .saturating_add(offset)
                    .saturating_add(lag)
                    .saturating_sub(ts);
                let target = i64::try_from(self.accuracy_target.as_millis()).unwrap_or(i64::MAX);
                if lag != 0 && accuracy.unsigned_abs() < target.unsigned_abs() {
                    return true;
                }
                json!({"tc": tc, "ts": ts, "p": p, "a": accuracy})
            }
            // Older clients send only tc.
            _ => json!({"tc": tc, "ts": ts, "p": p}),
        };
        message.ext_mut().insert("timesync".to_owned(), answer);
        true
    }
}
