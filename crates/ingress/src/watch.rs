//! Keeps the route table and the certificates current: kube-rs reflectors on
//! Ingresses, IngressClasses, Services, EndpointSlices and Secrets, and after
//! each burst of events (once all five are listed) a new table built whole and
//! swapped in with one atomic store, so requests in flight keep the snapshot
//! they loaded. Events and Ingress statuses follow each rebuild.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use skiff_watch::{follow_burst, Burst, Coalesce};
use tokio::sync::watch as channel;

use crate::class::Classes;
use crate::events::Recorder;
use crate::publish;
use crate::routes::{self, Objects};
use crate::state::Shared;
use crate::status;
use crate::tls;

/// Which watch an event came from, and whether it ended a (re)list.
type Tick = (usize, bool);

const KINDS: usize = 5;

fn follow<K>(client: &Client, kind: usize) -> (Store<K>, BoxStream<'static, Tick>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map(move |e| {
        if let Err(err) = &e {
            tracing::warn!(error = %err, "ingress watch");
        }
        (kind, matches!(e, Ok(watcher::Event::InitDone)))
    })
    .boxed();
    (reader, stream)
}

/// Objects by `(namespace, name)`.
fn by_name<K: Resource>(objects: &[Arc<K>]) -> HashMap<(&str, &str), &K> {
    objects
        .iter()
        .filter_map(|o| {
            let m = o.meta();
            Some(((m.namespace.as_deref()?, m.name.as_deref()?), o.as_ref()))
        })
        .collect()
}

/// Runs until the watches end.
pub async fn keep_current(
    client: Client,
    shared: Arc<Shared>,
    mut recorder: Recorder,
    status_tx: channel::Sender<status::Wanted>,
    publication: publish::Publication,
) {
    let mut publication = Some(publication);
    let creating_service = Arc::new(AtomicBool::new(false));
    let (ingresses, s0) = follow::<Ingress>(&client, 0);
    let (classes, s1) = follow::<IngressClass>(&client, 1);
    let (services, s2) = follow::<Service>(&client, 2);
    let (slices, s3) = follow::<EndpointSlice>(&client, 3);
    let (secrets, s4) = follow::<Secret>(&client, 4);
    let mut events: SelectAll<BoxStream<'static, Tick>> =
        futures::stream::select_all([s0, s1, s2, s3, s4]);
    let mut synced = [false; KINDS];
    let mut certs = tls::Cache::default();
    while let Some((kind, listed)) = events.next().await {
        let since = Instant::now();
        synced[kind] |= listed;
        let burst = follow_burst(&mut events, Coalesce::READY_ONLY, |(k, l)| {
            synced[k] |= l;
        })
        .await;
        if burst == Burst::Ended {
            return;
        }
        if !synced.iter().all(|s| *s) {
            continue;
        }
        let (ing, cls, svc, sl, sec) = (
            ingresses.state(),
            classes.state(),
            services.state(),
            slices.state(),
            secrets.state(),
        );
        let objects = Objects::new(
            Classes::from_classes(cls.iter().map(|c| c.as_ref())),
            ing.iter().map(|i| i.as_ref()),
            svc.iter().map(|s| s.as_ref()),
            sl.iter().map(|s| s.as_ref()),
        );
        let mut built = routes::build(&objects);
        let secrets_by_name = by_name(&sec);
        let secret = |ns: &str, name: &str| secrets_by_name.get(&(ns, name)).copied();
        let (store, tls_problems) = tls::store(&built.tls, secret, &mut certs);
        built.problems.extend(tls_problems);
        shared.certs.store.store(Arc::new(store));
        shared.swap_table(built.table);
        shared.metrics.table_updates.inc();
        tracing::debug!(took = ?since.elapsed(), served = built.served.len(), "ingress routes updated");

        let ingresses_by_name = by_name(&ing);
        let find = |ns: &str, name: &str| ingresses_by_name.get(&(ns, name)).copied();
        let served: Vec<(&routes::IngressRef, &Ingress)> = built
            .served
            .iter()
            .filter_map(|r| Some((r, find(&r.namespace, &r.name)?)))
            .collect();
        recorder.tell(served.iter().map(|(_, i)| *i), &built.problems, find);

        let own = services.get(&ObjectRef::new(publish::SERVICE).within(publish::NAMESPACE));
        // The Service and this node's slice once there is an Ingress to serve;
        // the Service again if someone deletes it.
        if !served.is_empty() {
            if let Some(p) = publication.take() {
                tokio::spawn(publish::start(client.clone(), p));
            }
            if own.is_none() && !creating_service.swap(true, Ordering::AcqRel) {
                tokio::spawn(publish::create_service(
                    client.clone(),
                    creating_service.clone(),
                ));
            }
        }
        let want = status::addresses(own.as_deref());
        if !want.is_empty() {
            let stale: Vec<_> = served
                .iter()
                .filter(|(_, i)| !status::current(i, &want))
                .map(|(r, _)| (*r).clone())
                .collect();
            if !stale.is_empty() {
                let _ = status_tx.send((stale, want));
            }
        }
    }
}
