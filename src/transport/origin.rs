//! The `Origin` check of websocket upgrades, against cross-site websocket hijacking.
//!
//! Browsers attach their cookies to a websocket upgrade whatever page opens it, and CORS does
//! not govern websockets, so the server itself must refuse pages from other sites. An upgrade
//! passes when it carries no `Origin` (not a browser), when its origin is the request's own
//! (the scheme, host and port its `Host` header names), or when the origin is on the allow-list.

use http::HeaderMap;
use http::header::{HOST, ORIGIN};
use http::uri::{Authority, Scheme, Uri};

/// An origin as compared: scheme and host in lowercase, the port made explicit.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

impl Origin {
    /// Parses `scheme://host[:port]` (a trailing `/` is tolerated); `None` for anything else,
    /// including the opaque origin `null`.
    fn parse(value: &str) -> Option<Self> {
        let uri: Uri = value.parse().ok()?;
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return None;
        }
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let authority = uri.authority()?;
        if authority.as_str().contains('@') {
            return None;
        }
        let port = match authority.port_u16() {
            Some(port) => port,
            None => default_port(&scheme)?,
        };
        Some(Self {
            host: authority.host().to_ascii_lowercase(),
            scheme,
            port,
        })
    }

    /// Whether this origin is the one the request was addressed to: the same host, and the
    /// `Host` header's port (or, without one, the default port of the origin's scheme). The
    /// scheme is compared too when the request URI carries one (HTTP/2); over HTTP/1 a server
    /// behind a TLS-terminating proxy cannot tell, so `http` and `https` both pass.
    fn is_addressed_by(&self, host: &Authority, scheme: Option<&Scheme>) -> bool {
        if !self.host.eq_ignore_ascii_case(host.host()) {
            return false;
        }
        if scheme.is_some_and(|s| !s.as_str().eq_ignore_ascii_case(&self.scheme)) {
            return false;
        }
        match host.port_u16() {
            Some(port) => port == self.port,
            None => default_port(&self.scheme) == Some(self.port),
        }
    }
}

/// Why an upgrade is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) String);

/// Checks the `Origin` of an upgrade request whose head is `headers` and `uri`.
pub(crate) fn check(headers: &HeaderMap, uri: &Uri, allowed: &[String]) -> Result<(), Refused> {
    let mut origins = headers.get_all(ORIGIN).iter();
    let Some(value) = origins.next() else {
        return Ok(());
    };
    let shown = || String::from_utf8_lossy(value.as_bytes()).into_owned();
    if origins.next().is_some() {
        return Err(Refused("more than one Origin header".to_owned()));
    }
    let Some(origin) = value.to_str().ok().and_then(Origin::parse) else {
        return Err(Refused(format!("Origin {:?} is not allowed", shown())));
    };
    let host = headers
        .get(HOST)
        .and_then(|value| value.to_str().ok()?.parse::<Authority>().ok())
        .or_else(|| uri.authority().cloned());
    if host.is_some_and(|host| origin.is_addressed_by(&host, uri.scheme())) {
        return Ok(());
    }
    if allowed
        .iter()
        .any(|entry| Origin::parse(entry).is_some_and(|entry| entry == origin))
    {
        return Ok(());
    }
    Err(Refused(format!(
        "websocket upgrades from Origin {:?} are not allowed: only the server's own origin and \
         the configured allowed origins may open websockets here",
        shown()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(HOST, host.parse().unwrap());
        }
        if let Some(origin) = origin {
            headers.insert(ORIGIN, origin.parse().unwrap());
        }
        headers
    }

    fn passes(host: &str, origin: &str, allowed: &[&str]) -> bool {
        let allowed: Vec<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
        let uri = Uri::from_static("/cometd");
        check(&upgrade(Some(host), Some(origin)), &uri, &allowed).is_ok()
    }

    #[test]
    fn the_requests_own_origin_passes() {
        assert!(passes("example.com", "https://example.com", &[]));
        assert!(passes("example.com", "http://example.com", &[]));
        assert!(passes("Example.COM", "https://example.com:443", &[]));
        assert!(passes("127.0.0.1:8080", "http://127.0.0.1:8080", &[]));
        assert!(passes("[::1]:8080", "http://[::1]:8080", &[]));
        assert!(passes("example.com:8443", "https://example.com:8443/", &[]));
    }

    #[test]
    fn other_origins_are_refused() {
        assert!(!passes("example.com", "https://evil.example", &[]));
        assert!(!passes("example.com", "https://example.com.evil.test", &[]));
        assert!(!passes("127.0.0.1:8080", "http://127.0.0.1:8081", &[]));
        assert!(!passes("127.0.0.1:8080", "http://127.0.0.1", &[]));
        assert!(!passes("example.com", "https://example.com:8443", &[]));
        assert!(!passes("example.com", "null", &[]));
        assert!(!passes("example.com", "file://", &[]));
        assert!(!passes("example.com", "https://user@example.com", &[]));
        assert!(!passes("example.com", "https://example.com/page", &[]));
        assert!(!passes("example.com", "example.com", &[]));
    }

    #[test]
    fn allowed_origins_match_exactly() {
        let allowed = ["http://allowed.test", "https://app.example.com:8443"];
        assert!(passes("api.example.com", "http://allowed.test", &allowed));
        assert!(passes(
            "api.example.com",
            "HTTP://Allowed.Test:80",
            &allowed
        ));
        assert!(passes(
            "api.example.com",
            "https://app.example.com:8443",
            &allowed
        ));
        assert!(!passes("api.example.com", "https://allowed.test", &allowed));
        assert!(!passes(
            "api.example.com",
            "http://sub.allowed.test",
            &allowed
        ));
        assert!(!passes(
            "api.example.com",
            "https://app.example.com",
            &allowed
        ));
        assert!(!passes(
            "api.example.com",
            "http://evil.test",
            &["not an origin"]
        ));
    }

    #[test]
    fn the_scheme_counts_when_the_request_names_it() {
        let uri: Uri = "https://example.com/cometd".parse().unwrap();
        let headers = |origin| upgrade(None, Some(origin));
        assert!(check(&headers("https://example.com"), &uri, &[]).is_ok());
        assert!(check(&headers("http://example.com"), &uri, &[]).is_err());
    }

    #[test]
    fn requests_without_origin_pass_and_duplicates_do_not() {
        let uri = Uri::from_static("/cometd");
        assert!(check(&upgrade(Some("example.com"), None), &uri, &[]).is_ok());
        let mut twice = upgrade(Some("example.com"), Some("https://example.com"));
        twice.append(ORIGIN, "https://example.com".parse().unwrap());
        assert!(check(&twice, &uri, &[]).is_err());
    }
}
