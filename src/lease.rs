//! One writer among replicas: leader election on a `coordination.k8s.io/v1` Lease, with the
//! semantics of client-go's `tools/leaderelection` (`LeaderElector.tryAcquireOrRenew`,
//! `renew`, `release`):
//!
//! * A candidate reads the Lease. It may take it when it does not exist (create), when
//!   `spec.holderIdentity` is empty (released), or when the record has not changed for
//!   `spec.leaseDurationSeconds` *as measured on the candidate's own clock* since it first saw
//!   that record: timestamps written by other hosts (`renewTime`) are never compared with the
//!   local clock, so clock skew between replicas does not matter.
//! * Taking the Lease from another holder increments `spec.leaseTransitions` and sets
//!   `acquireTime`; the holder renews `renewTime` every retry period. Every write is an update
//!   with the `resourceVersion` just read, so of two candidates only one wins.
//! * The holder counts as leader until `renew_deadline` after the start of its last successful
//!   renewal ([`Leadership::is_leader`] checks the time on every call), or until a read shows
//!   another holder. Since `renew_deadline < lease_duration`, it has stopped writing before any
//!   other candidate may take over.
//! * On shutdown the holder releases the Lease (empty holder, `leaseDurationSeconds: 1`), so a
//!   standby takes over within one retry period instead of a whole lease duration.
//!
//! [`Elector`] is the decision, without I/O, and tested with explicit instants; [`run`] is the
//! loop around it.
//!
//! The `kube-leader-election` crate does the same job, but its current release (0.44) is built
//! on kube 4 while meshguard uses kube 5, and it judges expiry by comparing the holder's
//! `renewTime` with the local clock, which client-go avoids.

use crate::metrics::Metrics;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Name of the Lease that elects the writer of the periodic audit and its reports.
pub(crate) const LEASE_NAME: &str = "meshguard-audit";

/// client-go's `JitterFactor`: a candidate waits between one and 2.2 retry periods.
const JITTER_FACTOR: f64 = 1.2;

/// How long a Lease is held and renewed (client-go's `LeaseDuration`, `RenewDeadline`,
/// `RetryPeriod`; the defaults are those of kube-controller-manager).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long standbys wait, after they last saw the record change, before taking over.
    pub lease_duration: Duration,
    /// How long the holder keeps acting as leader after the start of its last successful
    /// renewal.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseTiming {
    /// client-go's constraints (`NewLeaderElector`): leaseDuration > renewDeadline >
    /// 1.2 × retryPeriod; the Lease stores whole seconds, so leaseDuration is at least 1 s.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration < Duration::from_secs(1) {
            return Err(format!(
                "--leader-elect-lease-duration {:?} must be at least 1s (the Lease stores whole seconds)",
                self.lease_duration
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(format!(
                "--leader-elect-lease-duration {:?} must be greater than --leader-elect-renew-deadline {:?}",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return Err(format!(
                "--leader-elect-renew-deadline {:?} must be greater than 1.2 × --leader-elect-retry-period {:?}",
                self.renew_deadline, self.retry_period
            ));
        }
        if self.retry_period.is_zero() {
            return Err("--leader-elect-retry-period must be greater than 0".to_owned());
        }
        Ok(())
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

/// Which Lease, and who is asking.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per process: `spec.holderIdentity` when it leads.
    pub identity: String,
    pub(crate) timing: LeaseTiming,
}

/// A process-unique identity: the pod name (`POD_NAME`, else the host name) and a random
/// suffix, like client-go users' `hostname_uuid`.
pub(crate) fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "meshguard".to_owned());
    format!("{host}_{:016x}", random_u64())
}

/// 64 random bits from the standard library's per-process random hash keys.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// What to do after reading the Lease.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// No Lease yet: create it with this spec.
    Create(LeaseSpec),
    /// Write this spec (acquire or renew), conditional on the resourceVersion read.
    Update(LeaseSpec),
    /// Another candidate holds a valid Lease.
    Held { holder: String },
}

/// client-go's `LeaderElector` state: the last record seen and when (on the local clock).
#[derive(Clone, Debug)]
pub struct Elector {
    identity: String,
    timing: LeaseTiming,
    observed: Option<LeaseSpec>,
    observed_at: Option<Instant>,
}

impl Elector {
    pub fn new(identity: impl Into<String>, timing: LeaseTiming) -> Elector {
        Elector {
            identity: identity.into(),
            timing,
            observed: None,
            observed_at: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The last record seen names this candidate (client-go's `IsLeader`). Whether that still
    /// allows writing is [`Leadership::is_leader`]'s question.
    pub fn holds(&self) -> bool {
        self.observed
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.identity.as_str())
    }

    /// The holder named by the last record seen ("" when none).
    pub(crate) fn observed_holder(&self) -> &str {
        self.observed
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            .unwrap_or("")
    }

    /// The observed record is still valid at `now`: its lease duration has not passed since
    /// it was first seen.
    fn lease_valid(&self, now: Instant) -> bool {
        let (Some(spec), Some(at)) = (&self.observed, self.observed_at) else {
            return false;
        };
        let secs = spec.lease_duration_seconds.unwrap_or(0).max(0) as u64;
        at + Duration::from_secs(secs) > now
    }

    fn remember(&mut self, spec: &LeaseSpec, now: Instant) {
        if self.observed.as_ref() != Some(spec) {
            self.observed = Some(spec.clone());
            self.observed_at = Some(now);
        }
    }

    /// `tryAcquireOrRenew`, steps 1–3: given the Lease as read (`None`: absent), decide.
    /// `wall` is the time written into `acquireTime` / `renewTime`.
    pub fn decide(&mut self, current: Option<&LeaseSpec>, now: Instant, wall: MicroTime) -> Step {
        let mut record = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.lease_duration_seconds()),
            acquire_time: Some(wall.clone()),
            renew_time: Some(wall),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        };
        let Some(old) = current else {
            return Step::Create(record);
        };
        self.remember(old, now);
        let holder = old.holder_identity.clone().unwrap_or_default();
        if !holder.is_empty() && self.lease_valid(now) && !self.holds() {
            return Step::Held { holder };
        }
        if self.holds() {
            record.acquire_time = old.acquire_time.clone();
            record.lease_transitions = old.lease_transitions;
        } else {
            record.lease_transitions = Some(old.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        Step::Update(record)
    }

    /// The write of a [`Step::Create`] / [`Step::Update`] succeeded.
    pub fn written(&mut self, spec: &LeaseSpec, now: Instant) {
        self.observed = Some(spec.clone());
        self.observed_at = Some(now);
    }

    /// `release`: the record that gives the Lease up (`None` when this candidate does not
    /// hold it).
    pub(crate) fn release_record(&self, wall: MicroTime) -> Option<LeaseSpec> {
        if !self.holds() {
            return None;
        }
        Some(LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            acquire_time: Some(wall.clone()),
            renew_time: Some(wall),
            lease_transitions: self.observed.as_ref().and_then(|s| s.lease_transitions),
            ..LeaseSpec::default()
        })
    }
}

/// Whether this process may write now: shared by the Lease loop and the writers it gates.
#[derive(Clone, Debug)]
pub struct Leadership {
    valid_until: Arc<Mutex<Option<Instant>>>,
    changes: watch::Sender<bool>,
}

impl Default for Leadership {
    fn default() -> Self {
        Leadership::new()
    }
}

impl Leadership {
    /// Not leading.
    pub fn new() -> Leadership {
        Leadership {
            valid_until: Arc::new(Mutex::new(None)),
            changes: watch::channel(false).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.valid_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leading until `until` (the start of the last successful renewal + renew deadline).
    pub(crate) fn lead_until(&self, until: Instant) {
        *self.lock() = Some(until);
        self.changes
            .send_if_modified(|v| !std::mem::replace(v, true));
    }

    /// Not leading any more.
    pub(crate) fn step_down(&self) {
        *self.lock() = None;
        self.changes
            .send_if_modified(|v| std::mem::replace(v, false));
    }

    /// Leading at `now`.
    pub(crate) fn is_leader_at(&self, now: Instant) -> bool {
        self.lock().is_some_and(|until| now < until)
    }

    /// Leading now: every write checks this first.
    pub(crate) fn is_leader(&self) -> bool {
        self.is_leader_at(Instant::now())
    }

    /// Changes of leadership as the Lease loop sees them (true: became leader).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changes.subscribe()
    }
}

/// Errors talking to the API server about the Lease.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LeaseError {
    #[error("cannot read Lease {name}: {source}")]
    Get {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot write Lease {name}: {source}")]
    Write {
        name: String,
        #[source]
        source: kube::Error,
    },
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// The Lease loop's side of one candidate: the API and the last Lease object read or written
/// (for the release's resourceVersion).
struct Candidate {
    api: Api<Lease>,
    config: LeaseConfig,
    elector: Elector,
    last: Option<Lease>,
}

impl Candidate {
    /// One `tryAcquireOrRenew`. `Ok(true)`: this candidate holds the Lease now.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaseError> {
        let name = &self.config.name;
        let current = self
            .api
            .get_opt(name)
            .await
            .map_err(|source| LeaseError::Get {
                name: name.clone(),
                source,
            })?;
        let now = Instant::now();
        let step = self.elector.decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            now,
            now_micro(),
        );
        let written = match step {
            Step::Held { .. } => {
                self.last = current;
                return Ok(false);
            }
            Step::Create(spec) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Step::Update(spec) => {
                let mut lease = current.unwrap_or_default();
                lease.spec = Some(spec);
                self.api.replace(name, &PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(lease) => {
                if let Some(spec) = &lease.spec {
                    self.elector.written(spec, Instant::now());
                }
                self.last = Some(lease);
                Ok(true)
            }
            // Another candidate wrote first: not ours this round.
            Err(e) if is_conflict(&e) => Ok(false),
            Err(source) => Err(LeaseError::Write {
                name: name.clone(),
                source,
            }),
        }
    }

    /// `release`: give the Lease up if this candidate holds it.
    async fn release(&mut self) -> Result<(), LeaseError> {
        let Some(spec) = self.elector.release_record(now_micro()) else {
            return Ok(());
        };
        let Some(mut lease) = self.last.clone() else {
            return Ok(());
        };
        lease.spec = Some(spec);
        let name = self.config.name.clone();
        let lease = self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
            .map_err(|source| LeaseError::Write { name, source })?;
        if let Some(spec) = &lease.spec {
            self.elector.written(spec, Instant::now());
        }
        Ok(())
    }
}

fn jittered(period: Duration) -> Duration {
    let frac = (random_u64() % 1_000) as f64 / 1_000.0;
    period.mul_f64(1.0 + JITTER_FACTOR * frac)
}

/// Run for one candidate until `stop` turns true, keeping `leadership` (and the
/// `meshguard_leader` gauge) current; on stop, release the Lease if held.
pub async fn run(
    client: Client,
    config: LeaseConfig,
    leadership: Leadership,
    metrics: Option<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let timing = config.timing;
    let mut c = Candidate {
        api: Api::namespaced(client, &config.namespace),
        elector: Elector::new(config.identity.clone(), timing),
        config,
        last: None,
    };
    let describe = format!("{}/{}", c.config.namespace, c.config.name);
    tracing::info!(lease = %describe, identity = %c.config.identity, "leader election: trying to acquire the Lease");
    let set_gauge = |v: i64| {
        if let Some(m) = &metrics {
            m.leader.set(v);
        }
    };
    set_gauge(0);
    let mut leading = false;
    let mut last_holder = String::new();
    let mut last_error: Option<String> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let started = Instant::now();
        let attempt = tokio::time::timeout(timing.renew_deadline, c.try_acquire_or_renew()).await;
        match &attempt {
            Ok(Ok(true)) => {
                leadership.lead_until(started + timing.renew_deadline);
                if !leading {
                    leading = true;
                    set_gauge(1);
                    tracing::info!(lease = %describe, identity = %c.config.identity, "leader election: acquired the Lease; this replica runs the periodic audit and writes reports");
                }
            }
            Ok(Ok(false)) => {
                leadership.step_down();
                if leading {
                    leading = false;
                    set_gauge(0);
                    tracing::warn!(lease = %describe, holder = %c.elector.observed_holder(), "leader election: lost the Lease; stopped writing");
                }
            }
            Ok(Err(e)) => {
                // Once per distinct error: a missing Role would otherwise log every retry.
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(lease = %describe, error = %text, "leader election: cannot acquire or renew the Lease; retrying");
                    last_error = Some(text);
                } else {
                    tracing::debug!(lease = %describe, error = %text, "leader election: still cannot acquire or renew the Lease");
                }
            }
            Err(_) => {
                tracing::warn!(lease = %describe, "leader election: acquiring or renewing the Lease timed out")
            }
        }
        if matches!(attempt, Ok(Ok(_))) {
            last_error = None;
        }
        // A failed renewal ends leadership once the renew deadline has passed.
        if leading && !leadership.is_leader() {
            leading = false;
            leadership.step_down();
            set_gauge(0);
            tracing::warn!(lease = %describe, "leader election: could not renew the Lease within the renew deadline; stopped writing");
        }
        let holder = c.elector.observed_holder().to_owned();
        if holder != last_holder {
            if !holder.is_empty() && holder != c.config.identity {
                tracing::info!(lease = %describe, holder = %holder, "leader election: another replica holds the Lease");
            }
            last_holder = holder;
        }
        let wait = if leading {
            timing.retry_period
        } else {
            jittered(timing.retry_period)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|v| *v) => {}
        }
    }
    let was_leading = leadership.is_leader();
    leadership.step_down();
    set_gauge(0);
    if was_leading || c.elector.holds() {
        match tokio::time::timeout(timing.renew_deadline, c.release()).await {
            Ok(Ok(())) => tracing::info!(lease = %describe, "leader election: released the Lease"),
            Ok(Err(e)) => {
                tracing::warn!(lease = %describe, error = %e, "leader election: could not release the Lease; standbys take over when it expires")
            }
            Err(_) => {
                tracing::warn!(lease = %describe, "leader election: releasing the Lease timed out; standbys take over when it expires")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall(secs: i64) -> MicroTime {
        MicroTime(k8s_openapi::jiff::Timestamp::from_second(secs).expect("time"))
    }

    fn spec(holder: &str, duration: i32, transitions: i32, renew: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(duration),
            acquire_time: Some(wall(1_000)),
            renew_time: Some(wall(renew)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    fn timing() -> LeaseTiming {
        LeaseTiming::default()
    }

    #[test]
    fn an_absent_lease_is_created_with_this_candidate_as_holder() {
        let mut e = Elector::new("a", timing());
        let t0 = Instant::now();
        let Step::Create(s) = e.decide(None, t0, wall(2_000)) else {
            panic!("create")
        };
        assert_eq!(s.holder_identity.as_deref(), Some("a"));
        assert_eq!(s.lease_duration_seconds, Some(15));
        assert_eq!(s.lease_transitions, Some(0));
        assert_eq!(s.acquire_time, Some(wall(2_000)));
        assert_eq!(s.renew_time, Some(wall(2_000)));
        assert!(!e.holds(), "not before the write succeeded");
        e.written(&s, t0);
        assert!(e.holds());
    }

    #[test]
    fn a_lease_held_by_another_is_left_alone_until_it_stops_changing_for_its_duration() {
        let mut e = Elector::new("b", timing());
        let t0 = Instant::now();
        let held = spec("a", 15, 3, 5_000);
        assert_eq!(
            e.decide(Some(&held), t0, wall(9_999)),
            Step::Held { holder: "a".into() }
        );
        // The holder's renewTime says nothing about our clock: only a change of the record
        // restarts the wait.
        let t14 = t0 + Duration::from_secs(14);
        assert!(matches!(
            e.decide(Some(&held), t14, wall(9_999)),
            Step::Held { .. }
        ));
        let renewed = spec("a", 15, 3, 5_002);
        assert!(matches!(
            e.decide(Some(&renewed), t14, wall(9_999)),
            Step::Held { .. }
        ));
        let t28 = t14 + Duration::from_secs(14);
        assert!(matches!(
            e.decide(Some(&renewed), t28, wall(9_999)),
            Step::Held { .. }
        ));
        // 15 s without a change since it was seen: expired; taking it is a transition.
        let t29 = t14 + Duration::from_secs(15);
        let Step::Update(s) = e.decide(Some(&renewed), t29, wall(10_000)) else {
            panic!("take over")
        };
        assert_eq!(s.holder_identity.as_deref(), Some("b"));
        assert_eq!(s.lease_transitions, Some(4));
        assert_eq!(s.acquire_time, Some(wall(10_000)));
    }

    #[test]
    fn the_holder_renews_keeping_acquire_time_and_transitions() {
        let mut e = Elector::new("a", timing());
        let t0 = Instant::now();
        let mine = spec("a", 15, 2, 1_000);
        e.written(&mine, t0);
        let Step::Update(s) = e.decide(Some(&mine), t0 + Duration::from_secs(2), wall(1_002))
        else {
            panic!("renew")
        };
        assert_eq!(s.holder_identity.as_deref(), Some("a"));
        assert_eq!(s.lease_transitions, Some(2));
        assert_eq!(s.acquire_time, Some(wall(1_000)));
        assert_eq!(s.renew_time, Some(wall(1_002)));
    }

    #[test]
    fn a_holder_that_sees_another_holder_is_no_longer_leader() {
        let mut e = Elector::new("a", timing());
        let t0 = Instant::now();
        e.written(&spec("a", 15, 0, 1_000), t0);
        assert!(e.holds());
        let stolen = spec("b", 15, 1, 1_010);
        assert_eq!(
            e.decide(Some(&stolen), t0 + Duration::from_secs(3), wall(1_003)),
            Step::Held { holder: "b".into() }
        );
        assert!(!e.holds());
        assert_eq!(e.observed_holder(), "b");
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut a = Elector::new("a", timing());
        let t0 = Instant::now();
        a.written(&spec("a", 15, 5, 1_000), t0);
        let released = a.release_record(wall(1_001)).expect("holds it");
        assert_eq!(released.holder_identity.as_deref(), Some(""));
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(released.lease_transitions, Some(5));
        a.written(&released, t0);
        assert!(!a.holds());
        assert_eq!(
            a.release_record(wall(1_002)),
            None,
            "nothing to release twice"
        );
        let mut b = Elector::new("b", timing());
        let Step::Update(s) = b.decide(Some(&released), t0, wall(1_001)) else {
            panic!("empty holder: acquire")
        };
        assert_eq!(s.holder_identity.as_deref(), Some("b"));
        assert_eq!(s.lease_transitions, Some(6));
    }

    #[test]
    fn the_lease_duration_of_the_record_counts_not_our_own() {
        // A holder configured with a 60 s lease: a candidate with 15 s must wait 60 s.
        let mut e = Elector::new("b", timing());
        let t0 = Instant::now();
        let long = spec("a", 60, 0, 1_000);
        assert!(matches!(
            e.decide(Some(&long), t0, wall(1)),
            Step::Held { .. }
        ));
        let t30 = t0 + Duration::from_secs(30);
        assert!(matches!(
            e.decide(Some(&long), t30, wall(1)),
            Step::Held { .. }
        ));
        assert!(matches!(
            e.decide(Some(&long), t0 + Duration::from_secs(60), wall(1)),
            Step::Update(_)
        ));
    }

    #[test]
    fn leadership_ends_at_the_renew_deadline_without_a_renewal() {
        let l = Leadership::new();
        let t0 = Instant::now();
        assert!(!l.is_leader_at(t0));
        let mut changes = l.subscribe();
        l.lead_until(t0 + Duration::from_secs(10));
        assert!(changes.has_changed().expect("open"));
        assert!(*changes.borrow_and_update());
        assert!(l.is_leader_at(t0 + Duration::from_secs(9)));
        assert!(!l.is_leader_at(t0 + Duration::from_secs(10)));
        // A renewal extends it without another change notification.
        l.lead_until(t0 + Duration::from_secs(12));
        assert!(!changes.has_changed().expect("open"));
        assert!(l.is_leader_at(t0 + Duration::from_secs(11)));
        l.step_down();
        assert!(!l.is_leader_at(t0));
        assert!(!*changes.borrow_and_update());
    }

    #[test]
    fn timing_follows_client_go_constraints() {
        assert_eq!(timing().validate(), Ok(()));
        let bad = |l: u64, r: u64, p: u64| LeaseTiming {
            lease_duration: Duration::from_millis(l),
            renew_deadline: Duration::from_millis(r),
            retry_period: Duration::from_millis(p),
        };
        assert!(bad(10_000, 10_000, 2_000)
            .validate()
            .unwrap_err()
            .contains("greater than --leader-elect-renew-deadline"));
        assert!(bad(15_000, 2_400, 2_000)
            .validate()
            .unwrap_err()
            .contains("1.2"));
        assert!(bad(500, 300, 100)
            .validate()
            .unwrap_err()
            .contains("at least 1s"));
        assert!(bad(15_000, 10_000, 0).validate().is_err());
        assert_eq!(bad(3_000, 2_000, 500).validate(), Ok(()));
    }

    #[test]
    fn identities_are_unique_per_call() {
        let a = default_identity();
        let b = default_identity();
        assert_ne!(a, b);
        assert!(a.contains('_'));
    }
}
