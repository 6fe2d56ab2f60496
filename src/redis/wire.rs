//! What nodes send each other through Redis: a one-line header, then the message's JSON as it
//! was serialised once on the publishing node (queued as it is on the receiving ones).
//!
//! - a broadcast: `b<node> <sequence> <channel>\n<json>`: the sequence numbers a node's
//!   broadcasts in the order its publishing connection sends them, so that a receiving node
//!   subscribed to several of the Redis channels a broadcast is published on (the channel and
//!   its wildcard patterns) keeps the first copy and ignores the others;
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
        ] {
            assert_eq!(parse(&Bytes::copy_from_slice(bad)), None, "{bad:?}");
        }
    }
}
