//! Leader election against an in-process API server (memory store): two
//! servers' electors, exactly one of which runs the work at any time; the
//! standby takes over when the leader dies (within the lease duration after its
//! last renewal) and at once when it stops gracefully; a leader that cannot
//! renew stops its work within the renew deadline.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use skiff_controllers::leader::{run_elected, LeaderElection, LEASE_NAME, LEASE_NAMESPACE};
use support::api_server;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

/// Short but upstream-shaped timings (15/10/2 s scaled down), so the test
/// takes seconds: lease > renew deadline > 1.2 x retry period.
const LEASE: Duration = Duration::from_secs(3);
const RENEW_DEADLINE: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(400);
/// Scheduling and API round trips on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(1000);

/// Which electors' work is running right now, and whether two ever ran at once.
#[derive(Clone, Default)]
struct Running {
    now: Arc<Mutex<Vec<String>>>,
    overlapped: Arc<AtomicBool>,
}

impl Running {
    fn list(&self) -> Vec<String> {
        self.now.lock().expect("lock").clone()
    }
}

/// Removes its elector from [`Running`] when the work is dropped (aborted).
struct Guard(Running, String);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.now.lock().expect("lock").retain(|n| n != &self.1);
    }
}

struct Candidate {
    task: JoinHandle<skiff_controllers::Result<()>>,
    stop: Option<oneshot::Sender<()>>,
}

fn candidate(client: &kube::Client, id: &str, running: &Running) -> Candidate {
    let config = LeaderElection {
        identity: id.to_string(),
        lease_duration: LEASE,
        renew_deadline: RENEW_DEADLINE,
        retry_period: RETRY,
        ..LeaderElection::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let (running, me) = (running.clone(), id.to_string());
    let work = move || {
        let (running, me) = (running.clone(), me.clone());
        async move {
            let guard = {
                let mut now = running.now.lock().expect("lock");
                if !now.is_empty() {
                    running.overlapped.store(true, Ordering::SeqCst);
                }
                now.push(me.clone());
                Guard(running.clone(), me)
            };
            std::future::pending::<()>().await;
            drop(guard);
            Ok(())
        }
    };
    let shutdown = async move {
        let _ = stopped.await;
    };
    Candidate {
        task: tokio::spawn(run_elected(client.clone(), config, shutdown, work)),
        stop: Some(stop),
    }
}

/// Waits until `cond` holds, up to `within`; returns how long it took.
async fn until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

async fn lease(api: &Api<Lease>) -> (String, i32) {
    let l = api.get(LEASE_NAME).await.expect("the leader Lease");
    let spec = l.spec.expect("a Lease spec");
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
    (
        spec.holder_identity.unwrap_or_default(),
        spec.lease_transitions.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_takeover_on_death_handover_on_release() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = api_server(dir.path()).await;
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let running = Running::default();

    // Two servers start together: exactly one leads, and holds on through
    // several lease durations of renewals.
    let mut a = candidate(&client, "host-a_1", &running);
    let mut b = candidate(&client, "host-b_2", &running);
    until(Duration::from_secs(5), "a leader", || {
        running.list().len() == 1
    })
    .await;
    let first = running.list()[0].clone();
    assert_eq!(lease(&api).await, (first.clone(), 0));
    sleep(LEASE * 2).await;
    assert_eq!(
        running.list(),
        vec![first.clone()],
        "the leader kept its Lease"
    );
    assert_eq!(lease(&api).await, (first.clone(), 0));

    // The leader dies (its task aborted, nothing released): the standby takes
    // over once the Lease has gone unrenewed for its duration, not before.
    let (dead, survivor, survivor_id) = if first == "host-a_1" {
        (&mut a, &mut b, "host-b_2")
    } else {
        (&mut b, &mut a, "host-a_1")
    };
    dead.task.abort();
    let took = until(LEASE + RETRY * 2 + SLACK, "takeover after death", || {
        running.list() == vec![survivor_id.to_string()]
    })
    .await;
    assert!(
        took >= LEASE - RETRY * 2,
        "took over after {took:?}, before the lease ({LEASE:?}) could expire"
    );
    assert_eq!(lease(&api).await, (survivor_id.to_string(), 1));
    eprintln!("takeover {took:?} after the leader died (lease {LEASE:?})");

    // The dead one comes back as a new process (new identity) and stands by;
    // the leader stops gracefully and hands over at once (one retry period).
    let c = candidate(&client, "host-a_3", &running);
    sleep(RETRY * 3).await;
    assert_eq!(running.list(), vec![survivor_id.to_string()]);
    let _ = survivor.stop.take().expect("stop").send(());
    let handed = until(RETRY * 2 + SLACK, "handover on release", || {
        running.list() == vec!["host-a_3".to_string()]
    })
    .await;
    assert!(handed < LEASE, "handover took {handed:?}");
    eprintln!("handover {handed:?} after a graceful stop");
    let ended = (&mut survivor.task).await.expect("joined");
    assert!(ended.is_ok(), "{ended:?}");
    assert_eq!(lease(&api).await, ("host-a_3".to_string(), 2));

    // The API server goes away: the leader cannot renew and stops its work
    // within the renew deadline (then stands by as a candidate).
    server.stopper().stop();
    let stepped = until(RENEW_DEADLINE + RETRY + SLACK * 2, "step down", || {
        running.list().is_empty()
    })
    .await;
    eprintln!("stepped down {stepped:?} after the API server stopped");
    assert!(
        !c.task.is_finished(),
        "a leader that lost its Lease stands by"
    );
    c.task.abort();

    assert!(
        !running.overlapped.load(Ordering::SeqCst),
        "two electors' work ran at once"
    );
}

/// Controllers that stop by themselves (their API server gone for good, bad
/// flags) end the election too: the Lease is released and the error returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_ends_releases_and_returns_its_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, client) = api_server(dir.path()).await;
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let config = LeaderElection {
        identity: "host-a_1".into(),
        lease_duration: LEASE,
        renew_deadline: RENEW_DEADLINE,
        retry_period: RETRY,
        ..LeaderElection::default()
    };
    let work = || async {
        sleep(RETRY * 3).await;
        Err(skiff_controllers::Error::Invalid("stopped".into()))
    };
    let ended = run_elected(client, config, std::future::pending(), work).await;
    assert!(
        matches!(&ended, Err(skiff_controllers::Error::Invalid(m)) if m == "stopped"),
        "{ended:?}"
    );
    assert_eq!(lease(&api).await, (String::new(), 0), "released");
}

fn deployment(name: &str) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            }
        }
    }))
    .expect("a Deployment")
}

/// What a leader that loses its Lease relies on: dropping the controllers'
/// future stops every worker and watch, so nothing acts after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_controllers_do_nothing_more() {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, client) = api_server(dir.path()).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let count = |replicasets: Api<ReplicaSet>| async move {
        replicasets
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .len()
    };
    let controllers = tokio::spawn(skiff_controllers::run(
        client.clone(),
        skiff_controllers::Settings::default(),
    ));
    let pp = Default::default();
    deployments
        .create(&pp, &deployment("before"))
        .await
        .expect("create");
    let start = Instant::now();
    while count(replicasets.clone()).await == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "no ReplicaSet");
        sleep(Duration::from_millis(50)).await;
    }
    controllers.abort();
    let _ = controllers.await;
    deployments
        .create(&pp, &deployment("after"))
        .await
        .expect("create");
    sleep(Duration::from_secs(2)).await;
    assert_eq!(count(replicasets).await, 1, "a stopped controller acted");
}
