//! Progress on stderr: a bar when stderr is a terminal, plain lines otherwise (logs, CI, pipes).

use std::{
    io::IsTerminal,
    sync::{Arc, Mutex},
    time::Duration,
};

use dr_syncer_core::engine::{Progress, ProgressFn};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress display of one CLI run; cleared when dropped.
#[derive(Debug)]
pub(crate) struct Display {
    bar: Option<ProgressBar>,
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
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
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} objects {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
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
        _ => {}
    });
    (f, Display { bar: Some(bar) })
}

/// Plain lines: the number of objects, each quarter done, and every drill step.
fn lines(label: &str) -> (ProgressFn, Display) {
    let label = label.to_owned();
    let last_quarter = Mutex::new(0usize);
    let f: ProgressFn = Arc::new(move |event: &Progress| match event {
        Progress::Planned { total } => {
            *last_quarter.lock().unwrap_or_else(|p| p.into_inner()) = 0;
            eprintln!("[{label}] {total} objects to apply");
        }
        Progress::Applied { done, total, .. } => {
            let quarter = done * 4 / (*total).max(1);
            let mut last = last_quarter.lock().unwrap_or_else(|p| p.into_inner());
            if quarter > *last {
                *last = quarter;
                eprintln!("[{label}] applied {done}/{total} objects");
            }
        }
        Progress::Step { name } => eprintln!("[{label}] {name}"),
        _ => {}
    });
    (f, Display { bar: None })
}
