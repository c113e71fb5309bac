//! Table tests of the Deployment arithmetic.

use super::*;

#[test]
fn rolling_update_arithmetic() {
    // 25% of 4: surge rounds up to 1, unavailable rounds down to 1.
    let pct = IntOrString::String("25%".into());
    assert_eq!(resolve(Some(&pct), 4, true, "25%"), 1);
    assert_eq!(resolve(Some(&pct), 3, true, "25%"), 1);
    assert_eq!(resolve(Some(&pct), 3, false, "25%"), 0);
    assert_eq!(resolve(None, 10, false, "25%"), 2);

    // (replicas, surge, new current, total) -> new replicas
    let cases = [
        (4, 1, 0, 4, 1), // start: one extra pod
        (4, 1, 1, 5, 1), // at the surge limit: wait
        (4, 1, 1, 4, 2), // an old one went: grow
        (4, 1, 4, 4, 4), // done
        (5, 0, 0, 0, 5), // fresh deployment: all at once
        (3, 2, 2, 3, 3), // never above replicas
    ];
    for (replicas, surge, cur, total, want) in cases {
        assert_eq!(
            new_rs_replicas(replicas, surge, cur, total),
            want,
            "{replicas} {surge} {cur} {total}"
        );
    }

    // (replicas, maxUnavailable, old [(spec, available)], new (spec, available)) -> old after
    // maxUnavailable 1 lets one old pod go at once, ready new pod or not.
    assert_eq!(old_scale_down(4, 1, &[(4, 4)], (1, 0)), vec![3]);
    // With maxUnavailable 0 nothing goes until the new pod is available.
    assert_eq!(old_scale_down(4, 0, &[(4, 4)], (1, 0)), vec![4]);
    // One new pod available: the old may drop to 2 (3 available = 4 - 1).
    assert_eq!(old_scale_down(4, 1, &[(4, 4)], (1, 1)), vec![2]);
    assert_eq!(old_scale_down(4, 0, &[(4, 4)], (1, 1)), vec![3]);
    // Unhealthy old replicas go first, regardless of availability.
    // (budget: 5 pods - 3 min available - 1 unavailable new = 1)
    assert_eq!(old_scale_down(4, 1, &[(4, 2)], (1, 0)), vec![3]);
    // Oldest first across several old ReplicaSets.
    assert_eq!(old_scale_down(4, 1, &[(2, 2), (2, 2)], (1, 1)), vec![0, 2]);
    assert_eq!(old_scale_down(4, 1, &[(0, 0)], (4, 4)), vec![0]);
}

#[test]
fn hash_is_stable_and_ignores_its_own_label() {
    let mut t = PodTemplateSpec::default();
    let h = template_hash(&t, None);
    assert_eq!(h, template_hash(&t, None));
    assert_ne!(h, template_hash(&t, Some(1)));
    assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    let mut with = t.clone();
    with.metadata = Some(ObjectMeta {
        labels: Some(BTreeMap::from([(LABEL_HASH.to_string(), h.clone())])),
        ..Default::default()
    });
    assert!(equal_ignore_hash(&t, &with));
    t.metadata = Some(ObjectMeta {
        labels: Some(BTreeMap::from([("app".to_string(), "x".to_string())])),
        ..Default::default()
    });
    assert!(!equal_ignore_hash(&t, &with));
}
