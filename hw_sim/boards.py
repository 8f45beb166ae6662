"""Board files (re-exported from ``tools.boards``, where the build and the flash tool read them)."""

from __future__ import annotations

from tools.boards import SettingsError, board_names, board_path, board_variant, check_config, load_board, main

__all__ = ["SettingsError", "board_names", "board_path", "board_variant", "check_config", "load_board", "main"]
