//! stub
use crate::runtime::{Ctx, Key};
use crate::Result;
use std::sync::Arc;
use std::time::Duration;
pub async fn reconcile(_ctx: Arc<Ctx>, _key: Key) -> Result<Option<Duration>> {
    Ok(None)
}
pub fn needs_scheduling(_p: &k8s_openapi::api::core::v1::Pod) -> bool {
    false
}
