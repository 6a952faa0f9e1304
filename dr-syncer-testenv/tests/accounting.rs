//! Test hooks of the control plane: request accounting per client identity, the deny list and fault
//! injection.

use dr_syncer_testenv::{ControlPlane, DenyRule, FaultRule, api_status, create_namespace, init_tracing};
use k8s_openapi::api::{
    authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec},
    core::v1::{ConfigMap, Secret},
};
use kube::{
    Api,
    api::{ListParams, ObjectMeta, PostParams},
};

fn named<K: Default + kube::Resource>(name: &str) -> K {
    let mut k = K::default();
    k.meta_mut().name = Some(name.into());
    k
}

#[tokio::test]
async fn a_client_that_only_reads_is_counted_with_zero_writes() {
    init_tracing();
    let cp = ControlPlane::start("accounting").await.unwrap();
    let ns = create_namespace(&cp.client(), "acct").await.unwrap();
    let reader = cp.identity("reader").await.unwrap();
    let writer = cp.identity("writer").await.unwrap();

    let before_reader = cp.requests("reader").await.unwrap();
    assert_eq!(before_reader.total, 0, "a new identity starts at zero");

    let w: Api<ConfigMap> = Api::namespaced(writer.client.clone(), &ns);
    w.create(&PostParams::default(), &named("a")).await.unwrap();
    w.create(&PostParams::default(), &named("b")).await.unwrap();
    w.delete("b", &Default::default()).await.unwrap();

    let r: Api<ConfigMap> = Api::namespaced(reader.client.clone(), &ns);
    r.get("a").await.unwrap();
    r.list(&ListParams::default()).await.unwrap();
    r.list(&ListParams::default()).await.unwrap();

    let reads = cp.requests("reader").await.unwrap().since(&before_reader);
    assert_eq!(reads.writes, 0, "{reads:?}");
    assert_eq!(reads.reads, 3, "{reads:?}");
    assert_eq!((reads.verb("get"), reads.verb("list")), (1, 2), "{reads:?}");

    let writes = cp.requests("writer").await.unwrap();
    assert_eq!(writes.writes, 3, "{writes:?}");
    assert_eq!(
        (writes.verb("create"), writes.verb("delete")),
        (2, 1),
        "{writes:?}"
    );
    assert_eq!(
        writes.by_resource.get("create /configmaps"),
        Some(&2),
        "{writes:?}"
    );

    // Server-side apply counts as a write (and as `apply` in the verb breakdown).
    let params = kube::api::PatchParams::apply("writer");
    let doc = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    w.patch("c", &params, &kube::api::Patch::Apply(&doc))
        .await
        .unwrap();
    let after = cp.requests("writer").await.unwrap().since(&writes);
    assert_eq!((after.writes, after.verb("apply")), (1, 1), "{after:?}");
}

#[tokio::test]
async fn deny_list_refuses_given_verbs_for_one_client_and_access_reviews_agree() {
    init_tracing();
    let cp = ControlPlane::start("deny").await.unwrap();
    let ns = create_namespace(&cp.client(), "deny").await.unwrap();
    let restricted = cp.identity("restricted").await.unwrap();
    cp.deny(&DenyRule::new("restricted", &["create", "patch"], &["secrets"]))
        .await
        .unwrap();

    let secrets: Api<Secret> = Api::namespaced(restricted.client.clone(), &ns);
    let err = secrets
        .create(&PostParams::default(), &named("s"))
        .await
        .unwrap_err();
    let status = api_status(&err).unwrap();
    assert_eq!(status.code, 403, "{status:?}");
    assert!(
        status
            .message
            .contains(r#"User "restricted" cannot create resource "secrets""#),
        "{}",
        status.message
    );
    // Other verbs, other resources and other users are unaffected.
    secrets.list(&ListParams::default()).await.unwrap();
    Api::<ConfigMap>::namespaced(restricted.client.clone(), &ns)
        .create(&PostParams::default(), &named("ok"))
        .await
        .unwrap();
    Api::<Secret>::namespaced(cp.client(), &ns)
        .create(&PostParams::default(), &named("admin-ok"))
        .await
        .unwrap();

    let review = |verb: &str, resource: &str| SelfSubjectAccessReview {
        metadata: ObjectMeta::default(),
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.clone()),
                verb: Some(verb.into()),
                resource: Some(resource.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        status: None,
    };
    let ssar: Api<SelfSubjectAccessReview> = Api::all(restricted.client.clone());
    let denied = ssar
        .create(&PostParams::default(), &review("create", "secrets"))
        .await
        .unwrap();
    assert!(!denied.status.unwrap().allowed);
    let allowed = ssar
        .create(&PostParams::default(), &review("create", "configmaps"))
        .await
        .unwrap();
    assert!(allowed.status.unwrap().allowed);

    cp.clear_denies().await.unwrap();
    secrets.create(&PostParams::default(), &named("s")).await.unwrap();
}

#[tokio::test]
async fn deny_rules_can_be_given_at_start() {
    init_tracing();
    let cp = ControlPlane::builder("deny-flag")
        .deny("ro", &["delete"], &["configmaps"])
        .start()
        .await
        .unwrap();
    let ro = cp.identity("ro").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(ro.client.clone(), "default");
    api.create(&PostParams::default(), &named("x")).await.unwrap();
    let err = api.delete("x", &Default::default()).await.unwrap_err();
    assert_eq!(api_status(&err).unwrap().code, 403);
}

/// Faults for one client: injected statuses (with Retry-After) for chosen verbs, a limited number of
/// times; a stall that holds requests until it is cleared; other clients and verbs unaffected; each
/// attempt counted.
#[tokio::test]
async fn faults_hit_the_chosen_client_verbs_and_count() {
    init_tracing();
    let cp = ControlPlane::start("faults").await.unwrap();
    let ns = create_namespace(&cp.client(), "faults").await.unwrap();
    let victim = cp.identity("victim").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(victim.client.clone(), &ns);
    cp.inject(&FaultRule {
        retry_after_seconds: 3,
        count: 2,
        ..FaultRule::status("victim", &["create"], 429)
    })
    .await
    .unwrap();
    // (This client retries a 429 after its Retry-After, as kube's default client does: the two
    // injected answers are two of its attempts, the third gets through.)
    cms.create(&PostParams::default(), &named("a")).await.unwrap();
    let rules = cp.faults().await.unwrap();
    assert_eq!(rules[0].hits, 2, "{rules:?}");
    cp.clear_faults().await.unwrap();
    // A 500 for gets of this client only: it gets the error, others are not hit.
    cp.inject(&FaultRule::status("victim", &["get"], 500))
        .await
        .unwrap();
    let err = cms.get("a").await.unwrap_err();
    let status = api_status(&err).unwrap();
    assert_eq!((status.code, status.reason.as_str()), (500, "InternalError"));
    cms.list(&ListParams::default()).await.unwrap();
    Api::<ConfigMap>::namespaced(cp.client(), &ns)
        .get("a")
        .await
        .unwrap();
    cp.clear_faults().await.unwrap();

    // A stall: the request is accepted and not answered until the rule is cleared.
    cp.inject(&FaultRule::stall("victim", 0)).await.unwrap();
    let pending = tokio::spawn({
        let cms = cms.clone();
        async move { cms.get("a").await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!pending.is_finished(), "stalled");
    cp.clear_faults().await.unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(30), pending)
        .await
        .expect("released by the clear")
        .unwrap()
        .unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("a"));
    let counts = cp.requests("victim").await.unwrap();
    assert!(counts.by_verb["create"] >= 3, "every attempt counted: {counts:?}");
}

/// A client of `id` that names itself `agent` in its User-Agent.
async fn client_named(id: &dr_syncer_testenv::Identity, agent: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&id.kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(agent).unwrap(),
    ));
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn the_write_log_names_each_client_by_its_user_agent() {
    init_tracing();
    let cp = ControlPlane::start("write-log").await.unwrap();
    let ns = create_namespace(&cp.client(), "wlog").await.unwrap();
    let id = cp.identity("shared").await.unwrap();
    let (one, two) = (
        client_named(&id, "replica (one)").await,
        client_named(&id, "replica (two)").await,
    );
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    Api::<ConfigMap>::namespaced(one.clone(), &ns)
        .create(&PostParams::default(), &named("a"))
        .await
        .unwrap();
    // Reads are not logged; a refused write is not either.
    Api::<ConfigMap>::namespaced(two.clone(), &ns)
        .get("a")
        .await
        .unwrap();
    cp.deny(&DenyRule::new("shared", &["delete"], &["configmaps"]))
        .await
        .unwrap();
    assert!(
        Api::<ConfigMap>::namespaced(two.clone(), &ns)
            .delete("a", &Default::default())
            .await
            .is_err()
    );
    cp.clear_denies().await.unwrap();
    Api::<ConfigMap>::namespaced(two, &ns)
        .delete("a", &Default::default())
        .await
        .unwrap();

    let log = cp.writes("shared").await.unwrap();
    let seen: Vec<(&str, &str, &str, &str, &str, u16)> = log
        .iter()
        .map(|w| {
            (
                w.user_agent.as_str(),
                w.verb.as_str(),
                w.resource.as_str(),
                w.namespace.as_str(),
                w.name.as_str(),
                w.code,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("replica (one)", "create", "/configmaps", ns.as_str(), "", 201),
            ("replica (two)", "delete", "/configmaps", ns.as_str(), "a", 200),
        ]
    );
    assert!(
        log.iter()
            .all(|w| w.user == "shared" && started <= w.start && w.start <= w.end),
        "{log:?}"
    );
    assert!(log[0].end <= log[1].start, "one after the other: {log:?}");
    // Runs per writer: two, one after the other.
    let runs = dr_syncer_testenv::writer_runs(&log, &ns, |ua| Some(ua.to_owned()));
    assert_eq!(
        runs.iter()
            .map(|r| (r.writer.as_str(), r.writes))
            .collect::<Vec<_>>(),
        [("replica (one)", 1), ("replica (two)", 1)]
    );
    assert!(cp.writes("nobody").await.unwrap().is_empty());
}
