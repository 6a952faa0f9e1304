//! The simulated nodes (`dr_syncer_testenv::kubelet`) against a real kapi: scheduling, pod status,
//! volumes, container logs, DaemonSets, Deployments and StatefulSets, graceful pod termination, networking
//! between nodes, cleanup.
//!
//! Needs root (network namespaces, bind mounts); skipped with a message otherwise. Images used:
//! `busybox` → `/bin/sh`, `bash` → `/usr/bin/bash` (its `/dev/tcp` is the TCP client) and `perl` →
//! `/usr/bin/perl` (perl-base is essential on Debian; its IO::Socket::INET is the TCP server).

use std::{path::Path, process::Command, time::Duration};

use dr_syncer_testenv::{
    ControlPlane, apply_yaml, create_namespace, init_tracing,
    kubelet::{Kubelet, SimNetwork},
    wait_for,
};
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, StatefulSet},
    core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod},
};
use kube::{
    Api,
    api::{DeleteParams, LogParams, Patch, PatchParams},
};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

async fn setup(name: &str) -> (ControlPlane, SimNetwork, Kubelet) {
    init_tracing();
    let cp = ControlPlane::start(name).await.expect("control plane");
    let net = SimNetwork::create().expect("network");
    let kubelet = Kubelet::builder(&cp, &net)
        .node("node-a", "10.90.0.11")
        .node("node-b", "10.90.0.12")
        .node_labels("node-b", &[("role", "dr")])
        .image("busybox", "/bin/sh")
        .image("bash", "/usr/bin/bash")
        .image("perl", "/usr/bin/perl")
        .start()
        .await
        .expect("kubelet");
    (cp, net, kubelet)
}

async fn wait_pod(api: &Api<Pod>, name: &str, what: &str, cond: impl Fn(&Pod) -> bool) -> Pod {
    wait_for(what, T, || async {
        Ok(api.get_opt(name).await?.filter(|p| cond(p)))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:#?}", futures::executor::block_on(api.get_opt(name))))
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn terminated(p: &Pod) -> (i32, String) {
    let t = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .expect("terminated state");
    (t.exit_code, t.message.unwrap_or_default())
}

fn pv_of(pvc: &PersistentVolumeClaim) -> String {
    pvc.spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .expect("bound PVC")
}

#[tokio::test]
async fn pods_are_scheduled_run_and_report_status() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let (cp, _net, kubelet) = setup("kubelet-pods").await;
    let client = cp.client();
    let ns = create_namespace(&client, "sim").await.unwrap();

    // Nodes exist, labelled, Ready, with their InternalIP.
    let node: Node = Api::all(client.clone()).get("node-b").await.unwrap();
    assert_eq!(node.metadata.labels.as_ref().unwrap()["role"], "dr");
    let status = node.status.unwrap();
    assert!(
        status
            .addresses
            .unwrap()
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == "10.90.0.12")
    );
    assert!(
        status
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );

    apply_yaml(
        &client,
        Some(&ns),
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {key: from-configmap}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {token: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: worker}
spec:
  restartPolicy: Never
  nodeSelector: {role: dr}
  containers:
  - name: main
    image: docker.io/library/busybox:1.36
    command: [/bin/sh]
    args: ["-c", "cat /etc/cfg/key > /data/out; cat /etc/creds/token > /data/token; echo \"$POD_NAME on $NODE at $IP\" > /data/env; echo hello; echo done > /dev/termination-log"]
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    volumeMounts:
    - {name: data, mountPath: /data}
    - {name: cfg, mountPath: /etc/cfg}
    - {name: creds, mountPath: /etc/creds, readOnly: true}
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: data}}
  - {name: cfg, configMap: {name: cfg}}
  - {name: creds, secret: {secretName: creds, defaultMode: 0400}}
---
apiVersion: v1
kind: Pod
metadata: {name: failing}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: busybox, args: ["-c", "echo oops >&2; exit 3"]}
---
apiVersion: v1
kind: Pod
metadata: {name: app}
spec:
  containers:
  - name: app
    image: registry.example/app:v1
    volumeMounts: [{name: data, mountPath: /var/data}]
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: data}}
"#,
    )
    .await
    .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = wait_pod(&pods, "worker", "worker to succeed", |p| phase(p) == "Succeeded").await;
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(
        spec.node_name.as_deref(),
        Some("node-b"),
        "scheduled by nodeSelector"
    );
    let st = pod.status.as_ref().unwrap();
    assert_eq!(st.host_ip.as_deref(), Some("10.90.0.12"));
    assert_eq!(st.pod_ip.as_deref(), Some("10.90.0.12"));
    assert_eq!(terminated(&pod), (0, "done".to_owned()));

    let pvc: PersistentVolumeClaim = Api::namespaced(client.clone(), &ns).get("data").await.unwrap();
    assert_eq!(pvc.status.as_ref().unwrap().phase.as_deref(), Some("Bound"));
    let pv = pv_of(&pvc);
    assert_eq!(pv, format!("pvc-{}", pvc.metadata.uid.as_deref().unwrap()));
    let dir = kubelet.volume_dir(&pv);
    assert_eq!(
        std::fs::read_to_string(dir.join("out")).unwrap().trim(),
        "from-configmap"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("token")).unwrap().trim(),
        "s3cret"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("env")).unwrap().trim(),
        "worker on node-b at 10.90.0.12"
    );

    // The log, through the API (pods/log) and directly.
    let log = pods
        .logs(
            "worker",
            &LogParams {
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(log, "hello\n");
    assert_eq!(kubelet.pod_log(&ns, "worker", "main"), "hello\n");

    // A failing container: Failed with its exit code; stderr is in the log.
    let pod = wait_pod(&pods, "failing", "failing to fail", |p| phase(p) == "Failed").await;
    assert_eq!(terminated(&pod).0, 3);
    assert_eq!(
        pods.logs("failing", &LogParams::default()).await.unwrap(),
        "oops\n"
    );
    // A new pod of the same name starts with empty logs (a kubelet keeps them per pod UID).
    pods.delete("failing", &DeleteParams::default()).await.unwrap();
    wait_for("the failed pod gone", T, || async {
        Ok(pods.get_opt("failing").await?.is_none().then_some(()))
    })
    .await
    .unwrap();
    apply_yaml(
        &client,
        Some(&ns),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: failing}\nspec: {restartPolicy: Never, containers: [{name: main, image: busybox, args: [-c, echo again]}]}\n",
    )
    .await
    .unwrap();
    wait_pod(&pods, "failing", "the new pod to succeed", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    assert_eq!(
        pods.logs("failing", &LogParams::default()).await.unwrap(),
        "again\n"
    );

    // An application pod (unregistered image): Running and Ready, its volume shows the PV's data.
    let pod = wait_pod(&pods, "app", "app to run", |p| phase(p) == "Running").await;
    let st = pod.status.as_ref().unwrap();
    assert_eq!(st.host_ip.as_deref(), Some("10.90.0.11"), "first node that fits");
    assert!(
        st.conditions
            .as_ref()
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    let uid = pod.metadata.uid.as_deref().unwrap();
    let mount = kubelet
        .kubelet_root("node-a")
        .join(format!("pods/{uid}/volumes/kubernetes.io~csi/{pv}/mount"));
    assert_eq!(
        std::fs::read_to_string(mount.join("out")).unwrap().trim(),
        "from-configmap"
    );
    assert!(
        std::fs::symlink_metadata(&mount).unwrap().is_dir(),
        "a directory, not a symlink"
    );
    // worker, failing and its successor of the same name (the app's image is not registered).
    assert_eq!(kubelet.processes_started(), 3);
}

#[tokio::test]
async fn configmap_updates_and_read_only_claims() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let (cp, _net, kubelet) = setup("kubelet-volumes").await;
    let client = cp.client();
    let ns = create_namespace(&client, "sim").await.unwrap();
    apply_yaml(
        &client,
        Some(&ns),
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {mode: one}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: watcher}
spec:
  containers:
  - name: main
    image: busybox
    args: ["-c", "sleep 60"]
    volumeMounts: [{name: cfg, mountPath: /cfg}]
  volumes: [{name: cfg, configMap: {name: cfg}}]
---
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    args: ["-c", "ls /data >/dev/null && echo x > /data/f"]
    volumeMounts: [{name: data, mountPath: /data, readOnly: true}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
"#,
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = wait_pod(&pods, "watcher", "watcher to run", |p| phase(p) == "Running").await;
    let uid = pod.metadata.uid.clone().unwrap();
    let node = pod.spec.unwrap().node_name.unwrap();
    let vol = kubelet
        .kubelet_root(&node)
        .join(format!("pods/{uid}/volumes/kubernetes.io~configmap/cfg"));
    assert_eq!(std::fs::read_to_string(vol.join("mode")).unwrap(), "one");
    assert_eq!(
        std::fs::read_link(vol.join("mode")).unwrap(),
        Path::new("..data/mode")
    );
    assert!(
        std::fs::symlink_metadata(vol.join("..data"))
            .unwrap()
            .is_symlink()
    );

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"mode": "two"}})),
    )
    .await
    .unwrap();
    wait_for(
        "the ConfigMap update in the volume",
        Duration::from_secs(10),
        || async {
            Ok((std::fs::read_to_string(vol.join("mode")).unwrap_or_default() == "two").then_some(()))
        },
    )
    .await
    .unwrap();

    // The read-only claim refuses the write: the container fails.
    let pod = wait_pod(&pods, "reader", "reader to fail", |p| phase(p) == "Failed").await;
    assert_ne!(terminated(&pod).0, 0);
    assert!(
        kubelet
            .pod_log(&ns, "reader", "main")
            .contains("Read-only file system")
    );
}

#[tokio::test]
async fn daemonsets_get_one_pod_per_node() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let (cp, _net, kubelet) = setup("kubelet-ds").await;
    let client = cp.client();
    let ns = create_namespace(&client, "sim").await.unwrap();
    apply_yaml(
        &client,
        Some(&ns),
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - {name: agent, image: busybox, args: ["-c", "echo v1; sleep 60"]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: other}
spec:
  selector: {matchLabels: {app: other}}
  template:
    metadata: {labels: {app: other}}
    spec:
      containers: [{name: c, image: nginx}]
"#,
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
    let ready_uids = || async {
        let mut out = Vec::new();
        for n in ["agent-node-a", "agent-node-b"] {
            match pods.get_opt(n).await? {
                Some(p) if phase(&p) == "Running" => out.push(p.metadata.uid.clone().unwrap()),
                _ => return Ok(None),
            }
        }
        Ok(Some(out))
    };
    let first = wait_for("one running pod per node", T, ready_uids).await.unwrap();
    let pod = pods.get("agent-node-b").await.unwrap();
    assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some("node-b"));
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("DaemonSet", Some(true)));
    wait_for("DaemonSet status", T, || async {
        let s = dss.get("agent").await?.status.unwrap_or_default();
        Ok(
            (s.desired_number_scheduled == 2 && s.number_ready == 2 && s.observed_generation == Some(1))
                .then_some(()),
        )
    })
    .await
    .unwrap();
    assert!(
        pods.get_opt("other-node-a").await.unwrap().is_none(),
        "DaemonSets without a registered image are left alone"
    );

    // A template change recreates the pods.
    dss.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "agent", "image": "busybox", "args": ["-c", "echo v2; sleep 60"]}
        ]}}}})),
    )
    .await
    .unwrap();
    wait_for("recreated pods", T, || async {
        Ok(ready_uids()
            .await?
            .filter(|uids| uids.iter().all(|u| !first.contains(u))))
    })
    .await
    .unwrap();
    wait_for("the new template's log", T, || async {
        Ok(kubelet
            .pod_log(&ns, "agent-node-a", "agent")
            .contains("v2")
            .then_some(()))
    })
    .await
    .unwrap();

    // Deleting the DaemonSet removes its pods, and their processes end.
    dss.delete("agent", &DeleteParams::default()).await.unwrap();
    wait_for("pods removed", T, || async {
        let left = pods.list(&Default::default()).await?.items.len();
        Ok((left == 0 && kubelet.running_processes().is_empty()).then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn pods_on_different_nodes_talk_over_the_network() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let (cp, _net, kubelet) = setup("kubelet-net").await;
    let client = cp.client();
    let ns = create_namespace(&client, "sim").await.unwrap();
    apply_yaml(
        &client,
        Some(&ns),
        r#"
apiVersion: v1
kind: Pod
metadata: {name: server}
spec:
  nodeSelector: {kubernetes.io/hostname: node-b}
  containers:
  - name: server
    image: perl
    args: ["-MIO::Socket::INET", "-e", "$s = IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die $!; while ($c = $s->accept) { print $c \"pong from $ENV{HOSTNAME}\\n\"; close $c }"]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  restartPolicy: Never
  nodeSelector: {kubernetes.io/hostname: node-a}
  containers:
  - name: client
    image: bash
    args: ["-c", "for i in $(seq 100); do if exec 3<>/dev/tcp/10.90.0.12/8080; then read -r line <&3; echo \"$line\"; exit 0; fi 2>/dev/null; sleep 0.1; done; exit 1"]
"#,
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = wait_pod(&pods, "client", "client to finish", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    assert_eq!(
        phase(&pod),
        "Succeeded",
        "log: {}",
        kubelet.pod_log(&ns, "client", "client")
    );
    assert_eq!(kubelet.pod_log(&ns, "client", "client"), "pong from server\n");
    let started = kubelet.started_processes();
    let server = started.iter().find(|p| p.pod == "server").unwrap();
    assert_eq!(server.node, "node-b");
    assert!(!kubelet.netns("node-b").is_empty());
}

#[tokio::test]
async fn drop_leaves_no_processes_mounts_or_namespaces() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let (cp, net, kubelet) = setup("kubelet-drop").await;
    let client = cp.client();
    let ns = create_namespace(&client, "sim").await.unwrap();
    apply_yaml(
        &client,
        Some(&ns),
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: long}
spec:
  containers:
  - name: main
    image: busybox
    args: ["-c", "trap '' TERM; echo up > /data/up; sleep 300"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
"#,
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_pod(&pods, "long", "long to run", |p| phase(p) == "Running").await;
    let pids: Vec<i32> = kubelet.running_processes().iter().map(|(p, _)| *p).collect();
    assert_eq!(pids.len(), 1);
    let dir = kubelet.dir().to_path_buf();
    let netns = [kubelet.netns("node-a"), kubelet.netns("node-b")];
    let mounted = |d: &Path| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4).is_some_and(|m| Path::new(m).starts_with(d)))
    };
    assert!(mounted(&dir), "the PVC is bind-mounted");
    drop(kubelet);
    assert!(!mounted(&dir), "mounts left under {}", dir.display());
    assert!(!dir.exists(), "directory removed");
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "process {pid} still runs: {stat}"
        );
    }
    let list = |_: ()| {
        String::from_utf8_lossy(
            &Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned()
    };
    let out = list(());
    for n in &netns {
        assert!(!out.contains(n.as_str()), "{n} left: {out}");
    }
    let switch = net.switch_netns().to_owned();
    drop(net);
    assert!(!list(()).contains(&switch), "switch namespace left");
}

/// Pods a workload controls (by owner uid), sorted by name.
async fn owned_pods(pods: &Api<Pod>, uid: &str) -> Vec<Pod> {
    let mut out: Vec<Pod> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .collect();
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

/// Wait until the workload `uid` has exactly `n` pods, all Running and not terminating; their names.
async fn running_replicas(pods: &Api<Pod>, uid: &str, n: usize, what: &str) -> Vec<String> {
    wait_for(what, T, || async {
        let owned = owned_pods(pods, uid).await;
        let ok = owned.len() == n
            && owned
                .iter()
                .all(|p| phase(p) == "Running" && p.metadata.deletion_timestamp.is_none());
        Ok(ok.then(|| owned.iter().map(|p| p.metadata.name.clone().unwrap()).collect()))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn deployments_and_statefulsets_keep_their_replicas() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let (cp, _net, kubelet) = setup("kubelet-workloads").await;
    let client = cp.client();
    let ns = create_namespace(&client, "sim").await.unwrap();
    apply_yaml(
        &client,
        Some(&ns),
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: busybox, args: ["-c", "sleep 60"]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: other}
spec:
  selector: {matchLabels: {app: other}}
  template:
    metadata: {labels: {app: other}}
    spec:
      containers: [{name: c, image: nginx}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: shared}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: db
        image: busybox
        args: ["-c", "echo $HOSTNAME >> /data/hosts; sleep 60"]
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: shared}}]
"#,
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let web = deployments.get("web").await.unwrap();
    let web_uid = web.metadata.uid.clone().unwrap();
    let deployment_status = |want: (i32, i32, i32, i32, i64)| {
        let deployments = deployments.clone();
        async move {
            wait_for(&format!("Deployment status {want:?}"), T, || async {
                let s = deployments.get("web").await?.status.unwrap_or_default();
                let got = (
                    s.replicas.unwrap_or(0),
                    s.ready_replicas.unwrap_or(0),
                    s.available_replicas.unwrap_or(0),
                    s.updated_replicas.unwrap_or(0),
                    s.observed_generation.unwrap_or(0),
                );
                Ok((got == want).then_some(()))
            })
            .await
            .unwrap();
        }
    };

    // Two pods with the template's labels and a controller reference, named <deployment>-<hash>-<suffix>.
    let names = running_replicas(&pods, &web_uid, 2, "two web pods running").await;
    deployment_status((2, 2, 2, 2, 1)).await;
    let first_uids: Vec<String> = owned_pods(&pods, &web_uid)
        .await
        .into_iter()
        .filter_map(|p| p.metadata.uid)
        .collect();
    let pod = pods.get(&names[0]).await.unwrap();
    let labels = pod.metadata.labels.clone().unwrap();
    assert_eq!(labels["app"], "web");
    let hash = &labels["pod-template-hash"];
    assert!(
        names.iter().all(|n| n.starts_with(&format!("web-{hash}-"))),
        "{names:?}"
    );
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Deployment", "web"));

    // Scaled to 0: the pods terminate and go; their processes end.
    let scale = |n: i32| json!({"spec": {"replicas": n}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(scale(0)))
        .await
        .unwrap();
    wait_for("the web pods gone, their processes ended", T, || async {
        let left = owned_pods(&pods, &web_uid).await.len();
        let running = kubelet
            .running_processes()
            .iter()
            .any(|(_, d)| d.contains("/web-"));
        Ok((left == 0 && !running).then_some(()))
    })
    .await
    .unwrap();
    deployment_status((0, 0, 0, 0, 2)).await;

    // Scaled to 1: one new pod.
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(scale(1)))
        .await
        .unwrap();
    let again = running_replicas(&pods, &web_uid, 1, "one web pod running").await;
    let uid = pods.get(&again[0]).await.unwrap().metadata.uid.unwrap();
    assert!(!first_uids.contains(&uid), "a new pod");
    deployment_status((1, 1, 1, 1, 3)).await;

    // The StatefulSet: <name>-0 and <name>-1, both on the claim they name.
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let db_uid = statefulsets.get("db").await.unwrap().metadata.uid.unwrap();
    let names = running_replicas(&pods, &db_uid, 2, "two db pods running").await;
    assert_eq!(names, ["db-0", "db-1"]);
    let db1 = pods.get("db-1").await.unwrap();
    assert_eq!(db1.spec.as_ref().unwrap().hostname.as_deref(), Some("db-1"));
    assert_eq!(
        db1.metadata.labels.as_ref().unwrap()["statefulset.kubernetes.io/pod-name"],
        "db-1"
    );
    wait_for("StatefulSet status", T, || async {
        let s = statefulsets.get("db").await?.status.unwrap_or_default();
        Ok(
            (s.replicas == 2 && s.ready_replicas == Some(2) && s.observed_generation == Some(1))
                .then_some(()),
        )
    })
    .await
    .unwrap();
    let dir = kubelet.bound_volume_dir(&ns, "shared", T).await.unwrap();
    wait_for("both replicas wrote to the claim", T, || async {
        let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap_or_default();
        Ok((hosts.contains("db-0") && hosts.contains("db-1")).then_some(()))
    })
    .await
    .unwrap();
    // Scaled to 1: the highest ordinal goes.
    let db0 = pods.get("db-0").await.unwrap().metadata.uid;
    statefulsets
        .patch("db", &PatchParams::default(), &Patch::Merge(scale(1)))
        .await
        .unwrap();
    let names = running_replicas(&pods, &db_uid, 1, "one db pod left").await;
    assert_eq!(names, ["db-0"]);
    assert_eq!(pods.get("db-0").await.unwrap().metadata.uid, db0);

    // A Deployment whose image is not registered is left alone, status included.
    let other = deployments.get("other").await.unwrap();
    assert!(
        owned_pods(&pods, other.metadata.uid.as_deref().unwrap())
            .await
            .is_empty()
    );
    assert!(other.status.and_then(|s| s.observed_generation).is_none());
}

#[tokio::test]
async fn deleted_pods_stay_until_their_processes_have_stopped() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let (cp, _net, kubelet) = setup("kubelet-terminate").await;
    let client = cp.client();
    let ns = create_namespace(&client, "sim").await.unwrap();
    // Each process traps SIGTERM and keeps writing for about a second before it exits.
    let pod = |name: &str| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 10
  nodeSelector: {{kubernetes.io/hostname: node-a}}
  containers:
  - name: main
    image: busybox
    args: ["-c", "trap 'i=0; while [ $i -lt 10 ]; do i=$((i+1)); echo {name} term $i >> /out/log; sleep 0.1; done; exit 0' TERM; echo {name} up >> /out/log; while true; do sleep 0.1; done"]
    volumeMounts: [{{name: out, mountPath: /out}}]
  volumes: [{{name: out, hostPath: {{path: /var/term, type: DirectoryOrCreate}}}}]
---
"#
        )
    };
    apply_yaml(&client, Some(&ns), &(pod("a") + &pod("b")))
        .await
        .unwrap();
    let log = kubelet.node_root("node-a").join("var/term/log");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for name in ["a", "b"] {
        wait_pod(&pods, name, "the pod to run", |p| phase(p) == "Running").await;
    }
    wait_for("both traps set", T, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        Ok((text.contains("a up") && text.contains("b up")).then_some(()))
    })
    .await
    .unwrap();
    let pid = |name: &str| {
        kubelet
            .running_processes()
            .iter()
            .find(|(_, d)| d == &format!("{ns}/{name}/main"))
            .map(|(p, _)| *p)
            .expect("a running process")
    };
    let pids = [("a", pid("a")), ("b", pid("b"))];

    for (name, _) in pids {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }
    let a = pods.get("a").await.unwrap();
    assert!(a.metadata.deletion_timestamp.is_some());
    assert_eq!(a.metadata.deletion_grace_period_seconds, Some(10));

    // Each pod stays in the API until its process has exited; by then it wrote all its lines.
    let mut present = [true, true];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while present.iter().any(|p| *p) {
        assert!(
            std::time::Instant::now() < deadline,
            "pods still there: {present:?}"
        );
        for (i, (name, pid)) in pids.iter().enumerate() {
            if !present[i] {
                continue;
            }
            match pods.get_opt(name).await.unwrap() {
                Some(p) => assert!(p.metadata.deletion_timestamp.is_some()),
                None => {
                    present[i] = false;
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    assert!(
                        stat.is_empty() || stat.contains(") Z"),
                        "pod {name} is gone while its process runs: {stat}"
                    );
                    let text = std::fs::read_to_string(&log).unwrap();
                    assert!(
                        text.contains(&format!("{name} term 10\n")),
                        "pod {name} is gone before its process wrote everything:\n{text}"
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The two terminated side by side: their lines interleave.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let first = |p: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(&format!("{p} term")))
            .unwrap()
    };
    let last = |p: &str| {
        lines
            .iter()
            .rposition(|l| l.starts_with(&format!("{p} term")))
            .unwrap()
    };
    assert!(
        first("a") < last("b") && first("b") < last("a"),
        "one pod's termination held up the other's:\n{text}"
    );
    assert!(kubelet.running_processes().is_empty());
}
