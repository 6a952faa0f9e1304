//! Two operator processes with `--leader-elect`: only the leader writes (server-side request accounting
//! per client identity on all three clusters), a standby is ready too, and after the leader is killed the
//! standby takes over and keeps syncing.

mod common;

use std::time::{Duration, Instant};

use common::{Env, NS, T};
use dr_syncer_core::api::SyncPhase;
use dr_syncer_testenv::{apply_yaml, create_namespace, wait_for};
use k8s_openapi::api::{coordination::v1::Lease, core::v1::ConfigMap};
use kube::Api;

#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_writes_and_a_standby_takes_over() {
    let env = Env::start("leader").await;
    let src = create_namespace(&env.prod.client(), "app").await.unwrap();
    apply_yaml(
        &env.prod.client(),
        Some(&src),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {v: '1'}\n",
    )
    .await
    .unwrap();
    // Each replica gets its own identity on every cluster, so the servers can tell their writes apart.
    let (one_prod, one_dr) = (
        env.prod.identity("replica-one").await.unwrap(),
        env.dr.identity("replica-one").await.unwrap(),
    );
    let (two_prod, two_dr) = (
        env.prod.identity("replica-two").await.unwrap(),
        env.dr.identity("replica-two").await.unwrap(),
    );
    env.put_kubeconfig("prod-kubeconfig", "kubeconfig", &one_prod)
        .await;
    env.put_kubeconfig("dr-kubeconfig", "kubeconfig", &one_dr).await;

    let mut one = env.operator("replica-one", &["--leader-elect"]).await;
    let leases: Api<Lease> = Api::namespaced(env.controller.client(), NS);
    wait_for("replica-one leads", T, || async {
        Ok((leases
            .get_opt("dr-syncer.io")
            .await?
            .and_then(|l| l.spec?.holder_identity)
            .as_deref()
            == Some("replica-one"))
        .then_some(()))
    })
    .await
    .unwrap();
    let two = env.operator("replica-two", &["--leader-elect"]).await;
    // The standby is ready (not gated on leadership) but idle.
    wait_for("standby ready", T, || async {
        Ok((two
            .get(two.probe_port, "/readyz")
            .await
            .is_some_and(|(c, _)| c == 200))
        .then_some(()))
    })
    .await
    .unwrap();
    assert!(two.metrics().await.contains("dr_syncer_leader 0"));

    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: app, namespace: {NS}}}\nspec:\n  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]\n"
    ))
    .await;
    env.wait_status("app", "synced by the leader", |s| {
        s.phase == Some(SyncPhase::Completed)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (cluster, user) in [
        (&env.controller, "replica-two"),
        (&env.prod, "replica-two"),
        (&env.dr, "replica-two"),
    ] {
        let c = cluster.requests(user).await.unwrap();
        // The standby only reads the Lease (and its readiness watches).
        let writes: u64 = c
            .by_resource
            .iter()
            .filter(|(k, _)| !k.ends_with("coordination.k8s.io/leases"))
            .filter(|(k, _)| {
                ["create", "update", "patch", "apply", "delete"]
                    .iter()
                    .any(|v| k.starts_with(&format!("{v} ")))
            })
            .map(|(_, n)| *n)
            .sum();
        assert_eq!(
            writes,
            0,
            "{}: the standby wrote: {:?}",
            cluster.name(),
            c.by_resource
        );
    }
    assert!(
        env.controller
            .requests("replica-one")
            .await
            .unwrap()
            .stored_writes()
            > 0
    );

    // The leader dies; the standby (its own kubeconfigs now in the Secrets) takes over.
    let killed = Instant::now();
    one.kill();
    env.put_kubeconfig("prod-kubeconfig", "kubeconfig", &two_prod)
        .await;
    env.put_kubeconfig("dr-kubeconfig", "kubeconfig", &two_dr).await;
    let dr_before = env.dr.requests("replica-two").await.unwrap();
    wait_for("replica-two leads", Duration::from_secs(25), || async {
        Ok((leases
            .get_opt("dr-syncer.io")
            .await?
            .and_then(|l| l.spec?.holder_identity)
            .as_deref()
            == Some("replica-two"))
        .then_some(()))
    })
    .await
    .unwrap();
    let took = killed.elapsed();
    eprintln!("takeover after {took:?}");
    assert!(
        took <= Duration::from_secs(20) + Duration::from_secs(3),
        "takeover took {took:?}"
    );
    apply_yaml(
        &env.prod.client(),
        Some(&src),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {v: '1'}\n",
    )
    .await
    .unwrap();
    let dr_cms: Api<ConfigMap> = Api::namespaced(env.dr.client(), &src);
    wait_for("the new leader syncs", T, || async {
        Ok((dr_cms.get_opt("b").await?.is_some()).then_some(()))
    })
    .await
    .unwrap();
    let dr_after = env.dr.requests("replica-two").await.unwrap();
    assert!(
        dr_after.since(&dr_before).stored_writes() > 0,
        "the new leader wrote with its own identity"
    );
}
