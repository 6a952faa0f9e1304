use super::*;

#[test]
fn go_fields_without_meaning_here_are_reported() {
    let spec = |pvc: serde_json::Value| -> dr_syncer_core::api::RemoteClusterSpec {
        serde_json::from_value(serde_json::json!({
            "kubeconfigSecretRef": {"name": "k", "namespace": "n"},
            "pvcSync": pvc,
        }))
        .unwrap()
    };
    assert!(unused_fields(&spec(serde_json::json!({"enabled": true}))).is_empty());
    let both = unused_fields(&spec(serde_json::json!({
        "enabled": true,
        "rsyncDaemonSet": {"enabled": true},
        "ssh": {"port": 2222, "keySecretRef": {"name": "keys", "namespace": "dr-syncer"}},
    })));
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both[0].contains("rsyncDaemonSet") && both[1].contains("keySecretRef"));
}

fn ok() -> CheckResult {
    CheckResult {
        schedule: None,
        available: Ok(()),
        valid: Ok(()),
        connected: Ok("v1.36.4".into()),
        identity: Some("uid-a".into()),
        accept: None,
    }
}

fn cond<'a>(s: &'a RemoteClusterStatus, t: &str) -> (&'a str, &'a str) {
    let c = s
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == t)
        .unwrap();
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn healthy_cluster() {
    let s = status_from("dr", &ok(), &Default::default(), Some(1));
    assert_eq!(s.health.as_deref(), Some("Healthy"));
    assert_eq!(cond(&s, "KubeconfigAvailable"), ("True", "KubeconfigFound"));
    assert_eq!(cond(&s, "KubeconfigValid"), ("True", "KubeconfigValidated"));
    assert_eq!(cond(&s, "ClusterAvailable"), ("True", "ConnectionSuccessful"));
    assert!(
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .all(|c| c.type_ != "ScheduleValid")
    );
}

#[test]
fn go_reasons_for_each_failure() {
    let missing = CheckResult {
        available: Err(ClusterError::SecretNotFound("dr/kc".into())),
        valid: Err(ClusterError::SecretNotFound("dr/kc".into())),
        connected: Err(ClusterError::SecretNotFound("dr/kc".into())),
        ..ok()
    };
    let s = status_from("dr", &missing, &Default::default(), None);
    assert_eq!(s.health.as_deref(), Some("Unhealthy"));
    assert_eq!(
        cond(&s, "KubeconfigAvailable"),
        ("False", "KubeconfigSecretNotFound")
    );
    assert_eq!(cond(&s, "ClusterAvailable"), ("False", "NotChecked"));

    let key = ClusterError::KeyNotFound {
        secret: "dr/kc".into(),
        key: "kubeconfig".into(),
    };
    let s = status_from(
        "dr",
        &CheckResult {
            available: Err(key.clone()),
            valid: Err(key),
            ..ok()
        },
        &Default::default(),
        None,
    );
    assert_eq!(
        cond(&s, "KubeconfigAvailable"),
        ("False", "KubeconfigKeyNotFound")
    );

    let bad = ClusterError::InvalidKubeconfig {
        secret: "dr/kc".into(),
        message: "garbage".into(),
    };
    let s = status_from(
        "dr",
        &CheckResult {
            valid: Err(bad.clone()),
            connected: Err(bad),
            ..ok()
        },
        &Default::default(),
        None,
    );
    assert_eq!(cond(&s, "KubeconfigAvailable"), ("True", "KubeconfigFound"));
    assert_eq!(cond(&s, "KubeconfigValid"), ("False", "InvalidKubeconfig"));

    let down = ClusterError::ConnectionFailed {
        cluster: "dr".into(),
        message: "refused".into(),
    };
    let s = status_from(
        "dr",
        &CheckResult {
            connected: Err(down),
            ..ok()
        },
        &Default::default(),
        None,
    );
    assert_eq!(cond(&s, "ClusterAvailable"), ("False", "ConnectionFailed"));

    let s = status_from(
        "dr",
        &CheckResult {
            schedule: Some(Err("bad".into())),
            ..ok()
        },
        &Default::default(),
        None,
    );
    assert_eq!(cond(&s, "ScheduleValid"), ("False", "InvalidSchedule"));
    assert_eq!(s.health.as_deref(), Some("Unhealthy"));
}

#[test]
fn identity_is_pinned_on_first_contact_and_moved_only_by_an_acceptance() {
    let s = status_from("dr", &ok(), &Default::default(), None);
    assert_eq!(s.cluster_identity.as_ref().map(|c| c.uid.as_str()), Some("uid-a"));

    // Another cluster behind the kubeconfig: not healthy, the pin stays, the condition names both.
    let other = CheckResult {
        identity: Some("uid-b".into()),
        ..ok()
    };
    let changed = status_from("dr", &other, &s, None);
    assert_eq!(changed.health.as_deref(), Some("Unhealthy"));
    assert_eq!(
        changed.cluster_identity.as_ref().map(|c| c.uid.as_str()),
        Some("uid-a")
    );
    assert_eq!(
        cond(&changed, "ClusterIdentityChanged"),
        ("True", "ClusterIdentityChanged")
    );
    let message = &changed
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "ClusterIdentityChanged")
        .unwrap()
        .message;
    assert!(
        message.contains("uid-a") && message.contains("accept-cluster-identity=uid-b"),
        "{message}"
    );
    // Unreadable now: still held.
    let unknown = CheckResult {
        identity: None,
        ..ok()
    };
    assert_eq!(
        status_from("dr", &unknown, &changed, None).health.as_deref(),
        Some("Unhealthy")
    );
    // An acceptance of some other UID changes nothing; of this one, moves the pin.
    let wrong = CheckResult {
        accept: Some("uid-c".into()),
        ..other.clone()
    };
    assert_eq!(
        status_from("dr", &wrong, &changed, None).health.as_deref(),
        Some("Unhealthy")
    );
    let accepted = status_from(
        "dr",
        &CheckResult {
            accept: Some("uid-b".into()),
            ..other
        },
        &changed,
        None,
    );
    assert_eq!(accepted.health.as_deref(), Some("Healthy"));
    assert_eq!(
        accepted.cluster_identity.as_ref().map(|c| c.uid.as_str()),
        Some("uid-b")
    );
    assert_eq!(
        accepted.cluster_identity.as_ref().unwrap().replaces,
        ["uid-a"],
        "the cluster it replaces is kept, for the DR namespaces filled from it"
    );
    assert!(
        accepted
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .all(|c| c.type_ != "ClusterIdentityChanged")
    );
}
