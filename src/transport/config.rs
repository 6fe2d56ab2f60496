//! What the transports are configured with: the browser cookie, request limits, and the
//! websocket and callback-polling settings. Users set them on
//! [`BayeuxBuilder`](crate::BayeuxBuilder), next to the engine's settings.

use std::time::Duration;

use http::{HeaderMap, StatusCode};

use crate::protocol::ParseLimits;

/// The `SameSite` attribute of the browser cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=None` (browsers require `Secure` with it).
    None,
}

/// The browser cookie (`BAYEUX_BROWSER` by default): it tells which sessions share a browser,
/// and binds long-polling sessions to it.
#[derive(Clone, Debug)]
pub(crate) struct BrowserCookie {
    pub(crate) name: String,
    pub(crate) http_only: bool,
    pub(crate) secure: bool,
    pub(crate) same_site: Option<SameSite>,
    pub(crate) path: Option<String>,
    pub(crate) domain: Option<String>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) partitioned: bool,
}

impl Default for BrowserCookie {
    fn default() -> Self {
        Self {
            name: "BAYEUX_BROWSER".to_owned(),
            http_only: true,
            secure: false,
            same_site: None,
            path: Some("/".to_owned()),
            domain: None,
            max_age: None,
            partitioned: false,
        }
    }
}

/// Longer cookie values are ignored (a new browser id is issued), so a client cannot make the
/// engine store arbitrarily large keys.
const MAX_BROWSER_ID_LEN: usize = 128;

impl BrowserCookie {
    /// The `Set-Cookie` value for a new browser id.
    pub(crate) fn set_cookie(&self, value: &str) -> String {
        let mut builder = cookie::Cookie::build((self.name.as_str(), value))
            .http_only(self.http_only)
            .secure(self.secure)
            .partitioned(self.partitioned);
        if let Some(path) = &self.path {
            builder = builder.path(path.as_str());
        }
        if let Some(domain) = &self.domain {
            builder = builder.domain(domain.as_str());
        }
        if let Some(max_age) = self.max_age {
            let secs = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
            builder = builder.max_age(cookie::time::Duration::seconds(secs));
        }
        if let Some(same_site) = self.same_site {
            builder = builder.same_site(match same_site {
                SameSite::Strict => cookie::SameSite::Strict,
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::None => cookie::SameSite::None,
            });
        }
        builder.build().to_string()
    }

    /// This cookie's value in the request's `Cookie` headers, if it is there and not too long.
    pub(crate) fn find<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|cookie| cookie.name() == self.name)
            .and_then(|cookie| cookie.value_raw())
            .filter(|value| !value.is_empty() && value.len() <= MAX_BROWSER_ID_LEN)
    }
}

/// The websocket transport's settings.
#[cfg(feature = "websocket")]
#[derive(Clone, Debug)]
pub(crate) struct WebSocketSettings {
    pub(crate) enabled: bool,
    /// Set when the [`Bayeux`](crate::Bayeux) is built (by default from the engine's timing).
    pub(crate) idle_timeout: Duration,
    pub(crate) write_timeout: Duration,
    /// Origins allowed to open websockets besides the request's own, as given.
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) check_origin: bool,
    pub(crate) keep_extensions: bool,
}

#[cfg(feature = "websocket")]
impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            allowed_origins: Vec::new(),
            check_origin: true,
            keep_extensions: true,
        }
    }
}

/// The transports' settings, fixed when the [`Bayeux`](crate::Bayeux) is built.
#[derive(Clone, Debug)]
pub(crate) struct TransportConfig {
    pub(crate) cookie: BrowserCookie,
    pub(crate) duplicate_meta_connect_status: StatusCode,
    pub(crate) max_body_size: usize,
    pub(crate) parse_limits: ParseLimits,
    pub(crate) trust_client_session: bool,
    #[cfg(feature = "websocket")]
    pub(crate) websocket: WebSocketSettings,
    #[cfg(feature = "jsonp")]
    pub(crate) callback_polling: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            cookie: BrowserCookie::default(),
            duplicate_meta_connect_status: StatusCode::INTERNAL_SERVER_ERROR,
            max_body_size: 1024 * 1024,
            parse_limits: ParseLimits {
                max_messages: 1000,
                max_message_size: 64 * 1024,
            },
            trust_client_session: false,
            #[cfg(feature = "websocket")]
            websocket: WebSocketSettings::default(),
            #[cfg(feature = "jsonp")]
            callback_polling: false,
        }
    }
}

impl TransportConfig {
    pub(crate) fn websocket_enabled(&self) -> bool {
        #[cfg(feature = "websocket")]
        return self.websocket.enabled;
        #[cfg(not(feature = "websocket"))]
        false
    }

    pub(crate) fn callback_polling_enabled(&self) -> bool {
        #[cfg(feature = "jsonp")]
        return self.callback_polling;
        #[cfg(not(feature = "jsonp"))]
        false
    }

    /// The enabled transports, in the order the handshake reply lists them.
    pub(crate) fn connection_types(&self) -> Vec<&'static str> {
        let mut types = Vec::with_capacity(3);
        if self.websocket_enabled() {
            types.push("websocket");
        }
        types.push("long-polling");
        if self.callback_polling_enabled() {
            types.push("callback-polling");
        }
        types
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookie_carries_every_option() {
        let mut cookie = BrowserCookie::default();
        assert_eq!(
            cookie.set_cookie("abc"),
            "BAYEUX_BROWSER=abc; HttpOnly; Path=/"
        );
        cookie.secure = true;
        cookie.partitioned = true;
        cookie.same_site = Some(SameSite::Strict);
        cookie.domain = Some("example.com".into());
        cookie.max_age = Some(Duration::from_secs(60));
        let set = cookie.set_cookie("abc");
        for part in [
            "BAYEUX_BROWSER=abc",
            "HttpOnly",
            "Secure",
            "Partitioned",
            "SameSite=Strict",
            "Domain=example.com",
            "Max-Age=60",
            "Path=/",
        ] {
            assert!(set.contains(part), "{set} lacks {part}");
        }
    }

    #[test]
    fn finds_the_cookie_among_others() {
        let cookie = BrowserCookie::default();
        let headers = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(http::header::COOKIE, value.parse().unwrap());
            }
            headers
        };
        let found = headers(&["a=1; BAYEUX_BROWSER=xyz; b=2"]);
        assert_eq!(cookie.find(&found), Some("xyz"));
        let second_header = headers(&["a=1", "b=2;BAYEUX_BROWSER=abc"]);
        assert_eq!(cookie.find(&second_header), Some("abc"));
        let long = headers(&[&format!("BAYEUX_BROWSER={}", "x".repeat(500))]);
        assert_eq!(cookie.find(&long), None);
        assert_eq!(cookie.find(&headers(&["BAYEUX_BROWSER="])), None);
        assert_eq!(cookie.find(&headers(&["XBAYEUX_BROWSER=1"])), None);
        assert_eq!(cookie.find(&HeaderMap::new()), None);
    }
}
