//! Bayeux messages and advice, as they travel on the wire.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// A message `id`, echoed verbatim in the reply.
///
/// The CometD clients send numeric strings (`"1"`, `"2"`, ...); some clients send numbers.
/// Anything else (an object, an array, a boolean) is rejected when the message is parsed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MessageId {
    /// A string id, the usual form.
    Str(String),
    /// A numeric id.
    Num(Number),
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => f.write_str(s),
            Self::Num(n) => fmt::Display::fmt(n, f),
        }
    }
}

impl From<&str> for MessageId {
    fn from(value: &str) -> Self {
        Self::Str(value.to_owned())
    }
}

impl From<String> for MessageId {
    fn from(value: String) -> Self {
        Self::Str(value)
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Str(s) => serializer.serialize_str(s),
            Self::Num(n) => n.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = MessageId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MessageId, E> {
                Ok(MessageId::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<MessageId, E> {
                Ok(MessageId::Str(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MessageId, E> {
                Ok(MessageId::Num(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MessageId, E> {
                Ok(MessageId::Num(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<MessageId, E> {
                Number::from_f64(v)
                    .map(MessageId::Num)
                    .ok_or_else(|| E::custom("a finite number"))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

/// The `subscription` field: one channel or a list of channels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Subscription {
    /// A single channel name or pattern.
    One(String),
    /// Several channel names or patterns.
    Many(Vec<String>),
}

impl Subscription {
    /// The channel names, in order.
    pub fn names(&self) -> &[String] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }
}

/// The `advice.reconnect` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reconnect {
    /// Reconnect with `/meta/connect` after `interval`.
    Retry,
    /// Handshake again; the session is gone.
    Handshake,
    /// Stop: neither reconnect nor handshake.
    None,
}

/// Advice: how the server wants the client to behave on its next connect.
///
/// Unknown advice fields are kept in `other` and written back out. Start from
/// `Advice::default()` and set fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Advice {
    /// What to do next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect: Option<Reconnect>,
    /// Milliseconds the client waits before its next `/meta/connect` (negative: do not retry).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_i64"
    )]
    pub interval: Option<i64>,
    /// Milliseconds the server holds a `/meta/connect`; in a client's connect, the hold it asks for.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_i64"
    )]
    pub timeout: Option<i64>,
    /// CometD's `maxInterval`: how long the server keeps a session without a connect.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_i64"
    )]
    pub max_interval: Option<i64>,
    /// Set when several sessions of one browser compete for long-polls.
    #[serde(
        default,
        rename = "multiple-clients",
        skip_serializing_if = "Option::is_none"
    )]
    pub multiple_clients: Option<bool>,
    /// Other advice fields.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

fn lenient_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let number = Option::<Number>::deserialize(deserializer)?;
    // Milliseconds sent as floats or beyond i64 are clamped rather than refused.
    Ok(number.map(|n| match n.as_i64() {
        Some(v) => v,
        None => match n.as_f64() {
            Some(f) if f.is_finite() => f.clamp(i64::MIN as f64, i64::MAX as f64) as i64,
            _ => i64::MAX,
        },
    }))
}

/// A Bayeux message: a request from a client, a reply, or a delivered event.
///
/// The fields Bayeux defines are typed; any other top-level field (for example custom
/// handshake fields such as credentials) is kept in [`other`](Self::other) and written back out
/// when the message is serialised. Build one with [`Message::new`] or [`Message::with_data`]
/// and set fields on it (new fields may be added, so it is not built field by field).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Message {
    /// `id`: echoed in the reply to this message.
    pub id: Option<MessageId>,
    /// `channel`: empty when the client sent none.
    pub channel: String,
    /// `clientId`: the session the message belongs to.
    pub client_id: Option<String>,
    /// `data`: the application payload of publishes and deliveries.
    pub data: Option<Value>,
    /// `successful`: whether the request this replies to succeeded.
    pub successful: Option<bool>,
    /// `error`: an error string such as `402::session_unknown`.
    pub error: Option<String>,
    /// `subscription`: the channels of `/meta/subscribe` and `/meta/unsubscribe`.
    pub subscription: Option<Subscription>,
    /// `advice`: reconnect guidance.
    pub advice: Option<Advice>,
    /// `ext`: extension data keyed by extension name.
    pub ext: Option<Map<String, Value>>,
    /// `version` (handshake).
    pub version: Option<String>,
    /// `minimumVersion` (handshake).
    pub minimum_version: Option<String>,
    /// `supportedConnectionTypes` (handshake).
    pub supported_connection_types: Option<Vec<String>>,
    /// `connectionType` (`/meta/connect`).
    pub connection_type: Option<String>,
    /// `timestamp`.
    pub timestamp: Option<String>,
    /// Every other top-level field.
    pub other: Map<String, Value>,
}

impl Message {
    /// A message on `channel` with no other field set.
    pub fn new(channel: impl Into<String>) -> Self {
        Self {
            channel: channel.into(),
            ..Self::default()
        }
    }

    /// A message on `channel` carrying `data`: the shape of a publish or a delivery.
    pub fn with_data(channel: impl Into<String>, data: Value) -> Self {
        Self {
            channel: channel.into(),
            data: Some(data),
            ..Self::default()
        }
    }

    /// The skeleton of a reply to `request`: its `id` and `channel`.
    pub fn reply_to(request: &Message) -> Self {
        Self {
            id: request.id.clone(),
            channel: request.channel.clone(),
            ..Self::default()
        }
    }

    /// Marks this (reply) message failed with `error`.
    pub fn fail(&mut self, error: impl Into<String>) {
        self.successful = Some(false);
        self.error = Some(error.into());
    }

    /// The `ext` object, created empty if absent.
    pub fn ext_mut(&mut self) -> &mut Map<String, Value> {
        self.ext.get_or_insert_with(Map::new)
    }

    /// The `advice` object, created empty if absent.
    pub fn advice_mut(&mut self) -> &mut Advice {
        self.advice.get_or_insert_with(Advice::default)
    }

    /// Serialises the message to JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a Message cannot fail: every field is a string, number, bool or JSON value
        // with string keys.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(id) = &self.id {
            map.serialize_entry("id", id)?;
        }
        if !self.channel.is_empty() {
            map.serialize_entry("channel", &self.channel)?;
        }
        if let Some(v) = &self.client_id {
            map.serialize_entry("clientId", v)?;
        }
        if let Some(v) = &self.successful {
            map.serialize_entry("successful", v)?;
        }
        if let Some(v) = &self.error {
            map.serialize_entry("error", v)?;
        }
        if let Some(v) = &self.subscription {
            map.serialize_entry("subscription", v)?;
        }
        if let Some(v) = &self.version {
            map.serialize_entry("version", v)?;
        }
        if let Some(v) = &self.minimum_version {
            map.serialize_entry("minimumVersion", v)?;
        }
        if let Some(v) = &self.supported_connection_types {
            map.serialize_entry("supportedConnectionTypes", v)?;
        }
        if let Some(v) = &self.connection_type {
            map.serialize_entry("connectionType", v)?;
        }
        if let Some(v) = &self.advice {
            map.serialize_entry("advice", v)?;
        }
        if let Some(v) = &self.timestamp {
            map.serialize_entry("timestamp", v)?;
        }
        if let Some(v) = &self.data {
            map.serialize_entry("data", v)?;
        }
        if let Some(v) = &self.ext {
            map.serialize_entry("ext", v)?;
        }
        for (key, value) in &self.other {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

enum Field<'de> {
    Id,
    Channel,
    ClientId,
    Data,
    Successful,
    Error,
    Subscription,
    Advice,
    Ext,
    Version,
    MinimumVersion,
    SupportedConnectionTypes,
    ConnectionType,
    Timestamp,
    Other(std::borrow::Cow<'de, str>),
}

impl<'de> Field<'de> {
    fn from_str(key: std::borrow::Cow<'de, str>) -> Self {
        match &*key {
            "id" => Self::Id,
            "channel" => Self::Channel,
            "clientId" => Self::ClientId,
            "data" => Self::Data,
            "successful" => Self::Successful,
            "error" => Self::Error,
            "subscription" => Self::Subscription,
            "advice" => Self::Advice,
            "ext" => Self::Ext,
            "version" => Self::Version,
            "minimumVersion" => Self::MinimumVersion,
            "supportedConnectionTypes" => Self::SupportedConnectionTypes,
            "connectionType" => Self::ConnectionType,
            "timestamp" => Self::Timestamp,
            _ => Self::Other(key),
        }
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Field<'de>, E> {
                Ok(Field::from_str(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field<'de>, E> {
                Ok(Field::from_str(v.to_owned().into()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Field<'de>, E> {
                Ok(Field::from_str(v.into()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

fn set_once<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MessageVisitor;

        impl<'de> Visitor<'de> for MessageVisitor {
            type Value = Message;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Bayeux message (a JSON object)")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
                let mut m = Message::default();
                let mut channel = None;
                while let Some(key) = map.next_key::<Field<'de>>()? {
                    // `null` reads as "absent" for every optional field, as JSON clients expect.
                    match key {
                        Field::Id => {
                            if let Some(v) = map.next_value()? {
                                set_once(&mut m.id, v, "id")?;
                            }
                        }
                        Field::Channel => {
                            if let Some(v) = map.next_value()? {
                                set_once(&mut channel, v, "channel")?;
                            }
                        }
                        Field::ClientId => {
                            if let Some(v) = map.next_value()? {
                                set_once(&mut m.client_id, v, "clientId")?;
                            }
                        }
                        Field::Data => {
                            let v: Value = map.next_value()?;
                            set_once(&mut m.data, v, "data")?;
                        }
                        Field::Successful => {
                            if let Some(v) = map.next_value()? {
                                set_once(&mut m.successful, v, "successful")?;
                            }
                        }
                        Field::Error => {
                            if let Some(v) = map.next_value()? {
                                set_once(&mut m.error, v, "error")?;
                            }
                        }
                        Field::Subscription => {
                            if let Some(v) = map.next_value()? {
                                set_once(&mut m.subscription, v, "subscription")?;
                            }
                        }
                        Field::Advice => {
                            if let Some(v) = map.next_value()? {
                                set_once(&mut m.advice, v, "advice")?;
                            }
                        }
                        Field::Ext => {
                            if let Some(v) = map.next_value()? {
                                set_once(&mut m.ext, v, "ext")?;
                            }
                        }
                        Field::Version => {
                            if let Some(v) = map.next_value::<Option<VersionString>>()? {
                                set_once(&mut m.version, v.0, "version")?;
                            }
                        }
                        Field::MinimumVersion => {
                            if let Some(v) = map.next_value::<Option<VersionString>>()? {
                                set_once(&mut m.minimum_version, v.0, "minimumVersion")?;
                            }
                        }
                        Field::SupportedConnectionTypes => {
                            if let Some(v) = map.next_value()? {
                                set_once(
                                    &mut m.supported_connection_types,
                                    v,
                                    "supportedConnectionTypes",
                                )?;
                            }
                        }
                        Field::ConnectionType => {
                            if let Some(v) = map.next_value()? {
                                set_once(&mut m.connection_type, v, "connectionType")?;
                            }
                        }
                        Field::Timestamp => {
                            if let Some(v) = map.next_value()? {
                                set_once(&mut m.timestamp, v, "timestamp")?;
                            }
                        }
                        Field::Other(key) => {
                            let value: Value = map.next_value()?;
                            if m.other.insert(key.into_owned(), value).is_some() {
                                return Err(de::Error::custom("duplicate field"));
                            }
                        }
                    }
                }
                m.channel = channel.unwrap_or_default();
                Ok(m)
            }
        }

        deserializer.deserialize_map(MessageVisitor)
    }
}

/// `version` is a string in Bayeux, but some clients send `1.0` as a number.
struct VersionString(String);

impl<'de> Deserialize<'de> for VersionString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(Self(s)),
            Value::Number(n) => Ok(Self(n.to_string())),
            _ => Err(de::Error::custom("version must be a string")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_messages;
    use serde_json::json;

    #[test]
    fn parses_a_handshake_with_custom_fields() {
        let body =
            br#"[{"id":"1","version":"1.0","minimumVersion":"1.0","channel":"/meta/handshake",
            "supportedConnectionTypes":["long-polling"],"advice":{"timeout":60000,"interval":0},
            "ext":{"auth":{"deny":true}},"credentials":"secret"}]"#;
        let messages = parse_messages(body).unwrap();
        let m = &messages[0];
        assert_eq!(m.id, Some(MessageId::from("1")));
        assert_eq!(m.channel, "/meta/handshake");
        assert_eq!(m.version.as_deref(), Some("1.0"));
        assert_eq!(
            m.supported_connection_types.as_deref(),
            Some(&["long-polling".to_owned()][..])
        );
        assert_eq!(m.advice.as_ref().unwrap().timeout, Some(60000));
        assert_eq!(m.ext.as_ref().unwrap()["auth"]["deny"], json!(true));
        assert_eq!(m.other["credentials"], json!("secret"));
    }

    #[test]
    fn round_trips_every_field() {
        let value = json!({
            "id": "7", "channel": "/a", "clientId": "c", "data": {"x": [1, 2]},
            "successful": true, "error": "402::session_unknown", "subscription": ["/a", "/b"],
            "advice": {"reconnect": "handshake", "interval": 0, "multiple-clients": true, "hosts": ["h"]},
            "ext": {"ack": 3}, "version": "1.0", "minimumVersion": "1.0",
            "supportedConnectionTypes": ["long-polling"], "connectionType": "long-polling",
            "timestamp": "t", "custom": null
        });
        let message: Message = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(serde_json::to_value(&message).unwrap(), value);
    }

    #[test]
    fn missing_channel_reads_as_empty() {
        let messages = parse_messages(b"[{}]").unwrap();
        assert!(messages[0].channel.is_empty());
        assert_eq!(serde_json::to_string(&messages[0]).unwrap(), "{}");
    }

    #[test]
    fn nulls_read_as_absent() {
        let m = &parse_messages(br#"[{"channel":"/a","id":null,"clientId":null,"ext":null}]"#)
            .unwrap()[0];
        assert!(m.id.is_none() && m.client_id.is_none() && m.ext.is_none());
    }

    #[test]
    fn huge_numbers_are_handled() {
        assert!(parse_messages(br#"[{"channel":"/a","data":1e400}]"#).is_err());
        let m = &parse_messages(br#"[{"channel":"/a","advice":{"timeout":1e30}}]"#).unwrap()[0];
        assert_eq!(m.advice.as_ref().unwrap().timeout, Some(i64::MAX));
    }
}
