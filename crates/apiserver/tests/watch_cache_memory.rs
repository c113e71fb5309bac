//! What the watch cache holds per object (issue 18: "memory bounded by the objects
//! themselves"), counted by this test binary's allocator: 10,000 Services as the API
//! server stores them, the bytes allocated by loading their cache, per object and
//! beside the object's stored size. Printed (`--nocapture`) and bounded.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use serde_json::json;
use skiff_api::registry;
use skiff_apiserver::cache::Caches;
use skiff_store::{Backend, MemoryBackend};

/// Counts the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A Service as `bench/api` creates it, with what the server adds before storing it.
fn stored_service(i: usize) -> Vec<u8> {
    let n = format!("svc-{i:06}");
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": n, "namespace": "bench", "labels": {"app": n, "bench": "api"},
            "uid": format!("6f1c2a7e-0000-4000-8000-{i:012}"),
            "creationTimestamp": "2026-12-07T03:50:00Z",
            "managedFields": [{"manager": "skiff-bench", "operation": "Update", "apiVersion": "v1",
                "time": "2026-12-07T03:50:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:bench": {}}},
                    "f:spec": {"f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}},
                    "f:selector": {}, "f:sessionAffinity": {}, "f:type": {}}}}],
        },
        "spec": {
            "selector": {"app": n},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            "clusterIP": format!("10.{}.{}.{}", 96 + i / 65536, (i / 256) % 256, i % 256),
            "clusterIPs": [format!("10.{}.{}.{}", 96 + i / 65536, (i / 256) % 256, i % 256)],
            "type": "ClusterIP", "sessionAffinity": "None",
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {}},
    }))
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_holds_under_three_times_each_objects_bytes() {
    const N: usize = 10_000;
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let services = registry::lookup("", "v1", "services").expect("services");
    let mut stored = 0;
    for i in 0..N {
        let v = stored_service(i);
        stored += v.len();
        backend
            .create(&services.key(Some("bench"), &format!("svc-{i:06}")), &v)
            .expect("create");
    }
    let caches = Caches::new(backend);
    caches.start();
    // The feed's own allocations (its task, the watch) are not the objects'.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = LIVE.load(Ordering::Relaxed);
    let cache = caches.resource(services).await.expect("the cache loads");
    let held = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(cache.sizes().0, N);
    let per_object = held as usize / N;
    let stored_per_object = stored / N;
    println!(
        "watch cache: {per_object} bytes per Service held ({stored_per_object} bytes stored): {:.1}x",
        per_object as f64 / stored_per_object as f64
    );
    // Its JSON as served, its labels and selectable fields, the map entry: under
    // three times the stored bytes (the parsed object alone took over ten).
    assert!(
        per_object < 3 * stored_per_object,
        "{per_object} bytes per object for {stored_per_object} stored"
    );
}
