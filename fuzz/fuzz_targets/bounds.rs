//! What one hostile review can cost: MiB-sized AdmissionReviews built from a small recipe (the
//! fuzz input picks a captured review, where to inflate it — a spec, an old object, labels,
//! annotations, `options`, `userInfo`, a quoted principal, an unread top-level key — with what
//! shape — long lists, many keys, long strings, nested lists, lists of maps — and how much), so
//! libFuzzer mutates a few bytes while the server decodes up to the 7 MiB body limit.
//! Invariants, per input: no panic; the heap grows by at most twice the body plus the decode
//! limit plus 4 MiB (a capped allocator makes any allocation past that abort, which libFuzzer
//! reports as a crash); the answer is at most 64 KiB; the shared memory budget is given back.
#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use meshguard::admission::{Admission, Webhook};
use meshguard::budget::Budget;
use meshguard::config::Policy;
use meshguard::context::NoCluster;
use meshguard::engine::Engine;
use meshguard::metrics::Metrics;
use meshguard::resource::DecodeLimits;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

const BODY_LIMIT: usize = 7 * 1024 * 1024;
const DECODE_LIMIT: usize = 32 * 1024 * 1024;
const RESPONSE_LIMIT: usize = 64 * 1024;

const FIXTURES: &[&[u8]] = &[
    include_bytes!(
        "../../tests/fixtures/admission/peerauthentication-update-strict-to-permissive.json"
    ),
    include_bytes!(
        "../../tests/fixtures/admission/authorizationpolicy-create-v1-bad-principals.json"
    ),
    include_bytes!("../../tests/fixtures/admission/pod-create-bare-no-serviceaccount.json"),
    include_bytes!("../../tests/fixtures/admission/deployment-create.json"),
    include_bytes!("../../tests/fixtures/admission/namespace-update-labels.json"),
    include_bytes!("../../tests/fixtures/admission/destinationrule-create-v1beta1.json"),
    include_bytes!("../../tests/fixtures/admission/peerauthentication-delete-strict-v1beta1.json"),
];

struct Fixture {
    rt: tokio::runtime::Runtime,
    admission: Admission,
    memory: Arc<Budget>,
    reviews: Vec<Value>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let mut admission = Admission::new(
            meshguard::engine::EngineHandle::new(Engine::new(
                Policy::builtin(),
                Default::default(),
                Some("meshguard"),
            )),
            Metrics::new().expect("metrics"),
            Arc::new(NoCluster),
        );
        let memory = Budget::new(64 * 1024 * 1024);
        admission.memory = Some(memory.clone());
        admission.decode_limits = DecodeLimits {
            max_decoded_bytes: DECODE_LIMIT,
        };
        let reviews = FIXTURES
            .iter()
            .map(|f| serde_json::from_slice(f).expect("fixture"))
            .collect();
        Fixture {
            rt,
            admission,
            memory,
            reviews,
        }
    })
}

/// A value of about `n` items of the shape `shape` picks.
fn inflated(shape: u8, n: usize, u: &mut Unstructured<'_>) -> Value {
    let word: String = (0..u.int_in_range(1..=12u8).unwrap_or(1))
        .map(|_| char::from(b'a' + u.int_in_range(0..=25u8).unwrap_or(0)))
        .collect();
    match shape % 6 {
        0 => json!(vec![0; n]),
        1 => Value::Object((0..n).map(|i| (format!("{word}{i}"), json!(i))).collect()),
        2 => json!(word.repeat(n.max(1))),
        3 => json!(vec![json!({"a": {"b": [1]}}); n / 8]),
        4 => json!(vec![vec![vec![word.clone()]]; n / 4]),
        _ => json!(vec![
            format!(
                "spiffe://cluster.local/ns/x/sa/{}",
                word.repeat(64)
            );
            n / 64
        ]),
    }
}

/// Put `v` at one of the places a client controls.
fn place(review: &mut Value, spot: u8, v: Value) {
    let req = &mut review["request"];
    match spot % 9 {
        0 => req["object"]["spec"]["padding"] = v,
        1 => req["oldObject"]["spec"]["padding"] = v,
        2 => req["object"]["metadata"]["labels"] = v,
        3 => req["object"]["metadata"]["annotations"] = v,
        4 => req["options"] = v,
        5 => req["userInfo"]["groups"] = v,
        6 => req["object"]["unread"] = v,
        7 => req["object"]["spec"]["rules"] = json!([{"from": [{"source": {"principals": v}}]}]),
        _ => req["object"]["metadata"]["finalizers"] = v,
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut u = Unstructured::new(data);
    let Ok(pick) = u.int_in_range(0..=f.reviews.len() - 1) else {
        return;
    };
    let mut review = f.reviews[pick].clone();
    let inflations = u.int_in_range(1..=3u8).unwrap_or(1);
    for _ in 0..inflations {
        let (Ok(spot), Ok(shape), Ok(n)) = (
            u.arbitrary::<u8>(),
            u.arbitrary::<u8>(),
            u.int_in_range(0..=1_500_000usize),
        ) else {
            break;
        };
        let v = inflated(shape, n, &mut u);
        place(&mut review, spot, v);
    }
    let Ok(body) = serde_json::to_vec(&review) else {
        return;
    };
    drop(review);
    if body.len() > BODY_LIMIT {
        return; // the server refuses it (413) before reading it
    }
    // Everything the server builds from here on fits in this much more heap.
    let bound = 2 * body.len() + DECODE_LIMIT + 4 * 1024 * 1024;
    let webhook = if data.first().is_some_and(|b| b % 2 == 0) {
        Webhook::Validate
    } else {
        Webhook::Mutate
    };
    let before = ALLOC.allocated();
    ALLOC
        .set_limit(before + bound)
        .expect("limit above what is allocated");
    let out =
        f.rt.block_on(f.admission.handle(webhook, &body, Duration::from_secs(10)));
    ALLOC.set_limit(usize::MAX).expect("lift the limit");
    if let Ok(bytes) = &out {
        assert!(
            bytes.len() <= RESPONSE_LIMIT,
            "a {} byte body got a {} byte answer",
            body.len(),
            bytes.len()
        );
        let v: Value = serde_json::from_slice(bytes).expect("handle answered invalid JSON");
        assert!(v["response"]["allowed"].is_boolean());
    }
    assert_eq!(f.memory.used(), 0, "the memory budget was not given back");
});
