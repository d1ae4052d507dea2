"""Every reference in the repository's documents resolves (issue 19: a document naming what isn't there is a defect).

Documents: README.md, every other Markdown file outside tests/ (docs/**, each package's README, the sv-edge README,
the chart README) and the chart's templates/NOTES.txt. What is checked, line by line:

- repository paths: a token with a slash whose first part is a top-level entry, a package directory or ./ ../, any
  token ending in a slash, and any token with a known extension (.py .md .lua .yml ...). It resolves from the repository
  root, the document's directory, its package (and package/src), or, unless it starts at a top-level entry, as the tail
  of a repository path (`jwt_auth/handler.py`). `<x>`, `{x}` and `*` are wildcards. Skipped: URLs, absolute paths
  (`/api/v1/...`, `/etc/...`), git-ignored places (`.venv/`, `run/`), a file name right after an option (`-f
  my-values.yaml`, `-o kong.prod.yml`: the reader's own file), MIME types and other slashed words without an extension.
- Kong's and kong-python-pdk's source (`kong/runloop/handler.lua`, `mp_rpc.lua`, `kong_pdk/cli.py`): a path that is
  not in this repository is looked up in the Kong 3.9.1 checkout ($KONG_SOURCE, default /work/ref/kong-3.9.1) and the
  kong-python-pdk checkout ($KONG_PDK_SOURCE); where a checkout is absent such paths are not checked, and the test
  says so in a warning listing them.
- Python modules of this repository (`storyverse_plugins.common.identity`, `storyverse_auth.wsgi:app`, any package
  under */src/): the longest module prefix must exist and the next name must be defined in it (and a class's member
  after that); `python -m X` must name a module of the repository (or an installed one).
- `make X` in code: X is a Makefile target.
- commands in code: `flask ...` against the auth service's CLI (FlaskGroup with its app, Flask-Migrate's `db`),
  `sv-ratelimit ...` against the rate limiting service's click group, `sv-gateway-config ...` against its argparse
  parser: each subcommand exists and each option is one the (sub)command takes.
- section citations, in documents and in code (.py .lua .yaml .tpl .toml .sh ...): `docs/X.md §N` (and `§N, §M`
  after it), `architecture §N`, and a bare `§N` inside a Markdown file that numbers its sections, must name an
  existing numbered heading; `DESIGN §N` (the design is docs/architecture.md) is always dangling.
"""

from __future__ import annotations

import ast
import bisect
import fnmatch
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KONG_REF = Path(os.environ.get("KONG_SOURCE", "/work/ref/kong-3.9.1"))
PDK_REF = Path(os.environ.get("KONG_PDK_SOURCE", "/work/ref/kong-python-pdk"))
UNCHECKED: list[str] = []  # Kong/kong-pdk references seen while their checkout is absent

IGNORED_PARTS = {".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", "node_modules", "run", "build"}
EXTENSIONS = "py|md|lua|ya?ml|toml|txt|json|sh|conf|tpl|html|ini|cfg|j2|sql|mako"
EXT_RE = re.compile(rf"\.(?:{EXTENSIONS})$")
_PART = r"(?:[\w.*<>-]|\{[\w.,-]*\})"  # {a,b} alternatives and {x}/<x> placeholders
PATH_RE = re.compile(rf"(?<![\w@:/.$%~#<>{{}}-]){_PART}+(?:/{_PART}*)*")
URL_RE = re.compile(r"[a-z][a-z0-9+.-]*://[^\s)>\]`'\"]*")
OPTION_BEFORE_RE = re.compile(r"(?:\s-{1,2}[\w-]+[ =]|[=>]\s*)$")
CODE_SPAN_RE = re.compile(r"`([^`]+)`")
MAKE_RE = re.compile(r"(?:^|[\s(;&|])make\s+((?:-\S+\s+|\w+=\S*\s+)*)([A-Za-z][\w-]*)")
COMMAND_RE = re.compile(r"(?:^|[\s(;&|/])(flask|sv-ratelimit|sv-gateway-config)((?:\s+[^\s#;&|)`]+|\s+\|(?=\S))*)")
PYTHON_M_RE = re.compile(r"(?:^|[\s(/])python3?(?:\.\d+)?\s+-m\s+([\w.]+)")
SECTION_DOC_RE = re.compile(r"([\w./-]*\w\.md|\barchitecture)\s*§\s*(\d+(?:\.\d+)*)((?:\s*(?:,|and|or)\s*§\s*\d+)*)")
BARE_SECTION_RE = re.compile(r"(?<![\w.])§\s*(\d+(?:\.\d+)*)")
FOREIGN_SECTION_RE = re.compile(r"(?:RFC\s*\d+|Core|OAuth[\s\d.]*|NIST[\w\s.-]*|COPPA|reference's|Kong|\.md)\s*$")
HEADING_NUMBER_RE = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s")
SOURCE_SUFFIXES = {".py", ".lua", ".md", ".yaml", ".yml", ".tpl", ".txt", ".toml", ".sh", ".conf", ".cfg", ".ini"}


@dataclass(frozen=True)
class Line:
    doc: Path
    number: int
    text: str
    fenced: bool
    code: tuple[str, ...]  # the code starting on this line: the fenced line (with its \ continuations), code spans

    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.number}"


# ---------------------------------------------------------------- the tree


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in IGNORED_PARTS and not d.endswith(".egg-info")]
        for name in filenames:
            yield Path(dirpath, name)


@cache
def tree(root: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(files, directories with a trailing slash) relative to root."""
    files = {p.relative_to(root).as_posix() for p in _walk(root)}
    dirs = {"/".join(f.split("/")[:i]) + "/" for f in files for i in range(1, f.count("/") + 1)}
    return frozenset(files), frozenset(dirs)


def documents() -> list[Path]:
    docs = [p for p in _walk(REPO) if p.suffix == ".md" and p.relative_to(REPO).parts[0] != "tests"]
    docs += [p for p in _walk(REPO / "helm") if p.name == "NOTES.txt"]
    return sorted(docs)


def lines(doc: Path, text: str | None = None) -> Iterator[Line]:
    raw = (doc.read_text() if text is None else text).splitlines()
    fenced: list[bool | None] = []  # None: a fence's own marker line
    fence = None
    for content in raw:
        marker = re.match(r"\s*(```+|~~~+)", content)
        if marker and (fence is None or marker.group(1).startswith(fence)):
            fence = marker.group(1) if fence is None else None
            fenced.append(None)
        else:
            fenced.append(fence is not None)
    spans = _code_spans(raw, fenced)
    for index, content in enumerate(raw):
        if fenced[index] is None:
            continue
        code = spans.get(index, ())
        if fenced[index]:
            joined = content
            for follow in range(index + 1, len(raw)):
                if not joined.endswith("\\") or not fenced[follow]:
                    break
                joined = joined[:-1] + " " + raw[follow]
            code = (joined,)
        yield Line(doc, index + 1, content, bool(fenced[index]), tuple(code))


def _code_spans(raw: list[str], fenced: list[bool | None]) -> dict[int, list[str]]:
    """Prose code spans by the line they start on (a span may go on over a line break, not over a blank line)."""
    prose_lines = ["" if fenced[i] is not False else line for i, line in enumerate(raw)]
    prose = "\n".join(prose_lines)
    starts = [0]
    for line in prose_lines:
        starts.append(starts[-1] + len(line) + 1)
    spans: dict[int, list[str]] = {}
    for match in CODE_SPAN_RE.finditer(prose):
        if "\n\n" not in match.group(1):
            spans.setdefault(bisect.bisect_right(starts, match.start()) - 1, []).append(
                match.group(1).replace("\n", " ")
            )
    return spans


def code_of(line: Line) -> tuple[str, ...]:
    return line.code


# ---------------------------------------------------------------- paths


def _matches(pattern: str, root: Path, *, anywhere: bool) -> bool:
    files, dirs = tree(root)
    names = dirs if pattern.endswith("/") else files | {d.rstrip("/") for d in dirs}
    wild = any(c in pattern for c in "*<{")
    if wild:
        glob = re.sub(r"<[^>]*>|\{[^}]*\}", "*", pattern)
        return any(fnmatch.fnmatchcase(n, glob) or (anywhere and fnmatch.fnmatchcase(n, "*/" + glob)) for n in names)
    if pattern in names:
        return True
    return anywhere and any(n.endswith("/" + pattern) for n in names)


def _ignored(rel: str) -> bool:
    return any(part in IGNORED_PARTS or part.endswith((".egg-info", ".sock")) for part in rel.split("/"))


def _bases(doc: Path) -> list[Path]:
    rel = doc.relative_to(REPO)
    package = REPO / rel.parts[0] if len(rel.parts) > 1 else REPO
    return [REPO, doc.parent, package, package / "src"]


def _in_refs(ref: str) -> bool | None:
    """True/False from Kong's or kong-python-pdk's checkout; None when the one it would be in is absent."""
    ref_root = PDK_REF if ref.startswith("kong_pdk") or "/kong_pdk/" in ref else KONG_REF
    if not ref_root.is_dir():
        return None
    return _matches(ref, ref_root, anywhere=True)


def _expand(ref: str) -> list[str]:
    """test_{a,b}.py -> test_a.py, test_b.py (as the shell does)."""
    match = re.search(r"\{([^{}]*,[^{}]*)\}", ref)
    if not match:
        return [ref]
    return [x for alt in match.group(1).split(",") for x in _expand(ref[: match.start()] + alt + ref[match.end() :])]


def _top(part: str) -> bool:
    return part in {p.split("/")[0] for p in tree(REPO)[0]} or part in package_dirs()


def _placeholder(part: str) -> bool:
    return part.startswith(("<", "{")) or re.fullmatch(r"[A-Z][A-Z0-9_]*(?:\.\w+)?|\d[\d.]*", part) is not None


def _attribute_of_file(ref: str, line: Line) -> bool:
    """tests/e2e/e2e_support.render_kong_yml: a name defined in a file of the repository."""
    head, _, last = ref.rpartition("/")
    stem, _, attribute = last.partition(".")
    for base in _bases(line.doc):
        source = base / head / f"{stem}.py"
        if attribute and source.is_file():
            return attribute.split(".")[0] in defined_names(source)[""]
    return False


@cache
def _source_text() -> str:
    """The product's source and chart templates: file names the code itself writes (a ConfigMap's fluent-bit.conf)."""
    paths = [*REPO.glob("*/src/**/*.py"), *REPO.glob("helm/**/templates/**/*")]
    return "\n".join(p.read_text(errors="replace") for p in paths if p.is_file())


def check_path(token: str, line: Line, before: str) -> str | None:
    """Why token (a path-like word of line) dangles, or None."""
    ref = token if token.endswith("..") else token.rstrip(".")
    parts = [p for p in ref.split("/") if p]
    if not parts or ref.endswith("...") or _placeholder(parts[0]) or _placeholder(parts[-1]):
        return None
    strong = parts[0] in (".", "..") or _top(parts[0])
    if not (strong or ref.endswith("/") or EXT_RE.search(parts[-1])):
        return None  # application/json, RS256/ES256, A/B: not a path
    if not strong and OPTION_BEFORE_RE.search(before):
        return None  # -f my-values.yaml, --set-file x=deploy/kong.prod.yml: the reader's own file
    for alternative in _expand(ref):
        why = _check_one(alternative, line)
        if why:
            return why
    return None


def _check_one(ref: str, line: Line) -> str | None:
    parts = [p for p in ref.split("/") if p]
    relative = parts[0] in (".", "..")
    for base in [line.doc.parent] if relative else _bases(line.doc):
        rel = os.path.relpath(os.path.normpath(base / ref), REPO)
        if rel.startswith(".."):
            continue
        if _ignored(rel):
            return None
        if _matches(rel + ("/" if ref.endswith("/") else ""), REPO, anywhere=False):
            return None
    if _attribute_of_file(ref, line):
        return None
    if relative or ("/" in ref.rstrip("/") and _top(parts[0]) and parts[0] not in package_dirs()):
        return "no such file or directory"
    if _matches(ref.lstrip("./"), REPO, anywhere=True):
        return None
    found = _in_refs(ref)
    if found is None and (parts[0] in ("kong", "kong_pdk", "spec") or ref.endswith(".lua")):
        UNCHECKED.append(f"{line.where()} {ref}")
        return None
    if (
        not found
        and len(parts) == 1
        and re.search(rf"[\"']{re.escape(ref)}[\"']|^\s*{re.escape(ref)}:", _source_text(), re.M)
    ):
        return None
    return None if found else "no such file or directory"


def path_problems(line: Line) -> Iterator[tuple[str, str]]:
    text = URL_RE.sub(" ", line.text)
    for match in PATH_RE.finditer(text):
        token = match.group(0)
        if "/" not in token and not EXT_RE.search(token.rstrip(".")):
            continue
        why = check_path(token, line, text[: match.start()])
        if why:
            yield token.rstrip("."), why


# ---------------------------------------------------------------- Python modules


@cache
def package_dirs() -> dict[str, Path]:
    """Top-level Python packages of the repository: name -> the directory holding it."""
    found = {p.parent.name: p.parent.parent for p in REPO.glob("*/src/*/__init__.py")}
    found.update({p.parent.name: REPO for p in REPO.glob("*/__init__.py") if p.parent.name != "tests"})
    return found


@cache
def defined_names(source: Path) -> dict[str, frozenset[str]]:
    """Top-level names of a module; for each class, also 'Class' -> its members."""
    names: dict[str, frozenset[str]] = {}
    top: set[str] = set()
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            top.add(node.name)
            if isinstance(node, ast.ClassDef):
                names[node.name] = frozenset(_assigned(node.body))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            top.update((a.asname or a.name).split(".")[0] for a in node.names)
        else:
            top.update(_assigned([node]))
    names[""] = frozenset(top)
    return names


def _assigned(body: list[ast.stmt]) -> Iterator[str]:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets:
            for name in ast.walk(target) if target is not None else ():
                if isinstance(name, ast.Name):
                    yield name.id


def _module_file(parts: list[str]) -> Path | None:
    base = package_dirs().get(parts[0])
    if base is None:
        return None
    path = base.joinpath(*parts)
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path if path.is_dir() else None


def check_module(ref: str) -> str | None:
    parts = re.split(r"[.:]", ref.rstrip("()"))
    for cut in range(len(parts), 0, -1):
        source = _module_file(parts[:cut])
        if source is None:
            continue
        rest = parts[cut:]
        if not rest or source.is_dir():
            return None if not rest else f"{'.'.join(parts[:cut])} has no module {rest[0]}"
        names = defined_names(source)
        if rest[0] not in names[""]:
            return f"{'.'.join(parts[:cut])} defines no {rest[0]}"
        if len(rest) > 1 and rest[0] in names and rest[1] not in names[rest[0]]:
            return f"{'.'.join(parts[: cut + 1])} has no member {rest[1]}"
        return None
    return f"no package {parts[0]}" if parts[0].startswith("storyverse_") else None


def module_problems(line: Line) -> Iterator[tuple[str, str]]:
    names = "|".join(sorted(package_dirs(), key=len, reverse=True))
    pattern = rf"(?<![\w./-])(?:(?:{names})|storyverse_\w+)(?:[.:][A-Za-z_]\w*)*(?:\(\))?"
    text = URL_RE.sub(" ", line.text)
    for match in re.finditer(pattern, text):
        ref = match.group(0)
        if text[match.end() : match.end() + 1] == "/" or EXT_RE.search(ref):
            continue  # a path (storyverse_auth/tokens/), checked as one
        if re.search(rf"[\"']{re.escape(ref)}[\"']", _source_text()):
            continue  # a name the code uses as a string: a logger's (storyverse_auth.access)
        why = check_module(ref)
        if why:
            yield ref, why
    for code in code_of(line):
        for module in PYTHON_M_RE.findall(code):
            if module.split(".")[0] in package_dirs():
                why = check_module(module)
            else:
                why = None if _installed(module) else "no such module"
            if why:
                yield f"python -m {module}", why


def _installed(module: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# ---------------------------------------------------------------- make targets and commands


@cache
def make_targets() -> frozenset[str]:
    text = (REPO / "Makefile").read_text()
    return frozenset(re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", text, re.M))


def make_problems(line: Line) -> Iterator[tuple[str, str]]:
    for code in code_of(line):
        for _, target in MAKE_RE.findall(code):
            if target not in make_targets():
                yield f"make {target}", "no such Makefile target"


@dataclass(frozen=True)
class Spec:
    """A command's options (name -> takes a value) and subcommands (None: takes positional arguments instead)."""

    options: dict[str, bool]
    commands: dict[str, Spec] | None


def _click_spec(command, ctx) -> Spec:
    import click

    options = {"--help": False}
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in [*param.opts, *param.secondary_opts]:
                options[opt] = not (param.is_flag or param.count)
    if not isinstance(command, click.Group):
        return Spec(options, None)
    return Spec(options, {n: _click_spec(command.get_command(ctx, n), ctx) for n in command.list_commands(ctx)})


@cache
def command_specs() -> dict[str, Spec]:
    import click
    from flask.cli import FlaskGroup, ScriptInfo
    from storyverse_auth import create_app
    from storyverse_gateway_config.cli import parser
    from storyverse_ratelimit.cli import main as ratelimit_main

    def factory():
        return create_app({"TESTING": True})

    flask_group = FlaskGroup(create_app=factory, load_dotenv=False)
    with click.Context(flask_group, obj=ScriptInfo(create_app=factory)) as ctx:
        flask = _click_spec(flask_group, ctx)
    flask.options.update({"--app": True, "-A": True, "--env-file": True, "-e": True, "--debug": False})
    with click.Context(ratelimit_main) as ctx:
        ratelimit = _click_spec(ratelimit_main, ctx)
    argp = parser()
    options = {opt: action.nargs != 0 for action in argp._actions for opt in action.option_strings}
    choices = next(a.choices for a in argp._actions if not a.option_strings and a.choices)
    gateway = Spec(options, {c: Spec(options, None) for c in choices})
    return {"flask": flask, "sv-ratelimit": ratelimit, "sv-gateway-config": gateway}


def check_command(program: str, args: list[str]) -> str | None:
    spec, words, skip = command_specs()[program], [program], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("[", "...", "…") or arg.startswith(("[", "<", "$", "{", "'", '"')):
            break  # a synopsis' optional part, or the reader's value
        if arg.startswith("-"):
            name = arg.split("=")[0]
            if name not in spec.options:
                return f"{' '.join(words)} takes no option {name}"
            skip = spec.options[name] and "=" not in arg
            continue
        if spec.commands is None:
            continue  # a positional argument
        for alternative in arg.replace("\\|", "|").split("|"):
            if alternative not in spec.commands:
                return f"{' '.join(words)} has no command {alternative}"
        spec = spec.commands[arg.replace("\\|", "|").split("|")[0]]
        words.append(arg)
    return None


def command_problems(line: Line) -> Iterator[tuple[str, str]]:
    for code in code_of(line):
        for program, rest in COMMAND_RE.findall(code.replace("\\|", "|")):
            args = rest.split()
            why = check_command(program, args)
            if why:
                yield f"{program} {' '.join(args)}".strip(), why


# ---------------------------------------------------------------- sections


@cache
def sections(doc: Path, text: str | None = None) -> frozenset[str]:
    found = set()
    for line in lines(doc, text):
        match = HEADING_NUMBER_RE.match(line.text)
        if match and not line.fenced:
            found.add(match.group(1))
    return frozenset(found)


def _cited_doc(name: str, source: Path) -> Path | None:
    if name == "architecture":
        return REPO / "docs/architecture.md"
    for base in (REPO, source.parent):
        if (base / name).is_file():
            return (base / name).resolve()
    candidates = [p for p in documents() if p.name == Path(name).name]
    return candidates[0] if len(candidates) == 1 else None


def section_problems(source: Path, text: str) -> Iterator[tuple[int, str, str]]:
    for number, line in enumerate(text.splitlines(), 1):
        if re.search(r"\bDESIGN(?:\.md)?\s*§", line):
            yield number, re.search(r"DESIGN(?:\.md)?\s*§\s*[\d.]*", line).group(0), "no DESIGN document"
        for match in SECTION_DOC_RE.finditer(line):
            doc = _cited_doc(match.group(1), source)
            numbers = [match.group(2), *re.findall(r"§\s*(\d+(?:\.\d+)*)", match.group(3))]
            for n in numbers:
                if doc is None:
                    yield number, f"{match.group(1)} §{n}", "no such document"
                elif n not in sections(doc):
                    yield number, f"{match.group(1)} §{n}", f"{doc.relative_to(REPO)} has no section {n}"
        if source.suffix == ".md" and sections(source, text):
            for match in BARE_SECTION_RE.finditer(line):
                head = line[: match.start()]
                if not FOREIGN_SECTION_RE.search(head) and not re.search(r"(?:md|architecture)\s*§[\d.\s,§]*$", head):
                    if match.group(1) not in sections(source, text):
                        yield number, f"§{match.group(1)}", f"{source.name} has no section {match.group(1)}"


def source_files() -> list[Path]:
    names = {"Makefile", "NOTES.txt"}
    this = Path(__file__).resolve()
    return [p for p in _walk(REPO) if (p.suffix in SOURCE_SUFFIXES or p.name in names) and p != this]


# ---------------------------------------------------------------- the tests


def dangling_in(doc: Path, text: str | None = None) -> list[str]:
    found = []
    for line in lines(doc, text):
        for check in (path_problems, module_problems, make_problems, command_problems):
            found += [f"{line.where()} → {ref} ({why})" for ref, why in check(line)]
    return found


def test_documents_name_only_what_exists():
    UNCHECKED.clear()
    dangling = [problem for doc in documents() for problem in dangling_in(doc)]
    assert not dangling, f"{len(dangling)} dangling references:\n" + "\n".join(dangling)
    if UNCHECKED:  # no Kong / kong-python-pdk checkout here: say what went unchecked, never pass it silently
        names = f"{len(UNCHECKED)} Kong source references not checked (no checkout at {KONG_REF})"
        warnings.warn(f"{names}: {UNCHECKED}", stacklevel=1)


def test_section_citations_name_existing_sections():
    dangling = [
        f"{path.relative_to(REPO)}:{number} → {ref} ({why})"
        for path in source_files()
        for number, ref, why in section_problems(path, path.read_text(errors="replace"))
    ]
    assert not dangling, f"{len(dangling)} dangling section citations:\n" + "\n".join(dangling)


# ---------------------------------------------------------------- the checker itself


PROBE = REPO / "docs" / "probe.md"  # a document that would sit in docs/ (never written)


def test_checker_reports_each_kind_of_dangling_reference():
    text = (
        "See `scripts/gen_kong_yml.py`, kong-plugins/src/storyverse_plugins/jwt_auth/nothing.py, [x](../nothing.md).\n"
        "`storyverse_plugins.common.identity.NO_SUCH_NAME` and `storyverse_nothing.x`; `python -m bench.nope`\n"
        "Run `make no-such-target`, `flask keys spin`, `flask privacy purge --nope`, `sv-gateway-config lint`.\n"
        "`sv-ratelimit sync --all`, then docs/architecture.md §99.\n"
    )
    found = "\n".join(dangling_in(PROBE, text) + [r for _, r, _ in section_problems(PROBE, text)])
    for ref in (
        "scripts/gen_kong_yml.py",
        "jwt_auth/nothing.py",
        "../nothing.md",
        "NO_SUCH_NAME",
        "storyverse_nothing.x",
        "bench.nope",
        "docs/probe.md:3 → make no-such-target",
        "flask keys spin",
        "--nope",
        "sv-gateway-config lint",
        "sv-ratelimit sync --all",
        "docs/architecture.md §99",
    ):
        assert ref in found, ref


def test_checker_accepts_what_exists_and_what_is_not_a_reference():
    text = (
        "`kong-plugins/kong/plugins/sv-edge/`, `jwt_auth/handler.py`, ../README.md, `docs/benchmarks*.md`,\n"
        "`storyverse_plugins/<plugin>/`, https://example.com/a/b.py, `/api/v1/stories`, application/problem+json,\n"
        "`storyverse_auth.create_app`, `make kong-validate`, `flask keys rotate`, `flask db upgrade`,\n"
        "`sv-gateway-config render --settings FILE -o kong.prod.yml`, `helm install -f my-values.yaml`,\n"
        "`.venv/bin/flask`, `run/emulator.log`, docs/architecture.md §1, `python -m kong_emulator -c kong.conf`.\n"
    )
    assert dangling_in(PROBE, text) == []
    assert list(section_problems(PROBE, text)) == []
