//! Table tests of the election rule and the flag checks.

use super::*;

const ME: &str = "host-a_1111";
const OTHER: &str = "host-b_2222";

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("a valid timestamp")
}

fn held(holder: &str, duration: i32, transitions: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.into()),
        lease_duration_seconds: Some(duration),
        acquire_time: Some(MicroTime(t(0))),
        renew_time: Some(MicroTime(t(10))),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn written(plan: Plan) -> LeaseSpec {
    match plan {
        Plan::Create(s) | Plan::Update(s) => s,
        Plan::Wait { holder, .. } => panic!("expected a write, got Wait({holder})"),
    }
}

#[test]
fn no_lease_is_created_held_by_us() {
    let p = plan(None, Duration::ZERO, ME, DEFAULT_LEASE_DURATION, t(20));
    let want = LeaseSpec {
        holder_identity: Some(ME.into()),
        lease_duration_seconds: Some(15),
        acquire_time: Some(MicroTime(t(20))),
        renew_time: Some(MicroTime(t(20))),
        lease_transitions: Some(0),
        ..Default::default()
    };
    assert_eq!(p, Plan::Create(want));
}

#[test]
fn a_live_lease_of_another_server_is_waited_for() {
    let lease = held(OTHER, 15, 3);
    for unchanged in [0, 1, 14] {
        assert_eq!(
            plan(
                Some(&lease),
                secs(unchanged),
                ME,
                DEFAULT_LEASE_DURATION,
                t(20)
            ),
            Plan::Wait {
                holder: OTHER.into(),
                expires_in: secs(15 - unchanged),
            },
            "unchanged for {unchanged}s"
        );
    }
}

#[test]
fn an_expired_lease_is_taken_over() {
    let lease = held(OTHER, 15, 3);
    for unchanged in [15, 16, 600] {
        let p = plan(
            Some(&lease),
            secs(unchanged),
            ME,
            DEFAULT_LEASE_DURATION,
            t(40),
        );
        assert!(matches!(p, Plan::Update(_)), "unchanged for {unchanged}s");
        let s = written(p);
        assert_eq!(s.holder_identity.as_deref(), Some(ME));
        assert_eq!(s.lease_transitions, Some(4), "a takeover is a transition");
        assert_eq!(s.acquire_time, Some(MicroTime(t(40))), "a new term starts");
        assert_eq!(s.renew_time, Some(MicroTime(t(40))));
        assert_eq!(s.lease_duration_seconds, Some(15));
    }
}

#[test]
fn expiry_goes_by_the_holders_duration_not_ours() {
    // A holder with a longer lease is live for its whole duration.
    let long = held(OTHER, 60, 0);
    assert!(matches!(
        plan(Some(&long), secs(20), ME, DEFAULT_LEASE_DURATION, t(40)),
        Plan::Wait { .. }
    ));
    assert!(matches!(
        plan(Some(&long), secs(60), ME, DEFAULT_LEASE_DURATION, t(40)),
        Plan::Update(_)
    ));
    // A missing or nonsensical duration counts as ours.
    for bad in [None, Some(0), Some(-5)] {
        let mut l = held(OTHER, 0, 0);
        l.lease_duration_seconds = bad;
        assert!(matches!(
            plan(Some(&l), secs(14), ME, DEFAULT_LEASE_DURATION, t(40)),
            Plan::Wait { .. }
        ));
        assert!(matches!(
            plan(Some(&l), secs(15), ME, DEFAULT_LEASE_DURATION, t(40)),
            Plan::Update(_)
        ));
    }
}

#[test]
fn the_renew_time_is_not_compared_with_our_clock() {
    // A holder whose clock runs far behind (renewTime an hour ago by ours)
    // is still live while we see it change: only the observation counts.
    let mut lease = held(OTHER, 15, 0);
    lease.renew_time = Some(MicroTime(t(-3600)));
    assert!(matches!(
        plan(Some(&lease), secs(1), ME, DEFAULT_LEASE_DURATION, t(0)),
        Plan::Wait { .. }
    ));
}

#[test]
fn our_own_lease_is_renewed_keeping_the_term() {
    let lease = held(ME, 15, 7);
    // However long ago we saw it change: it is ours.
    for unchanged in [0, 30] {
        let s = written(plan(
            Some(&lease),
            secs(unchanged),
            ME,
            DEFAULT_LEASE_DURATION,
            t(50),
        ));
        assert_eq!(s.holder_identity.as_deref(), Some(ME));
        assert_eq!(s.lease_transitions, Some(7), "a renewal is no transition");
        assert_eq!(s.acquire_time, Some(MicroTime(t(0))), "the term goes on");
        assert_eq!(s.renew_time, Some(MicroTime(t(50))));
    }
}

#[test]
fn a_released_or_empty_lease_is_free_at_once() {
    let release = released(&held(OTHER, 15, 2), t(30));
    assert_eq!(release.holder_identity.as_deref(), Some(""));
    assert_eq!(release.lease_duration_seconds, Some(1));
    assert_eq!(
        release.lease_transitions,
        Some(2),
        "a release keeps the count"
    );
    let s = written(plan(
        Some(&release),
        Duration::ZERO,
        ME,
        DEFAULT_LEASE_DURATION,
        t(31),
    ));
    assert_eq!(s.holder_identity.as_deref(), Some(ME));
    assert_eq!(s.lease_transitions, Some(3));
    // A Lease somebody made without a spec's fields: nobody holds it.
    let s = written(plan(
        Some(&LeaseSpec::default()),
        Duration::ZERO,
        ME,
        DEFAULT_LEASE_DURATION,
        t(31),
    ));
    assert_eq!(s.lease_transitions, Some(1));
    assert_eq!(s.acquire_time, Some(MicroTime(t(31))));
}

#[test]
fn upstream_defaults_and_flag_checks() {
    let d = LeaderElection::default();
    assert_eq!(
        (d.lease_duration, d.renew_deadline, d.retry_period),
        (secs(15), secs(10), secs(2))
    );
    assert_eq!(
        (d.namespace.as_str(), d.name.as_str()),
        (LEASE_NAMESPACE, LEASE_NAME)
    );
    assert!(d.validate().is_ok());
    let with = |l: u64, r: u64, p: u64| LeaderElection {
        lease_duration: secs(l),
        renew_deadline: secs(r),
        retry_period: secs(p),
        ..LeaderElection::default()
    };
    assert!(
        with(10, 10, 2).validate().is_err(),
        "lease must exceed renew"
    );
    assert!(
        with(15, 2, 2).validate().is_err(),
        "renew must exceed 1.2 retry"
    );
    assert!(with(15, 10, 0).validate().is_err());
    assert!(with(4, 3, 1).validate().is_ok());
    let anonymous = LeaderElection {
        identity: String::new(),
        ..LeaderElection::default()
    };
    assert!(anonymous.validate().is_err());
}

#[test]
fn identities_are_host_then_unique() {
    let (a, b) = (default_identity(), default_identity());
    assert_ne!(a, b, "a restarted server is not its predecessor");
    let (host, id) = a.rsplit_once('_').expect("<hostname>_<uuid>");
    assert!(!host.is_empty());
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{a}");
}

#[test]
fn jitter_stays_within_upstreams_factor() {
    for _ in 0..100 {
        let j = jittered(secs(2));
        assert!(j >= secs(2) && j < Duration::from_millis(2400), "{j:?}");
    }
}
