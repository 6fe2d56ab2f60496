//! What nodes send each other through Redis: a one-line header, then the message's JSON as it
//! was serialised once on the publishing node (queued as it is on the receiving ones).
//!
//! - a broadcast: `b<node> <sequence> <channel>\n<json>`: the sequence numbers a node's
//!   broadcasts in the order its publishing connection sends them, so that a receiving node
//!   subscribed to several of the Redis channels a broadcast is published on (the channel and
//!   its wildcard patterns) keeps the first copy and ignores the others;
//! - a broadcast on a channel with history: `h<node> <sequence> <offset> <epoch> <channel>\n
//!   <json>`, written by the script that gives it its offset (see `history.rs`): every node, the
//!   publishing one included, fans these out as they arrive, in offset order, keeping the first
//!   copy as for broadcasts;
//! - a delivery to one session: `d<node> <clientId>\n<json>`.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

/// A message from another node, borrowed from the payload it arrived in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    Broadcast {
        node: &'a str,
        sequence: u64,
        channel: &'a str,
        json: Bytes,
    },
    History {
        node: &'a str,
        sequence: u64,
        offset: u64,
        epoch: &'a str,
        channel: &'a str,
        json: Bytes,
    },
    Deliver {
        client_id: &'a str,
        json: Bytes,
    },
}

pub(crate) fn broadcast(node: &str, sequence: u64, channel: &str, json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(node.len() + channel.len() + json.len() + 24);
    out.put_u8(b'b');
    out.put_slice(node.as_bytes());
    out.put_u8(b' ');
    // Writing into memory cannot fail.
    let _ = write!(out, "{sequence}");
    out.put_u8(b' ');
    out.put_slice(channel.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(json);
    out.freeze()
}

pub(crate) fn deliver(node: &str, client_id: &str, json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(node.len() + client_id.len() + json.len() + 4);
    out.put_u8(b'd');
    out.put_slice(node.as_bytes());
    out.put_u8(b' ');
    out.put_slice(client_id.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(json);
    out.freeze()
}

/// Reads a payload; `None` for anything that is not one of ours.
pub(crate) fn parse(payload: &Bytes) -> Option<Frame<'_>> {
    let newline = payload.iter().position(|b| *b == b'\n')?;
    let header = std::str::from_utf8(&payload[1..newline]).ok()?;
    let json = payload.slice(newline + 1..);
    match payload.first()? {
        b'b' => {
            let mut parts = header.splitn(3, ' ');
            let node = parts.next()?;
            let sequence = parts.next()?.parse().ok()?;
            let channel = parts.next()?;
            Some(Frame::Broadcast {
                node,
                sequence,
                channel,
                json,
            })
        }
        b'h' => {
            let mut parts = header.splitn(5, ' ');
            let node = parts.next()?;
            let sequence = parts.next()?.parse().ok()?;
            let offset = parts.next()?.parse().ok()?;
            let epoch = parts.next()?;
            let channel = parts.next()?;
            Some(Frame::History {
                node,
                sequence,
                offset,
                epoch,
                channel,
                json,
            })
        }
        b'd' => {
            let (_node, client_id) = header.split_once(' ')?;
            Some(Frame::Deliver { client_id, json })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let json = br#"{"channel":"/a/b","data":"x\ny"}"#;
        let payload = broadcast("0a1b2c3d", 42, "/a/b", json);
        assert_eq!(
            parse(&payload),
            Some(Frame::Broadcast {
                node: "0a1b2c3d",
                sequence: 42,
                channel: "/a/b",
                json: Bytes::from_static(json),
            })
        );
        let payload = Bytes::from(format!(
            "hab12 3 7 00ff /a/b\n{}",
            std::str::from_utf8(json).unwrap()
        ));
        assert_eq!(
            parse(&payload),
            Some(Frame::History {
                node: "ab12",
                sequence: 3,
                offset: 7,
                epoch: "00ff",
                channel: "/a/b",
                json: Bytes::from_static(json),
            })
        );
        let payload = deliver("0a1b2c3d", "0a1b2c3dffff", json);
        assert_eq!(
            parse(&payload),
            Some(Frame::Deliver {
                client_id: "0a1b2c3dffff",
                json: Bytes::from_static(json),
            })
        );
    }

    #[test]
    fn foreign_payloads_are_ignored() {
        for bad in [
            &b""[..],
            b"hello",
            b"b\n{}",
            b"bnode x /a\n{}",
            b"bnode 1\n{}",
            b"dnode\n{}",
            b"x1 2 /a\n{}",
            b"b\xff 1 /a\n{}",
            b"hn 1 x e /a\n{}",
            b"hn 1 1 e\n{}",
        ] {
            assert_eq!(parse(&Bytes::copy_from_slice(bad)), None, "{bad:?}");
        }
    }
}
