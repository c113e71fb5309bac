//! A per-socket cache of encoded responses for one index generation: the
//! same question (same flags, same EDNS) answered from the same index gets
//! the same bytes, so a repeat costs a hash lookup and a copy instead of a
//! decode, a lookup and an encode. It is emptied the moment the index is
//! swapped, so it never serves an answer the index no longer gives.

use std::collections::HashMap;

/// Entries kept at most; the cache is emptied when full (simple and bounded).
const MAX_ENTRIES: usize = 8192;

/// What a cached response needs besides its bytes, for metrics.
#[derive(Clone, Copy)]
pub struct Meta {
    pub qtype: hickory_proto::rr::RecordType,
    pub rcode: hickory_proto::op::ResponseCode,
}

type Entry = (Box<[u8]>, Meta);

#[derive(Default)]
pub struct ResponseCache {
    /// Identity of the index the entries were built from.
    generation: u32,
    /// Key (see [`key`]) to the encoded response.
    entries: HashMap<Box<[u8]>, Entry>,
    key: Vec<u8>,
}

impl ResponseCache {
    /// Forgets everything if the index changed since the last call.
    pub fn check_generation(&mut self, generation: u32) {
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
        }
    }

    /// The cached response to `packet`, with its id and question spelling,
    /// written into `out`; `None` on a miss or a packet the cache does not handle.
    pub fn get(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Option<Meta> {
        let qend = key(packet, &mut self.key)?;
        let (resp, meta) = self.entries.get(self.key.as_slice())?;
        out.clear();
        out.extend_from_slice(resp);
        // Same question, so same length: the asker's id and spelling go back.
        out[..2].copy_from_slice(&packet[..2]);
        out[12..qend].copy_from_slice(&packet[12..qend]);
        Some(*meta)
    }

    /// Remembers `resp` as the answer to `packet` (call after a miss).
    pub fn put(&mut self, packet: &[u8], resp: &[u8], meta: Meta) {
        let Some(qend) = key(packet, &mut self.key) else {
            return;
        };
        // Only responses that echo exactly one question at the same place.
        if resp.len() < qend || resp[4..6] != [0, 1] || resp[12..qend] != packet[12..qend] {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        self.entries
            .insert(self.key.as_slice().into(), (resp.into(), meta));
    }
}

/// Builds the cache key of a plain query into `key`: everything after the id,
/// with the question name lowercased. Returns where the question ends.
/// Anything unusual (not one question, a compression pointer, answer or
/// authority records) is left to the full path.
fn key(packet: &[u8], key: &mut Vec<u8>) -> Option<usize> {
    if packet.len() < 17 || packet[2] & 0xf8 != 0 {
        // A response or an opcode other than QUERY.
        return None;
    }
    if packet[4..10] != [0, 1, 0, 0, 0, 0] || packet[10] != 0 || packet[11] > 1 {
        return None;
    }
    let mut i = 12;
    loop {
        let len = usize::from(*packet.get(i)?);
        if len == 0 {
            break;
        }
        if len > 63 || i + 1 + len > packet.len() || i > 12 + 255 {
            return None;
        }
        i += 1 + len;
    }
    let qend = i + 5;
    if qend > packet.len() {
        return None;
    }
    key.clear();
    key.extend_from_slice(&packet[2..]);
    // Lowercase the name's bytes (the labels' length bytes are below 64,
    // outside A-Z, so lowercasing them is a no-op).
    for b in &mut key[10..i - 2] {
        b.make_ascii_lowercase();
    }
    Some(qend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;

    fn q(id: u8, name: &[u8]) -> Vec<u8> {
        let mut p = vec![0, id, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split(|b| *b == b'.') {
            p.push(l.len() as u8);
            p.extend_from_slice(l);
        }
        p.extend_from_slice(&[0, 0, 1, 0, 1]);
        p
    }

    #[test]
    fn hits_keep_the_askers_id_and_spelling() {
        let meta = Meta {
            qtype: RecordType::A,
            rcode: ResponseCode::NoError,
        };
        let mut c = ResponseCache::default();
        c.check_generation(1);
        let first = q(1, b"web.default");
        let mut resp = first.clone();
        resp[2] = 0x85;
        resp.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1]);
        c.put(&first, &resp, meta);
        let mut out = Vec::new();
        let second = q(2, b"WEB.Default");
        assert!(c.get(&second, &mut out).is_some());
        assert_eq!(out[..2], [0, 2]);
        assert_eq!(out[12..12 + 13], second[12..12 + 13]);
        assert_eq!(out[12 + 17..], resp[12 + 17..]);
        // A new index generation forgets everything.
        c.check_generation(2);
        assert!(c.get(&second, &mut out).is_none());
        // Malformed packets never hit (nor panic).
        for cut in 0..first.len() {
            assert!(c.get(&first[..cut], &mut out).is_none());
        }
    }
}
