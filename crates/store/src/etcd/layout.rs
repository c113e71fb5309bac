//! Where the store's keys live in etcd, and how etcd's key-values and events become the
//! store's.
//!
//! A store key `K` (always absolute: `/registry/pods/default/web`) is the etcd key
//! `P + K`, `P` being the configured prefix (`/skiff`), so all of one cluster's data
//! is the etcd range `[P/, P0)` and nothing outside it. The exact key `P`, just before
//! that range, holds the cluster marker: whose data the range is.

use bytes::Bytes;
use etcd_client::proto::{PbEvent, PbKeyValue};

use crate::{Error, Event, KeyValue, Result, Revision};

/// What the marker's value starts with; the cluster's identity follows.
const MARKER_TAG: &str = "skiff-cluster ";

/// etcd's event types (`mvccpb.Event.EventType`).
const PUT: i32 = 0;
const DELETE: i32 = 1;

#[derive(Clone, Debug)]
pub(super) struct Layout {
    prefix: String,
}

impl Layout {
    /// `prefix`: absolute, without a trailing slash (`/skiff`, `/clusters/a`).
    pub(super) fn new(prefix: &str) -> Result<Self> {
        if !prefix.starts_with('/') || prefix.len() < 2 || prefix.ends_with('/') {
            return Err(Error::Storage(
                format!(
                    "etcd prefix {prefix:?} must start with / and not end with one (e.g. /skiff)"
                )
                .into(),
            ));
        }
        Ok(Layout {
            prefix: prefix.to_owned(),
        })
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The etcd key of a store key; `None` for a key the store can never hold (every
    /// store key is absolute), which would otherwise reach outside the cluster's range.
    pub(super) fn key(&self, key: &str) -> Option<Vec<u8>> {
        key.starts_with('/')
            .then(|| [self.prefix.as_bytes(), key.as_bytes()].concat())
    }

    /// Like `key`, for a write: a relative key is refused.
    pub(super) fn write_key(&self, key: &str) -> Result<Vec<u8>> {
        self.key(key).ok_or_else(|| {
            Error::Storage(format!("store key {key:?} is not absolute (must start with /)").into())
        })
    }

    /// The etcd range `[start, end)` of the store keys starting with `prefix`; `None`
    /// when no store key can (`prefix` is relative). The empty prefix is every key.
    pub(super) fn range(&self, prefix: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let prefix = if prefix.is_empty() { "/" } else { prefix };
        let start = self.key(prefix)?;
        let end = prefix_end(&start);
        Some((start, end))
    }

    /// The range holding every key of this cluster.
    pub(super) fn data_range(&self) -> (Vec<u8>, Vec<u8>) {
        let start = [self.prefix.as_bytes(), b"/"].concat();
        let end = prefix_end(&start);
        (start, end)
    }

    pub(super) fn marker_key(&self) -> Vec<u8> {
        self.prefix.as_bytes().to_vec()
    }

    pub(super) fn marker_value(cluster: &str) -> String {
        format!("{MARKER_TAG}{cluster}")
    }

    /// The cluster a marker names; `None` if the value is not a skiff marker.
    pub(super) fn marker_cluster(value: &[u8]) -> Option<&str> {
        std::str::from_utf8(value).ok()?.strip_prefix(MARKER_TAG)
    }

    /// The store key of an etcd key inside the cluster's range.
    pub(super) fn store_key(&self, raw: &[u8]) -> Result<String> {
        raw.strip_prefix(self.prefix.as_bytes())
            .filter(|rest| rest.starts_with(b"/"))
            .and_then(|rest| String::from_utf8(rest.to_vec()).ok())
            .ok_or_else(|| {
                Error::Storage(
                    format!(
                        "etcd key {:?} is not a store key under {}",
                        String::from_utf8_lossy(raw),
                        self.prefix
                    )
                    .into(),
                )
            })
    }

    /// One of the cluster's key-values, taken out of an etcd response.
    pub(super) fn kv(&self, pb: PbKeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: self.store_key(&pb.key)?,
            value: Bytes::from(pb.value),
            create_revision: pb.create_revision,
            mod_revision: pb.mod_revision,
        })
    }

    /// An etcd watch event (watched with `prev_kv`) as the store's event.
    pub(super) fn event(&self, pb: PbEvent) -> Result<Event, BadEvent> {
        let Some(kv) = pb.kv else {
            return Err(BadEvent::Malformed("an event without a key-value".into()));
        };
        let revision = kv.mod_revision;
        match pb.r#type {
            PUT => {
                // Version 1 is a create; anything later replaced the value etcd read
                // back for `prev_kv`, unless compaction took that value first.
                let prev = match (kv.version, pb.prev_kv) {
                    (1, _) => None,
                    (_, Some(prev)) => Some(self.kv(prev).map_err(BadEvent::from)?),
                    (_, None) => return Err(BadEvent::NoPrevious { revision }),
                };
                let kv = self.kv(kv).map_err(BadEvent::from)?;
                Ok(Event::Put { kv, prev })
            }
            DELETE => {
                // A delete carries the last value the key had, as the other backends do.
                let Some(prev) = pb.prev_kv else {
                    return Err(BadEvent::NoPrevious { revision });
                };
                let mut kv = self.kv(prev).map_err(BadEvent::from)?;
                kv.mod_revision = revision;
                Ok(Event::Delete { kv })
            }
            other => Err(BadEvent::Malformed(format!(
                "unknown etcd event type {other}"
            ))),
        }
    }
}

/// Why an etcd event could not be turned into the store's.
#[derive(Debug)]
pub(super) enum BadEvent {
    /// The value the event replaced was compacted away before etcd sent the event, so
    /// the history a watcher needs is gone.
    NoPrevious {
        revision: Revision,
    },
    Malformed(String),
}

impl From<Error> for BadEvent {
    fn from(err: Error) -> Self {
        BadEvent::Malformed(err.to_string())
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's own rule);
/// `\0` (every key) when there is none.
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new("/skiff").expect("layout")
    }

    #[test]
    fn prefixes_must_be_absolute_without_a_trailing_slash() {
        for bad in ["", "/", "skiff", "/skiff/"] {
            assert!(Layout::new(bad).is_err(), "{bad:?}");
        }
        assert!(Layout::new("/clusters/a").is_ok());
    }

    #[test]
    fn keys_and_ranges() {
        let l = layout();
        assert_eq!(
            l.key("/registry/pods/a").as_deref(),
            Some(&b"/skiff/registry/pods/a"[..])
        );
        assert_eq!(l.key("relative"), None);
        assert_eq!(
            l.range("/registry/pods/"),
            Some((
                b"/skiff/registry/pods/".to_vec(),
                b"/skiff/registry/pods0".to_vec()
            ))
        );
        assert_eq!(l.range(""), Some(l.data_range()));
        assert_eq!(l.data_range(), (b"/skiff/".to_vec(), b"/skiff0".to_vec()));
        assert_eq!(l.range("x"), None);
        // The marker sits just outside the data range.
        let (start, _) = l.data_range();
        assert!(l.marker_key() < start);
    }

    #[test]
    fn store_keys_come_back_only_from_inside_the_range() {
        let l = layout();
        assert_eq!(
            l.store_key(b"/skiff/registry/a").expect("key"),
            "/registry/a"
        );
        assert!(l.store_key(b"/skiff").is_err());
        assert!(l.store_key(b"/skiff-b/registry/a").is_err());
        assert!(l.store_key(b"/skiff/\xff").is_err());
    }

    #[test]
    fn markers_name_their_cluster() {
        let v = Layout::marker_value("c1");
        assert_eq!(Layout::marker_cluster(v.as_bytes()), Some("c1"));
        assert_eq!(Layout::marker_cluster(b"something else"), None);
    }

    #[test]
    fn prefix_end_follows_etcd() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    fn pb_kv(key: &str, value: &str, create: i64, rev: i64, version: i64) -> PbKeyValue {
        PbKeyValue {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            create_revision: create,
            mod_revision: rev,
            version,
            lease: 0,
        }
    }

    #[test]
    fn events_carry_what_they_replaced() {
        let l = layout();
        let create = PbEvent {
            r#type: PUT,
            kv: Some(pb_kv("/skiff/k", "1", 5, 5, 1)),
            prev_kv: None,
        };
        assert!(matches!(l.event(create), Ok(Event::Put { prev: None, .. })));

        let update = PbEvent {
            r#type: PUT,
            kv: Some(pb_kv("/skiff/k", "2", 5, 7, 2)),
            prev_kv: Some(pb_kv("/skiff/k", "1", 5, 5, 1)),
        };
        match l.event(update) {
            Ok(Event::Put {
                kv,
                prev: Some(prev),
            }) => {
                assert_eq!((kv.mod_revision, prev.mod_revision), (7, 5));
                assert_eq!(&prev.value[..], b"1");
            }
            other => panic!("{other:?}"),
        }

        let delete = PbEvent {
            r#type: DELETE,
            kv: Some(pb_kv("/skiff/k", "", 0, 9, 0)),
            prev_kv: Some(pb_kv("/skiff/k", "2", 5, 7, 2)),
        };
        match l.event(delete) {
            Ok(Event::Delete { kv }) => {
                assert_eq!((kv.create_revision, kv.mod_revision), (5, 9));
                assert_eq!(&kv.value[..], b"2");
            }
            other => panic!("{other:?}"),
        }

        let compacted = PbEvent {
            r#type: DELETE,
            kv: Some(pb_kv("/skiff/k", "", 0, 9, 0)),
            prev_kv: None,
        };
        assert!(matches!(
            l.event(compacted),
            Err(BadEvent::NoPrevious { revision: 9 })
        ));
        let odd = PbEvent {
            r#type: 7,
            kv: Some(pb_kv("/skiff/k", "", 0, 9, 0)),
            prev_kv: None,
        };
        assert!(matches!(l.event(odd), Err(BadEvent::Malformed(_))));
    }
}
