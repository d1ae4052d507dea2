"""`sv-gateway-config render|check [--settings FILE] [-o FILE]` (also `python -m storyverse_gateway_config`).

Without --settings: the repository's generated files, in order (kong.yml's docs route hashes index.html's style):
docs/openapi/storyverse.json and index.html, kong.yml, docs/api.md's route table. `render` rewrites them, `check`
exits 1 naming each stale one.

With --settings FILE (a deployment; gateway-config/examples/production.yaml documents every key): `render` writes
that deployment's kong.yml to -o (`-o -`: standard output); `check` validates the settings and renders them, and with
-o also compares that file. A bad setting is one line on standard error and exit status 2.

--helm-values FILE (repeatable: the chart's values.yaml, then your -f files) takes the `discovery` setting from the
Helm chart's values, with --release and --namespace for its `{release}`/`{namespace}`: the chart's discovery values
are what the rendered upstreams use (the chart refuses a kong.yml whose targets disagree with them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from storyverse_gateway_config import api_table, kong, openapi
from storyverse_gateway_config.discovery import from_helm_values
from storyverse_gateway_config.paths import API_MD, DOCS_HTML, KONG_YML, OPENAPI_DIR, OPENAPI_JSON, REPO
from storyverse_gateway_config.settings import SettingsError, load_settings

COMMAND = "sv-gateway-config render"


def _openapi_files() -> dict[Path, str]:
    doc = openapi.build()
    return {OPENAPI_JSON: openapi.render_json(doc), DOCS_HTML: openapi.render_html(doc)}


def _repo_files() -> dict[Path, str]:
    """kong.yml and the route table after the docs files: the docs route's CSP hashes index.html as on disk."""
    return {KONG_YML: kong.render(load_settings()), API_MD: api_table.render_api_md(API_MD.read_text())}


def _stale(wanted: dict[Path, str]) -> list[Path]:
    return [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def render_repo() -> int:
    OPENAPI_DIR.mkdir(parents=True, exist_ok=True)
    for files in (_openapi_files, _repo_files):
        for path, text in files().items():
            path.write_text(text)
            print(f"wrote {_rel(path)}")
    return 0


def check_repo() -> int:
    stale = _stale(_openapi_files()) + _stale(_repo_files())
    for path in stale:
        print(f"{_rel(path)} is out of date: run {COMMAND}", file=sys.stderr)
    return 1 if stale else 0


def deployment(args: argparse.Namespace) -> int:
    command, settings_file, output = args.command, args.settings, args.output
    overrides = {}
    if args.helm_values:
        try:
            overrides["discovery"] = from_helm_values(args.helm_values, args.release, args.namespace)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
    text = kong.render(load_settings(settings_file, overrides))
    if command == "render":
        if output in (None, "-"):
            sys.stdout.write(text)
        else:
            Path(output).write_text(text)
            print(f"wrote {output}", file=sys.stderr)
        return 0
    if output and _stale({Path(output): text}):
        print(f"{output} is not what these settings render: run {COMMAND} with them -o {output}", file=sys.stderr)
        return 1
    print(f"{settings_file or 'settings'}: valid", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sv-gateway-config", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("render", "check"))
    p.add_argument("--settings", metavar="FILE", help="a deployment's settings (examples/production.yaml)")
    p.add_argument("-o", "--output", metavar="FILE", help="with --settings: the deployment's kong.yml (- = stdout)")
    p.add_argument("--helm-values", metavar="FILE", action="append", help="the chart's values files (discovery)")
    p.add_argument("--release", help="with --helm-values: the Helm release name ({release})")
    p.add_argument("--namespace", help="with --helm-values: the release's namespace ({namespace})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.settings or args.helm_values:
            return deployment(args)
        if args.output:
            print("-o needs --settings (the repository's files have fixed places)", file=sys.stderr)
            return 2
        return render_repo() if args.command == "render" else check_repo()
    except SettingsError as exc:
        print(f"sv-gateway-config: {exc}", file=sys.stderr)
        return 2
