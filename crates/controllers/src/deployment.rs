//! stub
use crate::runtime::{Cache, Ctx, Key};
use crate::Result;
use std::sync::Arc;
use std::time::Duration;
pub async fn reconcile(_ctx: Arc<Ctx>, _key: Key) -> Result<Option<Duration>> {
    Ok(None)
}
pub fn selecting(_c: &Cache, _p: &k8s_openapi::api::apps::v1::ReplicaSet) -> Vec<Key> {
    vec![]
}
