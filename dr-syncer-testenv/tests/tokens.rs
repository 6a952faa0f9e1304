//! Bearer tokens, TokenReview and SubjectAccessReview of non-resource URLs: what a "secure metrics"
//! endpoint needs (authenticate the scraper's token with a TokenReview, then ask a SubjectAccessReview
//! whether that user may `get` `/metrics`), as kube-apiserver answers it.

use std::time::Duration;

use dr_syncer_testenv::{ControlPlane, api_status, init_tracing, wait_for};
use k8s_openapi::api::{
    authentication::v1::{SelfSubjectReview, TokenReview, TokenReviewSpec, UserInfo},
    authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
    core::v1::Namespace,
    rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject},
};
use kube::{
    Api, Client,
    api::{ListParams, ObjectMeta, PostParams},
};

/// The ServiceAccount a metrics scraper runs as.
const SCRAPER: &str = "system:serviceaccount:monitoring:prometheus";
/// The API audience kapi answers with (that of kubeadm and kind clusters).
const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

async fn token_review(client: &Client, token: &str) -> kube::Result<TokenReview> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.into(),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
}

/// `allowed` of a SubjectAccessReview: may `user` (in `groups`) `get` `path`?
async fn may_get_path(client: &Client, user: &str, groups: &[String], path: &str) -> kube::Result<bool> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(groups.to_vec()),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(path.into()),
                verb: Some("get".into()),
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

async fn get_path(client: &Client, path: &str) -> kube::Result<String> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .expect("a valid request");
    client.request_text(req).await
}

fn cluster_role(name: &str, rule: PolicyRule) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        rules: Some(vec![rule]),
        ..Default::default()
    }
}

fn binding_to_scraper(name: &str, role: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "prometheus".into(),
            namespace: Some("monitoring".into()),
            ..Default::default()
        }]),
    }
}

#[tokio::test]
async fn a_minted_token_authenticates_as_its_user_and_an_unknown_token_is_401() {
    init_tracing();
    let cp = ControlPlane::builder("tokens").rbac(true).start().await.unwrap();

    // A token in system:masters may do anything.
    let admin = cp
        .client_with_token(&cp.mint_token("token-admin", &["system:masters"]).unwrap())
        .await
        .unwrap();
    let names: Vec<_> = Api::<Namespace>::all(admin)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|ns| ns.metadata.name)
        .collect();
    assert!(names.iter().any(|n| n == "kube-system"), "{names:?}");

    // A ServiceAccount's token without bindings: authenticated (with kube's groups), but refused.
    let scraper = cp
        .client_with_token(&cp.mint_token(SCRAPER, &[]).unwrap())
        .await
        .unwrap();
    let me = Api::<SelfSubjectReview>::all(scraper.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    let info = me.status.and_then(|s| s.user_info).unwrap_or_default();
    assert_eq!(info.username.as_deref(), Some(SCRAPER));
    assert_eq!(
        info.groups.unwrap_or_default(),
        [
            "system:serviceaccounts",
            "system:serviceaccounts:monitoring",
            "system:authenticated"
        ]
    );
    let before = cp.requests(SCRAPER).await.unwrap();
    let err = Api::<Namespace>::all(scraper.clone())
        .list(&ListParams::default())
        .await
        .unwrap_err();
    let status = api_status(&err).expect("an API error");
    assert_eq!(status.code, 403, "{status:?}");
    assert_eq!(
        status.message,
        format!(
            r#"namespaces is forbidden: User "{SCRAPER}" cannot list resource "namespaces" in API group "" at the cluster scope"#
        )
    );
    // Token requests are counted under the token's user, like those of a client certificate.
    let counted = cp.requests(SCRAPER).await.unwrap().since(&before);
    assert_eq!(
        counted.by_resource.get("list /namespaces"),
        Some(&1),
        "{counted:?}"
    );

    // A token the server never minted: 401, as kube-apiserver answers.
    let stranger = cp.client_with_token("no-such-token").await.unwrap();
    let err = Api::<Namespace>::all(stranger)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_status(&err).map(|s| s.code), Some(401), "{err:?}");

    // Client certificates work as before.
    Api::<Namespace>::all(cp.client())
        .list(&ListParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn token_review_answers_the_user_of_a_minted_token_and_refuses_an_unknown_one() {
    init_tracing();
    let cp = ControlPlane::builder("tokenreview")
        .rbac(true)
        .start()
        .await
        .unwrap();
    let admin = cp.client();
    let token = cp.mint_token(SCRAPER, &["scrapers"]).unwrap();

    let review = token_review(&admin, &token).await.unwrap();
    let status = review.status.expect("a status");
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    assert_eq!(status.error, None);
    let user = status.user.expect("a user");
    assert_eq!(user.username.as_deref(), Some(SCRAPER));
    assert!(user.uid.is_some_and(|uid| !uid.is_empty()));
    assert_eq!(
        user.groups.unwrap_or_default(),
        [
            "scrapers",
            "system:serviceaccounts",
            "system:serviceaccounts:monitoring",
            "system:authenticated"
        ]
    );
    assert_eq!(status.audiences.unwrap_or_default(), [API_AUDIENCE]);

    let review = token_review(&admin, "no-such-token").await.unwrap();
    let status = review.status.expect("a status");
    assert_ne!(status.authenticated, Some(true), "{status:?}");
    assert_eq!(status.error.as_deref(), Some("invalid bearer token"));
    assert_eq!(status.user.unwrap_or_default(), UserInfo::default());

    // Creating a TokenReview needs `create` on tokenreviews.authentication.k8s.io (kube's
    // system:auth-delegator grants it).
    let reviewer = cp
        .client_with_token(&cp.mint_token("metrics-proxy", &[]).unwrap())
        .await
        .unwrap();
    let err = token_review(&reviewer, &token).await.unwrap_err();
    let status = api_status(&err).expect("an API error");
    assert_eq!(status.code, 403, "{status:?}");
    assert_eq!(
        status.message,
        r#"tokenreviews.authentication.k8s.io is forbidden: User "metrics-proxy" cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope"#
    );
    let delegator = cluster_role(
        "auth-delegator",
        PolicyRule {
            api_groups: Some(vec!["authentication.k8s.io".into()]),
            resources: Some(vec!["tokenreviews".into()]),
            verbs: vec!["create".into()],
            ..Default::default()
        },
    );
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &delegator)
        .await
        .unwrap();
    let mut binding = binding_to_scraper("metrics-proxy-auth-delegator", "auth-delegator");
    binding.subjects = Some(vec![Subject {
        kind: "User".into(),
        name: "metrics-proxy".into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        ..Default::default()
    }]);
    Api::<ClusterRoleBinding>::all(admin)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let review = wait_for(
        "the ClusterRoleBinding to take effect",
        Duration::from_secs(2),
        || {
            let reviewer = reviewer.clone();
            let token = token.clone();
            async move { Ok(token_review(&reviewer, &token).await.ok()) }
        },
    )
    .await
    .unwrap();
    assert_eq!(review.status.and_then(|s| s.authenticated), Some(true));
}

#[tokio::test]
async fn subject_access_review_of_metrics_is_allowed_only_for_the_user_a_cluster_role_grants_it() {
    init_tracing();
    let cp = ControlPlane::builder("metrics-sar")
        .rbac(true)
        .start()
        .await
        .unwrap();
    let admin = cp.client();
    let scraper_token = cp.mint_token(SCRAPER, &[]).unwrap();
    let scraper = cp.client_with_token(&scraper_token).await.unwrap();
    let other = cp
        .client_with_token(&cp.mint_token("someone-else", &[]).unwrap())
        .await
        .unwrap();

    // Who the token belongs to, as a secure metrics endpoint learns it.
    let user = token_review(&admin, &scraper_token)
        .await
        .unwrap()
        .status
        .and_then(|s| s.user)
        .expect("an authenticated user");
    let (name, groups) = (user.username.unwrap_or_default(), user.groups.unwrap_or_default());
    let authenticated = ["system:authenticated".to_owned()];

    // Nobody may read /metrics without a grant (kube binds its system:monitoring role to no one).
    assert!(!may_get_path(&admin, &name, &groups, "/metrics").await.unwrap());
    let err = get_path(&scraper, "/metrics").await.unwrap_err();
    let status = api_status(&err).expect("an API error");
    assert_eq!(status.code, 403, "{status:?}");
    assert_eq!(
        status.message,
        format!(r#"forbidden: User "{SCRAPER}" cannot get path "/metrics""#)
    );
    // Discovery and health stay open to every authenticated user (kube's system:discovery).
    assert!(may_get_path(&admin, &name, &groups, "/healthz").await.unwrap());
    get_path(&other, "/version").await.unwrap();

    // A ClusterRole with nonResourceURLs [/metrics], bound to the scraper's ServiceAccount.
    let reader = cluster_role(
        "metrics-reader",
        PolicyRule {
            non_resource_urls: Some(vec!["/metrics".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        },
    );
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &reader)
        .await
        .unwrap();
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(
            &PostParams::default(),
            &binding_to_scraper("prometheus-metrics", "metrics-reader"),
        )
        .await
        .unwrap();
    wait_for(
        "the ClusterRoleBinding to take effect",
        Duration::from_secs(2),
        || {
            let (admin, name, groups) = (admin.clone(), name.clone(), groups.clone());
            async move {
                Ok(may_get_path(&admin, &name, &groups, "/metrics")
                    .await?
                    .then_some(()))
            }
        },
    )
    .await
    .unwrap();

    // Only the bound user, and only the granted path and verb.
    assert!(
        !may_get_path(&admin, "someone-else", &authenticated, "/metrics")
            .await
            .unwrap()
    );
    assert!(
        !may_get_path(&admin, &name, &groups, "/metrics/slis")
            .await
            .unwrap()
    );
    let post = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(name.clone()),
            groups: Some(groups.clone()),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some("/metrics".into()),
                verb: Some("post".into()),
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(admin)
        .create(&PostParams::default(), &post)
        .await
        .unwrap();
    assert!(!answer.status.is_some_and(|s| s.allowed));

    // The server's own /metrics follows the same decision.
    let metrics = get_path(&scraper, "/metrics").await.unwrap();
    assert!(metrics.contains("apiserver_request_total"));
    let err = get_path(&other, "/metrics").await.unwrap_err();
    assert_eq!(api_status(&err).map(|s| s.code), Some(403), "{err:?}");
}

#[tokio::test]
async fn a_token_keeps_working_after_a_restart() {
    init_tracing();
    let mut cp = ControlPlane::start("token-restart").await.unwrap();
    let token = cp.mint_token("survivor", &["team-a"]).unwrap();
    cp.restart().await.unwrap();
    let client = cp.client_with_token(&token).await.unwrap();
    let me = Api::<SelfSubjectReview>::all(client)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    let info = me.status.and_then(|s| s.user_info).unwrap_or_default();
    assert_eq!(info.username.as_deref(), Some("survivor"));
    assert_eq!(info.groups.unwrap_or_default(), ["team-a"]);
}
