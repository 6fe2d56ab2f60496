//! Channel names: validation, kinds and wildcard matching.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// A validated Bayeux channel name such as `/chat/room`, `/meta/connect`, `/service/echo`
/// or a wildcard pattern such as `/chat/*` and `/chat/**`.
///
/// The grammar is Bayeux 1.0's (`"/" segment *("/" segment)`, wildcards only as the last
/// segment) with the segment characters the CometD implementations accept: ASCII letters and
/// digits and `` !#$()+-.@_{}~`` (space included). Cloning is cheap (a reference count).
///
/// ```
/// use tower_bayeux::ChannelName;
///
/// let pattern = ChannelName::new("/chat/*").unwrap();
/// assert!(pattern.matches(&ChannelName::new("/chat/room").unwrap()));
/// assert!(!pattern.matches(&ChannelName::new("/chat/room/a").unwrap()));
/// assert!(ChannelName::new("/chat//room").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

/// The three kinds of Bayeux channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// `/meta/...`: the protocol's own channels, handled by the engine.
    Meta,
    /// `/service/...`: client-to-server messages, delivered to server listeners only.
    Service,
    /// Every other channel: messages are delivered to its subscribers.
    Broadcast,
}

/// Whether a channel name is a wildcard pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Wildcard {
    /// A plain channel name.
    None,
    /// `/a/*`: matches one more segment (`/a/b`, not `/a/b/c`).
    One,
    /// `/a/**`: matches one or more segments (`/a/b`, `/a/b/c`).
    Deep,
}

/// Why a string is not a valid channel name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid channel name {name:?}: {reason}")]
pub struct InvalidChannel {
    name: String,
    reason: &'static str,
}

impl InvalidChannel {
    /// The rejected name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

fn segment_char_ok(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b' ' | b'!'
                | b'#'
                | b'$'
                | b'('
                | b')'
                | b'+'
                | b'-'
                | b'.'
                | b'@'
                | b'_'
                | b'{'
                | b'}'
                | b'~'
        )
}

fn validate(name: &str) -> Result<(), &'static str> {
    let rest = name
        .strip_prefix('/')
        .ok_or("a channel name starts with '/'")?;
    if rest.is_empty() {
        return Err("a channel name has at least one segment");
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "" => return Err("empty segment"),
            "*" | "**" if last => {}
            "*" | "**" => return Err("a wildcard is only allowed as the last segment"),
            _ if segment.bytes().all(segment_char_ok) => {}
            _ => return Err("a segment holds a character outside the channel alphabet"),
        }
    }
    Ok(())
}

impl ChannelName {
    /// Validates `name` and returns it as a channel name.
    pub fn new(name: impl AsRef<str>) -> Result<Self, InvalidChannel> {
        let name = name.as_ref();
        validate(name).map_err(|reason| InvalidChannel {
            name: name.to_owned(),
            reason,
        })?;
        Ok(Self(Arc::from(name)))
    }

    /// A name written in the program, such as `"/chat/**"`.
    ///
    /// # Panics
    ///
    /// If `name` breaks the channel-name grammar: a literal is a programming error, as an
    /// invalid literal in `http::HeaderName::from_static`. Use [`new`](Self::new) for names
    /// built at run time.
    ///
    /// ```
    /// use tower_bayeux::ChannelName;
    ///
    /// let room = ChannelName::from_static("/chat/*");
    /// assert!(room.is_wild());
    /// ```
    pub fn from_static(name: &'static str) -> Self {
        if let Err(reason) = validate(name) {
            panic!("invalid channel name literal {name:?}: {reason}");
        }
        Self(Arc::from(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn first_segment(&self) -> &str {
        let rest = &self.0[1..];
        rest.split('/').next().unwrap_or(rest)
    }

    /// The kind of channel, from its first segment (`/meta`, `/service` or anything else).
    pub fn kind(&self) -> ChannelKind {
        match self.first_segment() {
            "meta" => ChannelKind::Meta,
            "service" => ChannelKind::Service,
            _ => ChannelKind::Broadcast,
        }
    }

    /// `true` for `/meta/...` channels.
    pub fn is_meta(&self) -> bool {
        self.kind() == ChannelKind::Meta
    }

    /// `true` for `/service/...` channels.
    pub fn is_service(&self) -> bool {
        self.kind() == ChannelKind::Service
    }

    /// `true` for channels that are neither meta nor service.
    pub fn is_broadcast(&self) -> bool {
        self.kind() == ChannelKind::Broadcast
    }

    /// Whether the name ends in `*` or `**`.
    pub fn wildcard(&self) -> Wildcard {
        if self.0.ends_with("/**") {
            Wildcard::Deep
        } else if self.0.ends_with("/*") {
            Wildcard::One
        } else {
            Wildcard::None
        }
    }

    /// `true` for wildcard patterns.
    pub fn is_wild(&self) -> bool {
        self.wildcard() != Wildcard::None
    }

    /// The number of segments (`/a/b` has 2).
    pub fn depth(&self) -> usize {
        self.0.bytes().filter(|&b| b == b'/').count()
    }

    /// Whether this name, taken as a pattern, matches `channel`.
    ///
    /// A plain name matches only itself; `/a/*` matches names with exactly one more segment;
    /// `/a/**` matches names with one or more further segments. A wildcard matches only plain
    /// names.
    pub fn matches(&self, channel: &ChannelName) -> bool {
        if channel.is_wild() {
            return false;
        }
        let (prefix, deep) = match self.wildcard() {
            Wildcard::None => return self == channel,
            Wildcard::One => (&self.0[..self.0.len() - 1], false),
            Wildcard::Deep => (&self.0[..self.0.len() - 2], true),
        };
        match channel.0.strip_prefix(prefix) {
            Some(rest) if !rest.is_empty() => deep || !rest.contains('/'),
            _ => false,
        }
    }

    /// Calls `f` with every wildcard pattern that matches this (plain) name, most specific first:
    /// for `/a/b/c` that is `/a/b/*`, `/a/b/**`, `/a/**`, `/**`. Wildcard names have none.
    ///
    /// Subscribers and listeners of a channel are found through these few names rather than by
    /// scanning every channel; the names are built in one reused buffer.
    #[doc(hidden)]
    pub fn for_each_wild_ancestor(&self, mut f: impl FnMut(&str)) {
        if self.is_wild() {
            return;
        }
        let name = self.as_str();
        let mut buffer = String::with_capacity(name.len() + 3);
        let parent_end = name.rfind('/').unwrap_or(0);
        buffer.push_str(&name[..parent_end]);
        buffer.push_str("/*");
        f(&buffer);
        buffer.push('*');
        f(&buffer);
        let mut end = parent_end;
        while end > 0 {
            end = name[..end].rfind('/').unwrap_or(0);
            buffer.clear();
            buffer.push_str(&name[..end]);
            buffer.push_str("/**");
            f(&buffer);
        }
    }

    /// The wildcard patterns matching this name, as [`for_each_wild_ancestor`] lists them.
    ///
    /// [`for_each_wild_ancestor`]: Self::for_each_wild_ancestor
    #[doc(hidden)]
    pub fn wild_ancestors(&self) -> Vec<ChannelName> {
        let mut out = Vec::with_capacity(self.depth() + 1);
        self.for_each_wild_ancestor(|name| out.push(ChannelName(Arc::from(name))));
        out
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for ChannelName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for ChannelName {
    type Error = InvalidChannel;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<String> for ChannelName {
    type Error = InvalidChannel;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl std::str::FromStr for ChannelName {
    type Err = InvalidChannel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// The meta channels the engine handles, matched exactly.
pub(crate) mod meta {
    pub(crate) const HANDSHAKE: &str = "/meta/handshake";
    pub(crate) const CONNECT: &str = "/meta/connect";
    pub(crate) const SUBSCRIBE: &str = "/meta/subscribe";
    pub(crate) const UNSUBSCRIBE: &str = "/meta/unsubscribe";
    pub(crate) const DISCONNECT: &str = "/meta/disconnect";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ChannelName {
        ChannelName::new(s).unwrap()
    }

    #[test]
    fn accepts_valid_names() {
        for ok in [
            "/a",
            "/chat/room-1",
            "/a/b/c",
            "/a/*",
            "/a/**",
            "/*",
            "/**",
            "/meta/connect",
            "/x/with space/!#$()+-.@_{}~",
        ] {
            assert!(ChannelName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_invalid_names() {
        for bad in [
            "", "/", "a", "a/b", "//", "/a/", "/a//b", "/*/b", "/**/b", "/a/*b", "/a/b*", "/a/***",
            "/a\"b", "/a/é", "/a\0", "/a/b\n", "/a?b", "/a%20",
        ] {
            assert!(ChannelName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kinds_come_from_the_first_segment_exactly() {
        assert_eq!(name("/meta/connect").kind(), ChannelKind::Meta);
        assert_eq!(name("/meta").kind(), ChannelKind::Meta);
        assert_eq!(name("/metadata/x").kind(), ChannelKind::Broadcast);
        assert_eq!(name("/service/echo").kind(), ChannelKind::Service);
        assert_eq!(name("/services").kind(), ChannelKind::Broadcast);
        assert_eq!(name("/chat").kind(), ChannelKind::Broadcast);
    }

    #[test]
    fn wildcard_matching_follows_the_spec() {
        let one = name("/foo/*");
        assert!(one.matches(&name("/foo/bar")));
        assert!(one.matches(&name("/foo/boo")));
        assert!(!one.matches(&name("/foo")));
        assert!(!one.matches(&name("/foobar")));
        assert!(!one.matches(&name("/foo/bar/boo")));
        let deep = name("/foo/**");
        assert!(deep.matches(&name("/foo/bar")));
        assert!(deep.matches(&name("/foo/bar/boo")));
        assert!(!deep.matches(&name("/foo")));
        assert!(!deep.matches(&name("/foobar")));
        assert!(!deep.matches(&name("/foobar/boo")));
        assert!(name("/**").matches(&name("/a/b")));
        assert!(name("/*").matches(&name("/a")));
        assert!(!name("/*").matches(&name("/a/b")));
        assert!(name("/a/b").matches(&name("/a/b")));
        assert!(!name("/a/b").matches(&name("/a/c")));
        assert!(
            !deep.matches(&name("/foo/*")),
            "patterns match only plain names"
        );
    }

    #[test]
    fn wild_ancestors_are_exactly_the_matching_patterns() {
        let names: Vec<String> = name("/a/b/c")
            .wild_ancestors()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["/a/b/*", "/a/b/**", "/a/**", "/**"]);
        let names: Vec<String> = name("/a")
            .wild_ancestors()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["/*", "/**"]);
        assert!(name("/a/*").wild_ancestors().is_empty());
        for channel in ["/a", "/a/b", "/x/y/z/w"] {
            let channel = name(channel);
            for pattern in channel.wild_ancestors() {
                assert!(
                    pattern.matches(&channel),
                    "{pattern} should match {channel}"
                );
            }
        }
    }
}
