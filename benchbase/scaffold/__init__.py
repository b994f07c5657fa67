"""``benchbase new-plugin``: a complete plugin distribution written from the templates in this package.

``templates/`` holds the files of a plugin that provides every kind. Writing a plugin fills in
``{{name}}``, ``{{package}}``, ``{{distribution}}`` and a few more placeholders, keeps the blocks
``{{#kind}} ... {{/kind}}`` of the kinds asked for, and leaves out the modules and tests of the
others. ``plugins/template/`` is exactly what this writes for the name ``example`` with every kind (a
test keeps them equal): after changing a template, regenerate it with
``benchbase new-plugin example --dest plugins/template --force``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

from benchbase.contract.errors import GridError
from benchbase.contract.kinds import KINDS as ALL_KINDS

#: Every kind a plugin can start with, in the order files and listings show them.
#: The kinds a new plugin package can start with (an executor is rarely a third party's).
KINDS = tuple(kind for kind in ALL_KINDS if kind != "executor")
#: Template files that belong to one kind (written only when it is asked for).
KIND_FILES = {
    "package/datasets.py": "dataset",
    "package/encoders.py": "encoder",
    "package/pretext.py": "pretext",
    "package/rebalancers.py": "rebalancer",
    "package/protocols.py": "protocol",
    "package/metrics.py": "metric",
    "tests/test_datasets.py": "dataset",
    "tests/test_encoders.py": "encoder",
    "tests/test_pretext.py": "pretext",
    "tests/test_rebalancers.py": "rebalancer",
    "tests/test_protocols.py": "protocol",
    "tests/test_metrics.py": "metric",
}
SUFFIX = ".tmpl"
_NAME = re.compile(r"[a-z][a-z0-9]*([_-][a-z0-9]+)*")
_BLOCK = re.compile(r"^\{\{#(\w+)\}\}\n(.*?)^\{\{/\1\}\}\n", re.S | re.M)


def parse_kinds(text: str) -> list[str]:
    """``"dataset,encoder"`` (or ``"all"``) as kinds in canonical order; unknown kinds are an error."""
    asked = [k.strip() for k in text.split(",") if k.strip()]
    if asked == ["all"]:
        return list(KINDS)
    unknown = [k for k in asked if k not in KINDS]
    if unknown or not asked:
        raise GridError(f"--kinds: unknown kind(s) {unknown or [text]}; use 'all' or any of {', '.join(KINDS)}")
    return [k for k in KINDS if k in asked]


def _values(name: str, kinds: Sequence[str]) -> dict[str, str]:
    """What the placeholders stand for. The README's example grid names this plugin's contributions
    where it has them and built-ins elsewhere, so that it runs as written."""
    ident = name.replace("-", "_")

    def quoted(*names: str) -> str:
        return ", ".join(f'"{n}"' for n in names)

    has = set(kinds)
    return {
        "name": name,
        "ident": ident,
        "package": f"benchbase_{ident}",
        "distribution": f"benchbase-{name.replace('_', '-')}",
        "summary": ", ".join(f"an example {kind}" for kind in kinds),
        "grid_dataset": quoted(f"{name}/rings" if "dataset" in has else "qm9/homo_lumo_gap"),
        "grid_protocols": quoted("iid", *([f"{name}-ordered"] if "protocol" in has else [])),
        "grid_encoder": quoted("gin", *([f"{name}-deepsets"] if "encoder" in has else [])),
        "grid_pretext": quoted("none", *([f"{name}-masking"] if "pretext" in has else ["node-masking"])),
        "grid_rebalancer": quoted("none", *([f"{name}-power"] if "rebalancer" in has else [])),
    }


def render(text: str, values: dict[str, str], kinds: Iterable[str]) -> str:
    """Fill in a template: blocks of kinds not asked for go, placeholders are replaced, and runs of
    blank lines that dropped blocks leave are closed up (at most two, none at the end)."""
    chosen = set(kinds)
    text = _BLOCK.sub(lambda m: m.group(2) if m.group(1) in chosen else "", text)
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    leftover = re.search(r"\{\{[^}]*\}\}", text)
    if leftover:  # a template bug, not a user error
        raise ValueError(f"template placeholder {leftover.group(0)} has no value")
    text = re.sub(r"\n{4,}", "\n\n\n", text)
    return text.rstrip("\n") + "\n"


def _templates() -> list[tuple[str, str]]:
    """(relative path without the suffix, text) of every template file."""
    root = resources.files("benchbase.scaffold").joinpath("templates")
    out = []
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                stack.append((entry, f"{prefix}{entry.name}/"))
            elif entry.name.endswith(SUFFIX):
                out.append((prefix + entry.name[: -len(SUFFIX)], entry.read_text()))
    return sorted(out)


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise GridError(
            f"plugin name {name!r} must be lower-case letters and digits, starting with a letter, optionally "
            "joined by '-' or '_' (it becomes the package benchbase_<name> and the prefix of every name)"
        )


def plugin_files(name: str, kinds: Sequence[str]) -> dict[str, str]:
    """Relative path -> text of the plugin distribution `name` with examples of `kinds`."""
    check_name(name)
    values = _values(name, kinds)
    files = {}
    for path, text in _templates():
        if KIND_FILES.get(path, "every plugin") not in (*kinds, "every plugin"):
            continue
        target = path.replace("package/", f"{values['package']}/", 1)
        files[target] = render(text, values, kinds)
    return files


def write_plugin(name: str, kinds: Sequence[str], dest: Path | None = None, force: bool = False) -> Path:
    """Write the plugin distribution into `dest` (default ``./benchbase-<name>``), which must be absent
    or empty unless `force` (then the generated files replace what is there). Returns `dest`."""
    files = plugin_files(name, kinds)
    dest = Path(dest) if dest is not None else Path(_values(name, kinds)["distribution"])
    if dest.exists() and not dest.is_dir():
        raise GridError(f"{dest} exists and is not a directory")
    if dest.is_dir() and any(not p.name.startswith(".") for p in dest.iterdir()) and not force:
        raise GridError(f"{dest} is not empty; choose another --dest, or pass --force to overwrite its files")
    for relative, text in files.items():
        path = dest / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return dest
