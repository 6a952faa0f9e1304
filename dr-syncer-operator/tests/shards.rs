//! Three operator processes with `--shards 6`, against three control planes: the six shard Leases spread
//! two per replica; each mapping says in its `Assigned` condition which replica holds it, and that is the
//! holder of its shard's Lease; when a replica is killed, the other two take its shards over (three each)
//! and keep its mappings syncing. The DR server's write log shows each DR namespace written by one
//! replica at a time.

mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use common::{Env, NS, T, condition, mapping};
use dr_syncer_core::api::SyncPhase;
use dr_syncer_operator::shards::shard_of;
use dr_syncer_testenv::{apply_yaml, create_namespace, wait_for, writer_runs};
use k8s_openapi::api::{coordination::v1::Lease, core::v1::ConfigMap};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;

const SHARDS: u32 = 6;
const REPLICAS: [&str; 3] = ["replica-a", "replica-b", "replica-c"];
/// Short leases, so that the test does not wait long for a takeover.
const TIMING: [&str; 6] = [
    "--lease-duration",
    "6s",
    "--renew-deadline",
    "4s",
    "--retry-period",
    "1s",
];

/// Holder of each shard Lease that has one.
async fn holders(leases: &Api<Lease>) -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    for i in 0..SHARDS {
        if let Some(h) = leases
            .get_opt(&format!("dr-syncer.io-shard-{i}"))
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
            .filter(|h| !h.is_empty())
        {
            out.insert(i, h);
        }
    }
    out
}

/// How many shards each replica holds.
fn per_replica(holders: &BTreeMap<u32, String>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for h in holders.values() {
        *out.entry(h.clone()).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn shards_spread_over_replicas_and_a_dead_replicas_shards_are_taken_over() {
    let env = Env::start("shards").await;
    let src = create_namespace(&env.prod.client(), "app").await.unwrap();
    apply_yaml(
        &env.prod.client(),
        Some(&src),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: setting}\ndata: {v: '1'}\n",
    )
    .await
    .unwrap();
    let mut ops = Vec::new();
    for r in REPLICAS {
        let mut args = vec!["--shards", "6"];
        args.extend(TIMING);
        ops.push(env.operator(r, &args).await);
    }
    let leases: Api<Lease> = Api::namespaced(env.controller.client(), NS);
    wait_for("two shards per replica", T, || async {
        let h = holders(&leases).await;
        let per = per_replica(&h);
        Ok((h.len() == SHARDS as usize && per.len() == 3 && per.values().all(|n| *n == 2)).then_some(()))
    })
    .await
    .unwrap();

    // Six Continuous mappings of the same source namespace, into six DR namespaces.
    let names: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
    for name in &names {
        env.apply(&mapping(
            name,
            &format!(
                "  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  destinationNamespace: {src}-{name}\n  \
                 replicationMode: Continuous\n  resourceTypes: [configmaps]"
            ),
        ))
        .await;
    }
    // Each is synced by the holder of its shard, and says so.
    let mut assigned = BTreeMap::new();
    for name in &names {
        let nm = env
            .wait_status(name, "synced and assigned", |s| {
                s.phase == Some(SyncPhase::Completed) && condition(s, "Assigned").is_some()
            })
            .await;
        let shard = shard_of(&nm.uid().unwrap(), SHARDS);
        let (_, _, message) = condition(nm.status.as_ref().unwrap(), "Assigned").unwrap();
        let h = holders(&leases).await;
        let holder = h.get(&shard).cloned().unwrap();
        assert!(
            message.contains(&format!("shard {shard} of 6")) && message.ends_with(&holder),
            "{name}: {message:?}, lease holder {holder}"
        );
        assigned.insert(name.clone(), (shard, holder));
    }

    // Only the holder of a mapping's shard synced it.
    let synced_by = |ops: &[common::Operator], name: &str| -> Vec<String> {
        REPLICAS
            .iter()
            .zip(ops)
            .filter(|(_, op)| {
                op.log().lines().any(|l| {
                    l.contains(&format!("namespacemapping={NS}/{name}")) && l.contains(" sync reason=")
                })
            })
            .map(|(r, _)| (*r).to_owned())
            .collect()
    };
    for (name, (_, holder)) in &assigned {
        assert_eq!(synced_by(&ops, name), std::slice::from_ref(holder), "{name}");
    }

    // The replica holding m0 dies: the other two take its shards over.
    let (shard0, victim) = assigned["m0"].clone();
    let killed = Instant::now();
    let i = REPLICAS.iter().position(|r| *r == victim).unwrap();
    ops[i].kill();
    wait_for(
        "the survivors hold every shard, three each",
        Duration::from_secs(90),
        || async {
            let h = holders(&leases).await;
            let per = per_replica(&h);
            Ok(
                (h.len() == SHARDS as usize && !per.contains_key(&victim) && per.values().all(|n| *n == 3))
                    .then_some(()),
            )
        },
    )
    .await
    .unwrap();
    eprintln!("shards taken over after {:?}", killed.elapsed());
    let heir = holders(&leases).await[&shard0].clone();
    assert_ne!(heir, victim);

    // The dead replica's mappings keep syncing, under their new holder.
    Api::<ConfigMap>::namespaced(env.prod.client(), &src)
        .patch(
            "setting",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "2"}})),
        )
        .await
        .unwrap();
    for name in &names {
        let dr = Api::<ConfigMap>::namespaced(env.dr.client(), &format!("{src}-{name}"));
        wait_for(&format!("{name}: the change on the DR side"), T, || async {
            let cm = dr.get("setting").await?;
            Ok((cm.data.unwrap_or_default().get("v").map(String::as_str) == Some("2")).then_some(()))
        })
        .await
        .unwrap();
    }
    let nm = env
        .wait_status("m0", "reassigned", |s| {
            condition(s, "Assigned").is_some_and(|(_, _, m)| m.ends_with(&heir))
        })
        .await;
    assert_eq!(nm.status.unwrap().phase, Some(SyncPhase::Completed));
    // The survivors synced only the mappings they held, before and after the takeover.
    for (name, (shard, holder)) in &assigned {
        let now = holders(&leases).await[shard].clone();
        for r in synced_by(&ops, name).into_iter().filter(|r| *r != victim) {
            assert!(
                r == *holder || r == now,
                "{name}: synced by {r}, held by {holder} then {now}"
            );
        }
    }

    // The DR server's own record (the replicas share the DR kubeconfig; each names itself in its
    // User-Agent): each DR namespace was written by one replica at a time — the first holder of its
    // shard, then, for the dead replica's mappings, its heir, whose first write started after the dead
    // replica's last write had ended.
    let writes = env.dr.writes(&env.dr_id.user).await.unwrap();
    for (name, (shard, holder)) in &assigned {
        let ns = format!("{src}-{name}");
        let now = holders(&leases).await[shard].clone();
        let runs = writer_runs(&writes, &ns, replica_of);
        assert!(!runs.is_empty(), "{ns}: no writes recorded");
        let who: Vec<&str> = runs.iter().map(|r| r.writer.as_str()).collect();
        if *holder == victim {
            assert!(
                who == [holder.as_str(), now.as_str()],
                "{ns}: written by {who:?}; held by {holder}, then {now}"
            );
        } else {
            assert_eq!(who, [holder.as_str()], "{ns}: held by {holder} throughout");
        }
        if let [a, b] = &runs[..] {
            assert!(
                a.last_end <= b.first_start,
                "{ns}: {}'s first write started {} µs before {}'s last one ended",
                b.writer,
                a.last_end - b.first_start,
                a.writer
            );
        }
    }
}

/// The replica an operator's User-Agent names (`dr-syncer-operator/<version> (<identity>)`).
fn replica_of(user_agent: &str) -> Option<String> {
    REPLICAS
        .iter()
        .find(|r| user_agent.ends_with(&format!("({r})")))
        .map(|r| (*r).to_owned())
}
