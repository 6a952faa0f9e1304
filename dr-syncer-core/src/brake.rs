//! The deletion brake (pure): deletions that would remove a large share of what a mapping manages on the
//! DR side are held until someone says go.
//!
//! A source namespace emptied by mistake, a kubeconfig re-pointed at another cluster or a broken
//! pipeline looks, to a syncer with `prune`, exactly like a request to delete everything. The DR copy is
//! then the one thing left, so mass deletions wait for a person:
//!
//! - [`DeletionBrake`] says when a deletion is "mass": it would remove **more than `percent` %** of the
//!   DR objects the mapping manages **and more than `min_objects`** of them (defaults 50 % and 10).
//! - Deletions are counted over a sliding **window** ([`DeletionLedger`], default 5 minutes), so
//!   Continuous mode, which sees a mass deletion a few objects at a time, brakes too.
//! - A held deletion blocks only deletions: creates and updates go on.
//! - A go-ahead ([`GoAhead`]: the mapping's `dr-syncer.io/allow-deletions` annotation with the number of
//!   deletions allowed, or the CLI's `--allow-deletions`) releases them; approved deletions are not
//!   counted against the next ones.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;

/// When deletions are held (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletionBrake {
    /// Off: every deletion goes ahead (as before the brake existed).
    pub enabled: bool,
    /// Hold when the deletions would remove more than this share (0–100) of the managed objects …
    pub percent: u8,
    /// … and more than this many objects.
    pub min_objects: u32,
    /// Over this window.
    pub window: Duration,
}

impl Default for DeletionBrake {
    fn default() -> Self {
        DeletionBrake {
            enabled: true,
            percent: 50,
            min_objects: 10,
            window: Duration::from_secs(300),
        }
    }
}

impl DeletionBrake {
    /// No brake.
    pub fn off() -> Self {
        DeletionBrake {
            enabled: false,
            ..Default::default()
        }
    }

    /// Whether deleting `pending` objects now, after `recent` deletions within the window, out of
    /// `managed` objects the mapping manages on the DR side now (the pending ones included), is a mass
    /// deletion. The share is of what was there at the start of the window (`managed + recent`).
    pub fn trips(&self, pending: usize, recent: usize, managed: usize) -> bool {
        if !self.enabled || pending == 0 {
            return false;
        }
        let total = pending + recent;
        let base = (managed + recent).max(pending + recent);
        total > self.min_objects as usize && total * 100 > usize::from(self.percent) * base
    }

    /// Judge `pending` deletions (see [`DeletionBrake::trips`]) with the go-ahead `go`.
    pub fn judge(&self, pending: usize, recent: usize, managed: usize, go: GoAhead) -> Verdict {
        if !self.trips(pending, recent, managed) {
            return Verdict::Proceed;
        }
        if go.allows(pending) {
            return Verdict::Approved;
        }
        Verdict::Hold(DeletionHold {
            pending,
            recent,
            managed,
            allowed: match go {
                GoAhead::UpTo(n) => Some(n),
                GoAhead::None | GoAhead::All => None,
            },
            percent: self.percent,
            min_objects: self.min_objects,
            window_secs: self.window.as_secs(),
        })
    }
}

/// A person's go-ahead for held deletions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GoAhead {
    /// None given: mass deletions are held.
    #[default]
    None,
    /// Up to this many deletions at once (the `dr-syncer.io/allow-deletions` annotation's value: the
    /// count the `DeletionHeld` condition names, so that a go-ahead cannot approve more than was seen).
    UpTo(u64),
    /// Any number (the CLI's `--allow-deletions`, for this one run).
    All,
}

impl GoAhead {
    /// Whether `pending` deletions may go ahead.
    pub fn allows(self, pending: usize) -> bool {
        match self {
            GoAhead::None => false,
            GoAhead::UpTo(n) => pending as u64 <= n,
            GoAhead::All => true,
        }
    }

    /// The annotation's value: a positive count, or an error saying what is expected.
    ///
    /// # Errors
    /// Anything but a whole number above zero.
    pub fn parse_annotation(value: &str) -> Result<GoAhead, String> {
        match value.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(GoAhead::UpTo(n)),
            _ => Err(format!(
                "dr-syncer.io/allow-deletions must be the number of deletions allowed (the count the DeletionHeld \
                 condition names), not {value:?}"
            )),
        }
    }
}

/// What the brake decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not a mass deletion: delete.
    Proceed,
    /// A mass deletion with a go-ahead that covers it: delete, and start the window afresh.
    Approved,
    /// A mass deletion without a go-ahead: delete nothing.
    Hold(DeletionHold),
}

/// Deletions held by the brake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletionHold {
    /// Deletions held now.
    pub pending: usize,
    /// Deletions already made within the window.
    pub recent: usize,
    /// DR objects the mapping manages (the pending ones included).
    pub managed: usize,
    /// The go-ahead given, when it was too small.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<u64>,
    /// The brake's share.
    pub percent: u8,
    /// The brake's count.
    pub min_objects: u32,
    /// The brake's window, in seconds.
    pub window_secs: u64,
}

impl DeletionHold {
    /// What is held and how to release it (for conditions, Events and the CLI).
    pub fn message(&self) -> String {
        let recent = if self.recent > 0 {
            format!(
                " (after {} deletion(s) in the last {} s)",
                self.recent, self.window_secs
            )
        } else {
            String::new()
        };
        let allowed = self
            .allowed
            .map(|n| format!(" The go-ahead given allows {n}, fewer than are pending."))
            .unwrap_or_default();
        format!(
            "{} deletion(s) held: they would remove more than {} % and more than {} of the {} DR object(s) this \
             mapping manages{recent}. Creates and updates go on.{allowed} If the source really lost these \
             objects on purpose, allow them with `kubectl annotate namespacemapping <name> \
             dr-syncer.io/allow-deletions={}` (CLI: --allow-deletions)",
            self.pending, self.percent, self.min_objects, self.managed, self.pending
        )
    }
}

/// Deletions recently made, per key (a mapping and DR namespace), for the sliding window. Shared by the
/// syncs of one process; [`DeletionLedger::export`] and [`DeletionLedger::import`] carry a window over a
/// restart (the operator keeps it in the mapping's `status.recentDeletions`).
#[derive(Debug, Default)]
pub struct DeletionLedger {
    entries: Mutex<HashMap<String, VecDeque<(Instant, usize)>>>,
    imported: Mutex<HashSet<String>>,
}

/// The [`DeletionLedger`] key of the deletions a mapping (`synced_by`) makes in DR namespace `namespace`.
pub fn ledger_key(synced_by: &str, namespace: &str) -> String {
    format!("{synced_by}|{namespace}")
}

impl DeletionLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Deletions recorded for `key` within `window` before `now` (older entries are dropped).
    pub fn recent(&self, key: &str, window: Duration, now: Instant) -> usize {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some(q) = entries.get_mut(key) else {
            return 0;
        };
        while q
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > window)
        {
            q.pop_front();
        }
        let n = q.iter().map(|(_, n)| n).sum();
        if q.is_empty() {
            entries.remove(key);
        }
        n
    }

    /// Record `n` deletions for `key` at `now`.
    pub fn record(&self, key: &str, n: usize, now: Instant) {
        if n == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.entry(key.to_owned()).or_default().push_back((now, n));
    }

    /// Forget `key`'s deletions (after an approved mass deletion).
    pub fn clear(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(key);
    }

    /// `key`'s deletions within `window` before now, with wall-clock times (oldest first): what an
    /// operator records in status so that the window outlives a restart ([`DeletionLedger::import`]).
    pub fn export(&self, key: &str, window: Duration) -> Vec<(SystemTime, usize)> {
        let (now, wall) = (Instant::now(), SystemTime::now());
        self.recent(key, window, now);
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .into_iter()
            .flatten()
            .map(|(t, n)| (wall - now.saturating_duration_since(*t), *n))
            .collect()
    }

    /// Take over `key`'s deletions recorded by an earlier process ([`DeletionLedger::export`]), once:
    /// a later import for the same key changes nothing, so deletions are never counted twice. Times in
    /// the future count as now; entries older than the process's clock can tell are dropped.
    pub fn import(&self, key: &str, recorded: &[(SystemTime, usize)]) {
        let mut imported = self.imported.lock().unwrap_or_else(|e| e.into_inner());
        if !imported.insert(key.to_owned()) {
            return;
        }
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut old: Vec<(Instant, usize)> = recorded
            .iter()
            .filter(|(_, n)| *n > 0)
            .filter_map(|(at, n)| {
                let age = wall.duration_since(*at).unwrap_or_default();
                now.checked_sub(age).map(|t| (t, *n))
            })
            .collect();
        if old.is_empty() {
            return;
        }
        old.sort_by_key(|(t, _)| *t);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let q = entries.entry(key.to_owned()).or_default();
        // Deletions this process made already come after the imported ones.
        for entry in old.into_iter().rev() {
            q.push_front(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test]
    fn the_window_is_carried_over_a_restart_once() {
        let window = Duration::from_secs(300);
        let before = DeletionLedger::new();
        before.record("k", 4, Instant::now() - Duration::from_secs(10));
        before.record("k", 3, Instant::now());
        let saved = before.export("k", window);
        assert_eq!(saved.iter().map(|(_, n)| n).sum::<usize>(), 7);
        assert!(saved[0].0 < saved[1].0, "oldest first");

        let after = DeletionLedger::new();
        after.record("k", 1, Instant::now());
        after.import("k", &saved);
        assert_eq!(after.recent("k", window, Instant::now()), 8);
        after.import("k", &saved);
        assert_eq!(after.recent("k", window, Instant::now()), 8, "imported once");
        // The imported entries keep their age: out of a 5 s window, only the fresh ones count.
        assert_eq!(after.recent("k", Duration::from_secs(5), Instant::now()), 4);
        // Older than the window: gone.
        let stale = DeletionLedger::new();
        stale.import("k", &[(SystemTime::now() - Duration::from_secs(600), 9)]);
        assert_eq!(stale.recent("k", window, Instant::now()), 0);
        assert!(stale.export("k", window).is_empty());
    }

    #[rstest]
    #[case::few_of_many(3, 0, 100, false)]
    #[case::most_but_few(6, 0, 10, false)] // 60 % but not more than 10
    #[case::many_but_a_small_share(40, 0, 100, false)]
    #[case::most_and_many(12, 0, 20, true)]
    #[case::exactly_half_is_not_more(11, 0, 22, false)]
    #[case::everything(30, 0, 30, true)]
    #[case::a_few_at_a_time_add_up(2, 10, 12, true)] // 12 of 22 in the window
    #[case::window_but_small(2, 5, 40, false)]
    #[case::nothing_pending(0, 50, 10, false)]
    fn trips(#[case] pending: usize, #[case] recent: usize, #[case] managed: usize, #[case] want: bool) {
        assert_eq!(DeletionBrake::default().trips(pending, recent, managed), want);
    }

    #[test]
    fn off_never_trips_and_thresholds_are_configurable() {
        assert!(!DeletionBrake::off().trips(100, 0, 100));
        let strict = DeletionBrake {
            percent: 10,
            min_objects: 2,
            ..Default::default()
        };
        assert!(strict.trips(3, 0, 20));
        assert!(!strict.trips(2, 0, 20));
    }

    #[test]
    fn a_go_ahead_covers_at_most_its_count() {
        let b = DeletionBrake::default();
        assert_eq!(b.judge(12, 0, 20, GoAhead::UpTo(12)), Verdict::Approved);
        assert_eq!(b.judge(12, 0, 20, GoAhead::All), Verdict::Approved);
        let Verdict::Hold(h) = b.judge(13, 0, 20, GoAhead::UpTo(12)) else {
            panic!("13 > 12 must be held")
        };
        assert_eq!((h.pending, h.allowed), (13, Some(12)));
        assert!(h.message().contains("allow-deletions=13"), "{}", h.message());
        assert!(h.message().contains("allows 12"), "{}", h.message());
        assert_eq!(b.judge(3, 0, 20, GoAhead::None), Verdict::Proceed);
    }

    #[rstest]
    #[case("12", Ok(GoAhead::UpTo(12)))]
    #[case(" 3 ", Ok(GoAhead::UpTo(3)))]
    #[case("0", Err(()))]
    #[case("true", Err(()))]
    #[case("-1", Err(()))]
    fn annotation(#[case] v: &str, #[case] want: Result<GoAhead, ()>) {
        assert_eq!(GoAhead::parse_annotation(v).map_err(|_| ()), want);
    }

    #[test]
    fn the_window_slides() {
        let l = DeletionLedger::new();
        let t0 = Instant::now();
        let w = Duration::from_secs(300);
        l.record("a", 4, t0);
        l.record("a", 3, t0 + Duration::from_secs(200));
        l.record("b", 9, t0);
        assert_eq!(l.recent("a", w, t0 + Duration::from_secs(250)), 7);
        assert_eq!(l.recent("a", w, t0 + Duration::from_secs(301)), 3);
        assert_eq!(l.recent("a", w, t0 + Duration::from_secs(501)), 0);
        assert_eq!(l.recent("b", w, t0), 9);
        l.clear("b");
        assert_eq!(l.recent("b", w, t0), 0);
    }
}
