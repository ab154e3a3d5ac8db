//! When the router has no request in flight on an instance any more: what a drain waits for,
//! here (rolling restarts, scale-downs) and in the supervisor (a memory restart), which asks
//! through [`UntilIdle`] so that it never reaches into the router itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use shoal_procfile::InstanceName;
use shoal_router::RouterStats;
use shoal_supervisor::UntilIdle;

/// The router's counts, asked when an instance is idle.
#[derive(Debug, Clone)]
pub struct RouterIdle(pub Arc<RouterStats>);

impl RouterIdle {
    /// Resolves once the router has no request in flight on `label`, and still none a
    /// moment later: a request may have picked the instance just before it left the rotation
    /// and not be counted yet.
    pub async fn settled(stats: &RouterStats, label: &str) {
        loop {
            stats.until_idle(label).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            if stats.in_flight(label) == 0 {
                return;
            }
        }
    }
}

impl UntilIdle for RouterIdle {
    fn until_idle(
        &self,
        name: &InstanceName,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let (stats, label) = (self.0.clone(), name.to_string());
        Box::pin(async move { RouterIdle::settled(&stats, &label).await })
    }
}
