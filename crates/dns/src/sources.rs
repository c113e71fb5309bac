//! The Services and EndpointSlices the index is made from, kept from the watch
//! events themselves (no reflector store), with what changed since the last
//! index: the keys of the services to re-read, or "everything" after a
//! (re)list. Slices are also kept by owning service, so re-reading one
//! service never scans every slice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;

use crate::index::{service_key, slice_owner_key, Change, Index, Zone};

/// A slice by namespace and name.
type SliceRef = (String, String);

fn slice_ref(s: &EndpointSlice) -> Option<SliceRef> {
    Some((s.metadata.namespace.clone()?, s.metadata.name.clone()?))
}

#[derive(Default)]
pub struct Sources {
    services: HashMap<String, Arc<Service>>,
    /// Every slice with an owner label, and that owner's key.
    slices: HashMap<SliceRef, (String, Arc<EndpointSlice>)>,
    /// Service key to the slices that name it.
    slices_of: HashMap<String, HashSet<SliceRef>>,
    /// A (re)list in progress: the objects seen so far, swapped in at its end.
    listing_services: Option<HashMap<String, Arc<Service>>>,
    listing_slices: Option<Vec<Arc<EndpointSlice>>>,
    services_listed: bool,
    slices_listed: bool,
    /// Services to re-read for the next index.
    dirty: HashSet<String>,
    /// The next index must be built from scratch (after a list).
    full: bool,
}

impl Sources {
    /// Both kinds have been listed once: an index can answer for the cluster.
    pub fn synced(&self) -> bool {
        self.services_listed && self.slices_listed
    }

    /// Whether anything changed since the last [`Sources::index`].
    pub fn changed(&self) -> bool {
        self.full || !self.dirty.is_empty()
    }

    pub fn service_event(&mut self, ev: Event<Service>) {
        match ev {
            Event::Apply(svc) => {
                if let Some(key) = service_key(&svc) {
                    self.dirty.insert(key.clone());
                    self.services.insert(key, Arc::new(svc));
                }
            }
            Event::Delete(svc) => {
                if let Some(key) = service_key(&svc) {
                    self.services.remove(&key);
                    self.dirty.insert(key);
                }
            }
            Event::Init => self.listing_services = Some(HashMap::new()),
            Event::InitApply(svc) => {
                if let (Some(list), Some(key)) = (self.listing_services.as_mut(), service_key(&svc))
                {
                    list.insert(key, Arc::new(svc));
                }
            }
            Event::InitDone => {
                if let Some(list) = self.listing_services.take() {
                    self.services = list;
                }
                self.services_listed = true;
                self.full = true;
            }
        }
    }

    pub fn slice_event(&mut self, ev: Event<EndpointSlice>) {
        match ev {
            Event::Apply(slice) => {
                let Some(r) = slice_ref(&slice) else { return };
                self.forget_slice(&r);
                if let Some(owner) = slice_owner_key(&slice) {
                    self.dirty.insert(owner.clone());
                    self.slices_of
                        .entry(owner.clone())
                        .or_default()
                        .insert(r.clone());
                    self.slices.insert(r, (owner, Arc::new(slice)));
                }
            }
            Event::Delete(slice) => {
                if let Some(r) = slice_ref(&slice) {
                    self.forget_slice(&r);
                }
            }
            Event::Init => self.listing_slices = Some(Vec::new()),
            Event::InitApply(slice) => {
                if let Some(list) = self.listing_slices.as_mut() {
                    list.push(Arc::new(slice));
                }
            }
            Event::InitDone => {
                if let Some(list) = self.listing_slices.take() {
                    self.slices.clear();
                    self.slices_of.clear();
                    for slice in list {
                        if let (Some(r), Some(owner)) = (slice_ref(&slice), slice_owner_key(&slice))
                        {
                            self.slices_of
                                .entry(owner.clone())
                                .or_default()
                                .insert(r.clone());
                            self.slices.insert(r, (owner, slice));
                        }
                    }
                }
                self.slices_listed = true;
                self.full = true;
            }
        }
    }

    /// Drops slice `r` (its owner must be re-read).
    fn forget_slice(&mut self, r: &SliceRef) {
        let Some((owner, _)) = self.slices.remove(r) else {
            return;
        };
        if let Some(set) = self.slices_of.get_mut(&owner) {
            set.remove(r);
            if set.is_empty() {
                self.slices_of.remove(&owner);
            }
        }
        self.dirty.insert(owner);
    }

    /// The index for what is known now: `previous` with the changed services
    /// re-read, or built from scratch after a list (or with no `previous`).
    /// Forgets what changed.
    pub fn index(&mut self, previous: Option<&Index>, zone: &Zone, serial: u32) -> Index {
        let dirty = std::mem::take(&mut self.dirty);
        let full = std::mem::take(&mut self.full);
        match previous {
            Some(prev) if !full => {
                let changes = dirty.iter().map(|key| Change {
                    key,
                    service: self.services.get(key).map(|s| s.as_ref()),
                    slices: self
                        .slices_of
                        .get(key)
                        .into_iter()
                        .flatten()
                        .filter_map(|r| self.slices.get(r))
                        .map(|(_, s)| s.as_ref())
                        .collect(),
                });
                prev.with_changes(changes, serial)
            }
            _ => {
                let services: Vec<Arc<Service>> = self.services.values().cloned().collect();
                let slices: Vec<Arc<EndpointSlice>> =
                    self.slices.values().map(|(_, s)| s.clone()).collect();
                Index::build(zone.clone(), &services, &slices, serial)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn zone() -> Zone {
        Zone {
            domain: "cluster.local".into(),
            ttl: 5,
            dns_ip: "10.96.0.10".parse().unwrap(),
        }
    }

    /// Everything an index answers from, in a canonical order.
    fn canonical(ix: &Index) -> String {
        let mut services: Vec<String> = ix
            .services
            .iter()
            .map(|(k, e)| {
                let kind = match &e.kind {
                    crate::index::Kind::Headless(eps) => {
                        let mut eps: Vec<String> = eps
                            .iter()
                            .map(|ep| format!("{} {} {} {:?}", ep.ip, ep.host, ep.fqdn, ep.ports))
                            .collect();
                        eps.sort();
                        format!("headless {eps:?}")
                    }
                    other => format!("{other:?}"),
                };
                format!("{k} {} {kind} {:?}", e.fqdn, e.ports)
            })
            .collect();
        services.sort();
        let mut ns: Vec<String> = ix
            .namespaces
            .iter()
            .map(|(n, c)| format!("{n}={c}"))
            .collect();
        ns.sort();
        let mut ptr: Vec<String> = ix
            .ptr
            .iter()
            .map(|(ip, names)| {
                let mut n: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                n.sort();
                format!("{ip} {n:?}")
            })
            .collect();
        ptr.sort();
        format!("{services:#?}\n{ns:?}\n{ptr:#?}")
    }

    /// A small deterministic generator (no seed file, same run every time).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    fn service(r: &mut Lcg, name: &str, ns: &str) -> Service {
        let spec = match r.next(4) {
            0 => json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}),
            1 => {
                json!({"type": "ExternalName", "externalName": format!("x{}.example.com", r.next(3))})
            }
            2 => json!({"clusterIP": "None", "publishNotReadyAddresses": true}),
            // A few ClusterIPs, so some services share an address's PTR.
            _ => json!({"clusterIP": format!("10.96.0.{}", 20 + r.next(8)),
                        "ports": [{"name": "http", "port": 80}]}),
        };
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
            .unwrap()
    }

    fn slice(r: &mut Lcg, name: &str, ns: &str, owner: &str) -> EndpointSlice {
        let eps: Vec<_> = (0..r.next(4))
            .map(|_| {
                let mut ep = json!({"addresses": [format!("10.244.0.{}", 2 + r.next(10))],
                                    "conditions": {"ready": r.next(3) > 0}});
                if r.next(2) == 0 {
                    ep["hostname"] = json!(format!("h{}", r.next(3)));
                }
                ep
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": owner}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}))
        .unwrap()
    }

    #[test]
    fn incremental_updates_equal_a_full_build() {
        let mut r = Lcg(7);
        let mut s = Sources::default();
        s.service_event(Event::Init);
        s.service_event(Event::InitDone);
        s.slice_event(Event::Init);
        s.slice_event(Event::InitDone);
        assert!(s.synced());
        let mut current = s.index(None, &zone(), 1);
        let names = ["a", "b", "c", "d", "e"];
        let namespaces = ["x", "y"];
        for serial in 2..400u32 {
            for _ in 0..1 + r.next(3) {
                let name = names[r.next(names.len())];
                let ns = namespaces[r.next(namespaces.len())];
                match r.next(5) {
                    0 => {
                        let svc = service(&mut r, name, ns);
                        s.service_event(Event::Delete(svc));
                    }
                    1 | 2 => {
                        let svc = service(&mut r, name, ns);
                        s.service_event(Event::Apply(svc));
                    }
                    3 => {
                        let owner = names[r.next(names.len())];
                        let slice_name = format!("{name}-{}", r.next(2));
                        let sl = slice(&mut r, &slice_name, ns, owner);
                        s.slice_event(Event::Delete(sl));
                    }
                    _ => {
                        // Sometimes the owner label moves to another service.
                        let owner = names[r.next(names.len())];
                        let slice_name = format!("{name}-{}", r.next(2));
                        let sl = slice(&mut r, &slice_name, ns, owner);
                        s.slice_event(Event::Apply(sl));
                    }
                }
            }
            // (Deleting what does not exist may leave nothing changed.)
            current = s.index(Some(&current), &zone(), serial);
            assert_eq!(current.serial, serial);
            let services: Vec<Arc<Service>> = s.services.values().cloned().collect();
            let slices: Vec<Arc<EndpointSlice>> =
                s.slices.values().map(|(_, sl)| sl.clone()).collect();
            let full = Index::build(zone(), &services, &slices, serial);
            assert_eq!(
                canonical(&current),
                canonical(&full),
                "after update {serial}"
            );
            assert!(!s.changed());
        }
        // Some services of each kind were in play.
        assert!(!current.services.is_empty());
    }

    #[test]
    fn a_relist_replaces_everything_and_is_not_synced_before_both_lists() {
        let mut r = Lcg(1);
        let mut s = Sources::default();
        s.service_event(Event::Init);
        s.service_event(Event::InitApply(service(&mut r, "a", "x")));
        s.service_event(Event::InitDone);
        assert!(!s.synced());
        s.slice_event(Event::Init);
        s.slice_event(Event::InitDone);
        assert!(s.synced());
        let first = s.index(None, &zone(), 1);
        assert!(first.services.contains_key("a.x"));
        // A relist without `a`: gone, built from scratch.
        s.service_event(Event::Init);
        s.service_event(Event::InitApply(service(&mut r, "b", "y")));
        s.service_event(Event::InitDone);
        let second = s.index(Some(&first), &zone(), 2);
        assert!(!second.services.contains_key("a.x"));
        assert!(second.services.contains_key("b.y"));
        assert!(!second.has_namespace("x"));
    }
}
