//! The subcommands that need one cluster, or either: `promote` (DR only), `fence` (production only),
//! `status` and `cleanup` (whichever sides are given and reachable).

use std::{process::ExitCode, sync::Arc};

use dr_syncer_core::{
    Error,
    config::SyncConfig,
    kube::{Client, find_leftovers, remove_leftovers},
    ops::{DrillOptions, OneSide, fence as fence_side, promote as promote_side, status as pair_status},
};
use tokio::sync::watch;

use crate::{
    Args, Exit, confirm, connect_side, load_spec,
    output::{CleanupReport, Printer},
    progress, recorder, resolve_types,
};

/// Which sides a command was pointed at: a side is used when its kubeconfig or context is given; when
/// neither side is, both (from `KUBECONFIG`).
fn sides(args: &Args) -> (bool, bool) {
    let source = args.source_kubeconfig.is_some() || args.source_context.is_some();
    let dest = args.dest_kubeconfig.is_some() || args.dest_context.is_some();
    if source || dest {
        (source, dest)
    } else {
        (true, true)
    }
}

/// The pair's namespaces: production's (`--source-namespace`, else the destination's) and the DR one
/// (`--dest-namespace`, else production's).
fn namespaces(args: &Args) -> anyhow::Result<(Option<String>, String, Arc<SyncConfig>, bool)> {
    let (spec, from_mapping) = load_spec(args)?;
    let source = spec.source_namespace.clone().filter(|s| !s.is_empty());
    let dest = spec
        .destination_namespace
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| source.clone())
        .ok_or_else(|| Exit {
            code: 2,
            message: "--dest-namespace or --source-namespace (or a --mapping naming one) is required".into(),
        })?;
    let mut spec = spec;
    spec.destination_namespace = Some(dest.clone());
    // (A one-sided step may name only the DR namespace; the configuration still validates.)
    spec.source_namespace.get_or_insert_with(|| dest.clone());
    let config = SyncConfig::from_spec(&spec).map_err(Error::from)?;
    Ok((source, dest, Arc::new(config), from_mapping))
}

async fn one_side(
    args: &Args,
    client: Client,
    namespace: &str,
    config: &Arc<SyncConfig>,
    from_mapping: bool,
) -> anyhow::Result<OneSide> {
    let types = resolve_types(&client, args, config, from_mapping).await?;
    Ok(OneSide::new(
        client,
        crate::client_options(args),
        namespace,
        types,
        config.clone(),
    ))
}

/// `promote`: the DR side only.
pub(crate) async fn promote(
    args: &Args,
    options: DrillOptions,
    out: &Printer,
    interrupt: watch::Receiver<bool>,
) -> anyhow::Result<ExitCode> {
    let (source_ns, dest_ns, config, from_mapping) = namespaces(args)?;
    let (client, url) = connect_side(&args.dest_kubeconfig, &args.dest_context).await?;
    let mut side = one_side(args, client, &dest_ns, &config, from_mapping).await?;
    if let Some(ns) = &source_ns {
        side = side.with_pair_namespace(ns.clone());
    }
    if !args.dry_run && !args.yes {
        confirm(&format!(
            "Promote: namespace {dest_ns} on {url} becomes the live site, without contacting production"
        ))?;
    }
    let (progress, _display) = progress::display("promote");
    let side = side
        .with_recorder(recorder())
        .with_progress(progress)
        .with_interrupt(interrupt);
    crate::interrupted(async { out.drill(promote_side(&side, options).await?) }.await)
}

/// `fence`: production only.
pub(crate) async fn fence(
    args: &Args,
    options: DrillOptions,
    out: &Printer,
    interrupt: watch::Receiver<bool>,
) -> anyhow::Result<ExitCode> {
    let (source_ns, _, config, from_mapping) = namespaces(args)?;
    let source_ns = source_ns.ok_or_else(|| Exit {
        code: 2,
        message: "--source-namespace (or a --mapping with sourceNamespace) is required".into(),
    })?;
    let (client, url) = connect_side(&args.source_kubeconfig, &args.source_context).await?;
    let side = one_side(args, client, &source_ns, &config, from_mapping).await?;
    if !args.dry_run && !args.yes {
        confirm(&format!(
            "Fence: quiet the workloads of {source_ns} on {url} and mark it standby"
        ))?;
    }
    let (progress, _display) = progress::display("fence");
    let side = side
        .with_recorder(recorder())
        .with_progress(progress)
        .with_interrupt(interrupt);
    crate::interrupted(async { out.drill(fence_side(&side, options).await?) }.await)
}

/// One side for `status`, or why it cannot be read.
async fn open_side(
    args: &Args,
    path: &Option<std::path::PathBuf>,
    context: &Option<String>,
    ns: &str,
    config: &Arc<SyncConfig>,
    from_mapping: bool,
) -> Result<OneSide, String> {
    let (client, _) = connect_side(path, context)
        .await
        .map_err(|e| crate::error_message(&e))?;
    one_side(args, client, ns, config, from_mapping)
        .await
        .map_err(|e| crate::error_message(&e))
}

/// `status`: whichever sides are given and reachable.
pub(crate) async fn status(args: &Args, out: &Printer) -> anyhow::Result<ExitCode> {
    let (source_ns, dest_ns, config, from_mapping) = namespaces(args)?;
    let source_ns = source_ns.unwrap_or_else(|| dest_ns.clone());
    let (want_source, want_dest) = sides(args);
    let mut errors = Vec::new();
    let mut source = None;
    if want_source {
        match open_side(
            args,
            &args.source_kubeconfig,
            &args.source_context,
            &source_ns,
            &config,
            from_mapping,
        )
        .await
        {
            Ok(s) => source = Some(s),
            Err(e) => errors.push((true, e)),
        }
    }
    let mut dest = None;
    if want_dest {
        match open_side(
            args,
            &args.dest_kubeconfig,
            &args.dest_context,
            &dest_ns,
            &config,
            from_mapping,
        )
        .await
        {
            Ok(d) => dest = Some(d.with_pair_namespace(source_ns.clone())),
            Err(e) => errors.push((false, e)),
        }
    }
    let mut status = pair_status(source.as_ref(), dest.as_ref()).await;
    if status.source.namespace.is_empty() {
        status.source.namespace = source_ns;
    }
    if status.destination.namespace.is_empty() {
        status.destination.namespace = dest_ns;
    }
    for (is_source, e) in errors {
        let side = if is_source {
            &mut status.source
        } else {
            &mut status.destination
        };
        side.error = Some(e);
    }
    out.status(&status)
}

/// `cleanup`: whichever sides are given.
pub(crate) async fn cleanup(args: &Args, out: &Printer) -> anyhow::Result<ExitCode> {
    let (want_source, want_dest) = sides(args);
    let calls = crate::client_options(args).calls();
    let mut found = Vec::new();
    for (label, want, path, context) in [
        (
            "source",
            want_source,
            &args.source_kubeconfig,
            &args.source_context,
        ),
        (
            "destination",
            want_dest,
            &args.dest_kubeconfig,
            &args.dest_context,
        ),
    ] {
        if !want {
            continue;
        }
        let (client, url) = connect_side(path, context).await?;
        let leftovers = find_leftovers(&client, &calls, args.run.as_deref()).await?;
        found.push((label, client, url, leftovers));
    }
    let total: usize = found.iter().map(|f| f.3.len()).sum();
    if total > 0 && !args.dry_run && !args.yes {
        confirm(&format!(
            "Cleanup: delete {total} object(s) left by interrupted dr-syncer-cli runs (make sure no drill is running)"
        ))?;
    }
    let mut reports = Vec::new();
    for (label, client, _url, leftovers) in found {
        let removed = if args.dry_run {
            0
        } else {
            remove_leftovers(&client, &calls, &leftovers).await?
        };
        reports.push(CleanupReport {
            cluster: label.into(),
            leftovers,
            removed,
        });
    }
    out.cleanup(&reports, args.dry_run)
}
