//! Generate a large manifest tree for `meshguard check` performance runs:
//! `cargo run --release --example gen_manifests -- 100000 /tmp/manifests`
//! writes N objects (Namespaces, Deployments, Services, ServiceAccounts, PeerAuthentications,
//! AuthorizationPolicies, DestinationRules, RequestAuthentications) in files of 1,000 objects,
//! spread over one namespace per 50 apps.

use std::fmt::Write as _;
use std::path::PathBuf;

fn object(i: usize) -> String {
    let app = i / 8;
    let ns = format!("team-{}", app / 50);
    let name = format!("app-{app}");
    match i % 8 {
        0 if app.is_multiple_of(50) => format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n    istio-injection: enabled\n"
        ),
        0 | 1 => format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app: {name}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n        version: v{}\n    spec:\n      serviceAccountName: {name}\n      containers:\n      - name: main\n        image: registry.example/{name}:1.0\n        ports:\n        - name: http\n          containerPort: 8080\n        - name: metrics\n          containerPort: 9090\n        resources:\n          limits: {{cpu: 500m, memory: 256Mi}}\n",
            i % 8
        ),
        2 => format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  selector:\n    app: {name}\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n"
        ),
        3 => format!("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {name}\n  namespace: {ns}\n"),
        4 => format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels:\n      app: {name}\n  mtls:\n    mode: STRICT\n  portLevelMtls:\n    9090:\n      mode: {}\n",
            if app.is_multiple_of(10) { "PERMISSIVE" } else { "STRICT" }
        ),
        5 => format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels:\n      app: {name}\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/{ns}/sa/app-{}\"]\n    to:\n    - operation:\n        methods: [\"GET\"]\n        paths: [\"/api/*\"]\n",
            app + 1
        ),
        6 => format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  host: {name}.{ns}.svc.cluster.local\n  trafficPolicy:\n    tls:\n      mode: ISTIO_MUTUAL\n"
        ),
        _ => format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels:\n      app: {name}\n  jwtRules:\n  - issuer: https://issuer.example\n    jwksUri: https://issuer.example/jwks\n    audiences: [{name}]\n"
        ),
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "manifests".into()));
    std::fs::create_dir_all(&dir)?;
    let per_file = 1000;
    let mut i = 0;
    let mut file_no = 0;
    while i < n {
        let mut text = String::new();
        for j in i..(i + per_file).min(n) {
            if j > i {
                text.push_str("---\n");
            }
            let _ = write!(text, "{}", object(j));
        }
        std::fs::write(dir.join(format!("part-{file_no:04}.yaml")), text)?;
        i += per_file;
        file_no += 1;
    }
    eprintln!(
        "wrote {n} objects in {file_no} files under {}",
        dir.display()
    );
    Ok(())
}
