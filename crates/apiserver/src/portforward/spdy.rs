//! SPDY/3.1 framing, as far as Kubernetes' streaming protocols use it
//! (`k8s.io/apimachinery/pkg/util/httpstream/spdy` over moby/spdystream): the
//! client opens streams with SYN_STREAM, the server answers SYN_REPLY, both
//! send DATA with FIN as a half close, RST_STREAM ends a stream, PING is
//! echoed, GOAWAY ends the session. Header blocks are zlib-compressed with
//! SPDY's dictionary, one compression context per direction for the whole
//! connection. spdystream does no flow control, so WINDOW_UPDATE and SETTINGS
//! are read and ignored.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const TYPE_SYN_STREAM: u16 = 1;
pub const TYPE_SYN_REPLY: u16 = 2;
pub const TYPE_RST_STREAM: u16 = 3;
pub const TYPE_PING: u16 = 6;
pub const TYPE_GOAWAY: u16 = 7;
pub const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status: the stream is not wanted (spdystream's `Cancel`).
#[cfg(test)]
pub const RST_CANCEL: u32 = 5;
/// RST_STREAM status: a frame broke the protocol.
pub const RST_PROTOCOL_ERROR: u32 = 1;
const VERSION: u16 = 3;
/// The largest frame read; SPDY lengths are 24 bits.
const MAX_FRAME: usize = 1 << 24;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading a frame: {0}")]
    Io(#[from] std::io::Error),
    #[error("a header block did not decompress: {0}")]
    Inflate(String),
    #[error("a header block is malformed")]
    HeaderBlock,
    #[error("unsupported SPDY version {0}")]
    Version(u16),
}

/// A frame read from the peer.
#[derive(Debug, PartialEq)]
pub enum Frame {
    SynStream {
        stream: u32,
        fin: bool,
        headers: Vec<(String, String)>,
    },
    Data {
        stream: u32,
        fin: bool,
        data: Vec<u8>,
    },
    Rst {
        stream: u32,
    },
    Ping {
        id: u32,
    },
    GoAway,
    /// SYN_REPLY, HEADERS, SETTINGS, WINDOW_UPDATE: nothing to do for a server.
    Other,
}

/// The SPDY/3 header compression dictionary (SPDY draft 3, 2.6.10.1): length-prefixed
/// header names and values, then a run of common text.
fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
        "501 Not Implemented503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
        "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
        "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
}

/// The receiving side's header decompression context.
pub struct Inflater {
    z: Decompress,
    dict: Vec<u8>,
}

impl Default for Inflater {
    fn default() -> Self {
        Self {
            z: Decompress::new(true),
            dict: dictionary(),
        }
    }
}

impl Inflater {
    /// Decompresses one frame's header block (the stream continues across frames).
    pub fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(1024));
            }
            let before = self.z.total_in();
            let r = self
                .z
                .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.z.total_in() - before) as usize;
            match r {
                Ok(Status::StreamEnd) => return Ok(out),
                Ok(_) => {
                    if pos >= input.len() && out.len() < out.capacity() {
                        return Ok(out);
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(&self.dict)
                        .map_err(|e| Error::Inflate(e.to_string()))?;
                }
                Err(e) => return Err(Error::Inflate(e.to_string())),
            }
        }
    }
}

/// The sending side's header compression context.
pub struct Deflater {
    z: Compress,
}

impl Default for Deflater {
    fn default() -> Self {
        let mut z = Compress::new(Compression::best(), true);
        // A fresh context takes a dictionary: this cannot fail.
        let _ = z.set_dictionary(&dictionary());
        Self { z }
    }
}

impl Deflater {
    /// Compresses one header block, flushed so the peer can read it whole.
    pub fn deflate(&mut self, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = self.z.total_in();
            let r = self
                .z
                .compress_vec(&block[pos..], &mut out, FlushCompress::Sync);
            pos += (self.z.total_in() - before) as usize;
            // The sync flush is complete when the output did not fill up.
            if r.is_err() || (pos >= block.len() && out.len() < out.capacity()) {
                return out;
            }
        }
    }
}

/// A header block: count, then length-prefixed names and values; a value
/// holding several is NUL-separated.
pub fn encode_headers(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (k, v) in headers {
        b.extend_from_slice(&(k.len() as u32).to_be_bytes());
        b.extend_from_slice(k.to_ascii_lowercase().as_bytes());
        b.extend_from_slice(&(v.len() as u32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    b
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], Error> {
    if b.len() < n {
        return Err(Error::HeaderBlock);
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

fn take_u32(b: &mut &[u8]) -> Result<u32, Error> {
    let v = take(b, 4)?;
    Ok(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
}

/// Parses a decompressed header block into lower-case names and values.
pub fn decode_headers(mut b: &[u8]) -> Result<Vec<(String, String)>, Error> {
    let n = take_u32(&mut b)?;
    let mut out = Vec::new();
    for _ in 0..n {
        let len = take_u32(&mut b)? as usize;
        let name = String::from_utf8_lossy(take(&mut b, len)?).to_ascii_lowercase();
        let len = take_u32(&mut b)? as usize;
        let value = String::from_utf8_lossy(take(&mut b, len)?).into_owned();
        for v in value.split('\0') {
            out.push((name.clone(), v.to_string()));
        }
    }
    Ok(out)
}

/// Reads the next frame; `Ok(None)` at a clean end of the connection.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    inflater: &mut Inflater,
) -> Result<Option<Frame>, Error> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if len > MAX_FRAME {
        return Err(Error::HeaderBlock);
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    let fin = flags & FLAG_FIN != 0;
    if word & 0x8000_0000 == 0 {
        return Ok(Some(Frame::Data {
            stream: word & 0x7fff_ffff,
            fin,
            data: body,
        }));
    }
    let version = ((word >> 16) & 0x7fff) as u16;
    if version != VERSION {
        return Err(Error::Version(version));
    }
    let id = |b: &[u8]| -> Result<u32, Error> {
        let v = b.get(..4).ok_or(Error::HeaderBlock)?;
        Ok(u32::from_be_bytes([v[0], v[1], v[2], v[3]]) & 0x7fff_ffff)
    };
    let frame = match (word & 0xffff) as u16 {
        TYPE_SYN_STREAM => {
            // stream id, associated stream id, priority and slot, then headers.
            let block = body.get(10..).ok_or(Error::HeaderBlock)?;
            let headers = decode_headers(&inflater.inflate(block)?)?;
            Frame::SynStream {
                stream: id(&body)?,
                fin,
                headers,
            }
        }
        // Keep the decompression context in step with the peer's.
        TYPE_SYN_REPLY | 8 => {
            inflater.inflate(body.get(4..).ok_or(Error::HeaderBlock)?)?;
            Frame::Other
        }
        TYPE_RST_STREAM => Frame::Rst { stream: id(&body)? },
        TYPE_PING => Frame::Ping { id: id(&body)? },
        TYPE_GOAWAY => Frame::GoAway,
        _ => Frame::Other,
    };
    Ok(Some(frame))
}

fn control(out: &mut Vec<u8>, ty: u16, flags: u8, len: usize) {
    out.extend_from_slice(&(0x8000u16 | VERSION).to_be_bytes());
    out.extend_from_slice(&ty.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
}

/// SYN_REPLY for `stream` with no headers (as kubelet's server replies).
pub fn syn_reply(deflater: &mut Deflater, stream: u32) -> Vec<u8> {
    let block = deflater.deflate(&encode_headers(&[]));
    let mut out = Vec::with_capacity(12 + block.len());
    control(&mut out, TYPE_SYN_REPLY, 0, 4 + block.len());
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&block);
    out
}

/// A DATA frame; `fin` closes the sender's half of the stream.
pub fn data(stream: u32, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.push(if fin { FLAG_FIN } else { 0 });
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    out
}

pub fn rst(stream: u32, status: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    control(&mut out, TYPE_RST_STREAM, 0, 8);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&status.to_be_bytes());
    out
}

pub fn ping(id: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    control(&mut out, TYPE_PING, 0, 4);
    out.extend_from_slice(&id.to_be_bytes());
    out
}

/// GOAWAY naming `last` as the last stream accepted, status OK.
pub fn goaway(last: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    control(&mut out, TYPE_GOAWAY, 0, 8);
    out.extend_from_slice(&(last & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out
}

/// A SYN_STREAM as a client writes it, with the client's compression context.
#[cfg(test)]
pub fn syn_stream(
    client: &mut Deflater,
    stream: u32,
    fin: bool,
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let block = client.deflate(&encode_headers(headers));
    let mut out = Vec::new();
    control(
        &mut out,
        TYPE_SYN_STREAM,
        if fin { FLAG_FIN } else { 0 },
        10 + block.len(),
    );
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&block);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b",*,enq=0."));
    }

    #[tokio::test]
    async fn frames_round_trip_through_one_compression_context_per_direction() {
        let mut client = Deflater::default();
        let mut wire = Vec::new();
        let h1 = [("streamtype", "error"), ("port", "80"), ("requestid", "0")];
        let h2 = [("streamtype", "data"), ("port", "80"), ("requestid", "0")];
        wire.extend(syn_stream(&mut client, 1, true, &h1));
        wire.extend(syn_stream(&mut client, 3, false, &h2));
        wire.extend(data(3, false, b"GET / HTTP/1.0\r\n\r\n"));
        wire.extend(rst(3, RST_CANCEL));
        wire.extend(ping(1));
        wire.extend(goaway(0));
        let mut inflater = Inflater::default();
        let mut r = wire.as_slice();
        let owned = |h: &[(&str, &str)]| -> Vec<(String, String)> {
            h.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut frames = Vec::new();
        while let Some(f) = read_frame(&mut r, &mut inflater).await.unwrap() {
            frames.push(f);
        }
        assert_eq!(
            frames,
            vec![
                Frame::SynStream {
                    stream: 1,
                    fin: true,
                    headers: owned(&h1)
                },
                Frame::SynStream {
                    stream: 3,
                    fin: false,
                    headers: owned(&h2)
                },
                Frame::Data {
                    stream: 3,
                    fin: false,
                    data: b"GET / HTTP/1.0\r\n\r\n".to_vec()
                },
                Frame::Rst { stream: 3 },
                Frame::Ping { id: 1 },
                Frame::GoAway,
            ]
        );
        // Our replies decompress with the dictionary on the other side.
        let mut server = Deflater::default();
        let mut wire = syn_reply(&mut server, 1);
        wire.extend(syn_reply(&mut server, 3));
        let mut peer = Inflater::default();
        let mut r = wire.as_slice();
        assert_eq!(
            read_frame(&mut r, &mut peer).await.unwrap(),
            Some(Frame::Other)
        );
        assert_eq!(
            read_frame(&mut r, &mut peer).await.unwrap(),
            Some(Frame::Other)
        );
    }

    #[test]
    fn multi_valued_headers_split_on_nul() {
        let block = encode_headers(&[("X", "a\0b")]);
        assert_eq!(
            decode_headers(&block).unwrap(),
            vec![
                ("x".to_string(), "a".to_string()),
                ("x".to_string(), "b".to_string())
            ]
        );
        assert!(decode_headers(&block[..6]).is_err());
    }
}
