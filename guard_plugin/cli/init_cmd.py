"""``guard-plugin init nemo|langgraph DIR``: write a deployable folder, as shipped, for a user
who installed the package (the wheel carries ``integrations/`` as
``guard_plugin/deployables``; a clone reads ``integrations/`` itself)."""

from __future__ import annotations

import argparse
import json
import shutil
from importlib import resources
from pathlib import Path

from guard_plugin import __version__
from guard_plugin.cli.common import EXIT_OK
from guard_plugin.errors import ConfigError

__all__ = ["deployables", "run"]

_FOLDERS = {"nemo": "nemoguardrails", "langgraph": "langgraph"}
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".langgraph_api")


def deployables() -> Path:
    """The folder of shipped deployables: in the installed package, else in the clone."""
    packaged = Path(str(resources.files("guard_plugin") / "deployables"))
    if packaged.is_dir():
        return packaged
    clone = Path(__file__).resolve().parents[2] / "integrations"
    if clone.is_dir():
        return clone
    raise ConfigError(
        "this installation carries no deployables: install guard-plugin from a wheel or a "
        "clone of the repository (see the README's Install section)"
    )


def run(args: argparse.Namespace) -> int:
    target: Path = args.dir
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not args.force:
        raise ConfigError(f"{target} exists and is not empty; give a new folder or add --force")
    source = deployables() / _FOLDERS[args.kind]
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=_IGNORE)
    if args.kind == "langgraph":
        _standalone_langgraph_json(target / "langgraph.json", args.requirement)
    print(f"wrote {target}: {', '.join(sorted(p.name for p in target.iterdir()))}")
    print(f"next: read {target / 'README.md'}")
    return EXIT_OK


def _standalone_langgraph_json(path: Path, requirement: str | None) -> None:
    """The app folder on its own: guard-plugin and the agent's model client as packages to
    install (``langgraph dockerfile`` / ``build`` / ``up``), not the clone it came from."""
    config = json.loads(path.read_text())
    config["dependencies"] = [
        ".",
        requirement or f"guard-plugin[langchain,langgraph]=={__version__}",
        "langchain-openai>=1.0",
    ]
    path.write_text(json.dumps(config, indent=2) + "\n")
