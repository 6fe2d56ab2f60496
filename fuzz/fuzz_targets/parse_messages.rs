//! The message parser on arbitrary bytes: never a panic; within the limits it was given; and
//! whatever it accepts serialises and parses back to the same messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_bayeux::protocol::{ParseLimits, parse_messages, parse_messages_with};

const LIMITS: ParseLimits = ParseLimits {
    max_messages: 8,
    max_message_size: 512,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(messages) = parse_messages_with(data, &LIMITS) {
        assert!(messages.len() <= LIMITS.max_messages);
    }
    let Ok(messages) = parse_messages(data) else {
        return;
    };
    let json = serde_json::to_vec(&messages).expect("a parsed message serialises");
    let again = parse_messages(&json).expect("a serialised message parses");
    assert_eq!(
        serde_json::to_value(&messages).unwrap(),
        serde_json::to_value(&again).unwrap()
    );
});
