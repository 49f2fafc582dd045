//! The Kubernetes client: built from a kubeconfig (or the pod's service account), with the
//! retries a controller needs on a busy API server.

use super::KubeError;
use kube::api::{ApiResource, GroupVersionKind};
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use tracing::debug;

/// The k6-operator's TestRun (k6.io/v1alpha1). perfsync reads it as a dynamic object: it
/// writes the spec it renders and reads only `status.stage`.
pub fn testrun_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("k6.io", "v1alpha1", "TestRun"),
        "testruns",
    )
}

/// A client from `kubeconfig`, or inferred (in-cluster service account, `$KUBECONFIG`).
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, KubeError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| KubeError::Config {
                message: format!("{}: {e}", path.display()),
            })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| KubeError::Config {
                    message: format!("{}: {e}", path.display()),
                })?
        }
        None => kube::Config::infer().await.map_err(|e| KubeError::Config {
            message: format!("no kubeconfig set (executor.kubeconfig) and none found: {e}"),
        })?,
    };
    kube::Client::try_from(config).map_err(|e| KubeError::Config {
        message: e.to_string(),
    })
}

pub fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

pub fn is_not_found(e: &kube::Error) -> bool {
    code(e) == Some(404)
}

pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// Worth trying again: the server was busy or failed, a write lost a race (409 Conflict),
/// or the connection broke.
pub fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            matches!(s.code, 429 | 500 | 502 | 503 | 504)
                || (s.code == 409 && s.reason != "AlreadyExists")
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Calls `f` until it succeeds, fails for good, or `attempts` transient failures in a row.
pub async fn retry<T, F, Fut>(what: &str, attempts: u32, mut f: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(100);
    let mut n = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if is_transient(&e) && n + 1 < attempts => {
                n += 1;
                debug!(what, attempt = n, error = %e, "transient API error; retrying");
                tokio::time::sleep(delay + Duration::from_millis(fastrand::u64(0..50))).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
            Err(e) => return Err(e),
        }
    }
}
