//! The harness itself: processes stop on drop and on panic, clear errors for bad setups, restarts keep state.

use std::time::Duration;

use dr_syncer_testenv::{ControlPlane, Error, init_tracing};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use nix::{sys::signal, unistd::Pid};

fn alive(pid: u32) -> bool {
    signal::kill(Pid::from_raw(pid as i32), None).is_ok()
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    init_tracing();
    let cp = ControlPlane::start("drop").await.unwrap();
    let pid = cp.pid().unwrap();
    let dir = cp.dir().to_path_buf();
    assert!(alive(pid));
    drop(cp);
    assert!(!alive(pid), "kapi {pid} still running after drop");
    assert!(!dir.exists(), "state directory removed");
}

#[tokio::test]
async fn a_panicking_test_still_stops_its_server() {
    init_tracing();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let cp = ControlPlane::start("panic").await.unwrap();
        tx.send(cp.pid().unwrap()).unwrap();
        panic!("deliberate panic while holding a control plane");
    });
    let pid = rx.await.unwrap();
    let err = task.await.unwrap_err();
    assert!(err.is_panic());
    assert!(!alive(pid), "kapi {pid} outlived the panic");
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    init_tracing();
    let first = ControlPlane::start("first").await.unwrap();
    let err = ControlPlane::builder("second")
        .port(first.port())
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Exited { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("address already in use"), "{msg}");
    assert!(msg.contains(&first.port().to_string()), "{msg}");
}

#[tokio::test]
async fn a_missing_binary_says_what_to_run() {
    let err = ControlPlane::builder("nobin")
        .kapi_binary("/nonexistent/kapi")
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "MissingBinary");
    assert!(
        err.to_string().contains("scripts/build-control-plane.sh"),
        "{err}"
    );
}

#[tokio::test]
async fn restart_keeps_state_and_url() {
    init_tracing();
    let mut cp = ControlPlane::start("restart").await.unwrap();
    let url = cp.url().to_owned();
    let api: Api<ConfigMap> = Api::namespaced(cp.client(), "default");
    api.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("kept".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let old_pid = cp.pid().unwrap();
    cp.restart().await.unwrap();
    assert_ne!(cp.pid().unwrap(), old_pid);
    assert!(!alive(old_pid));
    assert_eq!(cp.url(), url);
    let api: Api<ConfigMap> = Api::namespaced(cp.client(), "default");
    assert!(api.get_opt("kept").await.unwrap().is_some());
}

#[tokio::test]
async fn identities_get_their_own_kubeconfig() {
    init_tracing();
    let cp = ControlPlane::start("identity").await.unwrap();
    let id = cp.identity("dr-syncer-cli").await.unwrap();
    assert!(id.kubeconfig.is_file());
    let info = id.client.apiserver_version().await.unwrap();
    assert_eq!(info.major, "1");
    let cms: Api<ConfigMap> = Api::namespaced(id.client.clone(), "default");
    tokio::time::timeout(Duration::from_secs(5), cms.list(&Default::default()))
        .await
        .unwrap()
        .unwrap();
    let counted = cp.requests("dr-syncer-cli").await.unwrap();
    assert_eq!((counted.reads, counted.writes), (1, 0), "{counted:?}");
}
