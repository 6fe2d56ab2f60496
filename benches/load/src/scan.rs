//! An allocation-free walk over a Bayeux JSON array: it reads the few fields the generator needs
//! (channel, id, successful, error, clientId, advice, and the bench payload's `t`/`p`/`s` or the
//! overflow marker's `dropped`) and skips every other value, whatever the key order.

/// One message of a Bayeux array. String fields are the raw bytes between the quotes.
#[derive(Default, Debug)]
pub struct Msg<'a> {
    pub channel: &'a [u8],
    pub id: Option<&'a [u8]>,
    pub successful: Option<bool>,
    pub error: Option<&'a [u8]>,
    pub client_id: Option<&'a [u8]>,
    pub has_data: bool,
    /// The bench payload: send time (ns since the run start), publisher, sequence.
    pub t: Option<u64>,
    pub p: Option<u64>,
    pub s: Option<u64>,
    /// `data.dropped` of a `/meta/overflow` marker.
    pub dropped: Option<u64>,
    pub reconnect: Option<&'a [u8]>,
    pub interval: Option<u64>,
    pub timeout: Option<u64>,
}

impl Msg<'_> {
    pub fn channel_is(&self, name: &str) -> bool {
        json_str_eq(self.channel, name)
    }

    /// A reply to something this client sent (as opposed to a delivery).
    pub fn is_reply(&self) -> bool {
        self.successful.is_some()
    }

    pub fn id_num(&self) -> Option<u64> {
        let id = self.id?;
        std::str::from_utf8(id).ok()?.parse().ok()
    }
}

/// Whether the raw JSON string content `raw` denotes `lit` (handles `\/` and `\uXXXX` escapes of
/// ASCII, which some servers emit).
pub fn json_str_eq(raw: &[u8], lit: &str) -> bool {
    if !raw.contains(&b'\\') {
        return raw == lit.as_bytes();
    }
    let lit = lit.as_bytes();
    let (mut i, mut j) = (0, 0);
    while i < raw.len() {
        let c = if raw[i] == b'\\' && i + 1 < raw.len() {
            i += 1;
            match raw[i] {
                b'u' if i + 4 < raw.len() => {
                    let code = std::str::from_utf8(&raw[i + 1..i + 5])
                        .ok()
                        .and_then(|h| u32::from_str_radix(h, 16).ok());
                    i += 4;
                    match code {
                        Some(c) if c < 128 => c as u8,
                        _ => return false,
                    }
                }
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                other => other,
            }
        } else {
            raw[i]
        };
        if j >= lit.len() || lit[j] != c {
            return false;
        }
        i += 1;
        j += 1;
    }
    j == lit.len()
}

pub fn unescape(raw: &[u8]) -> String {
    if !raw.contains(&b'\\') {
        return String::from_utf8_lossy(raw).into_owned();
    }
    let quoted = [b"\"".as_slice(), raw, b"\""].concat();
    serde_json::from_slice(&quoted).unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned())
}

#[derive(Debug)]
pub struct Invalid;

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Result<u8, Invalid> {
        self.ws();
        self.b.get(self.i).copied().ok_or(Invalid)
    }

    fn eat(&mut self, c: u8) -> Result<(), Invalid> {
        if self.peek()? == c {
            self.i += 1;
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    /// A string's raw content (the cursor is on its opening quote).
    fn string(&mut self) -> Result<&'a [u8], Invalid> {
        self.eat(b'"')?;
        let start = self.i;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'"' => {
                    let s = &self.b[start..self.i];
                    self.i += 1;
                    return Ok(s);
                }
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
        Err(Invalid)
    }

    /// A scalar token (number, true, false, null), raw.
    fn scalar(&mut self) -> Result<&'a [u8], Invalid> {
        self.ws();
        let start = self.i;
        while self.i < self.b.len()
            && !matches!(
                self.b[self.i],
                b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'
            )
        {
            self.i += 1;
        }
        if self.i == start {
            Err(Invalid)
        } else {
            Ok(&self.b[start..self.i])
        }
    }

    fn number(&mut self) -> Result<Option<u64>, Invalid> {
        if matches!(self.peek()?, b'"' | b'{' | b'[') {
            self.skip()?;
            return Ok(None);
        }
        let raw = self.scalar()?;
        Ok(std::str::from_utf8(raw).ok().and_then(|s| s.parse().ok()))
    }

    fn skip(&mut self) -> Result<(), Invalid> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let mut depth = 0usize;
                while self.i < self.b.len() {
                    match self.b[self.i] {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Ok(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
                Err(Invalid)
            }
            _ => self.scalar().map(drop),
        }
    }

    /// Walks an object's members, calling `f(key, cursor)`; `f` must consume the value.
    fn object(
        &mut self,
        mut f: impl FnMut(&'a [u8], &mut Self) -> Result<(), Invalid>,
    ) -> Result<(), Invalid> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            f(key, self)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Invalid),
            }
        }
    }
}

fn message<'a>(c: &mut Cursor<'a>) -> Result<Msg<'a>, Invalid> {
    let mut m = Msg::default();
    c.object(|key, c| {
        match key {
            b"channel" => m.channel = c.string()?,
            b"id" => {
                m.id = Some(if c.peek()? == b'"' {
                    c.string()?
                } else {
                    c.scalar()?
                })
            }
            b"successful" => m.successful = Some(c.scalar()? == b"true"),
            b"error" if c.peek()? == b'"' => m.error = Some(c.string()?),
            b"clientId" if c.peek()? == b'"' => m.client_id = Some(c.string()?),
            b"data" => {
                m.has_data = true;
                if c.peek()? == b'{' {
                    c.object(|key, c| {
                        match key {
                            b"t" => m.t = c.number()?,
                            b"p" => m.p = c.number()?,
                            b"s" => m.s = c.number()?,
                            b"dropped" => m.dropped = c.number()?,
                            _ => c.skip()?,
                        }
                        Ok(())
                    })?;
                } else {
                    c.skip()?;
                }
            }
            b"advice" if c.peek()? == b'{' => c.object(|key, c| {
                match key {
                    b"reconnect" if c.peek()? == b'"' => m.reconnect = Some(c.string()?),
                    b"interval" => m.interval = c.number()?,
                    b"timeout" => m.timeout = c.number()?,
                    _ => c.skip()?,
                }
                Ok(())
            })?,
            _ => c.skip()?,
        }
        Ok(())
    })?;
    Ok(m)
}

/// Calls `f` for each message of the JSON array `body` (a lone object is taken as an array of
/// one, as some servers send over websocket).
pub fn for_each<'a>(body: &'a [u8], mut f: impl FnMut(Msg<'a>)) -> Result<usize, Invalid> {
    let mut c = Cursor { b: body, i: 0 };
    if c.peek()? == b'{' {
        f(message(&mut c)?);
        return Ok(1);
    }
    c.eat(b'[')?;
    let mut n = 0;
    if c.peek()? == b']' {
        return Ok(0);
    }
    loop {
        f(message(&mut c)?);
        n += 1;
        match c.peek()? {
            b',' => c.i += 1,
            b']' => return Ok(n),
            _ => return Err(Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_a_mixed_array() {
        let body = br#" [ {"data":{"x":"a\"}]","s":7,"p":2,"t":123456},"channel":"/bench/room/1","id":"9"},
            {"channel":"\/meta\/overflow","data":{"dropped":3}},
            {"id":"4","channel":"/meta/connect","successful":true,"advice":{"reconnect":"retry","interval":0,"timeout":20000,"x":[1,{"y":2}]}},
            {"id":5,"channel":"/bench/room/1","successful":false,"error":"403::denied","ext":{"a":[{}]}} ]"#;
        let mut v = Vec::new();
        for_each(body, |m| {
            v.push(format!(
                "{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
                String::from_utf8_lossy(m.channel),
                m.id_num(),
                m.successful,
                (m.t, m.p, m.s),
                m.dropped,
                m.reconnect.map(|r| String::from_utf8_lossy(r).into_owned()),
                m.timeout,
                m.error.map(unescape),
            ))
        })
        .unwrap();
        assert_eq!(v.len(), 4);
        assert!(
            v[0].contains("(Some(123456), Some(2), Some(7))"),
            "{}",
            v[0]
        );
        assert!(v[1].contains("Some(3)"));
        assert!(v[2].contains("Some(\"retry\")|Some(20000)"));
        assert!(v[3].contains("Some(5)|Some(false)"));
        assert!(json_str_eq(br"\/meta\/overflow", "/meta/overflow"));
        assert!(json_str_eq(br"\u002fmeta/x", "/meta/x"));
        assert!(!json_str_eq(br"\/meta\/overflowx", "/meta/overflow"));
    }
}
