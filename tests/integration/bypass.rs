//! The hostile suite: every way around the rules an attacker with ordinary namespace rights was
//! seen to take (issue 20, "Ways around the rules"), sent over real HTTPS to `meshguard serve` as
//! kube-apiserver sends them, against a cluster view served by the API-server test double. Each
//! case asserts the verdict and the rule id that closes it; the controls beside them show that
//! ordinary objects, injected pods, Istio's gateway Deployments and ordinary updates still pass.
//!
//! | bypass | closed by |
//! |---|---|
//! | UPDATE a protecting PeerAuthentication / allow-nothing AuthorizationPolicy into one that protects nothing | `pa-weakening-delete`, `ap-deny-all-delete` |
//! | edit a policy that waits on a finalizer (deletionTimestamp set) | judged as any UPDATE; only the finalizer removal passes |
//! | `proxy.istio.io/config` interceptionMode NONE | `wl-traffic-bypass` |
//! | `inject.istio.io/templates: gateway` on an app | `wl-injection-template` |
//! | `runAsGroup: 1337` | `wl-proxy-uid` |
//! | ephemeral containers (`pods/ephemeralcontainers`) | `wl-net-admin`, `wl-proxy-uid` on the subresource UPDATE |
//! | a hand-written `istio-proxy` / `istio-init` | `wl-proxy-image`, `wl-proxy-override`, `wl-proxy-uid` |
//! | `sidecar.istio.io/proxyImage`, a Pod UPDATE swapping the proxy image | `wl-proxy-image` |
//! | NET_ADMIN / NET_RAW / privileged app containers | `wl-net-admin` |
//! | hostNetwork in a meshed namespace | `wl-host-network-in-mesh` |
//! | EnvoyFilter removing RBAC, setting a transport socket, patching the inbound listener | `ef-security-filter`, `ef-transport-socket`, `ef-inbound-listener` |
//! | Sidecar ingress TLS | `sidecar-ingress-tls` |
//! | `objectSelector` exemptions of deny rules | a warning when the policy loads (check header) |
//! | malformed reviews, fake controller references | HTTP 400; owner matched by group and version |

use crate::api_double::{labels, ApiServer, State};
use crate::common::{self, HttpsClient, TestServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The cluster: `production` and `shop` labelled for injection, `outside` and `istio-ingress`
/// not, the root namespace `istio-system`; the ServiceAccounts the objects below name.
fn cluster() -> State {
    let mut s = State::default();
    for (ns, l) in [
        ("production", labels(&[("istio-injection", "enabled")])),
        ("shop", labels(&[("istio-injection", "enabled")])),
        ("outside", labels(&[])),
        ("istio-ingress", labels(&[])),
        ("istio-system", labels(&[])),
    ] {
        s.listed_namespaces.insert(ns.to_owned(), l);
    }
    for (ns, sa) in [
        ("production", "frontend"),
        ("production", "backend"),
        ("shop", "web"),
        ("shop", "agent"),
        ("outside", "agent"),
        ("istio-ingress", "istio-ingressgateway"),
    ] {
        s.listed_accounts.insert((ns.to_owned(), sa.to_owned()));
    }
    s
}

struct Suite {
    srv: TestServer,
    client: HttpsClient,
    _double: ApiServer,
    _dir: tempfile::TempDir,
}

impl Suite {
    async fn start(extra: &[&str]) -> Suite {
        let double = ApiServer::start(cluster()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = double.kubeconfig(dir.path());
        let mut args = vec!["--audit-interval", "0", "--leader-elect=false"];
        args.extend_from_slice(extra);
        let srv = common::start_with(&args, |c| {
            c.no_cluster = false;
            c.kubeconfig = Some(kubeconfig);
        })
        .await;
        let until = Instant::now() + Duration::from_secs(20);
        while !srv.started.state.admission.cluster.synced() {
            assert!(Instant::now() < until, "caches never synced");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let client = common::client(&srv.ca_pem, false);
        Suite {
            srv,
            client,
            _double: double,
            _dir: dir,
        }
    }

    /// The validating answer to `review` (HTTP 200 required).
    async fn validate(&self, review: &Value) -> Value {
        let body = serde_json::to_vec(review).expect("json");
        let reply = common::post(&self.client, self.srv.started.addr, "/validate", body).await;
        common::response_of(&reply, review)
    }

    /// The HTTP status and body of a review meshguard refuses to answer.
    async fn refused(&self, review: &Value) -> (u16, String) {
        let body = serde_json::to_vec(review).expect("json");
        let reply = common::post(&self.client, self.srv.started.addr, "/validate", body).await;
        (reply.status.as_u16(), reply.text())
    }
}

/// An AdmissionReview as kube-apiserver sends it.
#[allow(clippy::too_many_arguments)]
fn review(
    op: &str,
    gvk: (&str, &str, &str),
    resource: &str,
    sub_resource: Option<&str>,
    namespace: &str,
    user: &str,
    object: Value,
    old: Value,
) -> Value {
    let name = object["metadata"]["name"]
        .as_str()
        .or_else(|| old["metadata"]["name"].as_str())
        .unwrap_or("")
        .to_owned();
    let mut request = json!({
        "uid": "3f4e0d0a-5c1b-4b8e-9d6f-20a0c0ffee00",
        "kind": {"group": gvk.0, "version": gvk.1, "kind": gvk.2},
        "resource": {"group": gvk.0, "version": gvk.1, "resource": resource},
        "requestKind": {"group": gvk.0, "version": gvk.1, "kind": gvk.2},
        "requestResource": {"group": gvk.0, "version": gvk.1, "resource": resource},
        "name": name, "namespace": namespace, "operation": op,
        "userInfo": {"username": user, "groups": ["system:authenticated"]},
        "object": object, "oldObject": old, "dryRun": false,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": format!("{}Options", match op {
            "CREATE" => "Create", "UPDATE" => "Update", _ => "Delete" })}
    });
    if let Some(sub) = sub_resource {
        request["subResource"] = json!(sub);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

const PA: (&str, &str, &str) = ("security.istio.io", "v1", "PeerAuthentication");
const AP: (&str, &str, &str) = ("security.istio.io", "v1", "AuthorizationPolicy");
const EF: (&str, &str, &str) = ("networking.istio.io", "v1alpha3", "EnvoyFilter");
const SC: (&str, &str, &str) = ("networking.istio.io", "v1", "Sidecar");
const POD: (&str, &str, &str) = ("", "v1", "Pod");
const DEPLOY: (&str, &str, &str) = ("apps", "v1", "Deployment");
const ADMIN: &str = "kubernetes-admin";

fn istio(gvk: (&str, &str, &str), ns: &str, name: &str, meta: Value, spec: Value) -> Value {
    let mut m = json!({"name": name, "namespace": ns, "uid": format!("uid-{name}"), "resourceVersion": "7"});
    if let (Some(m), Some(extra)) = (m.as_object_mut(), meta.as_object()) {
        m.extend(extra.clone());
    }
    json!({"apiVersion": format!("{}/{}", gvk.0, gvk.1), "kind": gvk.2, "metadata": m, "spec": spec})
}

fn update(gvk: (&str, &str, &str), resource: &str, ns: &str, old: Value, new: Value) -> Value {
    review("UPDATE", gvk, resource, None, ns, ADMIN, new, old)
}

fn create(gvk: (&str, &str, &str), resource: &str, ns: &str, object: Value) -> Value {
    review(
        "CREATE",
        gvk,
        resource,
        None,
        ns,
        ADMIN,
        object,
        Value::Null,
    )
}

/// A Deployment in `ns` running as `sa`, with these template annotations and pod spec.
fn deployment(ns: &str, sa: &str, template_meta: Value, mut spec: Value) -> Value {
    spec["serviceAccountName"] = json!(sa);
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": template_meta, "spec": spec}}})
}

fn app() -> Value {
    json!({"containers": [{"name": "web", "image": "nginx:1.27"}]})
}

/// The captured Pod CREATE of a pod Istio's injector wrote (istio-init, istio-proxy).
fn injected_pod() -> Value {
    common::fixture_json("pod-create-with-istio-proxy-sidecar.json")
}

#[track_caller]
fn assert_denied_by(resp: &Value, rule: &str) {
    assert_eq!(resp["allowed"], false, "expected a deny by {rule}: {resp}");
    let message = resp["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("[{rule}]")),
        "expected [{rule}] in: {message}"
    );
    assert_eq!(resp["status"]["code"], 403);
}

#[track_caller]
fn assert_allowed(resp: &Value) {
    assert_eq!(resp["allowed"], true, "expected allowed: {resp}");
}

fn warnings(resp: &Value) -> String {
    resp["warnings"].to_string()
}

#[tokio::test]
async fn weakening_by_update_is_the_deletion() {
    let s = Suite::start(&[]).await;
    let strict = json!({"mtls": {"mode": "STRICT"}});
    for (ns, scope) in [
        ("shop", "the whole namespace"),
        ("istio-system", "the whole mesh"),
    ] {
        let old = istio(PA, ns, "default", json!({}), strict.clone());
        for spec in [
            json!({"selector": {"matchLabels": {"app": "legacy"}}, "mtls": {"mode": "STRICT"}}),
            json!({"mtls": {"mode": "UNSET"}}),
            json!({}),
            json!({"mtls": {"mode": "PERMISSIVE"}}),
            json!({"mtls": {"mode": "DISABLE"}}),
        ] {
            let new = istio(PA, ns, "default", json!({}), spec.clone());
            let resp = s
                .validate(&update(PA, "peerauthentications", ns, old.clone(), new))
                .await;
            assert_denied_by(&resp, "pa-weakening-delete");
            assert!(
                resp["status"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(scope)),
                "{resp}"
            );
        }
        // Control: a label on the STRICT policy is an ordinary update.
        let relabelled = istio(
            PA,
            ns,
            "default",
            json!({"labels": {"team": "sec"}}),
            strict.clone(),
        );
        assert_allowed(
            &s.validate(&update(
                PA,
                "peerauthentications",
                ns,
                old.clone(),
                relabelled,
            ))
            .await,
        );
        // The allow-nothing baseline, given a selector, rules, targetRefs or another action.
        let nothing = istio(AP, ns, "deny-all", json!({}), json!({}));
        for spec in [
            json!({"selector": {"matchLabels": {"app": "web"}}}),
            json!({"rules": [{"from": [{"source": {"namespaces": ["shop"]}}]}]}),
            json!({"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}]}),
            json!({"action": "AUDIT"}),
        ] {
            let new = istio(AP, ns, "deny-all", json!({}), spec.clone());
            let resp = s
                .validate(&update(
                    AP,
                    "authorizationpolicies",
                    ns,
                    nothing.clone(),
                    new,
                ))
                .await;
            assert_denied_by(&resp, "ap-deny-all-delete");
        }
        let relabelled = istio(
            AP,
            ns,
            "deny-all",
            json!({"labels": {"team": "sec"}}),
            json!({}),
        );
        assert_allowed(
            &s.validate(&update(
                AP,
                "authorizationpolicies",
                ns,
                nothing,
                relabelled,
            ))
            .await,
        );
    }
    s.srv.started.shutdown().await;
}

#[tokio::test]
async fn an_object_being_deleted_is_judged_except_for_its_finalizer_removal() {
    let s = Suite::start(&[]).await;
    let deleting = json!({"deletionTimestamp": "2026-11-24T08:00:00Z", "deletionGracePeriodSeconds": 0,
        "finalizers": ["example.com/hold"]});
    let old = istio(
        PA,
        "shop",
        "default",
        deleting.clone(),
        json!({"mtls": {"mode": "STRICT"}}),
    );
    // Edit the spec of the policy Istio still applies: refused.
    let disabled = istio(
        PA,
        "shop",
        "default",
        deleting.clone(),
        json!({"mtls": {"mode": "DISABLE"}}),
    );
    let resp = s
        .validate(&update(
            PA,
            "peerauthentications",
            "shop",
            old.clone(),
            disabled,
        ))
        .await;
    assert_denied_by(&resp, "pa-weakening-delete");
    assert_denied_by(&resp, "pa-disabled-mtls");
    let ap_old = istio(AP, "shop", "deny-all", deleting.clone(), json!({}));
    let allow_all = istio(
        AP,
        "shop",
        "deny-all",
        deleting.clone(),
        json!({"rules": [{}]}),
    );
    let resp = s
        .validate(&update(
            AP,
            "authorizationpolicies",
            "shop",
            ap_old.clone(),
            allow_all,
        ))
        .await;
    assert_denied_by(&resp, "ap-deny-all-delete");
    assert_denied_by(&resp, "ap-allow-all");
    // The finalizer coming off (with the resourceVersion the API server bumps): passes.
    let mut gone = old.clone();
    gone["metadata"]["finalizers"] = json!([]);
    gone["metadata"]["resourceVersion"] = json!("8");
    assert_allowed(
        &s.validate(&update(PA, "peerauthentications", "shop", old, gone))
            .await,
    );
    let mut gone = ap_old.clone();
    gone["metadata"]["finalizers"] = Value::Null;
    assert_allowed(
        &s.validate(&update(AP, "authorizationpolicies", "shop", ap_old, gone))
            .await,
    );
    s.srv.started.shutdown().await;
}

#[tokio::test]
async fn pods_cannot_leave_the_mesh_without_a_deny() {
    let s = Suite::start(&[]).await;
    // Controls: injected pods (classic and native sidecar, as captured) and Istio's documented
    // gateway Deployment.
    assert_allowed(&s.validate(&injected_pod()).await);
    assert_allowed(
        &s.validate(&common::fixture_json("pod-create-with-native-sidecar.json"))
            .await,
    );
    let gateway = deployment(
        "istio-ingress",
        "istio-ingressgateway",
        json!({"annotations": {"inject.istio.io/templates": "gateway"},
            "labels": {"istio": "ingressgateway", "sidecar.istio.io/inject": "true"}}),
        json!({"securityContext": {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
            "containers": [{"name": "istio-proxy", "image": "auto",
                "securityContext": {"capabilities": {"drop": ["ALL"]}, "runAsUser": 1337, "runAsGroup": 1337}}]}),
    );
    assert_allowed(
        &s.validate(&create(DEPLOY, "deployments", "istio-ingress", gateway))
            .await,
    );
    let plain = deployment("shop", "web", json!({"labels": {"app": "web"}}), app());
    assert_allowed(
        &s.validate(&create(DEPLOY, "deployments", "shop", plain))
            .await,
    );

    // proxy.istio.io/config interceptionMode NONE on an injected pod.
    let mut r = injected_pod();
    r["request"]["object"]["metadata"]["annotations"]["proxy.istio.io/config"] =
        json!("interceptionMode: NONE\n");
    assert_denied_by(&s.validate(&r).await, "wl-traffic-bypass");

    // The gateway template (no capture) on an ordinary app.
    let d = deployment(
        "shop",
        "web",
        json!({"annotations": {"inject.istio.io/templates": "gateway"}}),
        app(),
    );
    assert_denied_by(
        &s.validate(&create(DEPLOY, "deployments", "shop", d)).await,
        "wl-injection-template",
    );

    // runAsGroup 1337, pod-level and container-level.
    for spec in [
        json!({"securityContext": {"runAsGroup": 1337}, "containers": [{"name": "web", "image": "nginx"}]}),
        json!({"containers": [{"name": "web", "image": "nginx", "securityContext": {"runAsGroup": 1337}}]}),
    ] {
        let d = deployment("shop", "web", json!({}), spec);
        assert_denied_by(
            &s.validate(&create(DEPLOY, "deployments", "shop", d)).await,
            "wl-proxy-uid",
        );
    }

    // A user-written istio-proxy: its own image, its own command, UID 1337 under Istio's name.
    let own_image = deployment(
        "shop",
        "web",
        json!({}),
        json!({"containers": [{"name": "web", "image": "nginx"},
            {"name": "istio-proxy", "image": "attacker.example/forwarder:1", "securityContext": {"runAsUser": 1337}}]}),
    );
    let resp = s
        .validate(&create(DEPLOY, "deployments", "shop", own_image))
        .await;
    assert_denied_by(&resp, "wl-proxy-image");
    assert_denied_by(&resp, "wl-proxy-uid");
    let own_command = deployment(
        "shop",
        "web",
        json!({}),
        json!({"containers": [{"name": "web", "image": "nginx"},
            {"name": "istio-proxy", "image": "auto", "command": ["/bin/sh", "-c", "sleep infinity"]}]}),
    );
    assert_denied_by(
        &s.validate(&create(DEPLOY, "deployments", "shop", own_command))
            .await,
        "wl-proxy-override",
    );
    // A hand-written Pod with its own istio-init (NET_ADMIN) and no injector behind it.
    let hand = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hand", "namespace": "outside"},
        "spec": {"serviceAccountName": "agent",
            "initContainers": [{"name": "istio-init", "image": "docker.io/istio/proxyv2:1.24.0",
                "args": ["istio-iptables", "-b", ""], "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}],
            "containers": [{"name": "web", "image": "nginx"}]}});
    let resp = s.validate(&create(POD, "pods", "outside", hand)).await;
    assert_denied_by(&resp, "wl-proxy-override");
    assert_denied_by(&resp, "wl-net-admin");

    // sidecar.istio.io/proxyImage naming another image.
    let d = deployment(
        "shop",
        "web",
        json!({"annotations": {"sidecar.istio.io/proxyImage": "attacker.example/envoy:1"}}),
        app(),
    );
    assert_denied_by(
        &s.validate(&create(DEPLOY, "deployments", "shop", d)).await,
        "wl-proxy-image",
    );

    // A Pod UPDATE that swaps the running proxy's image, even for a look-alike name.
    let old = injected_pod()["request"]["object"].clone();
    let mut new = old.clone();
    let proxy = new["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .iter_mut()
        .find(|c| c["name"] == "istio-proxy")
        .expect("istio-proxy");
    proxy["image"] = json!("attacker.example/proxyv2:1.24.0");
    assert_denied_by(
        &s.validate(&update(POD, "pods", "production", old.clone(), new))
            .await,
        "wl-proxy-image",
    );
    // Control: a label update of the same pod.
    let mut relabelled = old.clone();
    relabelled["metadata"]["labels"]["team"] = json!("web");
    assert_allowed(
        &s.validate(&update(POD, "pods", "production", old, relabelled))
            .await,
    );

    // NET_ADMIN, NET_RAW, privileged app containers.
    for sc in [
        json!({"capabilities": {"add": ["NET_ADMIN"]}}),
        json!({"capabilities": {"add": ["NET_RAW"]}}),
        json!({"privileged": true}),
    ] {
        let d = deployment(
            "shop",
            "web",
            json!({}),
            json!({"containers": [{"name": "web", "image": "nginx", "securityContext": sc}]}),
        );
        assert_denied_by(
            &s.validate(&create(DEPLOY, "deployments", "shop", d)).await,
            "wl-net-admin",
        );
    }

    // hostNetwork: a deny in a meshed namespace, a warning outside the mesh.
    let host = |ns: &str| {
        deployment(
            ns,
            "agent",
            json!({}),
            json!({"hostNetwork": true, "containers": [{"name": "agent", "image": "agent:1"}]}),
        )
    };
    assert_denied_by(
        &s.validate(&create(DEPLOY, "deployments", "shop", host("shop")))
            .await,
        "wl-host-network-in-mesh",
    );
    let resp = s
        .validate(&create(DEPLOY, "deployments", "outside", host("outside")))
        .await;
    assert!(warnings(&resp).contains("[wl-host-network]"), "{resp}");
    assert!(
        !resp["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("wl-host-network-in-mesh"),
        "{resp}"
    );
    s.srv.started.shutdown().await;
}

#[tokio::test]
async fn ephemeral_containers_are_judged_in_kubectl_debugs_request_shape() {
    let s = Suite::start(&[]).await;
    let pod = injected_pod()["request"]["object"].clone();
    let debug = |sc: Value| {
        let mut new = pod.clone();
        new["spec"]["ephemeralContainers"] = json!([{"name": "debugger-x7k2p", "image": "busybox:1.36",
            "stdin": true, "tty": true, "targetContainerName": "frontend",
            "terminationMessagePolicy": "File", "securityContext": sc}]);
        // kubectl debug PATCHes the pods/ephemeralcontainers subresource: an UPDATE of the Pod.
        review(
            "UPDATE",
            POD,
            "pods",
            Some("ephemeralcontainers"),
            "production",
            ADMIN,
            new,
            pod.clone(),
        )
    };
    assert_denied_by(
        &s.validate(&debug(json!({"privileged": true}))).await,
        "wl-net-admin",
    );
    assert_denied_by(
        &s.validate(&debug(
            json!({"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}}),
        ))
        .await,
        "wl-net-admin",
    );
    assert_denied_by(
        &s.validate(&debug(json!({"runAsUser": 1337}))).await,
        "wl-proxy-uid",
    );
    // Control: kubectl debug's default profile.
    assert_allowed(&s.validate(&debug(json!(null))).await);
    s.srv.started.shutdown().await;
}

#[tokio::test]
async fn envoy_filters_and_sidecars_cannot_undo_mtls_or_authorization() {
    let s = Suite::start(&[]).await;
    let ef = |ns: &str, patches: Value| {
        create(
            EF,
            "envoyfilters",
            ns,
            istio(
                EF,
                ns,
                "patch",
                json!({}),
                json!({"configPatches": patches}),
            ),
        )
    };
    for ns in ["shop", "istio-system"] {
        let remove_rbac = json!([{"applyTo": "HTTP_FILTER", "match": {"context": "SIDECAR_INBOUND",
            "listener": {"filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager",
                "subFilter": {"name": "envoy.filters.http.rbac"}}}}}, "patch": {"operation": "REMOVE"}}]);
        assert_denied_by(
            &s.validate(&ef(ns, remove_rbac)).await,
            "ef-security-filter",
        );
        let plaintext = json!([{"applyTo": "FILTER_CHAIN", "match": {"context": "SIDECAR_INBOUND"},
            "patch": {"operation": "MERGE", "value": {"transport_socket": {"name": "envoy.transport_sockets.raw_buffer"}}}}]);
        let resp = s.validate(&ef(ns, plaintext)).await;
        assert_denied_by(&resp, "ef-transport-socket");
        assert_denied_by(&resp, "ef-inbound-listener");
        let chain = json!([{"applyTo": "FILTER_CHAIN", "match": {"listener": {"name": "virtualInbound"}},
            "patch": {"operation": "ADD", "value": {"filters": [{"name": "envoy.filters.network.tcp_proxy"}]}}}]);
        assert_denied_by(&s.validate(&ef(ns, chain)).await, "ef-inbound-listener");
        // Control: a Lua filter before the router, Istio's everyday EnvoyFilter.
        let lua = json!([{"applyTo": "HTTP_FILTER", "match": {"context": "SIDECAR_INBOUND",
            "listener": {"filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager",
                "subFilter": {"name": "envoy.filters.http.router"}}}}},
            "patch": {"operation": "INSERT_BEFORE", "value": {"name": "envoy.filters.http.lua",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                    "inline_code": "function envoy_on_response(h) h:headers():add('x-served-by', 'mesh') end"}}}}]);
        assert_allowed(&s.validate(&ef(ns, lua)).await);
    }
    let sidecar = |spec: Value| {
        create(
            SC,
            "sidecars",
            "shop",
            istio(SC, "shop", "default", json!({}), spec),
        )
    };
    assert_denied_by(
        &s.validate(&sidecar(json!({"ingress": [{"port": {"number": 8443, "protocol": "HTTPS", "name": "https"},
            "defaultEndpoint": "127.0.0.1:8443", "tls": {"mode": "SIMPLE", "credentialName": "mine"}}]})))
            .await,
        "sidecar-ingress-tls",
    );
    assert_allowed(
        &s.validate(&sidecar(
            json!({"egress": [{"hosts": ["./*", "istio-system/*"]}]}),
        ))
        .await,
    );
    s.srv.started.shutdown().await;
}

#[tokio::test]
async fn malformed_reviews_and_fake_owners() {
    let s = Suite::start(&[]).await;
    // A PeerAuthentication request carrying a Pod (a DISABLE that passed as a Pod): 400.
    let mut r = common::fixture_json("peerauthentication-create-disable-denied.json");
    r["request"]["object"] = injected_pod()["request"]["object"].clone();
    let (status, body) = s.refused(&r).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains(
            "request.kind is security.istio.io/v1/PeerAuthentication but request.object is v1 Pod"
        ),
        "{body}"
    );
    // CREATE without object, DELETE without oldObject: 400.
    let mut r = common::fixture_json("peerauthentication-create-disable-denied.json");
    r["request"]["object"] = Value::Null;
    assert_eq!(s.refused(&r).await.0, 400);
    let mut r = common::fixture_json("peerauthentication-delete-strict-v1beta1.json");
    r["request"]["oldObject"] = Value::Null;
    let (status, body) = s.refused(&r).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("without oldObject"), "{body}");
    // Control: the captured DELETE is answered (and refused: it weakens the namespace).
    let r = common::fixture_json("peerauthentication-delete-strict-v1beta1.json");
    assert_denied_by(&s.validate(&r).await, "pa-weakening-delete");

    // The ReplicaSet controller's Pod: a template finding of its owner only warns ...
    let by_rs = |owner_api: &str| {
        let mut r = common::fixture_json("pod-create-by-replicaset.json");
        r["request"]["object"]["metadata"]["ownerReferences"][0]["apiVersion"] = json!(owner_api);
        r["request"]["object"]["spec"]["serviceAccountName"] = json!("default");
        r["request"]["object"]["spec"]["serviceAccount"] = json!("default");
        r
    };
    let resp = s.validate(&by_rs("apps/v1")).await;
    assert!(
        warnings(&resp).contains("[wl-default-service-account]"),
        "{resp}"
    );
    // ... but a controller reference of another group is nobody's controller: it denies.
    let resp = s.validate(&by_rs("fake.example.com/v1")).await;
    assert_denied_by(&resp, "wl-default-service-account");
    s.srv.started.shutdown().await;
}

#[test]
fn a_fake_owner_does_not_hide_a_pod_from_the_inventory() {
    use meshguard::config::Policy;
    use meshguard::engine::Engine;
    use meshguard::inventory::Inventory;
    let pod = |owner_api: &str| {
        let o: kube::core::DynamicObject = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "shop", "ownerReferences": [{"apiVersion": owner_api,
                "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": true}]},
            "spec": {"serviceAccountName": "web", "containers": [{"name": "c", "image": "i",
                "ports": [{"containerPort": 8080}]}]}}))
        .expect("pod");
        meshguard::inventory::Object::new(
            meshguard::resource::Kind::Pod,
            "v1".into(),
            o,
            None,
            None,
        )
    };
    // The cross-resource checks (effective mTLS per port, selectors that match nothing) see a
    // real ReplicaSet's Pod through its owner; a Pod whose "owner" is of another group is a
    // workload of its own, and its ports are judged.
    let workloads = |owner_api: &str| Inventory::complete(vec![pod(owner_api)]).workloads().len();
    assert_eq!(workloads("apps/v1"), 0);
    assert_eq!(workloads("fake.example.com/v1"), 1);
    let engine = Engine::new(Policy::builtin(), Default::default(), None);
    let rules = |owner_api: &str| -> Vec<&'static str> {
        let inventory = Inventory::complete(vec![pod(owner_api)])
            .with_namespace("shop", &[("istio-injection", "enabled")]);
        meshguard::analysis::analyze(&engine, &inventory)
            .findings
            .iter()
            .map(|f| f.finding.rule)
            .collect()
    };
    assert!(!rules("apps/v1").contains(&"mtls-not-strict"));
    assert!(rules("fake.example.com/v1").contains(&"mtls-not-strict"));
}

#[test]
fn object_selector_exemptions_are_warned_about_where_the_policy_is_shown() {
    use clap::Parser;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n  pa-permissive-mtls:\n    exemptions:\n      - objectSelector: {matchLabels: {mesh-migration: in-progress}}\n",
    )
    .expect("policy");
    let manifest = dir.path().join("pa.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: shop, labels: {mesh-migration: in-progress}}\nspec: {mtls: {mode: PERMISSIVE}}\n",
    )
    .expect("manifest");
    let args = ["meshguard", "check", "--config"]
        .into_iter()
        .map(str::to_owned)
        .chain([policy.display().to_string(), manifest.display().to_string()]);
    let meshguard::cli::Command::Check(check) = meshguard::cli::Cli::try_parse_from(args)
        .expect("args")
        .command
    else {
        panic!("check");
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    meshguard::check::execute(check, &mut "".as_bytes(), &mut out, &mut err);
    let out = String::from_utf8(out).expect("utf-8");
    assert!(out.starts_with("Policy warnings:\n  rules.pa-permissive-mtls.exemptions[0].objectSelector (mesh-migration=in-progress) exempts a deny-level rule by the object's own labels"), "{out}");
}

#[test]
fn one_oversized_report_result_does_not_drop_the_rest() {
    use meshguard::finding::{Action, Finding, ObjectFinding, Subject, Violation};
    use meshguard::policy_report::{build, ReportScope};
    let finding = |name: &str, rule: &'static str, action: Action, message: String| ObjectFinding {
        subject: Subject {
            api_version: "v1".into(),
            kind: "Service".into(),
            namespace: "shop".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            file: None,
            line: None,
        },
        finding: Finding {
            rule,
            action,
            violation: Violation::new("spec", message, "fix"),
        },
    };
    let findings = [
        finding(
            "huge",
            "pa-permissive-mtls",
            Action::Deny,
            "x".repeat(20_000),
        ),
        finding("a", "svc-port-protocol", Action::Warn, "small".into()),
        finding("b", "svc-port-protocol", Action::Warn, "small".into()),
    ];
    let refs: Vec<&ObjectFinding> = findings.iter().collect();
    let built = build(
        ReportScope::Namespace("shop".into()),
        &refs,
        meshguard::policy_report::Timestamp {
            seconds: 1_796_307_568,
            nanos: 0,
        },
        &Default::default(),
        4_000,
    );
    assert_eq!(built.total, 3);
    assert_eq!(built.results.len(), 2, "the two that fit are kept");
}
