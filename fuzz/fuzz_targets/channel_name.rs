//! The channel-name grammar and wildcard matching on arbitrary strings: never a panic; a valid
//! name round-trips; a pattern matches a channel exactly when it is one of the channel's wild
//! ancestors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_bayeux::ChannelName;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Two names: the input split at its first newline.
    let (first, second) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(a) = ChannelName::new(first) else {
        return;
    };
    assert_eq!(a.as_str(), first);
    let _ = (a.kind(), a.is_meta(), a.is_service(), a.depth());
    let mut ancestors = Vec::new();
    a.for_each_wild_ancestor(|name| ancestors.push(name.to_owned()));
    for ancestor in &ancestors {
        let pattern = ChannelName::new(ancestor).expect("a wild ancestor is a valid name");
        if !a.is_wild() {
            assert!(pattern.matches(&a), "{ancestor} should match {a:?}");
        }
    }
    let Ok(b) = ChannelName::new(second) else {
        return;
    };
    if b.is_wild() && !a.is_wild() {
        assert_eq!(
            b.matches(&a),
            ancestors.iter().any(|name| name == b.as_str()),
            "{b:?} against {a:?} (ancestors {ancestors:?})"
        );
    }
});
