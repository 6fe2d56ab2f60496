//! A chat room in the browser, on the official CometD JavaScript client.
//!
//! ```text
//! npm ci --prefix examples/chat && cargo run --example chat
//! ```
//!
//! Then open <http://127.0.0.1:8080/> in two browsers (or a normal and a private window). The
//! page (`examples/chat/static/`) imports the `cometd` npm package as ES modules, served from
//! `examples/chat/node_modules/cometd/` at `/js/cometd/`. `?transport=websocket`,
//! `?transport=long-polling` or `?transport=callback-polling` forces one transport, and
//! `?room=NAME` picks another room than `lobby`.
//!
//! What the server shows of the engine's API, used the way an application would:
//!
//! - a [`SecurityPolicy`] that refuses a handshake without a name (`ext.chat.name`) and every
//!   client publish outside `/service/**`, so room messages only come through the services;
//! - a `/meta/handshake` listener that keeps the member on its session
//!   ([`ServerSession::attributes`]), with the `User-Agent` of the HTTP request read through
//!   [`context::current()`], and a [`ServerSession::on_removed`] listener that announces when
//!   the member leaves, telling a timeout from a disconnect: the server keeps no member table of
//!   its own, the sessions are the members;
//! - `/service/members` (a remote call): joins a room; the server publishes the member list on
//!   `/members/<room>` and a join notice on `/chat/<room>` (server-side publish), and answers
//!   with the member's public id;
//! - `/service/chat`: validates the text and republishes it on `/chat/<room>`;
//! - `/service/private` (a remote call): delivers a message to one member's session only
//!   ([`ServerSession::deliver`]) on `/service/private`;
//! - acknowledged delivery ([`AckExtension`], and the client's `AckExtension`), so a tab whose
//!   connection drops for a moment misses nothing;
//! - room history ([`BayeuxBuilder::history`](tower_bayeux::BayeuxBuilder::history): the last
//!   100 messages of every `/chat/<room>`) with the client's history extension
//!   (`clients/js/history-extension.js`, served at `/js/history-extension.js`): a member joining
//!   gets the room's recent messages from `/service/history` (a remote call answered with
//!   [`Bayeux::history`], with their position), then subscribes from that position; a tab away
//!   for longer than the session lives (its session expired, it handshakes again) resubscribes
//!   from the last message it has and is sent every message it missed, once, in order.
//!
//! Members are known to each other by a small public id, never by their Bayeux session id: a
//! `clientId` is a credential (a websocket session without a browser cookie is resumed by its
//! `clientId` alone), so it is not shown to other users.
//!
//! Options: `--addr` (default `127.0.0.1:8080`; port 0 picks a free port) and
//! `--max-interval-ms` (how long a session whose connection is gone lives on; default 10000).
//! The first line on stdout is `listening on http://ADDR`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::header::USER_AGENT;
use clap::Parser;
use serde::Deserialize;
use serde_json::{Value, json};
use tower_bayeux::ext::AckExtension;
use tower_bayeux::{
    Bayeux, BayeuxLayer, ChannelName, Message, MessageEvent, RemoveReason, Retention,
    SecurityPolicy, ServerSession, Verdict, context,
};
use tower_http::services::{ServeDir, ServeFile};

/// The longest name a member may take, in characters.
const MAX_NAME: usize = 24;
/// The longest message, in characters.
const MAX_TEXT: usize = 500;
/// The longest room name.
const MAX_ROOM: usize = 32;
/// How much of a `User-Agent` is kept, in characters.
const MAX_AGENT: usize = 256;
/// How many messages of each room the server keeps for members who join or come back.
const ROOM_HISTORY: usize = 100;

#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// How long a session lives without a connection (a closed tab's member is announced as
    /// gone after it), in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    max_interval_ms: u64,
}

/// `examples/chat/` in the source tree: the page and the npm packages it imports.
fn chat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join("chat")
}

/// The client's history extension in the source tree (`clients/js/`).
fn history_extension() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join("js")
        .join("history-extension.js")
}

// ---------------------------------------------------------------------------------------------
// Members

/// A member of the chat: a session that handshook with a name. Kept on the session itself.
#[derive(Clone)]
struct Member {
    /// The public id other members address it by.
    id: u64,
    name: String,
    /// The `User-Agent` of the handshake request.
    agent: String,
    /// The room it joined, once it has.
    room: Option<String>,
}

impl Member {
    fn of(session: &ServerSession) -> Option<Self> {
        session.attributes().get::<Self>()
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "browser": browser_label(&self.agent),
            "agent": self.agent,
        })
    }
}

/// The chat's state: the server handle and the next public id. The members are the sessions.
struct Chat {
    bayeux: Bayeux,
    next_id: AtomicU64,
}

impl Chat {
    /// Every member with its session.
    fn members(&self) -> impl Iterator<Item = (Member, ServerSession)> {
        self.bayeux
            .sessions()
            .into_iter()
            .filter_map(|session| Some((Member::of(&session)?, session)))
    }

    /// The members of `room`, in the order they arrived.
    fn room_members(&self, room: &str) -> Vec<Value> {
        let mut in_room: Vec<Member> = self
            .members()
            .map(|(member, _)| member)
            .filter(|m| m.room.as_deref() == Some(room))
            .collect();
        in_room.sort_by_key(|m| m.id);
        in_room.iter().map(Member::to_json).collect()
    }

    /// Publishes the member list of `room` on `/members/<room>`.
    async fn publish_members(&self, room: &str) {
        let list = json!({ "members": self.room_members(room) });
        self.publish(&format!("/members/{room}"), list).await;
    }

    async fn publish(&self, channel: &str, data: Value) {
        if let Err(err) = self.bayeux.publish(channel, data).await {
            eprintln!("publish to {channel} failed: {err}");
        }
    }

    /// A session handshook: it becomes a member (not in a room yet), whose departure is
    /// announced when the session is removed.
    fn add_member(self: &Arc<Self>, session: &ServerSession, name: String, agent: String) {
        let member = Member {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            name,
            agent,
            room: None,
        };
        println!(
            "member {} {:?} ({}) handshook",
            member.id,
            member.name,
            browser_label(&member.agent)
        );
        session.attributes().insert(member);
        let chat = Arc::clone(self);
        session.on_removed(move |session, reason| async move {
            chat.remove_member(&session, reason).await;
        });
    }

    async fn remove_member(&self, session: &ServerSession, reason: RemoveReason) {
        let Some(member) = Member::of(session) else {
            return;
        };
        let reason = match reason {
            RemoveReason::Timeout => "timeout",
            RemoveReason::Disconnected => "disconnect",
            _ => "removed by the server",
        };
        println!("member {} {:?} left ({reason})", member.id, member.name);
        let Some(room) = member.room else {
            return;
        };
        let notice = json!({
            "type": "leave",
            "id": member.id,
            "name": member.name,
            "reason": reason,
        });
        self.publish(&format!("/chat/{room}"), notice).await;
        self.publish_members(&room).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

/// The member name a handshake carries in `ext.chat.name`, if it is acceptable.
fn handshake_name(message: &Message) -> Option<String> {
    let name = message.ext.as_ref()?.get("chat")?.get("name")?.as_str()?;
    let name = name.trim();
    let ok =
        !name.is_empty() && name.chars().count() <= MAX_NAME && !name.chars().any(char::is_control);
    ok.then(|| name.to_owned())
}

/// What `/service/chat` and `/service/private` carry: a text, and for a private message whom
/// it is for (a member id or a name).
#[derive(Deserialize)]
struct Said {
    #[serde(default)]
    text: String,
    #[serde(default)]
    to: Value,
}

/// The text of a message: trimmed, non-empty and at most `MAX_TEXT` characters.
fn text_of(said: &Said) -> Result<String, String> {
    let text = said.text.trim();
    if text.is_empty() {
        return Err("400::empty message".to_owned());
    }
    if text.chars().count() > MAX_TEXT {
        return Err(format!("400::message longer than {MAX_TEXT} characters"));
    }
    Ok(text.to_owned())
}

/// A room name usable as one channel segment.
fn room_of(data: &Value) -> Result<String, String> {
    let room = data.get("room").and_then(Value::as_str).unwrap_or("lobby");
    let ok = !room.is_empty()
        && room.len() <= MAX_ROOM
        && room
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(room.to_owned())
    } else {
        Err(format!(
            "400::room names are 1 to {MAX_ROOM} letters, digits, '-' or '_'"
        ))
    }
}

/// A short name for the browser behind a `User-Agent` (Edge and Opera also say Chrome, and
/// Chrome also says Safari, so the order matters).
fn browser_label(agent: &str) -> &'static str {
    const KNOWN: [(&str, &str); 8] = [
        ("Firefox/", "Firefox"),
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("HeadlessChrome/", "Headless Chrome"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("Node.js", "Node.js"),
    ];
    KNOWN
        .iter()
        .find(|(marker, _)| agent.contains(marker))
        .map_or("unknown browser", |(_, label)| label)
}

/// Fails the client's reply with `error` and stops the message (a remote call fails with it).
fn refuse(mut event: MessageEvent, error: String) -> Verdict {
    event.reply_mut().fail(error);
    event.veto()
}

// ---------------------------------------------------------------------------------------------
// The policy and the services

struct ChatPolicy;

impl SecurityPolicy for ChatPolicy {
    /// A member must say who they are.
    async fn can_handshake(&self, _: &ServerSession, message: &Message) -> bool {
        handshake_name(message).is_some()
    }

    /// Clients publish to services only: room messages, join notices and member lists come
    /// from the server, after validation.
    async fn can_publish(&self, _: &ServerSession, _: &Message, channel: &ChannelName) -> bool {
        channel.as_str().starts_with("/service/")
    }
}

fn services(chat: &Arc<Chat>) {
    let bayeux = &chat.bayeux;

    // Every successful handshake makes a member, with the browser read from the request.
    bayeux.channel("/meta/handshake").add_listener_with_state(
        Arc::clone(chat),
        |chat, event| async move {
            if event.reply().successful == Some(true)
                && let Some(name) = handshake_name(event.message())
            {
                // The request that carried the handshake (over websocket: the upgrade).
                let agent = context::current()
                    .and_then(|ctx| {
                        let agent = ctx.headers().get(USER_AGENT)?.to_str().ok()?;
                        Some(agent.chars().take(MAX_AGENT).collect())
                    })
                    .unwrap_or_default();
                chat.add_member(event.session(), name, agent);
            }
            event.proceed()
        },
    );

    // Joining a room (a remote call): {room}. The answer tells the member its public id.
    bayeux.channel("/service/members").add_listener_with_state(
        Arc::clone(chat),
        |chat, mut event| async move {
            let room = match room_of(event.data()) {
                Ok(room) => room,
                Err(error) => return refuse(event, error),
            };
            let joined = event
                .session()
                .attributes()
                .with(|member: Option<&mut Member>| match member {
                    None => Err("402::unknown member: handshake again".to_owned()),
                    Some(member) => match &member.room {
                        Some(current) if *current != room => {
                            Err(format!("409::already in room {current}"))
                        }
                        Some(_) => Ok((member.clone(), false)),
                        None => {
                            member.room = Some(room.clone());
                            Ok((member.clone(), true))
                        }
                    },
                });
            let (member, new) = match joined {
                Ok(joined) => joined,
                Err(error) => return refuse(event, error),
            };
            if new {
                println!("member {} {:?} joined {room}", member.id, member.name);
                let notice = json!({
                    "type": "join",
                    "id": member.id,
                    "name": member.name,
                    "browser": browser_label(&member.agent),
                });
                chat.publish(&format!("/chat/{room}"), notice).await;
            }
            chat.publish_members(&room).await;
            // The page joins with `remoteCall`: the reply's data is its answer.
            event.reply_mut().data = Some(json!({ "you": member.to_json(), "room": room }));
            event.proceed()
        },
    );

    // The room's recent messages (a remote call): {room}. The answer is what the history keeps,
    // oldest first, and the position of the latest, from which the page then subscribes: a
    // message published in between is replayed to it, none is lost or shown twice.
    bayeux.channel("/service/history").add_listener_with_state(
        Arc::clone(chat),
        |chat, mut event| async move {
            let room = match room_of(event.data()) {
                Ok(room) => room,
                Err(error) => return refuse(event, error),
            };
            let channel = format!("/chat/{room}");
            let page = match chat.bayeux.history(channel, None, None).await {
                Ok(page) => page,
                Err(err) => return refuse(event, format!("500::{err}")),
            };
            let messages: Vec<Value> = page
                .messages
                .into_iter()
                .filter_map(|message| message.data)
                .collect();
            event.reply_mut().data = Some(json!({
                "epoch": page.epoch,
                "offset": page.offset,
                "messages": messages,
            }));
            event.proceed()
        },
    );

    // A message to the room: {text}.
    bayeux.channel("/service/chat").add_listener_with_state(
        Arc::clone(chat),
        |chat, event| async move {
            let text = match event.data_as::<Said>() {
                Ok(said) => text_of(&said),
                Err(err) => Err(format!("400::{err}")),
            };
            let text = match text {
                Ok(text) => text,
                Err(error) => return refuse(event, error),
            };
            let Some(member) = Member::of(event.session()) else {
                return refuse(event, "402::unknown member: handshake again".to_owned());
            };
            let Some(room) = &member.room else {
                return refuse(event, "403::join a room first".to_owned());
            };
            let message = json!({
                "type": "message",
                "id": member.id,
                "name": member.name,
                "text": text,
            });
            chat.publish(&format!("/chat/{room}"), message).await;
            event.proceed()
        },
    );

    // A private message (a remote call): {to: <member id or name>, text}, delivered to that
    // member's session only. The answer tells the sender who got it.
    bayeux.channel("/service/private").add_listener_with_state(
        Arc::clone(chat),
        |chat, mut event| async move {
            let said = match event.data_as::<Said>() {
                Ok(said) => said,
                Err(err) => return refuse(event, format!("400::{err}")),
            };
            let text = match text_of(&said) {
                Ok(text) => text,
                Err(error) => return refuse(event, error),
            };
            let Some(from) = Member::of(event.session()) else {
                return refuse(event, "402::unknown member: handshake again".to_owned());
            };
            let (target, session) = match find_member(&chat, &said.to) {
                Ok(target) => target,
                Err(error) => return refuse(event, error),
            };
            let message = json!({
                "type": "private",
                "id": from.id,
                "name": from.name,
                "toId": target.id,
                "toName": target.name,
                "text": text,
            });
            if session.deliver("/service/private", message).await.is_err() {
                return refuse(event, format!("410::{} has left", target.name));
            }
            event.reply_mut().data = Some(json!({ "toId": target.id, "toName": target.name }));
            event.proceed()
        },
    );
}

/// The member `to` names, with its session: a public id (a number), or a name only one member
/// has.
fn find_member(chat: &Chat, to: &Value) -> Result<(Member, ServerSession), String> {
    if let Some(id) = to.as_u64() {
        return chat
            .members()
            .find(|(m, _)| m.id == id)
            .ok_or_else(|| format!("404::no member {id}"));
    }
    let Some(name) = to.as_str() else {
        return Err("400::`to` must be a member id or name".to_owned());
    };
    let mut named = chat.members().filter(|(m, _)| m.name == name);
    match (named.next(), named.next()) {
        (Some(member), None) => Ok(member),
        (None, _) => Err(format!("404::no member named {name}")),
        (Some(_), Some(_)) => Err(format!("409::several members are named {name}: use an id")),
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let dir = chat_dir();
    let cometd = dir.join("node_modules").join("cometd");
    if !cometd.join("cometd.js").is_file() {
        return Err(format!(
            "the CometD JavaScript client is not installed ({} is missing): \
             run npm ci --prefix examples/chat",
            cometd.display()
        )
        .into());
    }

    let bayeux = Bayeux::builder()
        .max_interval(Duration::from_millis(args.max_interval_ms))
        .security_policy(ChatPolicy)
        .extension(AckExtension::new())
        // For browsers that need it (and `?transport=callback-polling`); JSONP is off by default.
        .callback_polling(true)
        // Every room keeps its last messages: for members who join, and tabs that come back.
        .history("/chat/**", Retention::last(ROOM_HISTORY))
        .build();
    let chat = Arc::new(Chat {
        bayeux: bayeux.clone(),
        next_id: AtomicU64::new(1),
    });
    services(&chat);

    // `/` serves static/index.html; `/js/cometd/` the npm package, as the browser imports it;
    // `/js/history-extension.js` the history extension from `clients/js/`.
    let app = Router::new()
        .nest_service("/js/cometd", ServeDir::new(cometd))
        .route_service(
            "/js/history-extension.js",
            ServeFile::new(history_extension()),
        )
        .fallback_service(ServeDir::new(dir.join("static")))
        .layer(BayeuxLayer::new(bayeux).path("/cometd"));

    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{}", listener.local_addr()?)?;
    stdout.flush()?;
    axum::serve(listener, app.into_make_service()).await?;
    Ok(())
}
