//! What every answer of the long-polling endpoint looks like, whatever was sent: shared by the
//! hostile-input tests and the `request` fuzz target (`fuzz/`, which includes this file by path).

use http::StatusCode;
use serde_json::Value;

/// Asserts that `answer` is a 4xx, or a 200 carrying a non-empty JSON array with one reply per
/// message of `sent` (after any deliveries), each echoing its message's `id`.
pub fn check_answer(status: StatusCode, answer: &[u8], sent: &[u8]) {
    let sent_text = String::from_utf8_lossy(sent);
    if status != StatusCode::OK {
        assert!(status.is_client_error(), "{sent_text} -> {status}");
        return;
    }
    let answer: Value = serde_json::from_slice(answer).expect("a JSON answer");
    let answer = answer.as_array().expect("an array");
    assert!(!answer.is_empty(), "{sent_text} -> an empty reply array");
    let requests = match serde_json::from_slice(sent).expect("a 200 answers JSON") {
        Value::Array(messages) => messages,
        message => vec![message],
    };
    let replies: Vec<&Value> = answer
        .iter()
        .filter(|m| m.get("successful").is_some())
        .collect();
    assert_eq!(replies.len(), requests.len(), "{sent_text} -> {answer:?}");
    for (request, reply) in requests.iter().zip(replies) {
        // `"id": null` reads as no id (as every null field does), so there is none to echo.
        let id = request.get("id").filter(|id| !id.is_null());
        assert_eq!(id, reply.get("id"), "{sent_text} -> {answer:?}");
    }
}
