//! Answer one captured AdmissionReview many times through `Admission::handle` (decode →
//! evaluate → decide → encode, no network), for a profiler to look at:
//!
//! ```sh
//! cargo build --profile profiling --example profile_review
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*handle*' \
//!   target/profiling/examples/profile_review tests/fixtures/admission/pod-create-by-replicaset.json 2000
//! callgrind_annotate --inclusive=yes callgrind.out.* | head -60
//! ```
//!
//! Instruction counts do not depend on what else the machine is doing, so they compare two
//! builds on a shared machine where wall-clock benchmarks cannot.

use meshguard::admission::{Admission, Webhook};
use meshguard::config::Policy;
use meshguard::context::NoCluster;
use meshguard::engine::{Engine, EngineHandle};
use meshguard::metrics::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "tests/fixtures/admission/pod-create-by-replicaset.json".into());
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // Compact, as kube-apiserver sends it.
    let value: serde_json::Value = serde_json::from_slice(&raw).expect("fixture is JSON");
    let body = serde_json::to_vec(&value).expect("encode");
    let _logging = std::env::var_os("PROFILE_LOG")
        .map(|_| meshguard::logging::init(meshguard::logging::LogFormat::Text, "info"));
    let admission = Admission::new(
        EngineHandle::new(Engine::new(Policy::default(), Default::default(), None)),
        Metrics::new().expect("metrics"),
        Arc::new(NoCluster),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        let out = rt
            .block_on(admission.handle(Webhook::Validate, &body, Duration::from_secs(10)))
            .expect("answered");
        bytes += out.len();
    }
    let took = start.elapsed();
    eprintln!(
        "{n} reviews of {} bytes in {took:?}: {:?} per review, {} response bytes each",
        body.len(),
        took / n as u32,
        bytes / n.max(1)
    );
}
