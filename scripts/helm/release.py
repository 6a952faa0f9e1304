#!/usr/bin/env python3
"""Install, upgrade and uninstall a Helm release with Helm v4's own SDK (no helm binary), like the helm CLI.

    release.py upgrade RELEASE CHART_DIR --namespace NS [--install] [--create-namespace] [-f FILE]... [--set K=V]...
    release.py install RELEASE CHART_DIR --namespace NS [--create-namespace] [-f FILE]... [--set K=V]...
    release.py uninstall RELEASE --namespace NS [--ignore-not-found]
    release.py status RELEASE --namespace NS

Each is the helm command of the same name (`helm upgrade --install …`), run through helm-python-sdk,
which binds Helm's Go SDK built as a C library: the release is stored in the cluster as Helm stores it
(Secrets `sh.helm.release.v1.RELEASE.vN`), so a real helm binary can take it over later. Values are
composed as render.py composes them (the chart's values.yaml, -f files, --set-json, --set, --set-string,
--set-file). The cluster comes from --kubeconfig, else KUBECONFIG, else ~/.kube/config.

Prints one JSON line: {"name", "namespace", "revision", "status"} (uninstall: {"name", "uninstalled"}).
Exit status: 0 done; 1 Helm refused or failed (its message on stderr); 2 bad usage.

    "$(scripts/helm/venv.sh)/bin/python" scripts/helm/release.py upgrade dr-syncer charts/dr-syncer \\
        --install --namespace dr-syncer --create-namespace
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import render  # noqa: E402  (render.py beside this file: value composition and its errors)

helm = render.helm
PROG = "release.py"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Helm release operations with Helm v4's Go SDK (helm-python-sdk)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("release", metavar="RELEASE", help="release name")
        p.add_argument("--namespace", "-n", required=True, metavar="NS", help="release namespace")
        p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: KUBECONFIG, ~/.kube/config)")
        p.add_argument("--timeout", type=int, default=300, metavar="SECONDS", help="per operation (default 300)")

    def chart(p: argparse.ArgumentParser) -> None:
        p.add_argument("chart_dir", metavar="CHART_DIR", help="the chart directory")
        p.add_argument("--values", "-f", action="append", default=[], metavar="FILE", help="a values file")
        p.add_argument("--set", action="append", default=[], metavar="K=V", help="as helm --set")
        p.add_argument("--set-string", action="append", default=[], metavar="K=V", help="as helm --set-string")
        p.add_argument("--set-json", action="append", default=[], metavar="K=JSON", help="as helm --set-json")
        p.add_argument("--set-file", action="append", default=[], metavar="K=PATH", help="as helm --set-file")
        p.add_argument("--create-namespace", action="store_true", help="create the namespace if missing")
        p.add_argument(
            "--force-conflicts", action="store_true",
            help="server-side apply takes over fields another manager owns (Helm 4's --force-conflicts)",
        )
        p.add_argument(
            "--take-ownership", action="store_true",
            help="adopt existing objects that carry no Helm ownership (Helm's --take-ownership)",
        )

    up = sub.add_parser("upgrade", help="upgrade a release (with --install: install it if missing)")
    common(up)
    chart(up)
    up.add_argument("--install", "-i", action="store_true", help="install when the release does not exist")
    inst = sub.add_parser("install", help="install a release")
    common(inst)
    chart(inst)
    un = sub.add_parser("uninstall", help="uninstall a release (resources marked keep stay)")
    common(un)
    un.add_argument("--ignore-not-found", action="store_true", help="no error when the release is absent")
    st = sub.add_parser("status", help="a release's status")
    common(st)
    return parser.parse_args(argv)


def summary(release: dict) -> dict:
    return {key: release.get(key) for key in ("name", "namespace", "revision", "status")}


def apply_release(cfg: "helm.Config", chart: "helm.Chart", args: argparse.Namespace, values: dict, install: bool) -> dict:
    """helm install / helm upgrade. Config.install/upgrade of helm-python-sdk 0.2.2 (pinned by venv.sh) do
    not pass Helm's force_conflicts and take_ownership options, which its C library accepts; this is the
    same native call with them added."""
    from helm_python import _native
    from helm_python.config import _loads_obj

    options = {"namespace": args.namespace, "timeout_seconds": args.timeout}
    if install and args.create_namespace:
        options["create_namespace"] = True
    if args.force_conflicts:
        options["force_conflicts"] = True
    if args.take_ownership:
        options["take_ownership"] = True
    payload = _native.call_string(
        "helm_install" if install else "helm_upgrade",
        cfg._raw(),
        cfg._context_arg(None),
        chart._raw(),
        None,
        args.release,
        json.dumps(values),
        json.dumps(options),
    )
    return _loads_obj(payload)


def exists(cfg: "helm.Config", name: str) -> bool:
    try:
        cfg.status(name)
        return True
    except helm.HelmNotFoundError:
        return False


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        helm.validate_release_name(args.release)
        if not render.DNS_LABEL.match(args.namespace):
            raise render.UsageError(f"--namespace {args.namespace!r}: not a valid namespace name (DNS label)")
        values = None
        if args.command in ("install", "upgrade"):
            if not (Path(args.chart_dir) / "Chart.yaml").is_file():
                raise render.UsageError(f"{args.chart_dir}: not a chart directory (no Chart.yaml)")
            values = render.compose_values(args)
        cfg = helm.Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace)
        if args.command == "status":
            out = summary(cfg.status(args.release))
        elif args.command == "uninstall":
            if args.ignore_not_found and not exists(cfg, args.release):
                out = {"name": args.release, "uninstalled": False}
            else:
                cfg.uninstall(args.release, timeout=args.timeout)
                out = {"name": args.release, "uninstalled": True}
        else:
            with helm.Chart.load(args.chart_dir) as chart:
                install = args.command == "install" or (args.install and not exists(cfg, args.release))
                release = apply_release(cfg, chart, args, values, install)
            out = summary(release)
    except render.UsageError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return 2
    except helm.HelmError as e:
        sys.stderr.write(f"{PROG}: helm: {type(e).__name__}: {e.detail.strip()}\n")
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
