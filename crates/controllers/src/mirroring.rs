//! stub
use crate::runtime::{Ctx, Key};
use crate::Result;
use std::sync::Arc;
use std::time::Duration;
pub const MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";
pub async fn reconcile(_ctx: Arc<Ctx>, _key: Key) -> Result<Option<Duration>> {
    Ok(None)
}
