//! The request path: bytes in, bytes out. Decodes with hickory-proto, answers
//! from the index, encodes with EDNS0 and truncation. Every malformed input
//! ends in FORMERR, NOTIMP or a silent drop, never a panic.

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};

use crate::answer::{answer, Answer, Outcome};
use crate::index::Index;

/// The UDP payload size we advertise and honour at most (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;
/// The classic UDP limit without EDNS0.
const PLAIN_UDP: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(Debug, PartialEq)]
pub enum Reply {
    Send(Vec<u8>),
    /// Outside the zone: the caller forwards the original packet.
    Forward,
    /// A CNAME chain that leaves the zone: the caller asks upstream for the
    /// target ([`Chase::query`]) and sends [`Chase::complete`].
    Chase(Box<Chase>),
    /// Not worth an answer (a response, or too short to carry an id).
    Drop,
}

/// What happened, for metrics.
#[derive(Debug, PartialEq)]
pub struct Handled {
    pub reply: Reply,
    pub qtype: Option<RecordType>,
    pub rcode: ResponseCode,
}

impl Handled {
    fn drop() -> Self {
        Self {
            reply: Reply::Drop,
            qtype: None,
            rcode: ResponseCode::NoError,
        }
    }
}

/// Answers one request. `index` is `None` until the first sync (SERVFAIL).
/// `lower` is a scratch buffer reused across calls; after a decodable query
/// it holds the query name in lowercase.
pub fn handle(
    index: Option<&Index>,
    packet: &[u8],
    transport: Transport,
    lower: &mut String,
) -> Handled {
    lower.clear();
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        // Too short to answer, or a response (answering responses makes loops).
        return Handled::drop();
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let opcode = OpCode::from_u8((packet[2] >> 3) & 0x0f);
    let req = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => return bare(id, opcode, ResponseCode::FormErr),
    };
    let edns = req.edns.as_ref();
    let limit = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => edns
            .map(|e| usize::from(e.max_payload().clamp(512, EDNS_PAYLOAD)))
            .unwrap_or(PLAIN_UDP),
    };
    let mut resp = Message::new(id, MessageType::Response, req.metadata.op_code);
    resp.metadata = Metadata::response_from_request(&req.metadata);
    resp.metadata.recursion_available = true;
    if let Some(e) = edns {
        let mut out = Edns::new();
        out.set_max_payload(EDNS_PAYLOAD);
        if e.version() > 0 {
            // BADVERS (16): the encoder puts its high bits in the OPT record.
            resp.set_edns(out);
            return finish(resp, None, ResponseCode::BADVERS, limit);
        }
        resp.set_edns(out);
    }
    let rcode_only = |mut resp: Message, q: Option<&Query>, rcode| {
        if let Some(q) = q {
            resp.add_query(q.clone());
        }
        finish(resp, q.map(Query::query_type), rcode, limit)
    };
    if req.metadata.op_code != OpCode::Query {
        return rcode_only(resp, req.queries.first(), ResponseCode::NotImp);
    }
    let [q] = req.queries.as_slice() else {
        return rcode_only(resp, None, ResponseCode::FormErr);
    };
    if q.query_class() != DNSClass::IN {
        return rcode_only(resp, Some(q), ResponseCode::NotImp);
    }
    let qtype = q.query_type();
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR | RecordType::OPT) {
        return rcode_only(resp, Some(q), ResponseCode::NotImp);
    }
    // Before the index check: the caller reads `lower` to forward outside
    // names even before the first sync.
    lowercase(q.name(), lower);
    let Some(index) = index else {
        return rcode_only(resp, Some(q), ResponseCode::ServFail);
    };
    match answer(index, lower, q.name(), qtype) {
        Outcome::Forward => Handled {
            reply: Reply::Forward,
            qtype: Some(qtype),
            rcode: ResponseCode::NoError,
        },
        Outcome::Answer(a) => {
            resp.add_query(q.clone());
            fill(&mut resp, a);
            let rcode = resp.metadata.response_code;
            finish(resp, Some(qtype), rcode, limit)
        }
        Outcome::Chase { partial, target } => {
            resp.add_query(q.clone());
            fill(&mut resp, partial);
            Handled {
                reply: Reply::Chase(Box::new(Chase {
                    resp,
                    target,
                    qtype,
                    limit,
                })),
                qtype: Some(qtype),
                rcode: ResponseCode::NoError,
            }
        }
    }
}

fn fill(resp: &mut Message, a: Answer) {
    resp.metadata.authoritative = true;
    resp.metadata.response_code = a.rcode;
    resp.answers = a.answers;
    resp.authorities = a.authority;
    resp.additionals = a.additional;
}

/// An answer waiting for the upstream's records of a CNAME target.
#[derive(Debug, PartialEq)]
pub struct Chase {
    resp: Message,
    target: Name,
    qtype: RecordType,
    limit: usize,
}

impl Chase {
    /// The query to send upstream for the target, recursion desired.
    pub fn query(&self) -> Option<Vec<u8>> {
        let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(self.target.clone(), self.qtype));
        m.to_vec().ok()
    }

    /// The final response: the CNAME chain so far plus whatever the upstream
    /// answered at or below the target (its own CNAMEs and addresses). No
    /// upstream answer (refused, failed, a loop) leaves the chain alone, as
    /// CoreDNS does: the asked name exists, only its target's records miss.
    pub fn complete(self: Box<Self>, upstream: Option<&[u8]>) -> Handled {
        let Chase {
            mut resp,
            target,
            qtype,
            limit,
        } = *self;
        if let Some(up) = upstream.and_then(|b| Message::from_vec(b).ok()) {
            let ok = up.metadata.message_type == MessageType::Response
                && up.metadata.response_code == ResponseCode::NoError
                && up.queries.first().map(|q| q.name()) == Some(&target);
            if ok {
                // Only the chain's records: an upstream may not plant others.
                let chain = up.answers.into_iter().filter(|r| {
                    matches!(
                        r.record_type(),
                        RecordType::A | RecordType::AAAA | RecordType::CNAME
                    )
                });
                resp.answers.extend(chain);
            }
        }
        let rcode = resp.metadata.response_code;
        finish(resp, Some(qtype), rcode, limit)
    }
}

/// A header-only response for a request that could not be decoded.
fn bare(id: u16, opcode: OpCode, rcode: ResponseCode) -> Handled {
    let mut m = Message::new(id, MessageType::Response, opcode);
    m.metadata.response_code = rcode;
    finish(m, None, rcode, PLAIN_UDP)
}

/// Encodes, truncating (TC, empty sections) when the answer does not fit.
fn finish(
    mut resp: Message,
    qtype: Option<RecordType>,
    rcode: ResponseCode,
    limit: usize,
) -> Handled {
    resp.metadata.response_code = rcode;
    let bytes = match resp.to_vec() {
        Ok(b) if b.len() <= limit => Ok(b),
        _ => {
            resp.answers.clear();
            resp.authorities.clear();
            resp.additionals.clear();
            resp.metadata.truncation = true;
            resp.to_vec()
        }
    };
    match bytes {
        Ok(b) => Handled {
            reply: Reply::Send(b),
            qtype,
            rcode,
        },
        Err(_) => Handled::drop(),
    }
}

/// The name in lowercase ASCII, labels joined by dots. Bytes that cannot be
/// in a cluster name (a dot inside a label, non-ASCII) become `?`, which no
/// key contains, so such names miss instead of aliasing another name.
pub fn lowercase(name: &Name, out: &mut String) {
    out.clear();
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label {
            let c = if b.is_ascii_graphic() && b != b'.' {
                b.to_ascii_lowercase() as char
            } else {
                '?'
            };
            out.push(c);
        }
    }
}

/// A response with only `rcode` (and the question) to a request that decoded
/// once already: REFUSED for outside names from strangers, SERVFAIL when no
/// upstream answered.
pub fn error_reply(packet: &[u8], rcode: ResponseCode) -> Option<Vec<u8>> {
    let req = Message::from_vec(packet).ok()?;
    let mut resp = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
    resp.metadata = Metadata::response_from_request(&req.metadata);
    resp.metadata.recursion_available = true;
    resp.metadata.response_code = rcode;
    resp.add_queries(req.queries);
    if req.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(EDNS_PAYLOAD);
        resp.set_edns(e);
    }
    resp.to_vec().ok()
}
