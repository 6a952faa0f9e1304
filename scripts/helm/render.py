#!/usr/bin/env python3
"""Render a Helm chart offline, like `helm template`, with Helm v4's own engine (no helm binary).

    render.py CHART_DIR --release NAME --namespace NS [-f FILE]... [--set K=V]... [--lint [--strict]]

Prints the rendered manifests on stdout as one multi-document YAML stream ("---" and a
"# Source: CHART/templates/FILE" comment before each object, in Helm's install order: CRDs and RBAC
before the Deployment). NOTES.txt and partials are not printed. Values are composed as Helm does:
the chart's values.yaml, then each -f file in order, then --set-json, --set, --set-string, --set-file.
The composed values are checked against the chart's values.schema.json; --lint also runs Helm's linter
on the chart with those values first.

Exit status: 0 rendered; 1 lint, schema or template error (the message says which, on stderr);
2 bad usage (a missing file, a malformed --set, a missing helm-python-sdk).

Runs on helm-python-sdk (PyPI), which binds Helm's Go SDK built as a C library; scripts/helm/venv.sh
makes a virtualenv with the pinned version:  "$(scripts/helm/venv.sh)/bin/python" scripts/helm/render.py …
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

try:
    import helm_python as helm
except ImportError:  # pragma: no cover - depends on the environment
    sys.stderr.write(
        "render.py: the helm_python module (PyPI helm-python-sdk) is missing; run it with the "
        'virtualenv from scripts/helm/venv.sh: "$(scripts/helm/venv.sh)/bin/python" '
        "scripts/helm/render.py ...\n"
    )
    sys.exit(2)

PROG = "render.py"

# Helm's install order (pkg/release/util/kind_sorter.go, InstallOrder); other kinds come last.
INSTALL_ORDER = [
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
]
KIND_RANK = {kind: i for i, kind in enumerate(INSTALL_ORDER)}

DOC_SEPARATOR = re.compile(r"^---[ \t]*(?:#.*)?$", re.MULTILINE)
TOP_LEVEL_KIND = re.compile(r"^kind:[ \t]*['\"]?([A-Za-z0-9]+)", re.MULTILINE)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class UsageError(Exception):
    """Bad input from the command line (exit status 2)."""


class ChartError(Exception):
    """Lint, schema or template failure (exit status 1)."""


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge `override` into `base` as Helm merges values files: maps recursively, anything else replaced."""
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def compose_values(args: argparse.Namespace) -> dict[str, Any]:
    """The user-supplied values (files, then --set-json, --set, --set-string, --set-file), as Helm does."""
    values: dict[str, Any] = {}
    for name in args.values:
        path = Path(name)
        try:
            text = sys.stdin.read() if name == "-" else path.read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot read values file {name}: {e.strerror}") from e
        try:
            parsed = helm.values_from_yaml(text)
        except helm.HelmError as e:
            raise UsageError(f"values file {name}: {e.detail}") from e
        deep_merge(values, parsed or {})
    setters = [
        ("--set-json", args.set_json, helm.parse_set_json),
        ("--set", args.set, helm.parse_set_string),
        ("--set-string", args.set_string, helm.parse_set_string_values),
        ("--set-file", args.set_file, helm.parse_set_file),
    ]
    for flag, expressions, parse in setters:
        for expression in expressions:
            try:
                deep_merge(values, parse(expression))
            except helm.HelmError as e:
                raise UsageError(f"{flag} {expression!r}: {e.detail}") from e
    return values


def run_lint(chart_dir: Path, values: dict[str, Any], namespace: str, strict: bool) -> None:
    """Helm's linter (`helm lint`): warnings on stderr; errors (or warnings with --strict) fail."""
    report = helm.lint(str(chart_dir), values, namespace=namespace, strict=strict)
    failed = False
    for message in report.get("messages", []):
        severity = message.get("severity", 0)
        if severity < 2:  # unknown/info, e.g. "icon is recommended"
            continue
        label = "ERROR" if severity >= 3 else "WARNING"
        failed = failed or severity >= 3 or strict
        text = str(message.get("error", "")).strip()
        sys.stderr.write(f"{PROG}: lint {label} [{message.get('path', '')}]: {text}\n")
    if failed or report.get("errors"):
        raise ChartError("helm lint failed (see above)")


def split_documents(path: str, text: str) -> list[tuple[str, str]]:
    """The non-empty YAML documents of one rendered template, each with its kind ('' when absent)."""
    documents = []
    for raw in DOC_SEPARATOR.split(text):
        doc = raw.strip("\n")
        meaningful = [
            line for line in doc.splitlines() if line.strip() and not line.lstrip().startswith("#")
        ]
        if not meaningful:
            continue
        match = TOP_LEVEL_KIND.search(doc)
        documents.append((match.group(1) if match else "", doc.rstrip() + "\n"))
    return documents


def render(chart_dir: Path, args: argparse.Namespace, values: dict[str, Any]) -> str:
    with helm.Chart.load(str(chart_dir)) as chart:
        # Validate the composed values (chart defaults + user values) first, for a message that names
        # only the schema; render() validates again, as `helm template` does.
        try:
            chart.validate_schema(chart.merge_values(values))
        except helm.HelmValuesError as e:
            raise ChartError(f"values do not match {chart.name}'s values.schema.json:\n{e.detail.strip()}") from e
        try:
            manifests = chart.render(
                values, name=args.release, namespace=args.namespace, is_install=True
            )
        except helm.HelmValuesError as e:
            raise ChartError(f"values rejected:\n{e.detail.strip()}") from e
        except helm.HelmRenderError as e:
            raise ChartError(f"template error:\n{e.detail.strip()}") from e

    entries = []
    for path in sorted(manifests):
        name = path.rsplit("/", 1)[-1]
        if name == "NOTES.txt" or name.startswith("_"):
            continue
        if args.show_only and not any(
            path == s or path.endswith("/" + s.lstrip("/")) for s in args.show_only
        ):
            continue
        for index, (kind, doc) in enumerate(split_documents(path, manifests[path])):
            rank = KIND_RANK.get(kind, len(INSTALL_ORDER))
            entries.append((rank, path, index, doc))
    if args.show_only and not entries:
        raise ChartError(f"--show-only {', '.join(args.show_only)}: no such template, or it rendered nothing")
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    return "".join(f"---\n# Source: {path}\n{doc}" for _, path, _, doc in entries)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Render a Helm chart offline (like `helm template`) with Helm v4's Go SDK "
        "(helm-python-sdk).",
    )
    parser.add_argument("chart_dir", metavar="CHART_DIR", help="the chart directory")
    parser.add_argument("--release", required=True, metavar="NAME", help="release name")
    parser.add_argument("--namespace", "-n", required=True, metavar="NS", help="release namespace")
    parser.add_argument(
        "--values", "-f", action="append", default=[], metavar="FILE",
        help="a values file (repeatable; later files win; - reads stdin)",
    )
    parser.add_argument("--set", action="append", default=[], metavar="K=V", help="as helm --set")
    parser.add_argument("--set-string", action="append", default=[], metavar="K=V", help="as helm --set-string")
    parser.add_argument("--set-json", action="append", default=[], metavar="K=JSON", help="as helm --set-json")
    parser.add_argument("--set-file", action="append", default=[], metavar="K=PATH", help="as helm --set-file")
    parser.add_argument("--lint", action="store_true", help="run helm lint with these values first")
    parser.add_argument("--strict", action="store_true", help="with --lint: lint warnings are errors")
    parser.add_argument(
        "--show-only", "-s", action="append", default=[], metavar="TEMPLATE",
        help="print only this template's objects (e.g. templates/deployment.yaml; repeatable)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        chart_dir = Path(args.chart_dir)
        if not (chart_dir / "Chart.yaml").is_file():
            raise UsageError(f"{args.chart_dir}: not a chart directory (no Chart.yaml)")
        try:
            helm.validate_release_name(args.release)
        except helm.HelmError as e:
            raise UsageError(f"--release {args.release!r}: {e.detail}") from e
        if not DNS_LABEL.match(args.namespace):
            raise UsageError(f"--namespace {args.namespace!r}: not a valid namespace name (DNS label)")
        values = compose_values(args)
        if args.lint:
            run_lint(chart_dir, values, args.namespace, args.strict)
        out = render(chart_dir, args, values)
    except UsageError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return 2
    except ChartError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return 1
    except helm.HelmError as e:
        sys.stderr.write(f"{PROG}: helm: {type(e).__name__}: {e.detail.strip()}\n")
        return 1
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
