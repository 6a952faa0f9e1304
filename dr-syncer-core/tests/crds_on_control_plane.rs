//! The generated CRDs install on the test control plane, become Established, accept the Go-schema example
//! manifests unchanged, apply the schema defaults and reject what the schema forbids.

use std::time::Duration;

use dr_syncer_core::api::{NamespaceMapping, ReplicationMode, crds_yaml};
use dr_syncer_testenv::{ControlPlane, apply_yaml, init_tracing, status_of, wait_for_condition};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, runtime::conditions};
use rstest::rstest;

const T: Duration = Duration::from_secs(30);

async fn with_crds() -> ControlPlane {
    init_tracing();
    let cp = ControlPlane::start("crds").await.unwrap();
    apply_yaml(&cp.client(), None, &crds_yaml().unwrap())
        .await
        .unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(cp.client());
    for name in [
        "remoteclusters.dr-syncer.io",
        "clustermappings.dr-syncer.io",
        "namespacemappings.dr-syncer.io",
    ] {
        wait_for_condition(&api, name, T, conditions::is_crd_established())
            .await
            .unwrap();
    }
    apply_yaml(
        &cp.client(),
        None,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: dr-syncer}\n",
    )
    .await
    .unwrap();
    cp
}

/// Apply, retrying briefly while the new kinds appear in discovery.
async fn apply_eventually(
    cp: &ControlPlane,
    yaml: &str,
) -> dr_syncer_testenv::Result<Vec<kube::api::DynamicObject>> {
    let mut last = None;
    for _ in 0..50 {
        match apply_yaml(&cp.client(), Some("dr-syncer"), yaml).await {
            Ok(v) => return Ok(v),
            Err(e) if status_of(&e).is_none() || status_of(&e).is_some_and(|s| s.code == 404) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap())
}

#[tokio::test]
async fn example_manifests_apply_unchanged() {
    let cp = with_crds().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut applied = 0;
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        let text = std::fs::read_to_string(path).unwrap();
        let objs = apply_eventually(&cp, &text)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        applied += objs.len();
    }
    assert!(applied >= 6, "{applied}");

    // Server-side defaults from the schema.
    let api: Api<NamespaceMapping> = Api::namespaced(cp.client(), "dr-syncer");
    let manual = api.get("reports").await.unwrap();
    assert_eq!(manual.spec.replication_mode, ReplicationMode::Manual);
    assert!(manual.spec.scale_to_zero, "scaleToZero defaults to true");
    let continuous = api.get("payments").await.unwrap();
    assert_eq!(continuous.spec.continuous.unwrap().background_sync_interval, "1h");

    // kubectl shows the printer columns and the non-clashing short name.
    let out = cp
        .kubectl()
        .unwrap()
        .args(["get", "nsmap", "-n", "dr-syncer"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for col in ["SOURCE", "DESTINATION", "CLUSTER MAPPING", "MODE", "PHASE"] {
        assert!(table.contains(col), "{col} missing in\n{table}");
    }
    assert!(table.contains("shop-dr"), "{table}");
}

const NM: &str = "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {name: t}\nspec:\n";

#[rstest]
#[case::five_field_schedule("  schedule: \"*/5 * * * *\"\n", true)]
#[case::six_field_schedule("  schedule: \"*/10 * * * * *\"\n", true)]
#[case::weekday_range_schedule("  schedule: \"0 3 * * 1-5\"\n", true)]
#[case::three_field_schedule("  schedule: \"* * *\"\n", false)]
#[case::hourly_descriptor("  schedule: \"@hourly\"\n", true)]
#[case::daily_descriptor("  schedule: \"@daily\"\n", true)]
#[case::every_descriptor("  schedule: \"@every 90s\"\n", true)]
#[case::unknown_descriptor("  schedule: \"@fortnightly\"\n", false)]
#[case::unknown_mode("  replicationMode: Sometimes\n", false)]
#[case::multiplier_too_small("  retryConfig: {backoffMultiplier: 50}\n", false)]
#[case::bad_duration("  continuous: {backgroundSyncInterval: soon}\n", false)]
#[case::unknown_immutable_handling("  immutableResourceConfig: {defaultHandling: Sometimes}\n", false)]
#[case::sample_percent_too_high("  pvcConfig: {dataSyncConfig: {samplePercent: 101}}\n", false)]
#[case::exclude_resource_needs_name("  excludeResources: [{kind: ConfigMap}]\n", false)]
#[case::deletion_policy("  deletionPolicy: DeleteSynced\n", true)]
#[tokio::test]
async fn schema_validation(#[case] spec: &str, #[case] accepted: bool) {
    let cp = with_crds().await;
    let result = apply_eventually(&cp, &format!("{NM}{spec}")).await;
    match (accepted, result) {
        (true, Ok(_)) => {}
        (false, Err(e)) => assert_eq!(status_of(&e).map(|s| s.code), Some(422), "{e}"),
        (true, Err(e)) => panic!("expected the server to accept {spec:?}: {e}"),
        (false, Ok(_)) => panic!("expected the server to reject {spec:?}"),
    }
}
