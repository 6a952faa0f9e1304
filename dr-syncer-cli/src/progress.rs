//! Progress on stderr: a bar when stderr is a terminal, plain lines otherwise (logs, CI, pipes).

use std::{
    io::IsTerminal,
    sync::{Arc, Mutex},
    time::Duration,
};

use dr_syncer_core::{
    engine::{Progress, ProgressFn},
    ops::PvcSyncStage,
};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress display of one CLI run; cleared when dropped.
#[derive(Debug)]
pub(crate) struct Display {
    bar: Option<ProgressBar>,
    volumes: Arc<Mutex<std::collections::BTreeMap<String, ProgressBar>>>,
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        for bar in self.volumes.lock().unwrap_or_else(|p| p.into_inner()).values() {
            bar.finish_and_clear();
        }
    }
}

/// What the object count means for subcommand `label`: `plan` and `diff` compare, the others apply.
fn verb(label: &str) -> &'static str {
    if matches!(label, "plan" | "diff") {
        "compared"
    } else {
        "applied"
    }
}

/// The callback for the drill and its display, for the subcommand `label` (`stage`, `cutover` …).
pub(crate) fn display(label: &str) -> (ProgressFn, Display) {
    if std::io::stderr().is_terminal() {
        bar(label)
    } else {
        lines(label)
    }
}

fn bar(label: &str) -> (ProgressFn, Display) {
    // One bar for the objects, one more per PVC being copied (several copy at once).
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let bar = multi.add(ProgressBar::new(0));
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} objects {} {{wide_msg}}",
            verb(label)
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    let volumes: Arc<Mutex<std::collections::BTreeMap<String, ProgressBar>>> = Arc::default();
    let pvc_bars = volumes.clone();
    let volume_style = ProgressStyle::with_template("  {prefix} [{bar:30}] {pos:>3}% {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let handle = bar.clone();
    let f: ProgressFn = Arc::new(move |event: &Progress| match event {
        Progress::Planned { total } => {
            handle.set_length(*total as u64);
            handle.set_position(0);
        }
        Progress::Applied { done, object, .. } => {
            handle.set_position(*done as u64);
            handle.set_message(object.clone());
        }
        Progress::Step { name } => {
            handle.println(format!("{} {name}", handle.prefix()));
            handle.set_message(name.clone());
        }
        Progress::Data { pvc, stage } => match stage {
            PvcSyncStage::Moving(p) => {
                let mut bars = pvc_bars.lock().unwrap_or_else(|p| p.into_inner());
                let volume = bars.entry(pvc.clone()).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new(100));
                    b.set_style(volume_style.clone());
                    b.set_prefix(pvc.clone());
                    b
                });
                volume.set_position(u64::from(p.percent));
                volume.set_message(format!(
                    "{} at {}/s{}",
                    human_bytes(p.bytes),
                    human_bytes(p.bytes_per_second as u64),
                    p.remaining_seconds
                        .map(|s| format!(", {s} s left"))
                        .unwrap_or_default()
                ));
            }
            other => {
                if let Some(done) = pvc_bars.lock().unwrap_or_else(|p| p.into_inner()).remove(pvc) {
                    done.finish_and_clear();
                }
                let _ = multi.println(format!("{} {pvc}: {}", handle.prefix(), stage_text(other)));
            }
        },
        _ => {}
    });
    (
        f,
        Display {
            bar: Some(bar),
            volumes,
        },
    )
}

/// Plain lines: the number of objects, each quarter done, and every drill step.
fn lines(label: &str) -> (ProgressFn, Display) {
    let label = label.to_owned();
    let last_quarter = Mutex::new(0usize);
    let last_data: Mutex<std::collections::HashMap<String, (u32, u8)>> = Mutex::new(Default::default());
    let f: ProgressFn = Arc::new(move |event: &Progress| match event {
        Progress::Planned { total } => {
            *last_quarter.lock().unwrap_or_else(|p| p.into_inner()) = 0;
            let todo = if verb(&label) == "compared" {
                "compare"
            } else {
                "apply"
            };
            eprintln!("[{label}] {total} objects to {todo}");
        }
        Progress::Applied { done, total, .. } => {
            let quarter = done * 4 / (*total).max(1);
            let mut last = last_quarter.lock().unwrap_or_else(|p| p.into_inner());
            if quarter > *last {
                *last = quarter;
                eprintln!("[{label}] {} {done}/{total} objects", verb(&label));
            }
        }
        Progress::Step { name } => eprintln!("[{label}] {name}"),
        Progress::Data { pvc, stage } => {
            // Progress lines at most every 10 % of each copy (a drill copies a volume more than once).
            let mut last = last_data.lock().unwrap_or_else(|p| p.into_inner());
            if let PvcSyncStage::Moving(p) = stage {
                // (A retry starts its own count.)
                let tenth = (p.attempt, p.percent / 10);
                if last.get(pvc) == Some(&tenth) {
                    return;
                }
                last.insert(pvc.clone(), tenth);
            } else {
                last.remove(pvc);
            }
            drop(last);
            eprintln!("[{label}] {pvc}: {}", stage_text(stage));
        }
        _ => {}
    });
    (
        f,
        Display {
            bar: None,
            volumes: Arc::default(),
        },
    )
}

fn stage_text(stage: &PvcSyncStage) -> String {
    match stage {
        PvcSyncStage::Mounting => "no pod mounts the volume: starting a read-only mount pod".into(),
        PvcSyncStage::Starting { node } => format!("mover started, reading on node {node}"),
        PvcSyncStage::Moving(p) => format!(
            "{}% ({} at {}/s)",
            p.percent,
            human_bytes(p.bytes),
            human_bytes(p.bytes_per_second as u64)
        ),
    }
}

/// `1.5 GiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
