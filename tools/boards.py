"""Board files and configs on the host: find, load and refuse bad ones, naming the field.

The rules live in the firmware's ``alarmpost.settings``; this module only finds
files and turns errors into a refusal.

    python -m tools.boards check boards/*.json
    python -m tools.boards check-config my-config.json --board rpi_pico
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from alarmpost import settings
from tools.paths import BOARDS_DIR


class SettingsError(ValueError):
    """A board file or config that the host refuses; ``errors`` name each bad field."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        lines = "\n  ".join(errors)
        super().__init__(f"{source} is refused:\n  {lines}")


def board_path(board: str | Path) -> Path:
    """A board name (``rpi_pico``) or a path to a board file."""
    path = Path(board)
    if path.suffix == ".json" or path.exists():
        return path
    return BOARDS_DIR / f"{board}.json"


def board_names() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.json"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(board_names())
        raise SettingsError(str(path), [f"file not found (boards here: {known})"]) from None
    except json.JSONDecodeError as exc:
        raise SettingsError(str(path), [f"not valid JSON: {exc}"]) from None


def load_board(board: str | Path) -> dict[str, Any]:
    """The checked values of a board file, by dotted field name; SettingsError if any is bad."""
    path = board_path(board)
    values, errors = settings.check_board(_read_json(path))
    if errors:
        raise SettingsError(str(path), errors)
    return dict(values)


def board_variant(board: str | Path, folder: Path, **fields: Any) -> Path:
    """A checked copy of a board file with top-level fields changed, e.g. a small journal for a test.

    >>> board_variant("sim", tmp_path, journal_bytes=6 * 256, fs_block_bytes=256)
    """
    data = _read_json(board_path(board))
    data.update(fields)
    path = Path(folder) / f"{data['name']}-variant.json"
    path.write_text(json.dumps(data, indent=2))
    load_board(path)
    return path


def check_config(config: dict[str, Any], board_values: dict[str, Any], source: str = "config") -> dict[str, Any]:
    values, errors = settings.check_config(config, board_values)
    if errors:
        raise SettingsError(source, errors)
    return dict(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.boards", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check board files")
    check.add_argument("files", nargs="+")
    conf = sub.add_parser("check-config", help="check a config file against a board")
    conf.add_argument("file")
    conf.add_argument("--board", default="sim")
    args = parser.parse_args(argv)
    failed = False
    try:
        if args.command == "check":
            for name in args.files:
                try:
                    load_board(name)
                    print(f"{name}: ok")
                except SettingsError as exc:
                    print(exc, file=sys.stderr)
                    failed = True
        else:
            check_config(_read_json(Path(args.file)), load_board(args.board), args.file)
            print(f"{args.file}: ok for board {args.board}")
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
