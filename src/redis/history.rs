//! Channel history in Redis, shared by every node: per channel a hash with its epoch and latest
//! offset (`<prefix>history<channel>`) and a stream of its retained messages
//! (`<prefix>stream<channel>`, entry ids `<offset>-0`).
//!
//! A broadcast on a channel with history is published by one script that gives it the next
//! offset, adds it to the stream and publishes it on the channel's Redis channels (and its wild
//! ancestors'), all at once: every node receives the channel's messages in offset order, the
//! publishing node included (it fans its own out as they come back). The epoch is made by the
//! first script to find the channel's hash gone (a new channel, a flushed or restarted Redis,
//! or a history expired after `max_age`, or 24 hours without one, without messages).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::Value;

use crate::engine::{Delivery, HistoryRead, Position, Replay, Retention, history_after};
use crate::protocol::ChannelName;

/// Gives a message its offset, keeps it and publishes it. KEYS: the hash, the stream. ARGV: a
/// new epoch (used if the hash is gone), the most messages kept (0: no bound), the keys' time
/// to live in ms, the JSON before and after the position, the frame header before the offset,
/// the Bayeux channel, then the Redis channels to publish on. Returns `{offset, epoch}`.
pub(crate) const PUBLISH: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local json = ARGV[4] .. '{"offset":' .. offset .. ',"epoch":"' .. epoch .. '"}' .. ARGV[5]
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
if tonumber(ARGV[2]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], offset .. '-0', 't', ms, 'm', json)
else
  redis.call('XADD', KEYS[2], offset .. '-0', 't', ms, 'm', json)
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local frame = ARGV[6] .. offset .. ' ' .. epoch .. ' ' .. ARGV[7] .. '\n' .. json
for i = 8, #ARGV do
  redis.call('PUBLISH', ARGV[i], frame)
end
return {offset, epoch}
"#;

/// Reads a channel's position and messages. KEYS: the hash, the stream. ARGV: a new epoch (used
/// if the hash is gone), what to read (`p`: the position only, `a`: the messages from the
/// stream id in ARGV[3] on, `*`: all), that id, the hash's time to live in ms. Returns
/// `{epoch, offset, now in ms, entries}`.
pub(crate) const READ: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local offset = redis.call('HGET', KEYS[1], 'offset')
local entries = {}
if ARGV[2] == 'a' then
  entries = redis.call('XRANGE', KEYS[2], ARGV[3], '+')
elseif ARGV[2] == '*' then
  entries = redis.call('XRANGE', KEYS[2], '-', '+')
end
local now = redis.call('TIME')
return {epoch, offset, now[1] * 1000 + math.floor(now[2] / 1000), entries}
"#;

/// The scripts, called by their SHA-1 (`EVALSHA`): loaded whenever the publishing connection
/// is (re)checked, and again when Redis says it does not have them (a restarted Redis).
pub(crate) fn scripts() -> &'static [redis::Script; 2] {
    static SCRIPTS: std::sync::LazyLock<[redis::Script; 2]> =
        std::sync::LazyLock::new(|| [redis::Script::new(PUBLISH), redis::Script::new(READ)]);
    &SCRIPTS
}

/// `EVALSHA` of `script` with its two keys.
pub(crate) fn call(script: &redis::Script, keys: [String; 2]) -> redis::Cmd {
    let mut command = redis::cmd("EVALSHA");
    let [hash, stream] = keys;
    command.arg(script.get_hash()).arg(2).arg(hash).arg(stream);
    command
}

/// How long a channel's history lives in Redis without messages when its retention has no age.
const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The hash and the stream of `channel`.
pub(crate) fn keys(prefix: &str, channel: &ChannelName) -> [String; 2] {
    [
        format!("{prefix}history{channel}"),
        format!("{prefix}stream{channel}"),
    ]
}

pub(crate) fn ttl_ms(retention: Retention) -> u64 {
    let ttl = retention
        .age()
        .unwrap_or(DEFAULT_TTL)
        .max(Duration::from_secs(1));
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// The script call that reads `read` of `channel`.
pub(crate) fn read_command(
    prefix: &str,
    channel: &ChannelName,
    retention: Retention,
    read: &HistoryRead,
    new_epoch: &str,
) -> redis::Cmd {
    let (mode, from) = match read {
        HistoryRead::Position => ("p", String::new()),
        HistoryRead::After(since) => ("a", format!("{}-0", since.offset.saturating_add(1))),
        HistoryRead::All => ("*", String::new()),
    };
    let mut command = call(&scripts()[1], keys(prefix, channel));
    command
        .arg(new_epoch)
        .arg(mode)
        .arg(from)
        .arg(ttl_ms(retention));
    command
}

/// The answer of [`PUBLISH`].
pub(crate) fn position(value: Value) -> Result<Position, String> {
    let mut items = array(value)?.into_iter();
    let offset = integer(items.next())?;
    let epoch = text(items.next())?;
    Ok(Position {
        offset,
        epoch: Arc::from(epoch),
    })
}

/// The answer of [`READ`], as a replay of `read`.
pub(crate) fn replay(
    value: Value,
    retention: Retention,
    read: &HistoryRead,
) -> Result<Replay, String> {
    let mut items = array(value)?.into_iter();
    let epoch = text(items.next())?;
    let offset = integer(items.next())?;
    let now = integer(items.next())?;
    let oldest_kept = retention.age().map_or(0, |age| {
        now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
    });
    let mut retained = Vec::new();
    for entry in array(items.next().unwrap_or(Value::Nil))? {
        let (id, fields) = {
            let mut parts = array(entry)?.into_iter();
            (
                text(parts.next())?,
                array(parts.next().unwrap_or(Value::Nil))?,
            )
        };
        let entry_offset = id
            .split_once('-')
            .and_then(|(offset, _)| offset.parse::<u64>().ok())
            .ok_or_else(|| format!("unexpected stream id {id}"))?;
        let (mut at, mut json) = (0, None);
        let mut fields = fields.into_iter();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            match text(Some(name))?.as_str() {
                "t" => at = integer(Some(value))?,
                "m" => json = Some(bytes(value)?),
                _ => {}
            }
        }
        // Older than the retention's age: no longer retained, as in memory.
        if at >= oldest_kept
            && let Some(json) = json
        {
            retained.push((entry_offset, Delivery::from_json(json)));
        }
    }
    let (recovered, deliveries) = match read {
        HistoryRead::Position => (None, Vec::new()),
        HistoryRead::After(since) => {
            let (recovered, deliveries) = history_after(
                since,
                &epoch,
                offset,
                retained
                    .iter()
                    .map(|(offset, delivery)| (*offset, delivery)),
            );
            (Some(recovered), deliveries)
        }
        HistoryRead::All => (
            Some(true),
            retained.into_iter().map(|(_, delivery)| delivery).collect(),
        ),
    };
    Ok(Replay {
        epoch: Arc::from(epoch),
        offset,
        recovered,
        deliveries,
    })
}

fn array(value: Value) -> Result<Vec<Value>, String> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

fn integer(value: Option<Value>) -> Result<u64, String> {
    match value {
        Some(Value::Int(n)) => u64::try_from(n).map_err(|_| format!("negative {n}")),
        Some(Value::BulkString(bytes)) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "not a number".to_owned()),
        Some(Value::SimpleString(s)) => s.parse().map_err(|_| format!("not a number: {s}")),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

fn text(value: Option<Value>) -> Result<String, String> {
    match value {
        Some(Value::BulkString(bytes)) => {
            String::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())
        }
        Some(Value::SimpleString(s)) => Ok(s),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

fn bytes(value: Value) -> Result<Bytes, String> {
    match value {
        Value::BulkString(bytes) => Ok(Bytes::from(bytes)),
        Value::SimpleString(s) => Ok(Bytes::from(s)),
        other => Err(format!("unexpected answer {other:?}")),
    }
}
