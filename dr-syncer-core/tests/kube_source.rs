//! KubeSource, discovery and clients on the test control plane: list with types set, a watch that
//! survives 410 Gone and a server restart without losing changes, kubeconfig bytes and contexts.

use std::time::Duration;

use dr_syncer_core::{
    kube::{ClientOptions, ClusterConfig, KubeSource, KubeconfigSource, connect, discover},
    resource::ResourceType,
    source::{ResourceSource, SourceEvent, SourceScope},
};
use dr_syncer_testenv::{ControlPlane, apply_yaml, create_namespace, init_tracing};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, api::DeleteParams};

fn configmaps() -> ResourceType {
    ResourceType::namespaced("", "v1", "ConfigMap", "configmaps")
}

async fn source(cp: &ControlPlane) -> KubeSource {
    let client = connect(&ClusterConfig {
        kubeconfig: KubeconfigSource::File(cp.kubeconfig().to_path_buf()),
        context: None,
        insecure_skip_tls_verify: false,
        user_agent: None,
    })
    .await
    .unwrap();
    KubeSource::new(client, ClientOptions::default().calls())
}

/// The next event that is not a re-list bracket of an unrelated kind, within 20 s.
async fn next(
    stream: &mut dr_syncer_core::source::BoxStream<
        'static,
        Result<SourceEvent, dr_syncer_core::source::SourceError>,
    >,
) -> SourceEvent {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
            Ok(Some(Ok(e))) => return e,
            Ok(Some(Err(e))) => assert!(e.transient, "permanent watch error: {e}"),
            Ok(None) => panic!("watch ended"),
            Err(_) => panic!("no event within 20 s"),
        }
    }
}

fn name(e: &SourceEvent) -> Option<&str> {
    match e {
        SourceEvent::Applied(o) | SourceEvent::Deleted(o) => o.object.metadata.name.as_deref(),
        _ => None,
    }
}

#[tokio::test]
async fn discovery_finds_builtin_types_with_their_names() {
    init_tracing();
    let cp = ControlPlane::start("discovery").await.unwrap();
    let s = source(&cp).await;
    let types = discover(s.client(), &ClientOptions::default().calls())
        .await
        .unwrap();
    let deploy = types
        .iter()
        .find(|t| t.group == "apps" && t.kind == "Deployment")
        .unwrap();
    assert_eq!(deploy.plural, "deployments");
    assert_eq!(deploy.singular, "deployment");
    assert!(deploy.short_names.contains(&"deploy".to_owned()));
    assert!(deploy.namespaced);
    assert!(deploy.supports("list") && deploy.supports("watch"));
    assert!(types.iter().any(|t| t.kind == "Namespace" && !t.namespaced));
    assert!(!types.iter().any(|t| t.plural.contains('/')), "no subresources");
}

#[tokio::test]
async fn list_sets_types_and_get_tells_missing_objects() {
    init_tracing();
    let cp = ControlPlane::start("list").await.unwrap();
    let ns = create_namespace(&cp.client(), "list").await.unwrap();
    apply_yaml(
        &cp.client(),
        Some(&ns),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: '1'}\n",
    )
    .await
    .unwrap();
    let s = source(&cp).await;
    let objs = s
        .list(&SourceScope {
            namespace: Some(ns.clone()),
            types: vec![configmaps()],
        })
        .await
        .unwrap();
    let a = objs
        .iter()
        .find(|o| o.object.metadata.name.as_deref() == Some("a"))
        .unwrap();
    let types = a.object.types.as_ref().unwrap();
    assert_eq!(
        (types.api_version.as_str(), types.kind.as_str()),
        ("v1", "ConfigMap")
    );
    assert!(s.get(&configmaps(), Some(&ns), "a").await.unwrap().is_some());
    assert!(s.get(&configmaps(), Some(&ns), "nope").await.unwrap().is_none());
    // A type the source does not serve is an error, never "no objects" (which prune would act on).
    let widgets = ResourceType::namespaced("example.com", "v1", "Widget", "widgets");
    let err = s
        .list(&SourceScope {
            namespace: Some(ns),
            types: vec![widgets],
        })
        .await
        .unwrap_err();
    assert!(err.message.contains("does not serve"), "{err}");
    assert!(!err.transient);
}

#[tokio::test]
async fn watch_survives_410_and_restarts_without_losing_changes() {
    init_tracing();
    let mut cp = ControlPlane::start("watch").await.unwrap();
    let ns = create_namespace(&cp.client(), "watch").await.unwrap();
    let s = source(&cp).await;
    let mut stream = s.watch(&SourceScope {
        namespace: Some(ns.clone()),
        types: vec![configmaps()],
    });
    assert!(matches!(next(&mut stream).await, SourceEvent::Relisting(rt) if rt.kind == "ConfigMap"));
    loop {
        if matches!(next(&mut stream).await, SourceEvent::Resynced(_)) {
            break;
        }
    }
    let cms: Api<ConfigMap> = Api::namespaced(cp.client(), &ns);
    apply_yaml(
        &cp.client(),
        Some(&ns),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n",
    )
    .await
    .unwrap();
    let e = next(&mut stream).await;
    assert!(
        matches!(e, SourceEvent::Applied(_)) && name(&e) == Some("one"),
        "{e:?}"
    );

    // 410 Gone: the watch re-lists; a change made right after is seen.
    cp.expire_watches().await.unwrap();
    apply_yaml(
        &cp.client(),
        Some(&ns),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: two}\n",
    )
    .await
    .unwrap();
    let mut seen_two = false;
    for _ in 0..20 {
        let e = next(&mut stream).await;
        if name(&e) == Some("two") {
            seen_two = true;
            break;
        }
    }
    assert!(seen_two, "change after 410 lost");

    // A server restart: the watch reconnects; a deletion made while it was down shows up after the re-list
    // (absent from the listed state) and later changes arrive as events.
    cp.restart().await.unwrap();
    cms.delete("one", &DeleteParams::default()).await.unwrap();
    apply_yaml(
        &cp.client(),
        Some(&ns),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: three}\n",
    )
    .await
    .unwrap();
    let mut seen_three = false;
    let mut one_gone = false;
    let (mut relisting, mut one_listed) = (false, false);
    for _ in 0..40 {
        let e = next(&mut stream).await;
        match &e {
            SourceEvent::Deleted(_) if name(&e) == Some("one") => one_gone = true,
            SourceEvent::Applied(_) if name(&e) == Some("three") => seen_three = true,
            SourceEvent::Applied(_) if name(&e) == Some("one") => {
                if relisting {
                    one_listed = true;
                } else {
                    one_gone = false;
                }
            }
            SourceEvent::Relisting(_) => (relisting, one_listed) = (true, false),
            // A re-list that did not list "one" says it is gone.
            SourceEvent::Resynced(_) => {
                relisting = false;
                if !one_listed {
                    one_gone = true;
                }
            }
            _ => {}
        }
        if seen_three && one_gone {
            break;
        }
    }
    assert!(
        seen_three && one_gone,
        "restart lost changes (three: {seen_three}, one gone: {one_gone})"
    );
}

#[tokio::test]
async fn clients_come_from_kubeconfig_bytes_and_contexts() {
    init_tracing();
    let cp = ControlPlane::start("kubeconfig").await.unwrap();
    let bytes = std::fs::read(cp.kubeconfig()).unwrap();
    let client = connect(&ClusterConfig {
        kubeconfig: KubeconfigSource::Bytes(bytes.clone()),
        context: None,
        insecure_skip_tls_verify: false,
        user_agent: None,
    })
    .await
    .unwrap();
    assert!(client.apiserver_version().await.is_ok());

    // Without the server's CA the certificate is not trusted, unless told to accept any (IGNORE_CERT).
    let text = String::from_utf8(bytes.clone()).unwrap();
    let no_ca: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("certificate-authority-data:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(no_ca, text, "the kubeconfig had its CA embedded");
    let untrusted = |insecure| ClusterConfig {
        kubeconfig: KubeconfigSource::Bytes(no_ca.clone().into_bytes()),
        context: None,
        insecure_skip_tls_verify: insecure,
        user_agent: None,
    };
    let strict = connect(&untrusted(false)).await.unwrap();
    assert!(
        strict.apiserver_version().await.is_err(),
        "an unknown CA is refused"
    );
    let insecure = connect(&untrusted(true)).await.unwrap();
    assert!(
        insecure.apiserver_version().await.is_ok(),
        "--ignore-cert accepts it"
    );

    let unknown_context = connect(&ClusterConfig {
        kubeconfig: KubeconfigSource::Bytes(bytes),
        context: Some("no-such-context".into()),
        insecure_skip_tls_verify: false,
        user_agent: None,
    })
    .await
    .err()
    .expect("fails");
    assert_eq!(unknown_context.kind(), "InvalidKubeconfig");
    assert!(
        unknown_context.to_string().contains("no-such-context"),
        "{unknown_context}"
    );

    let garbage = connect(&ClusterConfig {
        kubeconfig: KubeconfigSource::Bytes(b"{not: [yaml".to_vec()),
        context: None,
        insecure_skip_tls_verify: false,
        user_agent: None,
    })
    .await
    .err()
    .expect("fails");
    assert_eq!(garbage.kind(), "InvalidKubeconfig");
    assert!(!garbage.is_transient());

    let missing = connect(&ClusterConfig {
        kubeconfig: KubeconfigSource::File("/nonexistent/kubeconfig".into()),
        context: None,
        insecure_skip_tls_verify: false,
        user_agent: None,
    })
    .await
    .err()
    .expect("fails");
    assert_eq!(missing.kind(), "InvalidKubeconfig");
}

#[tokio::test]
async fn namespaces_are_selected_by_label() {
    init_tracing();
    let cp = ControlPlane::start("nsselect").await.unwrap();
    let s = source(&cp).await;
    let mut wanted = Vec::new();
    for (i, dr) in ["yes", "yes", "no"].iter().enumerate() {
        let ns = create_namespace(&cp.client(), &format!("sel{i}")).await.unwrap();
        apply_yaml(
            &cp.client(),
            None,
            &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{dr: '{dr}'}}}}\n"),
        )
        .await
        .unwrap();
        if *dr == "yes" {
            wanted.push(ns);
        }
    }
    wanted.sort();
    let selector = serde_json::from_value(serde_json::json!({"matchLabels": {"dr": "yes"}})).unwrap();
    assert_eq!(s.namespaces_matching(&selector).await.unwrap(), wanted);
}
