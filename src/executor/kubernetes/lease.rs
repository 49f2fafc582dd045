//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder schedules runs, so
//! two replicas never start the same test twice. Updates carry the resourceVersion they
//! read, so two candidates racing for an expired lease cannot both win (one gets 409).

use super::api;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use std::time::Duration;
use tracing::{info, warn};

pub struct LeaderLease {
    api: Api<Lease>,
    name: String,
    pub identity: String,
    duration: Duration,
}

impl LeaderLease {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> LeaderLease {
        LeaderLease {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    fn expired(&self, spec: &LeaseSpec) -> bool {
        let Some(renewed) = &spec.renew_time else {
            return true;
        };
        let secs = spec
            .lease_duration_seconds
            .unwrap_or(self.duration.as_secs() as i32) as i64;
        Timestamp::now().as_second() - renewed.0.as_second() > secs
    }

    /// One attempt: takes the lease when it is free, expired or already ours.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(0, None)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(e) if api::code(&e) == Some(409) => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
                if !ours && !self.expired(&spec) && spec.holder_identity.is_some() {
                    return Ok(false);
                }
                let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
                let acquired = if ours {
                    spec.acquire_time.clone()
                } else {
                    None
                };
                lease.spec = Some(self.spec(transitions, acquired));
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if api::code(&e) == Some(409) => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Waits until this process holds the lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "leading");
                    return;
                }
                Ok(false) => {}
                Err(e) => warn!(lease = %self.name, error = %e, "cannot read the lease; retrying"),
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Renews the lease until it is lost: another holder took it, or no renewal succeeded
    /// within the renew deadline (two thirds of the lease, as client-go does), after which
    /// another replica may take it. Failed renewals are retried quickly until then.
    pub async fn hold(&self) {
        let deadline = self.duration * 2 / 3;
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            loop {
                match self.try_acquire().await {
                    Ok(true) => {
                        last_ok = tokio::time::Instant::now();
                        break;
                    }
                    Ok(false) => {
                        // Lost a race on the update, or someone else holds it now: look again.
                        if let Ok(Some(l)) = self.api.get_opt(&self.name).await {
                            let holder = l.spec.and_then(|s| s.holder_identity);
                            if holder.as_deref() != Some(self.identity.as_str()) {
                                warn!(lease = %self.name, holder = ?holder, "leadership lost");
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        warn!(lease = %self.name, error = %e, "cannot renew the lease; retrying")
                    }
                }
                if last_ok.elapsed() >= deadline {
                    warn!(lease = %self.name, "could not renew the lease in time; leadership lost");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Gives the lease up (on a clean stop), so another replica leads at once instead of
    /// waiting for it to expire.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.name, "leadership released"),
            Err(e) => warn!(lease = %self.name, error = %e, "cannot release the lease; it expires"),
        }
    }
}
