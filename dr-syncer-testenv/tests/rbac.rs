//! RBAC mode of the control plane: least-privilege Roles and bindings are enforced.

use std::time::Duration;

use dr_syncer_testenv::{ControlPlane, api_status, create_namespace, init_tracing, wait_for};
use k8s_openapi::api::{
    core::v1::ConfigMap,
    rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
};
use kube::{
    Api,
    api::{ListParams, ObjectMeta, PostParams},
};

#[tokio::test]
async fn a_service_account_is_refused_until_a_role_binding_grants_it_access() {
    init_tracing();
    let cp = ControlPlane::builder("rbac").rbac(true).start().await.unwrap();
    let admin = cp.client();
    let ns = create_namespace(&admin, "rbac").await.unwrap();
    let other = create_namespace(&admin, "rbac-other").await.unwrap();
    let user = format!("system:serviceaccount:{ns}:operator");
    let sa = cp.identity_in_groups(&user, &[]).await.unwrap();

    // No binding yet: refused with Kubernetes' RBAC message.
    let cms: Api<ConfigMap> = Api::namespaced(sa.client.clone(), &ns);
    let err = cms.list(&ListParams::default()).await.unwrap_err();
    let status = api_status(&err).expect("an API error");
    assert_eq!(status.code, 403, "{status:?}");
    assert_eq!(
        status.message,
        format!(
            r#"configmaps is forbidden: User "{user}" cannot list resource "configmaps" in API group "" in the namespace "{ns}""#
        )
    );

    // A Role for configmaps in `ns`, bound to the ServiceAccount.
    let role = Role {
        metadata: ObjectMeta {
            name: Some("configmap-reader".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("operator-reads-configmaps".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "configmap-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "operator".into(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    // The binding takes effect within about a second.
    wait_for("the RoleBinding to take effect", Duration::from_secs(2), || {
        let cms = cms.clone();
        async move { Ok(cms.list(&ListParams::default()).await.ok()) }
    })
    .await
    .unwrap();

    // Only what the Role grants, and only in its namespace.
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("not-granted".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = cms.create(&PostParams::default(), &cm).await.unwrap_err();
    assert_eq!(api_status(&err).map(|s| s.code), Some(403), "{err:?}");
    let err = Api::<ConfigMap>::namespaced(sa.client.clone(), &other)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    let status = api_status(&err).expect("an API error");
    assert_eq!(status.code, 403, "{status:?}");
    assert!(
        status
            .message
            .ends_with(&format!(r#"in the namespace "{other}""#)),
        "{}",
        status.message
    );

    // The admin (system:masters) is not subject to RBAC.
    Api::<ConfigMap>::namespaced(admin, &other)
        .list(&ListParams::default())
        .await
        .unwrap();
}
