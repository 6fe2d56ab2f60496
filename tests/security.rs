//! Security regressions.
//!
//! Covered here: other sessions' service replies stay private whatever a client subscribes to;
//! no clientId leaks to other clients in any message they receive; session ids are 160 random
//! bits; an auth layer's identity reaches the security policy.
//!
//! Covered elsewhere, by name:
//! - meta channels are matched exactly and clients cannot publish to `/meta/**`:
//!   `long_polling::meta_channels_are_matched_exactly_and_clients_cannot_publish_to_them`;
//! - a `clientId` without its browser cookie reaches nothing over HTTP (unless the user trusts
//!   client sessions), and with another browser's cookie nothing on any transport:
//!   `long_polling::a_client_id_without_its_browser_cookie_does_not_reach_the_session`,
//!   `long_polling::trusted_client_sessions_need_no_cookie_but_refuse_another_browsers`,
//!   `websocket::a_session_handshaken_over_http_continues_on_a_websocket_without_another_cookie`,
//!   `jsonp::scripts_call_the_named_callback_set_the_cookie_and_escape_line_separators`;
//! - cross-site websocket hijacking: `websocket::websocket_upgrades_from_other_sites_are_refused`;
//! - JSONP is off unless enabled: `jsonp::callback_polling_is_off_by_default_refused_and_not_advertised`;
//! - JSONP callback injection: `jsonp::unsafe_callback_names_are_refused`;
//! - hostile input never panics: `hostile`.

mod common;

use std::collections::HashSet;

use common::{Client, deliveries};
use serde_json::json;
use tower_bayeux::{Bayeux, ChannelName, Message, SecurityPolicy, ServerSession};

#[tokio::test(start_paused = true)]
async fn service_replies_to_one_session_reach_no_other_whatever_it_subscribes_to() {
    let bayeux = Bayeux::builder().build();
    bayeux
        .channel("/service/echo")
        .add_listener(|event| async move {
            let _ = event
                .session()
                .deliver("/service/echo", event.data().clone())
                .await;
            event.proceed()
        });
    let victim = Client::connected(&bayeux).await;
    let spy = Client::connected(&bayeux).await;
    for pattern in ["/service/echo", "/service/*", "/service/**", "/**", "/*"] {
        assert_eq!(
            spy.subscribe(pattern).await["successful"],
            true,
            "{pattern}"
        );
    }
    victim.publish("/service/echo", json!("secret")).await;
    let reply = victim.connect(Some(0)).await;
    assert_eq!(deliveries(&reply)[0]["data"], "secret");
    let spied = spy.connect(Some(0)).await;
    assert!(deliveries(&spied).is_empty(), "{spied:?}");
    assert!(!spied.iter().any(|m| m.to_string().contains("secret")));
}

#[tokio::test(start_paused = true)]
async fn no_client_id_leaks_to_other_clients() {
    let bayeux = Bayeux::builder().build();
    let clients = [
        Client::connected(&bayeux).await,
        Client::connected(&bayeux).await,
        Client::connected(&bayeux).await,
    ];
    for client in &clients {
        client.subscribe("/room/**").await;
    }
    let mut seen: Vec<(usize, String)> = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        // Publishes in every shape a client may send them, with and without ids.
        let replies = client
            .send(vec![
                json!({"channel": "/room/a", "data": {"from": i}}),
                json!({"channel": "/room/b", "data": null, "id": "x"}),
                json!({"channel": "/room/c", "data": [i], "ext": {"e": 1}, "custom": true}),
            ])
            .await;
        seen.extend(replies.iter().map(|m| (i, m.to_string())));
    }
    for (i, client) in clients.iter().enumerate() {
        let replies = client.connect(Some(0)).await;
        seen.extend(replies.iter().map(|m| (i, m.to_string())));
    }
    for (receiver, text) in &seen {
        for (owner, client) in clients.iter().enumerate() {
            if owner != *receiver {
                assert!(
                    !text.contains(&client.client_id),
                    "client {receiver} received client {owner}'s id: {text}"
                );
            }
        }
    }
    assert!(seen.len() > 20, "the clients did exchange messages");
}

#[tokio::test(start_paused = true)]
async fn session_ids_are_160_random_bits() {
    let bayeux = Bayeux::builder().max_sessions_per_cookie(None).build();
    let first = Client::handshaken(&bayeux, None).await;
    let mut ids = HashSet::new();
    let mut nibbles = [0usize; 16];
    for _ in 0..5000 {
        let id = Client::handshaken(&bayeux, Some(&first.cookie))
            .await
            .client_id
            .clone();
        assert_eq!(id.len(), 40);
        for c in id.chars() {
            nibbles[c.to_digit(16).expect("hex") as usize] += 1;
        }
        assert!(ids.insert(id));
    }
    // 200,000 nibbles: each of the 16 values near 12,500 (a biased or counter-based id would
    // fall far outside; 5 standard deviations is about 540).
    for (value, count) in nibbles.iter().enumerate() {
        assert!(
            (11_900..13_100).contains(count),
            "nibble {value:x}: {count}"
        );
    }
    // No two ids share a long prefix, as sequential or time-based ids would.
    let mut sorted: Vec<&String> = ids.iter().collect();
    sorted.sort();
    for pair in sorted.windows(2) {
        let shared = pair[0]
            .chars()
            .zip(pair[1].chars())
            .take_while(|(a, b)| a == b)
            .count();
        assert!(shared < 10, "{} and {}", pair[0], pair[1]);
    }
}

/// The identity an outer auth layer puts in the request extensions.
#[derive(Clone)]
struct User(&'static str);

struct RequiresUser;

impl SecurityPolicy for RequiresUser {
    async fn can_handshake(&self, _: &ServerSession, _: &Message) -> bool {
        tower_bayeux::context::current().is_some_and(|ctx| ctx.extension::<User>().is_some())
    }

    async fn can_publish(&self, _: &ServerSession, _: &Message, channel: &ChannelName) -> bool {
        let user = tower_bayeux::context::current()
            .and_then(|ctx| ctx.extension::<User>().map(|user| user.0));
        !channel.as_str().starts_with("/admin/") || user == Some("root")
    }
}

#[tokio::test]
async fn an_auth_layers_identity_reaches_the_policy() {
    use tower::{ServiceBuilder, ServiceExt};

    let bayeux = Bayeux::builder().security_policy(RequiresUser).build();
    // The recipe: an outer layer turns credentials into a request extension.
    let service = |user: Option<&'static str>| {
        ServiceBuilder::new()
            .map_request(
                move |mut request: http::Request<http_body_util::Full<bytes::Bytes>>| {
                    if let Some(user) = user {
                        request.extensions_mut().insert(User(user));
                    }
                    request
                },
            )
            .service(tower_bayeux::BayeuxService::new(bayeux.clone()))
    };
    let call = |user: Option<&'static str>, cookie: Option<String>, body: serde_json::Value| {
        let service = service(user);
        async move {
            let mut request = http::Request::post("/cometd");
            if let Some(cookie) = cookie {
                request = request.header(http::header::COOKIE, cookie);
            }
            let request = request
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    body.to_string(),
                )))
                .unwrap();
            let response = service.oneshot(request).await.unwrap();
            let cookie = response
                .headers()
                .get(http::header::SET_COOKIE)
                .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
            use http_body_util::BodyExt;
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (
                cookie,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        }
    };
    let handshake = json!([{"channel": "/meta/handshake", "version": "1.0"}]);
    let (_, anonymous) = call(None, None, handshake.clone()).await;
    assert_eq!(anonymous[0]["error"], "403::handshake_denied");

    for (user, allowed) in [("alice", false), ("root", true)] {
        let (cookie, reply) = call(Some(user), None, handshake.clone()).await;
        let client_id = reply[0]["clientId"].as_str().unwrap().to_owned();
        let publish = json!([{"channel": "/admin/x", "data": 1, "clientId": client_id}]);
        let (_, reply) = call(Some(user), cookie, publish).await;
        assert_eq!(reply[0]["successful"], allowed, "{user}: {reply}");
    }
}
