//! Fair sharing of the sync slots (`--max-concurrent-syncs`) between many mappings.
//!
//! Every sync of a NamespaceMapping waits for a slot here before it reads or writes a cluster (the
//! controller runs reconciles of different mappings at once; waiting for a slot does not hold up the
//! reconciles that do not sync). Slots go, in this order:
//!
//! 1. to **continuous change batches** ([`SyncClass::Changes`]) first: they are small and the replication
//!    lag waits on them;
//! 2. then to syncs something **asked for** ([`SyncClass::Requested`]: a mapping's first sync, a manual
//!    trigger, a retry, an interrupted sync resumed);
//! 3. then to **periodic full syncs** ([`SyncClass::Periodic`]: the schedule, the background resync, a
//!    re-list);
//!
//! first come, first served within a class. A sync that has waited [`AGING`] moves up one class, so a
//! steady stream of change batches cannot starve a full sync. With two or more slots, full syncs hold at
//! most all but one of them: a large namespace being copied never keeps change batches waiting.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::oneshot, time::Instant};

use crate::metrics::{ClassLabels, Metrics};

/// How long a waiting sync takes to move up one class.
pub const AGING: Duration = Duration::from_secs(30);

/// What a sync is, for its place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SyncClass {
    /// A continuous change batch.
    Changes,
    /// A sync something asked for: the first of a spec, a manual trigger, a retry, a resumed sync.
    Requested,
    /// A periodic full sync: the schedule, the background resync, a re-list.
    Periodic,
}

impl SyncClass {
    /// The class as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncClass::Changes => "changes",
            SyncClass::Requested => "requested",
            SyncClass::Periodic => "periodic",
        }
    }

    fn rank(self) -> u64 {
        match self {
            SyncClass::Changes => 0,
            SyncClass::Requested => 1,
            SyncClass::Periodic => 2,
        }
    }
}

struct Waiter {
    class: SyncClass,
    since: Instant,
    seq: u64,
    grant: oneshot::Sender<Grant>,
}

/// What a waiter is handed: its slot (returned if the waiter has gone meanwhile).
struct Grant {
    full: bool,
}

#[derive(Default)]
struct State {
    closed: bool,
    free: usize,
    full_running: usize,
    waiting: Vec<Waiter>,
    seq: u64,
}

/// The slots (see the module docs).
pub struct SyncSlots {
    full_limit: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for SyncSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("SyncSlots")
            .field("free", &s.free)
            .field("waiting", &s.waiting.len())
            .finish()
    }
}

/// A sync counted in a queue-depth gauge while it waits (also when its reconcile is cancelled).
#[derive(Debug)]
pub struct Waiting(prometheus_client::metrics::gauge::Gauge);

impl Waiting {
    /// Count one more in `gauge` until dropped.
    pub fn counted(gauge: prometheus_client::metrics::gauge::Gauge) -> Waiting {
        gauge.inc();
        Waiting(gauge)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Wait for a slot of `slots` for a sync of `class`, counted in `metrics` (the queue while it waits, the
/// time it waited).
pub async fn acquire_counted(
    slots: &Arc<SyncSlots>,
    metrics: &Metrics,
    class: SyncClass,
) -> Option<SlotPermit> {
    let labels = ClassLabels {
        class: class.as_str().into(),
    };
    let slot = {
        let _waiting = Waiting::counted(metrics.sync_queue.get_or_create(&labels).clone());
        slots.acquire(class).await
    };
    if let Some(slot) = &slot {
        metrics
            .sync_wait
            .get_or_create(&labels)
            .observe(slot.waited.as_secs_f64());
    }
    slot
}

/// A held slot; dropping it hands the slot to the next sync.
#[must_use]
pub struct SlotPermit {
    slots: Arc<SyncSlots>,
    full: bool,
    /// How long the sync waited for it.
    pub waited: Duration,
}

impl std::fmt::Debug for SlotPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotPermit")
            .field("waited", &self.waited)
            .finish()
    }
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        self.slots.give_back(self.full);
    }
}

impl SyncSlots {
    /// `slots` syncs at once (at least one).
    pub fn new(slots: usize) -> Arc<SyncSlots> {
        let slots = slots.max(1);
        Arc::new(SyncSlots {
            full_limit: if slots >= 2 { slots - 1 } else { 1 },
            state: Mutex::new(State {
                free: slots,
                ..State::default()
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for a slot for a sync of `class`; `None` once the slots are closed (the process stops: no
    /// new sync starts).
    pub async fn acquire(self: &Arc<Self>, class: SyncClass) -> Option<SlotPermit> {
        let start = Instant::now();
        let full = class != SyncClass::Changes;
        let rx = {
            let mut s = self.lock();
            if s.closed {
                return None;
            }
            if s.waiting.is_empty() && s.free > 0 && (!full || s.full_running < self.full_limit) {
                s.free -= 1;
                s.full_running += usize::from(full);
                return Some(SlotPermit {
                    slots: self.clone(),
                    full,
                    waited: Duration::ZERO,
                });
            }
            let (tx, rx) = oneshot::channel();
            s.seq += 1;
            let seq = s.seq;
            s.waiting.push(Waiter {
                class,
                since: start,
                seq,
                grant: tx,
            });
            // A waiter that is not eligible now (full syncs at their limit) may let another one go.
            self.dispatch(&mut s);
            rx
        };
        // (A closed queue drops its waiters: no slot.)
        let grant = rx.await.ok()?;
        Some(SlotPermit {
            slots: self.clone(),
            full: grant.full,
            waited: start.elapsed(),
        })
    }

    /// Start no more syncs: waiting ones and later ones get no slot (running ones finish).
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.waiting.clear();
    }

    /// How many syncs of `class` wait for a slot.
    pub fn waiting(&self, class: SyncClass) -> usize {
        self.lock().waiting.iter().filter(|w| w.class == class).count()
    }

    fn give_back(&self, full: bool) {
        let mut s = self.lock();
        s.free += 1;
        s.full_running -= usize::from(full);
        self.dispatch(&mut s);
    }

    /// Hand free slots to the waiters that may have them, best first.
    fn dispatch(&self, s: &mut State) {
        let now = Instant::now();
        while s.free > 0 {
            let full_ok = s.full_running < self.full_limit;
            let best = s
                .waiting
                .iter()
                .enumerate()
                .filter(|(_, w)| full_ok || w.class == SyncClass::Changes)
                .min_by_key(|(_, w)| {
                    let aged = (now.duration_since(w.since).as_secs() / AGING.as_secs()).min(w.class.rank());
                    (w.class.rank() - aged, w.seq)
                })
                .map(|(i, _)| i);
            let Some(i) = best else {
                return;
            };
            let w = s.waiting.remove(i);
            let full = w.class != SyncClass::Changes;
            s.free -= 1;
            s.full_running += usize::from(full);
            if w.grant.send(Grant { full }).is_err() {
                // The sync stopped waiting (its reconcile was cancelled): the slot stays free.
                s.free += 1;
                s.full_running -= usize::from(full);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;

    /// Start a sync of `class` named `name` that records when it got its slot, and holds it until `hold`
    /// is dropped.
    fn start(
        slots: &Arc<SyncSlots>,
        order: &Arc<StdMutex<Vec<&'static str>>>,
        name: &'static str,
        class: SyncClass,
    ) -> (tokio::task::JoinHandle<()>, oneshot::Sender<()>) {
        let (release, hold) = oneshot::channel::<()>();
        let (slots, order) = (slots.clone(), order.clone());
        let task = tokio::spawn(async move {
            let permit = slots.acquire(class).await.expect("open");
            order.lock().unwrap().push(name);
            let _ = hold.await;
            drop(permit);
        });
        (task, release)
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn change_batches_go_first_then_requested_then_periodic_each_in_arrival_order() {
        let slots = SyncSlots::new(1);
        let order = Arc::new(StdMutex::new(Vec::new()));
        let (first, release_first) = start(&slots, &order, "running", SyncClass::Periodic);
        settle().await;
        let mut waiting = Vec::new();
        for (name, class) in [
            ("periodic-1", SyncClass::Periodic),
            ("requested-1", SyncClass::Requested),
            ("changes-1", SyncClass::Changes),
            ("periodic-2", SyncClass::Periodic),
            ("changes-2", SyncClass::Changes),
            ("requested-2", SyncClass::Requested),
        ] {
            waiting.push(start(&slots, &order, name, class));
            settle().await;
        }
        assert_eq!(slots.waiting(SyncClass::Periodic), 2);
        assert_eq!(slots.waiting(SyncClass::Changes), 2);
        // Each sync below gives its slot back as soon as it has it: the order is the queue's.
        let (tasks, releases): (Vec<_>, Vec<_>) = waiting.into_iter().unzip();
        drop(releases);
        drop(release_first);
        first.await.unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            [
                "running",
                "changes-1",
                "changes-2",
                "requested-1",
                "requested-2",
                "periodic-1",
                "periodic-2"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_sync_that_waited_long_enough_is_not_starved_by_change_batches() {
        let slots = SyncSlots::new(1);
        let order = Arc::new(StdMutex::new(Vec::new()));
        let (first, release_first) = start(&slots, &order, "running", SyncClass::Changes);
        settle().await;
        let (periodic, release_periodic) = start(&slots, &order, "periodic", SyncClass::Periodic);
        settle().await;
        // Two classes up: after twice the aging time it ranks with change batches, and it came first.
        tokio::time::advance(AGING * 2).await;
        let (changes, release_changes) = start(&slots, &order, "changes", SyncClass::Changes);
        settle().await;
        drop(release_first);
        first.await.unwrap();
        settle().await;
        drop(release_periodic);
        periodic.await.unwrap();
        settle().await;
        drop(release_changes);
        changes.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["running", "periodic", "changes"]);
    }

    #[tokio::test(start_paused = true)]
    async fn full_syncs_leave_one_slot_to_change_batches() {
        let slots = SyncSlots::new(3);
        let order = Arc::new(StdMutex::new(Vec::new()));
        let a = start(&slots, &order, "full-a", SyncClass::Requested);
        let b = start(&slots, &order, "full-b", SyncClass::Periodic);
        settle().await;
        let c = start(&slots, &order, "full-c", SyncClass::Requested);
        settle().await;
        // Two full syncs run; the third waits although a slot is free.
        assert_eq!(*order.lock().unwrap(), ["full-a", "full-b"]);
        assert_eq!(slots.waiting(SyncClass::Requested), 1);
        let d = start(&slots, &order, "changes", SyncClass::Changes);
        settle().await;
        assert_eq!(*order.lock().unwrap(), ["full-a", "full-b", "changes"]);
        // A full sync ends: the waiting one gets its slot.
        drop(a.1);
        a.0.await.unwrap();
        settle().await;
        assert_eq!(*order.lock().unwrap(), ["full-a", "full-b", "changes", "full-c"]);
        for (task, release) in [b, c, d] {
            drop(release);
            task.await.unwrap();
        }
        assert_eq!(slots.lock().free, 3);
        assert_eq!(slots.lock().full_running, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sync_that_stops_waiting_gives_its_turn_away() {
        let slots = SyncSlots::new(1);
        let order = Arc::new(StdMutex::new(Vec::new()));
        let (first, release_first) = start(&slots, &order, "running", SyncClass::Periodic);
        settle().await;
        let (gone, _keep) = start(&slots, &order, "cancelled", SyncClass::Changes);
        settle().await;
        let (next, release_next) = start(&slots, &order, "next", SyncClass::Periodic);
        settle().await;
        gone.abort();
        let _ = gone.await;
        drop(release_first);
        first.await.unwrap();
        settle().await;
        drop(release_next);
        next.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["running", "next"]);
        assert_eq!(slots.lock().free, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn closed_slots_start_no_more_syncs() {
        let slots = SyncSlots::new(1);
        let running = slots.acquire(SyncClass::Periodic).await.expect("a slot");
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire(SyncClass::Changes).await.is_some() }
        });
        settle().await;
        slots.close();
        assert!(!waiting.await.unwrap(), "a waiting sync gets no slot once closed");
        assert!(slots.acquire(SyncClass::Changes).await.is_none());
        // The running sync finishes and gives its slot back.
        drop(running);
        assert_eq!(slots.lock().free, 1);
    }
}
