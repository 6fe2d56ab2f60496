//! What the server offers Bayeux clients beyond publish and subscribe: a channel's recent
//! messages on `/service/history`, and a policy that can keep publishing to the HTTP API.

use serde_json::{Value, json};
use tower_bayeux::{Bayeux, ChannelName, Error, Message, SecurityPolicy, ServerSession};

/// `--no-client-publish`: clients subscribe; only the HTTP API (and the server) publishes.
pub struct ReadOnlyClients;

impl SecurityPolicy for ReadOnlyClients {
    async fn can_publish(&self, _: &ServerSession, _: &Message, channel: &ChannelName) -> bool {
        // `/service/**` stays open: it is how clients call the server (the history below).
        !channel.is_broadcast()
    }
}

/// `/service/history`: a client's remote call `{"channel": "/x"}` is answered with the
/// channel's retained messages and the position of the latest,
/// `{"epoch", "offset", "messages": [{channel, data, ext}…]}`, from which the client can
/// subscribe with the history extension without missing or repeating anything.
pub fn history(bayeux: &Bayeux) {
    bayeux.channel("/service/history").add_listener_with_state(
        bayeux.clone(),
        |bayeux, mut event| async move {
            let channel = event
                .data()
                .get("channel")
                .and_then(Value::as_str)
                .map(ChannelName::new);
            let answer = match channel {
                Some(Ok(channel)) if channel.is_broadcast() && !channel.is_wild() => {
                    bayeux.history(channel, None, None).await
                }
                _ => {
                    event
                        .reply_mut()
                        .fail("400::expected {\"channel\": \"/a/broadcast/channel\"}");
                    return event.veto();
                }
            };
            match answer {
                Ok(page) => {
                    event.reply_mut().data = Some(json!({
                        "epoch": page.epoch,
                        "offset": page.offset,
                        "messages": page.messages,
                    }));
                    event.proceed()
                }
                Err(err) => {
                    let code = match err {
                        Error::NoHistory(_) => 404,
                        _ => 503,
                    };
                    event.reply_mut().fail(format!("{code}::{err}"));
                    event.veto()
                }
            }
        },
    );
}
