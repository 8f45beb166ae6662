"""Starts the alarm post: checks the board file and config, then runs the post.

The settings schema is loaded first and dropped before the rest of the firmware
is imported, so its heap is free again by the time the post runs.

>>> import alarmpost.app
>>> alarmpost.app.run()        # never returns
"""

import asyncio
import gc

from alarmpost import unload


def load_settings(folder="."):
    """(board values, config values, errors): bad fields fall back to safe defaults."""
    from alarmpost import settings

    def path(name):
        return name if folder in ("", ".") else folder + "/" + name

    errors = []
    parsed = []
    for name in ("board.json", "config.json"):
        data, error = settings.load_json(path(name))
        if error:
            errors.append(error)
        parsed.append(data)
    board, board_errors = settings.check_board(parsed[0])
    config, config_errors = settings.check_config(parsed[1], board)
    unload("settings")
    return board, config, errors + board_errors + config_errors


def run(folder="."):
    board, config, errors = load_settings(folder)
    gc.collect()
    # Every module the post will ever use is loaded now, while the heap is whole: a module's
    # names go into the interpreter's string pools, which grow by doubling into one contiguous
    # block (640 names: some 10 KB).  Loaded later, for a command, that block may no longer be
    # there in a heap fragmented by hours of running, and a remote reset would fail for it.
    from alarmpost import commands  # noqa: F401
    from alarmpost.post import Post

    asyncio.run(Post(board, config, errors, folder).run())
