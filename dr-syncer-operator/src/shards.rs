//! Sharding across replicas (`--shards N`): every replica reconciles only the objects whose shard it
//! holds, so that N shards' worth of mappings spread over the replicas of a Deployment.
//!
//! - An object's shard is a stable hash of its UID, modulo N ([`shard_of`]).
//! - Shard `i` is held through Lease `<leader-election-id>-shard-<i>`, with the leader election's
//!   rules ([`crate::lease`]): renewed every retry period; a replica that cannot renew a shard within the
//!   renew deadline (shorter than the lease duration) has lost it and stops at once (exits non-zero, as
//!   a replica that loses leadership does), before another replica can take the Lease.
//! - Each replica takes free or expired shards up to its fair share, ceil(N / live replicas), and gives
//!   back shards above it — only once no reconcile of that shard is running, and admitting none
//!   meanwhile — so a shard is never reconciled by two replicas at once.
//! - A replica that dies leaves its Leases to expire; the others take them over within a lease
//!   duration and a retry period (~17 s with the defaults).
//!
//! Kubernetes is the membership protocol: every replica renews a member Lease, and the live replicas
//! are read from the Leases.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client, api::ListParams};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::lease::{LeaderElector, LeaseTiming, Observed};

/// The shard of an object with `uid`, of `n` (FNV-1a: stable across processes and versions).
pub fn shard_of(uid: &str, n: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uid.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(n.max(1))) as u32
}

#[derive(Debug, Default)]
struct State {
    held: BTreeSet<u32>,
    /// Held, being given back: no new reconcile is admitted.
    draining: BTreeSet<u32>,
    /// Reconciles running, per shard.
    running: BTreeMap<u32, usize>,
}

/// The shards this replica holds, and the reconciles it admits.
#[derive(Debug)]
pub struct Shards {
    n: u32,
    identity: String,
    state: Mutex<State>,
}

/// A reconcile admitted in its shard; the shard is not given back while one runs.
#[derive(Debug)]
pub struct ShardGuard {
    shards: Arc<Shards>,
    shard: u32,
}

impl Drop for ShardGuard {
    fn drop(&mut self) {
        let mut s = self.shards.lock();
        if let Some(n) = s.running.get_mut(&self.shard) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Shards {
    /// `n` shards (at least one), for replica `identity`.
    pub fn new(n: u32, identity: &str) -> Arc<Shards> {
        Arc::new(Shards {
            n: n.max(1),
            identity: identity.to_owned(),
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number of shards.
    pub fn count(&self) -> u32 {
        self.n
    }

    /// This replica's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The shard of `uid`.
    pub fn shard_of(&self, uid: &str) -> u32 {
        shard_of(uid, self.n)
    }

    /// Admit a reconcile of the object with `uid` when this replica holds its shard (and is not giving
    /// it back).
    pub fn admit(self: &Arc<Self>, uid: &str) -> Option<ShardGuard> {
        let shard = self.shard_of(uid);
        let mut s = self.lock();
        if !s.held.contains(&shard) || s.draining.contains(&shard) {
            return None;
        }
        *s.running.entry(shard).or_default() += 1;
        Some(ShardGuard {
            shards: self.clone(),
            shard,
        })
    }

    /// The shards held now.
    pub fn held(&self) -> Vec<u32> {
        self.lock().held.iter().copied().collect()
    }

    fn hold(&self, shard: u32) {
        self.lock().held.insert(shard);
    }

    /// Stop admitting reconciles of `shard`; whether none runs any more (it may be given back).
    fn drain(&self, shard: u32) -> bool {
        let mut s = self.lock();
        s.draining.insert(shard);
        s.running.get(&shard).copied().unwrap_or(0) == 0
    }

    /// Admit reconciles of every held shard again (no shard is to be given back); whether one was
    /// draining.
    fn keep_all(&self) -> bool {
        let mut s = self.lock();
        let was = !s.draining.is_empty();
        s.draining.clear();
        was
    }

    fn give_back(&self, shard: u32) {
        let mut s = self.lock();
        s.held.remove(&shard);
        s.draining.remove(&shard);
    }
}

/// Takes, renews and gives back the shard Leases, and holds this replica's member Lease
/// (`<name>-shard-member-<identity>`), by which the replicas count each other.
pub struct ShardKeeper {
    shards: Arc<Shards>,
    api: Api<Lease>,
    prefix: String,
    timing: LeaseTiming,
    electors: Vec<LeaderElector>,
    member: LeaderElector,
}

/// `identity` as part of a Lease name (lowercase letters, digits, `-` and `.`).
fn name_part(identity: &str) -> String {
    let cleaned: String = identity
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let part: String = cleaned
        .trim_matches(|c| c == '-' || c == '.')
        .chars()
        .take(200)
        .collect();
    // (Cut at 200, it may end in a separator again; a name must end in a letter or digit.)
    let part = part.trim_end_matches(['-', '.']);
    if part.is_empty() {
        "replica".into()
    } else {
        part.to_owned()
    }
}

impl std::fmt::Debug for ShardKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardKeeper")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl ShardKeeper {
    /// The keeper of `shards`' Leases `<name>-shard-<i>` in `namespace`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        shards: Arc<Shards>,
        timing: LeaseTiming,
    ) -> Self {
        let prefix = format!("{name}-shard-");
        let electors = (0..shards.count())
            .map(|i| {
                LeaderElector::new(
                    client.clone(),
                    namespace,
                    &format!("{prefix}{i}"),
                    shards.identity(),
                    timing,
                )
            })
            .collect();
        let member = LeaderElector::new(
            client.clone(),
            namespace,
            &format!("{prefix}member-{}", name_part(shards.identity())),
            shards.identity(),
            timing,
        );
        ShardKeeper {
            shards,
            api: Api::namespaced(client, namespace),
            prefix,
            timing,
            electors,
            member,
        }
    }

    /// Keep the shards until `cancel` (then give them all back); `changed` is called after this replica
    /// took a shard (its objects are to be reconciled here now). Returns `false` when a shard was lost
    /// (this replica must stop).
    pub async fn run(self, cancel: CancellationToken, changed: impl Fn() + Send) -> bool {
        let n = self.shards.count() as usize;
        let mut observed: Vec<Observed> = (0..n).map(|_| Observed::default()).collect();
        let mut renewed: Vec<Option<Instant>> = vec![None; n];
        let mut member = Observed::default();
        let mut members: BTreeMap<String, Observed> = BTreeMap::new();
        loop {
            // Present: this replica counts among the live ones.
            if let Err(e) = self.member.try_acquire_or_renew(&mut member).await {
                warn!(error = %e, "cannot renew the member lease");
            }
            // Renew what is held.
            for i in self.shards.held() {
                let ix = i as usize;
                let left = self
                    .timing
                    .renew_deadline
                    .saturating_sub(renewed[ix].map_or(Duration::ZERO, |t| t.elapsed()));
                match tokio::time::timeout(left, self.electors[ix].try_acquire_or_renew(&mut observed[ix]))
                    .await
                {
                    Ok(Ok(true)) => renewed[ix] = Some(Instant::now()),
                    Ok(Ok(false)) => {
                        warn!(shard = i, "shard lease taken by another replica: stopping");
                        return false;
                    }
                    Ok(Err(e)) => warn!(shard = i, error = %e, "shard lease renewal failed"),
                    Err(_) => warn!(shard = i, "shard lease renewal did not answer in time"),
                }
                if renewed[ix].is_none_or(|t| t.elapsed() > self.timing.renew_deadline) {
                    warn!(shard = i, "could not renew the shard lease in time: stopping");
                    return false;
                }
            }
            // Who else holds shards, alive.
            let mut holders = BTreeSet::from([self.shards.identity().to_owned()]);
            let mut free = Vec::new();
            match self.api.list(&ListParams::default()).await {
                Ok(list) => {
                    let by_name: BTreeMap<String, Lease> = list
                        .items
                        .into_iter()
                        .filter_map(|l| l.metadata.name.clone().map(|name| (name, l)))
                        .collect();
                    for (name, lease) in by_name
                        .iter()
                        .filter(|(n, _)| n.starts_with(&format!("{}member-", self.prefix)))
                    {
                        if let Some(holder) = members
                            .entry(name.clone())
                            .or_default()
                            .see(Some(lease), self.timing.lease_duration)
                        {
                            holders.insert(holder);
                        }
                    }
                    for (i, seen) in observed.iter_mut().enumerate() {
                        // (The electors' own observations: a shard seen expired here is one they may take.)
                        match seen.see(
                            by_name.get(&format!("{}{i}", self.prefix)),
                            self.timing.lease_duration,
                        ) {
                            Some(holder) => {
                                holders.insert(holder);
                            }
                            None => free.push(i as u32),
                        }
                    }
                }
                Err(e) => warn!(error = %e, "cannot list the shard leases"),
            }
            let fair = n.div_ceil(holders.len());
            let held = self.shards.held();
            if held.len() <= fair && self.shards.keep_all() {
                // Reconciles refused while a shard was draining are admitted again.
                changed();
            }
            if held.len() < fair {
                let mut took = false;
                for i in free
                    .into_iter()
                    .filter(|i| !held.contains(i))
                    .take(fair - held.len())
                {
                    let ix = i as usize;
                    if let Ok(Ok(true)) = tokio::time::timeout(
                        self.timing.renew_deadline,
                        self.electors[ix].try_acquire_or_renew(&mut observed[ix]),
                    )
                    .await
                    {
                        renewed[ix] = Some(Instant::now());
                        self.shards.hold(i);
                        info!(shard = i, of = n, "took a shard");
                        took = true;
                    }
                }
                if took {
                    changed();
                }
            } else if held.len() > fair
                && let Some(&i) = held.last()
                && self.shards.drain(i)
            {
                self.electors[i as usize].release().await;
                self.shards.give_back(i);
                renewed[i as usize] = None;
                info!(shard = i, of = n, fair, "gave a shard back");
            }
            tokio::select! {
                () = cancel.cancelled() => {
                    for i in self.shards.held() {
                        self.electors[i as usize].release().await;
                        self.shards.give_back(i);
                    }
                    self.member.release().await;
                    return true;
                }
                () = tokio::time::sleep(self.timing.retry_period) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_make_valid_lease_names() {
        assert_eq!(
            name_part("dr-syncer-operator-7d9f8c-x2x9z"),
            "dr-syncer-operator-7d9f8c-x2x9z"
        );
        assert_eq!(name_part("Node_1:Operator"), "node-1-operator");
        assert_eq!(name_part("-a.b-"), "a.b");
        assert_eq!(name_part("__"), "replica");
    }

    #[test]
    fn shards_spread_uids_and_are_stable() {
        let uids: Vec<String> = (0..600)
            .map(|i| format!("0b6f3c1e-{i:04}-4a8e-9c1d-5f2a7b3e9d10"))
            .collect();
        let mut counts = [0usize; 6];
        for u in &uids {
            counts[shard_of(u, 6) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (50..=150).contains(c)), "{counts:?}");
        // The same UID, the same shard, whatever process asks.
        assert_eq!(shard_of(&uids[7], 6), shard_of(&uids[7].clone(), 6));
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0);
    }

    #[test]
    fn only_held_shards_admit_and_a_shard_is_given_back_only_when_idle() {
        let shards = Shards::new(4, "replica-a");
        let uid = (0..100)
            .map(|i| format!("uid-{i}"))
            .find(|u| shard_of(u, 4) == 2)
            .unwrap();
        assert!(shards.admit(&uid).is_none(), "shard 2 not held");
        shards.hold(2);
        let guard = shards.admit(&uid).expect("held");
        assert!(!shards.drain(2), "a reconcile runs");
        assert!(shards.admit(&uid).is_none(), "draining: no new reconcile");
        // Kept after all (the fair share grew): admitted again.
        assert!(shards.keep_all());
        assert!(!shards.keep_all(), "nothing draining any more");
        drop(shards.admit(&uid).expect("admitted again"));
        assert!(!shards.drain(2), "the first reconcile still runs");
        drop(guard);
        assert!(shards.drain(2), "idle now");
        shards.give_back(2);
        assert!(shards.held().is_empty());
        assert!(shards.admit(&uid).is_none());
    }
}
