//! What a Service holds (its ClusterIP, node ports and load-balancer address) and
//! how a write gets them: upstream's `allocateCreate`/`allocateUpdate`, one pool
//! lock held for the whole of a service's allocation so concurrent writes never
//! see each other half done.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::{json, Value};
use skiff_api::service::{self as svc, EXTERNAL_NAME, LOAD_BALANCER};
use skiff_api::validation::FieldError;

pub use super::allocator::Owner;
use super::allocator::{dynamic_band, Pool, Taken};
use super::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ClusterIp,
    NodePort,
    LoadBalancer,
}

/// The three pools, behind one lock.
#[derive(Debug)]
pub struct Pools {
    pub ips: Pool,
    pub ports: Pool,
    pub lb: Pool,
}

impl Pools {
    pub fn new(s: &Settings) -> Self {
        let ip_slots = s.service_cidr.slots();
        let port_slots = s.node_ports.slots();
        let mut ips = Pool::new(ip_slots, dynamic_band(ip_slots, 16, 256));
        // The first and tenth addresses belong to the built-in services, even
        // while those are being recreated.
        ips.reserve_for(0, super::builtin::KUBERNETES);
        ips.reserve_for(9, super::builtin::KUBE_DNS);
        Self {
            ips,
            ports: Pool::new(port_slots, dynamic_band(port_slots, 32, 128)),
            lb: Pool::new(s.lb_pool.slots(), 0),
        }
    }

    pub fn pool(&mut self, kind: Kind) -> &mut Pool {
        match kind {
            Kind::ClusterIp => &mut self.ips,
            Kind::NodePort => &mut self.ports,
            Kind::LoadBalancer => &mut self.lb,
        }
    }

    pub fn release_all(&mut self, uid: &str) -> usize {
        self.ips.release_all(uid) + self.ports.release_all(uid) + self.lb.release_all(uid)
    }

    /// Records what a stored service holds (start-up and repair). Returns the
    /// claims another owner already has.
    pub fn adopt(&mut self, s: &Settings, obj: &Value, owner: &Owner) -> Vec<(Kind, u32, Owner)> {
        let mut conflicts = Vec::new();
        for (kind, idx) in claims(s, obj) {
            let pool = self.pool(kind);
            if pool.owner(idx).is_some_and(|o| o.uid == owner.uid) {
                continue;
            }
            if let Err(Taken::By(o)) = pool.take_stored(idx, owner) {
                conflicts.push((kind, idx, o));
            }
        }
        conflicts
    }
}

/// The holder of a service's allocations.
pub fn owner_of(obj: &Value) -> Option<Owner> {
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str)?;
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = obj.pointer("/metadata/name").and_then(Value::as_str)?;
    Some(Owner {
        uid: uid.into(),
        key: format!("{ns}/{name}").into(),
    })
}

/// A LoadBalancer service skiff's own load balancer serves: one that names no
/// other implementation in `loadBalancerClass`.
pub fn managed_lb(obj: &Value) -> bool {
    svc::svc_type(obj) == LOAD_BALANCER
        && svc::spec(obj)
            .get("loadBalancerClass")
            .is_none_or(Value::is_null)
}

fn v4(s: &str) -> Option<Ipv4Addr> {
    match svc::parse_ip(s)? {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

/// The addresses in `status.loadBalancer.ingress` that come from the pool.
pub fn lb_slots(s: &Settings, obj: &Value) -> Vec<u32> {
    obj.pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| v4(svc::str_field(i, "ip")))
        .filter_map(|ip| s.lb_pool.index_of(ip))
        .collect()
}

/// Every slot a stored service holds, by pool.
pub fn claims(s: &Settings, obj: &Value) -> Vec<(Kind, u32)> {
    let mut out = Vec::new();
    if svc::needs_cluster_ip(obj) && !svc::is_headless(obj) {
        for ip in svc::cluster_ips(obj).iter().filter_map(|ip| v4(ip)) {
            if let Some(i) = s.service_cidr.index_of(ip) {
                out.push((Kind::ClusterIp, i));
            }
        }
    }
    if svc::needs_node_port(obj) {
        let mut ports: Vec<i64> = svc::ports(obj)
            .iter()
            .map(|p| svc::int_field(p, "nodePort"))
            .collect();
        if svc::needs_health_check(obj) {
            ports.push(svc::int_field(svc::spec(obj), "healthCheckNodePort"));
        }
        for i in ports.into_iter().filter_map(|p| s.node_ports.index_of(p)) {
            if !out.contains(&(Kind::NodePort, i)) {
                out.push((Kind::NodePort, i));
            }
        }
    }
    if managed_lb(obj) {
        out.extend(
            lb_slots(s, obj)
                .into_iter()
                .map(|i| (Kind::LoadBalancer, i)),
        );
    }
    out
}

/// Why an allocation failed.
#[derive(Debug)]
pub enum Failure {
    /// A requested value cannot be had; `holder` is who has it, if anyone.
    Invalid(Box<FieldError>, Option<Owner>),
    /// A pool is exhausted.
    Internal(String),
}

/// Slots taken by one write so far, given back if a later step fails.
struct Txn<'a> {
    pools: &'a mut Pools,
    owner: &'a Owner,
    taken: Vec<(Kind, u32)>,
}

impl Txn<'_> {
    fn take(&mut self, kind: Kind, idx: u32) -> Result<(), Taken> {
        self.pools.pool(kind).take(idx, self.owner)?;
        self.taken.push((kind, idx));
        Ok(())
    }

    fn take_next(&mut self, kind: Kind) -> Option<u32> {
        let idx = self.pools.pool(kind).take_next(self.owner)?;
        self.taken.push((kind, idx));
        Some(idx)
    }

    fn revert(self) {
        for (kind, idx) in self.taken {
            self.pools.pool(kind).release(idx, &self.owner.uid);
        }
    }
}

/// Gives `obj` (being created, or updated from `old`) what it needs from the
/// pools: a ClusterIP, node ports, a health-check node port and a load-balancer
/// address, honouring the values it asks for. On failure nothing stays taken;
/// on success the slots newly taken (to be claimed in the store) are returned.
pub fn allocate(
    pools: &mut Pools,
    s: &Settings,
    old: Option<&Value>,
    obj: &mut Value,
    owner: &Owner,
) -> Result<Vec<(Kind, u32)>, Failure> {
    let mut txn = Txn {
        pools,
        owner,
        taken: Vec::new(),
    };
    let held: Vec<(Kind, u32)> = old.map(|o| claims(s, o)).unwrap_or_default();
    let result = cluster_ip(&mut txn, s, old, obj)
        .and_then(|()| node_ports(&mut txn, s, old, &held, obj))
        .and_then(|()| health_check_port(&mut txn, s, old, obj));
    if let Err(e) = result {
        txn.revert();
        return Err(e);
    }
    load_balancer(&mut txn, s, obj);
    Ok(txn.taken)
}

/// Gives back slots `uid` took (a write whose store claim failed).
pub fn release_slots(pools: &mut Pools, slots: &[(Kind, u32)], uid: &str) {
    for &(kind, idx) in slots {
        pools.pool(kind).release(idx, uid);
    }
}

fn set_spec(obj: &mut Value, key: &str, v: Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert(key.to_string(), v);
    }
}

fn cluster_ip(
    txn: &mut Txn,
    s: &Settings,
    old: Option<&Value>,
    obj: &mut Value,
) -> Result<(), Failure> {
    if !svc::needs_cluster_ip(obj) || svc::is_headless(obj) {
        return Ok(());
    }
    let ips = svc::cluster_ips(obj);
    // On update an address is only new when the service had none (coming from
    // ExternalName); otherwise validation kept the one it holds.
    let fresh = old.is_none_or(|o| svc::svc_type(o) == EXTERNAL_NAME) || ips.is_empty();
    if !fresh {
        return Ok(());
    }
    let ip = match ips.first().filter(|ip| !ip.is_empty()) {
        Some(req) => {
            let fail = |msg: String, holder| {
                Failure::Invalid(
                    Box::new(FieldError::invalid(
                        "spec.clusterIPs",
                        svc::go_cluster_ips(obj),
                        &format!("failed to allocate IP {req}: {msg}"),
                    )),
                    holder,
                )
            };
            let addr = v4(req).ok_or_else(|| fail("only IPv4 is configured".into(), None))?;
            let idx = s.service_cidr.index_of(addr).ok_or_else(|| {
                fail(
                    format!(
                        "the provided IP ({addr}) is not in the valid range. The range of valid IPs is {}",
                        s.service_cidr
                    ),
                    None,
                )
            })?;
            match txn.take(Kind::ClusterIp, idx) {
                Ok(()) => req.clone(),
                Err(Taken::By(o)) => {
                    return Err(fail("provided IP is already allocated".into(), Some(o)))
                }
                Err(Taken::Reserved) => {
                    return Err(fail("provided IP is already allocated".into(), None))
                }
            }
        }
        None => {
            let idx = txn.take_next(Kind::ClusterIp).ok_or_else(|| {
                Failure::Internal("failed to allocate a serviceIP: range is full".into())
            })?;
            s.service_cidr.addr(idx).to_string()
        }
    };
    set_spec(obj, "clusterIP", json!(ip));
    set_spec(obj, "clusterIPs", json!([ip]));
    Ok(())
}

fn take_port(txn: &mut Txn, s: &Settings, i: usize, port: i64) -> Result<(), Failure> {
    let fail = |msg: String, holder| {
        Failure::Invalid(
            Box::new(FieldError::invalid(
                &format!("spec.ports[{i}].nodePort"),
                json!(port),
                &msg,
            )),
            holder,
        )
    };
    let idx = s.node_ports.index_of(port).ok_or_else(|| {
        fail(
            format!(
                "provided port is not in the valid range. The range of valid ports is {}",
                s.node_ports
            ),
            None,
        )
    })?;
    match txn.take(Kind::NodePort, idx) {
        Ok(()) => Ok(()),
        Err(Taken::By(o)) => Err(fail("provided port is already allocated".into(), Some(o))),
        Err(Taken::Reserved) => Err(fail("provided port is already allocated".into(), None)),
    }
}

fn next_port(txn: &mut Txn, s: &Settings) -> Result<i64, Failure> {
    txn.take_next(Kind::NodePort)
        .map(|idx| s.node_ports.port(idx))
        .ok_or_else(|| Failure::Internal("failed to allocate a nodePort: range is full".into()))
}

fn node_ports(
    txn: &mut Txn,
    s: &Settings,
    old: Option<&Value>,
    held: &[(Kind, u32)],
    obj: &mut Value,
) -> Result<(), Failure> {
    if !svc::needs_node_port(obj) {
        return Ok(());
    }
    let auto = svc::should_allocate_node_ports(obj);
    let list: Vec<(i64, i64)> = svc::ports(obj)
        .iter()
        .map(|p| (svc::int_field(p, "port"), svc::int_field(p, "nodePort")))
        .collect();
    let mut out: Vec<i64> = list.iter().map(|(_, np)| *np).collect();
    if old.is_none() {
        // Create: ports sharing a number (53/UDP and 53/TCP) share a node port.
        let mut by_port: Vec<(i64, i64)> = Vec::new();
        for (i, &(port, np)) in list.iter().enumerate() {
            if np == 0 && !auto {
                continue;
            }
            match by_port.iter().find(|(p, _)| *p == port).map(|(_, n)| *n) {
                None => {
                    let requested = list
                        .iter()
                        .find(|(p, n)| *p == port && *n != 0)
                        .map(|(_, n)| *n);
                    let got = match requested {
                        Some(r) => {
                            take_port(txn, s, i, r)?;
                            r
                        }
                        None => next_port(txn, s)?,
                    };
                    out[i] = got;
                    by_port.push((port, got));
                }
                Some(shared) if np != shared => {
                    if np == 0 {
                        out[i] = shared;
                    } else {
                        take_port(txn, s, i, np)?;
                    }
                }
                Some(_) => {}
            }
        }
    } else {
        let held: HashSet<i64> = held
            .iter()
            .filter(|(k, _)| *k == Kind::NodePort)
            .map(|(_, i)| s.node_ports.port(*i))
            .collect();
        let mut taken_now = HashSet::new();
        for (i, &(_, np)) in list.iter().enumerate() {
            if np == 0 && !auto {
                continue;
            }
            if np != 0 {
                if !held.contains(&np) && taken_now.insert(np) {
                    take_port(txn, s, i, np)?;
                }
            } else {
                out[i] = next_port(txn, s)?;
            }
        }
    }
    if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for (p, np) in ports.iter_mut().zip(out) {
            if let (Some(m), true) = (p.as_object_mut(), np != 0) {
                m.insert("nodePort".into(), json!(np));
            }
        }
    }
    Ok(())
}

fn health_check_port(
    txn: &mut Txn,
    s: &Settings,
    old: Option<&Value>,
    obj: &mut Value,
) -> Result<(), Failure> {
    if !svc::needs_health_check(obj) || old.is_some_and(svc::needs_health_check) {
        return Ok(());
    }
    let hc = svc::int_field(svc::spec(obj), "healthCheckNodePort");
    if hc == 0 {
        let port = next_port(txn, s).map_err(|_| {
            Failure::Internal("failed to allocate a HealthCheck NodePort 0: range is full".into())
        })?;
        set_spec(obj, "healthCheckNodePort", json!(port));
        return Ok(());
    }
    let why = match s
        .node_ports
        .index_of(hc)
        .map(|idx| txn.take(Kind::NodePort, idx))
    {
        Some(Ok(())) => return Ok(()),
        None => format!(
            "provided port is not in the valid range. The range of valid ports is {}",
            s.node_ports
        ),
        Some(Err(_)) => "provided port is already allocated".into(),
    };
    Err(Failure::Internal(format!(
        "failed to allocate requested HealthCheck NodePort {hc}: {why}"
    )))
}

fn set_lb_address(obj: &mut Value, ip: Ipv4Addr) {
    if let Some(o) = obj.as_object_mut() {
        o.insert(
            "status".into(),
            json!({"loadBalancer": {"ingress": [{"ip": ip.to_string(), "ipMode": "VIP"}]}}),
        );
    }
}

/// The load-balancer address the service asks for in `spec.loadBalancerIP`.
pub fn requested_lb_ip(obj: &Value) -> Option<String> {
    let ip = svc::str_field(svc::spec(obj), "loadBalancerIP");
    (!ip.is_empty()).then(|| ip.to_string())
}

/// Why a LoadBalancer service has no address, or the slot it can have now.
pub fn pick_lb(pools: &mut Pools, s: &Settings, obj: &Value, owner: &Owner) -> Result<u32, String> {
    match requested_lb_ip(obj) {
        Some(req) => {
            let idx = v4(&req)
                .and_then(|a| s.lb_pool.index_of(a))
                .ok_or_else(|| {
                    format!(
                        "requested loadBalancerIP {req} is not in pool {}",
                        s.lb_pool
                    )
                })?;
            pools
                .lb
                .take(idx, owner)
                .map(|()| idx)
                .map_err(|_| format!("requested loadBalancerIP {req} is already allocated"))
        }
        None => pools
            .lb
            .take_next(owner)
            .ok_or_else(|| format!("no available IPs in pool {}", s.lb_pool)),
    }
}

/// Writes the service's load-balancer address: the one it holds, the one it asks
/// for, or a free one. Without one the service stays pending (no ingress) and the
/// load-balancer task says why in an event.
fn load_balancer(txn: &mut Txn, s: &Settings, obj: &mut Value) {
    if !managed_lb(obj) {
        return;
    }
    let current = lb_slots(s, obj).into_iter().find(|i| {
        txn.pools
            .lb
            .owner(*i)
            .is_some_and(|o| o.uid == txn.owner.uid)
    });
    let wanted = requested_lb_ip(obj).and_then(|r| v4(&r));
    if let Some(cur) = current {
        if wanted.is_none_or(|w| s.lb_pool.addr(cur) == w) {
            return;
        }
    }
    let owner = txn.owner.clone();
    if let Ok(idx) = pick_lb(txn.pools, s, obj, &owner) {
        txn.taken.push((Kind::LoadBalancer, idx));
        set_lb_address(obj, s.lb_pool.addr(idx));
    }
}

/// A status write on a LoadBalancer this server manages: addresses from the pool
/// that it names become its own when nobody else has them. Returns those taken.
pub fn adopt_lb_status(
    pools: &mut Pools,
    s: &Settings,
    old: &Value,
    new: &Value,
    owner: &Owner,
) -> Vec<(Kind, u32)> {
    if !managed_lb(new) {
        return Vec::new();
    }
    let before = lb_slots(s, old);
    let mut taken = Vec::new();
    for idx in lb_slots(s, new).into_iter().filter(|i| !before.contains(i)) {
        if pools.lb.owner(idx).is_none() && pools.lb.take(idx, owner).is_ok() {
            taken.push((Kind::LoadBalancer, idx));
        }
    }
    taken
}

/// What `gone` holds and `kept` does not.
pub fn difference(s: &Settings, gone: &Value, kept: Option<&Value>) -> Vec<(Kind, u32)> {
    let keep = kept.map(|k| claims(s, k)).unwrap_or_default();
    claims(s, gone)
        .into_iter()
        .filter(|c| !keep.contains(c))
        .collect()
}

/// After a write: what `gone` holds and `kept` does not goes back to the pools.
pub fn release_difference(
    pools: &mut Pools,
    s: &Settings,
    gone: &Value,
    kept: Option<&Value>,
    uid: &str,
) -> usize {
    difference(s, gone, kept)
        .into_iter()
        .filter(|&(kind, idx)| pools.pool(kind).release(idx, uid))
        .count()
}

#[cfg(test)]
#[path = "claims_tests.rs"]
mod tests;
