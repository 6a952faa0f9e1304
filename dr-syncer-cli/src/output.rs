//! Rendering reports as tables or JSON (Secret values redacted unless asked otherwise).

use std::process::ExitCode;

use dr_syncer_core::{
    apply::ApplyAction,
    engine::SyncReport,
    kube::{CheckStatus, DrillReport, PreflightReport},
};
use serde::Serialize;

use crate::OutputFormat;

/// Prints reports.
pub(crate) struct Printer {
    format: OutputFormat,
    show_secrets: bool,
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
        match self.format {
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
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
                if !report.changes.is_empty() {
                    println!("\nactivation:");
                    for c in &report.changes {
                        println!("  {:<11} {:<12} {}", c.cluster, c.action, c.object);
                    }
                }
                if report.waited {
                    println!("\nworkloads ready");
                }
            }
        }
        Ok(if failed {
            ExitCode::from(6)
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

    /// Print preflight checks; exit 8 when one blocks.
    pub(crate) fn preflight(&self, report: &PreflightReport) -> anyhow::Result<ExitCode> {
        match self.format {
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(report)?),
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
        let in_sync = missing.is_empty() && differing.is_empty() && extra.is_empty();
        match self.format {
            OutputFormat::Json => println!(
                "{}",
                serde_json::to_string_pretty(&Drift {
                    in_sync,
                    missing,
                    differing,
                    extra,
                    report: plan,
                })?
            ),
            OutputFormat::Table => {
                if in_sync {
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
        Ok(if in_sync {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        })
    }
}
