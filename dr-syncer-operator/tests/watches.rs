//! Shared watches, against three control planes: Continuous mappings reading the same source cluster
//! share one watch per type (the source server counts the open watches), each mapping still gets exactly
//! its own namespace's changes, and a watch closes with its last mapping. A source identity that may not
//! list a type across namespaces (as with namespaced Roles) falls back to a watch per namespace, and the
//! mappings' `Watching` condition says so.

mod common;

use common::{Env, T, condition, mapping};
use dr_syncer_core::api::SyncPhase;
use dr_syncer_testenv::{DenyRule, apply_yaml, create_namespace, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;

fn continuous(name: &str, src: &str, dst: &str) -> String {
    mapping(
        name,
        &format!(
            "  replicationMode: Continuous\n  sourceCluster: prod\n  destinationCluster: dr\n  \
             sourceNamespace: {src}\n  destinationNamespace: {dst}\n  resourceTypes: [configmaps, secrets]"
        ),
    )
}

fn setting(value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: setting}}\ndata: {{value: '{value}'}}\n")
}

/// Four mappings set up and synced once; returns their (source, DR) namespaces.
async fn four_mappings(env: &Env) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for i in 0..4 {
        let src = create_namespace(&env.prod.client(), &format!("app{i}"))
            .await
            .unwrap();
        apply_yaml(&env.prod.client(), Some(&src), &setting("0"))
            .await
            .unwrap();
        let dst = format!("{src}-dr");
        env.apply(&continuous(&format!("m{i}"), &src, &dst)).await;
        pairs.push((src, dst));
    }
    for i in 0..4 {
        env.wait_status(&format!("m{i}"), "initial sync", |s| {
            s.phase == Some(SyncPhase::Completed)
        })
        .await;
    }
    pairs
}

/// Change `setting` in every source namespace to a value naming it; wait until each DR namespace has
/// its own value.
async fn changes_reach_their_own_mapping(env: &Env, pairs: &[(String, String)], round: &str) {
    for (src, _) in pairs {
        let api: Api<ConfigMap> = Api::namespaced(env.prod.client(), src);
        api.patch(
            "setting",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"value": format!("{round}-{src}")}})),
        )
        .await
        .unwrap();
    }
    for (src, dst) in pairs {
        let api: Api<ConfigMap> = Api::namespaced(env.dr.client(), dst);
        let want = format!("{round}-{src}");
        wait_for(&format!("{round} reaches {dst}"), T, || async {
            Ok((api
                .get_opt("setting")
                .await?
                .and_then(|c| c.data)
                .is_some_and(|d| d["value"] == want))
            .then_some(()))
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn continuous_mappings_share_one_watch_per_type() {
    let env = Env::start("shared-watches").await;
    let _op = env.operator("dr-syncer-operator", &[]).await;
    let pairs = four_mappings(&env).await;
    let user = env.prod_id.user.clone();

    // Four mappings × two types: two watches on the source, not eight.
    wait_for("the shared watches open", T, || async {
        Ok((env.prod.open_watches(&user).await? == 2).then_some(()))
    })
    .await
    .unwrap();
    changes_reach_their_own_mapping(&env, &pairs, "first").await;
    assert_eq!(
        env.prod.open_watches(&user).await.unwrap(),
        2,
        "still one per type"
    );
    for i in 0..4 {
        let s = env.nm_api().get(&format!("m{i}")).await.unwrap().status.unwrap();
        let (status, reason, _) = condition(&s, "Watching").expect("a Watching condition");
        assert_eq!((status.as_str(), reason.as_str()), ("True", "SharedWatches"));
    }

    // Mappings leaving continuous mode leave the watches to the others; the last one closes them.
    for i in 0..3 {
        env.nm_api()
            .delete(&format!("m{i}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    wait_for("three mappings gone", T, || async {
        Ok((env.nm_api().list(&Default::default()).await?.items.len() == 1).then_some(()))
    })
    .await
    .unwrap();
    changes_reach_their_own_mapping(&env, &pairs[3..], "second").await;
    assert_eq!(env.prod.open_watches(&user).await.unwrap(), 2);
    env.nm_api()
        .patch(
            "m3",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicationMode": "Manual"}})),
        )
        .await
        .unwrap();
    wait_for("the watches closed", T, || async {
        Ok((env.prod.open_watches(&user).await? == 0).then_some(()))
    })
    .await
    .unwrap();
    let s = env.nm_api().get("m3").await.unwrap().status.unwrap();
    wait_for("the Watching condition gone", T, || async {
        let s = env.nm_api().get("m3").await?.status.unwrap_or_default();
        Ok(condition(&s, "Watching").is_none().then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", s.conditions));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identity_confined_to_namespaces_gets_a_watch_per_namespace() {
    let env = Env::start("ns-watches").await;
    let user = env.prod_id.user.clone();
    // The source identity may list and watch ConfigMaps only namespace by namespace (what a namespaced
    // Role allows): a request across namespaces is refused with 403.
    env.prod
        .deny(&DenyRule {
            namespaces: vec![String::new()],
            ..DenyRule::new(&user, &["list", "watch"], &["configmaps"])
        })
        .await
        .unwrap();
    let _op = env.operator("dr-syncer-operator", &[]).await;
    let pairs = four_mappings(&env).await;

    // Secrets: one shared watch; ConfigMaps: one per namespace.
    wait_for("the watches open", T, || async {
        Ok((env.prod.open_watches(&user).await? == 5).then_some(()))
    })
    .await
    .unwrap();
    changes_reach_their_own_mapping(&env, &pairs, "first").await;
    for i in 0..4 {
        let name = format!("m{i}");
        wait_for(&format!("{name} says how it watches"), T, || async {
            let s = env.nm_api().get(&name).await?.status.unwrap_or_default();
            Ok(condition(&s, "Watching").filter(|(_, reason, _)| reason == "PerNamespaceWatches"))
        })
        .await
        .map(|(status, _, message)| {
            assert_eq!(status, "True");
            assert!(message.contains("configmaps"), "{message}");
            assert!(!message.contains("secrets"), "{message}");
        })
        .unwrap();
    }
    // One mapping gone: its namespace's watch closes, the others stay.
    env.nm_api().delete("m0", &DeleteParams::default()).await.unwrap();
    wait_for("m0's watch closed", T, || async {
        Ok((env.prod.open_watches(&user).await? == 4).then_some(()))
    })
    .await
    .unwrap();
    changes_reach_their_own_mapping(&env, &pairs[1..], "second").await;
}

/// A continuous mapping's change batches reuse what the reconcile resolved: the RemoteClusters come
/// from the operator's watch cache (no GET), and each kubeconfig Secret is read again at most once a
/// second, however many batches run.
#[tokio::test(flavor = "multi_thread")]
async fn change_batches_read_no_remote_clusters_and_few_secrets() {
    let env = Env::start("batch-reads").await;
    let _op = env.operator("dr-syncer-operator", &[]).await;
    let src = create_namespace(&env.prod.client(), "busy").await.unwrap();
    apply_yaml(&env.prod.client(), Some(&src), &setting("0"))
        .await
        .unwrap();
    let dst = format!("{src}-dr");
    env.apply(&continuous("busy", &src, &dst)).await;
    env.wait_status("busy", "initial sync", |s| s.phase == Some(SyncPhase::Completed))
        .await;
    // Settle, then count from here.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let user = "dr-syncer-operator";
    let before = env.controller.requests(user).await.unwrap();
    let dr_before = env.dr.requests(&env.dr_id.user).await.unwrap();
    let started = std::time::Instant::now();
    let source: Api<ConfigMap> = Api::namespaced(env.prod.client(), &src);
    // Changes a little further apart than the batching window: most are a batch of their own.
    for i in 1..=20 {
        source
            .patch(
                "setting",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"value": format!("v{i}")}})),
            )
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    let dr: Api<ConfigMap> = Api::namespaced(env.dr.client(), &dst);
    wait_for("the last change arrives", T, || async {
        Ok((dr
            .get_opt("setting")
            .await?
            .and_then(|c| c.data)
            .is_some_and(|d| d["value"] == "v20"))
        .then_some(()))
    })
    .await
    .unwrap();
    let seconds = started.elapsed().as_secs() + 1;
    let d = env.controller.requests(user).await.unwrap().since(&before);
    let count = |key: &str| d.by_resource.get(key).copied().unwrap_or(0);
    // Every batch reads the DR Namespace (its site state) once before writing.
    let dr = env.dr.requests(&env.dr_id.user).await.unwrap().since(&dr_before);
    let batches = dr.by_resource.get("get /namespaces").copied().unwrap_or(0);
    assert!(batches >= 5, "the changes ran as batches: {:?}", dr.by_resource);
    assert_eq!(
        count("get dr-syncer.io/remoteclusters"),
        0,
        "RemoteClusters come from the watch cache: {:?}",
        d.by_resource
    );
    // Two RemoteClusters, each Secret read at most once per second (and once more at the edges).
    let secrets = count("get /secrets");
    assert!(
        secrets <= 2 * (seconds + 1),
        "{secrets} Secret reads in {seconds} s for {batches} batches: {:?}",
        d.by_resource
    );
}
