//! Rendering reports as tables or JSON (Secret values redacted unless asked otherwise).

use std::process::ExitCode;

use dr_syncer_core::{
    apply::ApplyAction,
    engine::SyncReport,
    ops::{CheckStatus, DrillReport, PairStatus, PreflightReport},
};
use serde::Serialize;

use crate::OutputFormat;

/// Prints reports.
pub(crate) struct Printer {
    format: OutputFormat,
    show_secrets: bool,
}

/// The version of the JSON and YAML documents' shape (`schemaVersion`); raised when a field changes
/// meaning or goes away (new fields do not raise it).
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// The names `-o name` prints for a report: the objects it changed, would change or found different
/// (`Kind/namespace/name`, as in the JSON), else its DR namespaces (`namespace/NAME`).
fn names(report: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, objects: &mut Vec<String>, namespaces: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("changes", serde_json::Value::Array(items)) => objects.extend(
                            items
                                .iter()
                                .filter_map(|c| c["object"].as_str().map(str::to_string)),
                        ),
                        ("destinationNamespace", serde_json::Value::String(ns)) => {
                            namespaces.push(format!("namespace/{ns}"));
                        }
                        _ => walk(v, objects, namespaces),
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    walk(item, objects, namespaces);
                }
            }
            _ => {}
        }
    }
    let (mut objects, mut namespaces) = (Vec::new(), Vec::new());
    walk(report, &mut objects, &mut namespaces);
    let mut out = if objects.is_empty() { namespaces } else { objects };
    out.dedup();
    out
}

/// `diff` as JSON.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Drift {
    in_sync: bool,
    /// On the source, missing on the DR side.
    missing: Vec<String>,
    /// Different on the DR side (content or activation state).
    differing: Vec<String>,
    /// On the DR side (synced by this drill), gone from the source.
    extra: Vec<String>,
    report: SyncReport,
}

/// How fresh a DR copy is, one line each (promote and status).
fn print_freshness(f: &dr_syncer_core::ops::Freshness) {
    match (&f.last_object_sync, f.last_object_sync_age_seconds) {
        (Some(t), Some(age)) => println!(
            "  newest object change synced: {t} ({} ago; later syncs that found nothing to change leave no \
             mark)",
            age_text(age)
        ),
        _ => println!("  newest object change synced: unknown (no dr-syncer.io/last-synced)"),
    }
    match (&f.last_data_copy, f.last_data_copy_age_seconds) {
        (Some(t), Some(age)) => println!("  oldest PVC data copy: {t} ({} ago)", age_text(age)),
        _ => println!("  PVC data copies: none recorded"),
    }
    if !f.never_copied.is_empty() {
        println!("  PVCs never copied: {}", f.never_copied.join(", "));
    }
}

/// `90s`, `5m`, `3h 20m`, `2d 4h`.
fn age_text(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

fn action_name(a: &ApplyAction) -> &'static str {
    match a {
        ApplyAction::Created => "create",
        ApplyAction::Updated => "update",
        ApplyAction::Unchanged => "unchanged",
        ApplyAction::Recreated => "recreate",
        ApplyAction::Skipped(_) => "skip",
        ApplyAction::Deleted => "delete",
    }
}

impl Printer {
    /// A report as JSON, YAML (the same document), or the names of the objects it names (`-o name`).
    /// JSON and YAML documents carry [`SCHEMA_VERSION`] (a list is wrapped as `items`).
    fn structured<T: Serialize>(&self, report: &T) -> anyhow::Result<()> {
        let value = serde_json::to_value(report)?;
        if self.format == OutputFormat::Name {
            for name in names(&value) {
                println!("{name}");
            }
            return Ok(());
        }
        let mut document = serde_json::Map::new();
        document.insert("schemaVersion".into(), SCHEMA_VERSION.into());
        match value {
            serde_json::Value::Object(map) => document.extend(map),
            other => {
                document.insert("items".into(), other);
            }
        }
        let document = serde_json::Value::Object(document);
        match self.format {
            OutputFormat::Yaml => print!("{}", serde_saphyr::to_string(&document)?),
            _ => println!("{}", serde_json::to_string_pretty(&document)?),
        }
        Ok(())
    }

    pub(crate) fn new(format: OutputFormat, show_secrets: bool) -> Self {
        Printer { format, show_secrets }
    }

    fn redact(&self, report: &mut SyncReport) {
        if !self.show_secrets {
            report.redact_secrets();
        }
    }

    /// Print a drill report; exit 6 when objects failed.
    pub(crate) fn drill(&self, mut report: DrillReport) -> anyhow::Result<ExitCode> {
        for r in report
            .sync
            .iter_mut()
            .chain(report.reverse_diff.iter_mut())
            .chain(report.sync_back.iter_mut())
        {
            self.redact(r);
        }
        let failed = report.sync.as_ref().is_some_and(|s| !s.is_success());
        let deletions_held =
            !report.dry_run && report.sync.as_ref().is_some_and(|s| s.deletion_hold.is_some());
        match self.format {
            OutputFormat::Json | OutputFormat::Yaml | OutputFormat::Name => self.structured(&report)?,
            OutputFormat::Table => {
                let verb = if report.dry_run {
                    " (dry run: nothing written)"
                } else {
                    ""
                };
                println!("{}{verb}", report.mode);
                if let Some(diff) = &report.reverse_diff {
                    println!("\nchanged on the DR side since the cutover (DR -> source):");
                    self.changes(diff, true);
                }
                if let Some(back) = &report.sync_back {
                    println!("\ncopied back to the source:");
                    self.changes(back, false);
                }
                if let Some(sync) = &report.sync {
                    self.sync(sync, report.mode == "plan" || report.dry_run);
                }
                if let Some(f) = &report.freshness {
                    println!("\nhow fresh the DR copy is (what this promotion accepts to lose):");
                    print_freshness(f);
                }
                if !report.changes.is_empty() {
                    println!("\nactivation:");
                    for c in &report.changes {
                        println!("  {:<11} {:<13} {}", c.cluster, c.action, c.object);
                    }
                }
                if !report.notes.is_empty() {
                    println!();
                    for n in &report.notes {
                        println!("note: {n}");
                    }
                }
                if report.waited {
                    println!("\nworkloads ready");
                }
            }
        }
        Ok(if failed {
            ExitCode::from(6)
        } else if deletions_held {
            ExitCode::from(10)
        } else {
            ExitCode::SUCCESS
        })
    }

    fn sync(&self, r: &SyncReport, with_diff: bool) {
        println!(
            "\n{} -> {}{}  ({:.2} s)",
            r.source_namespace,
            r.destination_namespace,
            if r.destination_active {
                " [destination active]"
            } else {
                ""
            },
            r.duration.as_secs_f64()
        );
        if let Some(h) = &r.held {
            println!("  held back: {}", h.message);
        }
        if let Some(h) = &r.deletion_hold {
            println!("  deletions held: {}", h.message());
        }
        if !r.removed_types.is_empty() {
            println!(
                "  not pruned: the CustomResourceDefinition of {} is being deleted at the source",
                r.removed_types.join(", ")
            );
        }
        println!(
            "  {:<44} {:>7} {:>7} {:>9} {:>9} {:>7} {:>7} {:>6}",
            "KIND", "CREATED", "UPDATED", "UNCHANGED", "RECREATED", "DELETED", "SKIPPED", "FAILED"
        );
        for (kind, k) in &r.kinds {
            println!(
                "  {kind:<44} {:>7} {:>7} {:>9} {:>9} {:>7} {:>7} {:>6}",
                k.created, k.updated, k.unchanged, k.recreated, k.deleted, k.skipped, k.failed
            );
        }
        self.changes(r, with_diff);
        if !r.failures.is_empty() {
            println!("\nfailed:");
            for f in &r.failures {
                println!("  {} [{}]: {}", f.object, f.kind, f.message);
            }
        }
    }

    fn changes(&self, r: &SyncReport, with_diff: bool) {
        if r.changes.is_empty() {
            println!("  no changes");
            return;
        }
        for c in &r.changes {
            println!("  {:<9} {}", action_name(&c.action), c.object);
            if with_diff {
                for f in c.diff.iter().flat_map(|d| &d.changes) {
                    println!(
                        "      {}: {} -> {}",
                        f.path,
                        f.old.as_deref().unwrap_or("(none)"),
                        f.new.as_deref().unwrap_or("(none)")
                    );
                }
            }
        }
    }

    /// Print a pair's site state.
    pub(crate) fn status(&self, s: &PairStatus) -> anyhow::Result<ExitCode> {
        match self.format {
            OutputFormat::Json | OutputFormat::Yaml | OutputFormat::Name => self.structured(s)?,
            OutputFormat::Table => {
                for (label, side) in [("production", &s.source), ("DR", &s.destination)] {
                    let mut line = format!("{label:<11} {:<24} {}", side.namespace, side.state);
                    if let Some(by) = &side.activated_by {
                        line.push_str(&format!(" (activated by {by})"));
                    }
                    if let Some(since) = &side.since {
                        line.push_str(&format!(" since {since}"));
                    }
                    println!("{line}");
                    if !side.running.is_empty() {
                        println!("            running: {}", side.running.join(", "));
                    }
                    if let Some(e) = &side.error {
                        println!("            unreachable: {e}");
                    }
                }
                if s.both_sites_active {
                    println!(
                        "\nWARNING: BOTH SITES ACTIVE: production runs unfenced while the DR side is active; \
                         quiet one of them (dr-syncer-cli fence)"
                    );
                }
                if let Some(f) = &s.freshness {
                    println!("\nhow fresh the DR copy is:");
                    print_freshness(f);
                }
                println!("\nnext:");
                for n in &s.next {
                    println!("  {:<9} {}", n.step, n.would);
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Print what cleanup found and removed.
    pub(crate) fn cleanup(&self, reports: &[CleanupReport], dry_run: bool) -> anyhow::Result<ExitCode> {
        match self.format {
            OutputFormat::Json | OutputFormat::Yaml | OutputFormat::Name => self.structured(&reports)?,
            OutputFormat::Table => {
                for r in reports {
                    if r.leftovers.is_empty() {
                        println!("{}: nothing left by dr-syncer-cli runs", r.cluster);
                        continue;
                    }
                    let verb = if dry_run { "would delete" } else { "deleted" };
                    println!("{}: {verb} {} object(s)", r.cluster, r.leftovers.len());
                    for l in &r.leftovers {
                        println!("  run {:<16} {:<10} {}/{}", l.run, l.kind, l.namespace, l.name);
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Print preflight checks; exit 8 when one blocks.
    pub(crate) fn preflight(&self, report: &PreflightReport) -> anyhow::Result<ExitCode> {
        match self.format {
            OutputFormat::Json | OutputFormat::Yaml | OutputFormat::Name => self.structured(report)?,
            OutputFormat::Table => {
                println!("preflight");
                for c in &report.checks {
                    let status = match c.status {
                        CheckStatus::Ok => "ok",
                        CheckStatus::Warn => "warn",
                        CheckStatus::Fail => "FAIL",
                    };
                    println!("  {status:<5} {:<28} {}", c.name, c.message);
                }
            }
        }
        Ok(if report.blocks() {
            ExitCode::from(8)
        } else {
            ExitCode::SUCCESS
        })
    }

    /// Print drift; exit 3 when there is any.
    pub(crate) fn diff(&self, mut plan: SyncReport) -> anyhow::Result<ExitCode> {
        self.redact(&mut plan);
        let pick = |a: fn(&ApplyAction) -> bool| -> Vec<String> {
            plan.changes
                .iter()
                .filter(|c| a(&c.action))
                .map(|c| c.object.clone())
                .collect()
        };
        let missing = pick(|a| *a == ApplyAction::Created);
        let differing = pick(|a| matches!(a, ApplyAction::Updated | ApplyAction::Recreated));
        let extra = pick(|a| *a == ApplyAction::Deleted);
        // An active DR side is not compared (it is the live site): not "in sync" either.
        let not_compared = plan.destination_active && plan.held.is_some();
        let in_sync = !not_compared && missing.is_empty() && differing.is_empty() && extra.is_empty();
        match self.format {
            OutputFormat::Json | OutputFormat::Yaml | OutputFormat::Name => self.structured(&Drift {
                in_sync,
                missing,
                differing,
                extra,
                report: plan,
            })?,
            OutputFormat::Table => {
                if let Some(h) = plan.held.as_ref().filter(|_| not_compared) {
                    println!(
                        "not compared: {} -> {}: {}",
                        plan.source_namespace, plan.destination_namespace, h.message
                    );
                } else if in_sync {
                    println!(
                        "in sync: {} -> {}",
                        plan.source_namespace, plan.destination_namespace
                    );
                } else {
                    println!(
                        "drift: {} -> {}",
                        plan.source_namespace, plan.destination_namespace
                    );
                    for (label, list) in [
                        ("missing on DR", &missing),
                        ("differs", &differing),
                        ("extra on DR", &extra),
                    ] {
                        for o in list {
                            println!("  {label:<14} {o}");
                        }
                    }
                    self.changes(&plan, true);
                }
            }
        }
        Ok(if in_sync || not_compared {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        })
    }
}

/// What `cleanup` found and removed on one cluster.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CleanupReport {
    /// `source` or `destination`.
    pub(crate) cluster: String,
    /// What interrupted runs left.
    pub(crate) leftovers: Vec<dr_syncer_core::kube::Leftover>,
    /// How many were deleted.
    pub(crate) removed: usize,
}
