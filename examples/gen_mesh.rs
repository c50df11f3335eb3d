//! Generate a mesh of N namespaces × M workloads for the posture page's scale runs:
//! `cargo run --release --example gen_mesh -- 1000 10 /tmp/mesh` writes, per namespace, a
//! Namespace (sidecar injection; every 10th ambient, every 25th not enrolled), a namespace-wide
//! PeerAuthentication (STRICT; every 7th PERMISSIVE), an allow-nothing AuthorizationPolicy in
//! every other namespace, and per workload a Deployment (own ServiceAccount, ports http 8080
//! and metrics 9090), its Service, its ServiceAccount and an ALLOW policy for GET /api/* from
//! the previous workload; plus a mesh-wide STRICT PeerAuthentication. One file per namespace.

use std::fmt::Write as _;
use std::path::PathBuf;

fn namespace(n: usize, workloads: usize) -> String {
    let ns = format!("team-{n:04}");
    let mut s = String::new();
    let label = if n % 25 == 24 {
        "{}".to_owned()
    } else if n % 10 == 9 {
        "{istio.io/dataplane-mode: ambient}".to_owned()
    } else {
        "{istio-injection: enabled}".to_owned()
    };
    let _ = write!(
        s,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {label}\n---\n"
    );
    let mode = if n % 7 == 3 { "PERMISSIVE" } else { "STRICT" };
    let _ = write!(
        s,
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: {ns}\nspec:\n  mtls:\n    mode: {mode}\n---\n"
    );
    if n.is_multiple_of(2) {
        let _ = write!(
            s,
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-all\n  namespace: {ns}\nspec: {{}}\n---\n"
        );
    }
    for w in 0..workloads {
        let app = format!("app-{w}");
        let caller = format!("app-{}", (w + workloads - 1) % workloads);
        let _ = write!(
            s,
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels: {{app: {app}}}\n  template:\n    metadata:\n      labels: {{app: {app}}}\n    spec:\n      serviceAccountName: {app}\n      containers:\n      - name: main\n        image: registry.example/{app}:1.0\n        ports:\n        - {{name: http, containerPort: 8080}}\n        - {{name: metrics, containerPort: 9090}}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata:\n  name: {app}\n  namespace: {ns}\nspec:\n  selector: {{app: {app}}}\n  ports:\n  - {{name: http, port: 80, targetPort: http}}\n---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {app}\n  namespace: {ns}\n---\n\
             apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {app}\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels: {{app: {app}}}\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/{ns}/sa/{caller}\"]\n    to:\n    - operation:\n        methods: [\"GET\"]\n        paths: [\"/api/*\"]\n---\n"
        );
    }
    s
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let namespaces: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let workloads: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "mesh".into()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("mesh.yaml"),
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  mtls:\n    mode: STRICT\n",
    )?;
    for n in 0..namespaces {
        std::fs::write(dir.join(format!("ns-{n:04}.yaml")), namespace(n, workloads))?;
    }
    eprintln!(
        "wrote {namespaces} namespaces × {workloads} workloads under {}",
        dir.display()
    );
    Ok(())
}
