"""The broker's accounts: one per MQTT connection, each allowed only what that connection does.

The shipped broker config sets ``use_username_as_clientid``: a client's id *is* its
username, so holding one account's password gives no way to push another client
off the broker or to take over its stored session.  The price is that two
connections cannot share an account, so a post has three:

==========================  =====================================================
``<site>/<post>``           the edge daemon: events, state, audit... (``pattern`` lines
                            of the shipped ACL serve every post without naming it)
``<site>/<post>/video``     the daemon's second connection: pictures only
``<site>/<post>/portal``    the gate WiFi's portal: its statistics out, its content in
==========================  =====================================================

and the centre has ``centre`` (the recorder: reads everything, sends receipts and
replay requests) and one account per operator or console (commands and content).
The video and portal accounts and every operator need lines of their own in the
ACL; this module writes them, between ``# BEGIN <account>`` and ``# END <account>``
marks, and adds the passwords to mosquitto's password file::

    python -m edge_daemon.broker_accounts post school-12/gate-north \\
        --passwd /etc/mosquitto/passwd --acl /etc/mosquitto/acl --out ./gate-north
    python -m edge_daemon.broker_accounts operator duty-desk-1 --passwd ... --acl ... --out ./duty-desk-1
    python -m edge_daemon.broker_accounts remove school-12/gate-north --passwd ... --acl ...

``--out`` receives one password file per account (mode 0600) to install on the post
or the operator's machine.  Run it again for a post to give it new passwords (the
old ones stop working at the broker's next reload: ``systemctl reload mosquitto``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = "alarmpost/v1"
PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # a site, a post or an operator, as the contract allows
POST_SERVICES = ("video", "portal")  # the post's accounts besides the daemon's own


class AccountError(ValueError):
    """A name that cannot be an account, or a file that is not what it should be."""


def password_hash(password: str, salt: bytes | None = None) -> str:
    """A password as mosquitto 2.0 stores it: ``$7$`` = PBKDF2-HMAC-SHA512, the iterations, salt and hash in base64.

    >>> password_hash("secret", salt=bytes(12)).startswith("$7$101$AAAAAAAAAAAAAAAA$")
    True
    """
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def post_accounts(post: str) -> tuple[str, ...]:
    """The three accounts of the post ``<site>/<post>``: the daemon's, its pictures' and its portal's.

    >>> post_accounts("school-12/gate-north")
    ('school-12/gate-north', 'school-12/gate-north/video', 'school-12/gate-north/portal')
    """
    parts = post.split("/")
    if len(parts) != 2 or not all(NAME.fullmatch(part) for part in parts):
        raise AccountError(f"{post!r} is not SITE/POST (1-64 characters of A-Z a-z 0-9 . _ - each)")
    return (post, *(f"{post}/{service}" for service in POST_SERVICES))


def post_acl(post: str) -> str:
    """The ACL lines of a post's pictures and portal accounts (the daemon's come from the shipped patterns)."""
    daemon, video, portal = post_accounts(post)
    return (
        f"# BEGIN {daemon}\n"
        f"user {video}\n"
        f"topic write {ROOT}/{daemon}/snapshots\n"
        f"topic write {ROOT}/{daemon}/stream\n"
        f"user {portal}\n"
        f"topic write {ROOT}/{daemon}/portal\n"
        f"topic read {ROOT}/{daemon}/content\n"
        f"# END {daemon}\n"
    )


def operator_acl(name: str) -> str:
    """An operator's lines: reads every post, sends commands and the gate WiFi's content, never receipts."""
    if not NAME.fullmatch(name) or name == "centre":
        raise AccountError(f"{name!r} cannot be an operator (1-64 characters of A-Z a-z 0-9 . _ -, not 'centre')")
    return (
        f"# BEGIN {name}\n"
        f"user {name}\n"
        f"topic read {ROOT}/#\n"
        f"topic write {ROOT}/+/+/commands\n"
        f"topic write {ROOT}/+/+/content\n"
        f"# END {name}\n"
    )


def _block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?ms)^# BEGIN {re.escape(name)}\n.*?^# END {re.escape(name)}\n")


def with_block(acl: str, name: str, block: str | None) -> str:
    """``acl`` with the block for ``name`` replaced by ``block`` (added at the end if new; removed if None)."""
    pattern = _block(name)
    if pattern.search(acl):
        return pattern.sub(lambda _: block or "", acl, count=1)
    if block is None:
        return acl
    return acl + ("" if acl.endswith("\n") or not acl else "\n") + block


def with_passwords(passwd: str, passwords: Mapping[str, str | None]) -> str:
    """A password file's text with each account set (hashing the password) or, for None, removed."""
    kept = [line for line in passwd.splitlines() if line.split(":", 1)[0] not in passwords]
    added = [f"{name}:{password_hash(password)}" for name, password in passwords.items() if password is not None]
    return "".join(f"{line}\n" for line in kept + added)


def write_password_file(path: Path, users: Mapping[str, str]) -> Path:
    """A new mosquitto password file for ``users`` (name → password), like ``mosquitto_passwd -b`` for each."""
    for name in users:
        if not name or ":" in name or "\n" in name:
            raise AccountError(f"{name!r} cannot be a mosquitto username (empty, or has ':' or a newline)")
    _replace(path, with_passwords("", users))
    return path


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all, keeping the old file's owner and mode (new: 0600)."""
    old = path.stat() if path.exists() else None
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, old.st_mode & 0o777 if old else 0o600)
        if old is not None and os.geteuid() == 0:
            os.chown(temporary, old.st_uid, old.st_gid)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_secret(folder: Path, name: str, password: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / name
    _replace(path, password + "\n")
    path.chmod(0o600)
    return path


def new_passwords(accounts: Iterable[str]) -> dict[str, str]:
    """A fresh random password for each account."""
    return {name: secrets.token_urlsafe(24) for name in accounts}


def provision(passwd: Path, acl: Path, passwords: Mapping[str, str | None], block_name: str, block: str | None) -> None:
    """Set each account's password (None: remove the account) and the ACL block ``block_name`` (None: remove it).

    The password file is changed first: an account whose ACL block is not there yet may
    log in but is allowed nothing.
    """
    _replace(passwd, with_passwords(passwd.read_text() if passwd.exists() else "", passwords))
    _replace(acl, with_block(acl.read_text(), block_name, block))


def secret_file_name(account: str) -> str:
    """The file a post or operator installs an account's password from: mqtt, video or portal.password."""
    return account.rsplit("/", 1)[-1] + ".password" if account.count("/") == 2 else "mqtt.password"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edge_daemon.broker_accounts", description="Add or remove a post's or an operator's accounts."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    for action, what in (("post", "SITE/POST"), ("operator", "NAME"), ("remove", "SITE/POST or NAME")):
        command = sub.add_parser(action)
        command.add_argument("name", metavar=what)
        command.add_argument("--passwd", type=Path, required=True, help="mosquitto's password file")
        command.add_argument("--acl", type=Path, required=True, help="mosquitto's ACL file (the shipped one)")
        if action != "remove":
            command.add_argument("--out", type=Path, required=True, help="folder for the new password files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if not args.acl.is_file():
            raise AccountError(f"{args.acl}: no such ACL file (install the shipped one first)")
        if args.action == "remove":
            accounts = post_accounts(args.name) if "/" in args.name else [args.name]
            if args.name == "centre" or not all(NAME.fullmatch(part) for part in args.name.split("/")):
                raise AccountError(f"{args.name!r} is not a post (SITE/POST) or an operator this tool made")
            provision(args.passwd, args.acl, dict.fromkeys(accounts), args.name, None)
            print(f"{args.name}: accounts removed; reload the broker (systemctl reload mosquitto)")
            return 0
        if args.action == "post":
            accounts, block = post_accounts(args.name), post_acl(args.name)
        else:
            accounts, block = [args.name], operator_acl(args.name)
        passwords = new_passwords(accounts)
        # the files to install first: the broker's files never hold a password nobody has
        written = {
            name: _write_secret(args.out, secret_file_name(name), password) for name, password in passwords.items()
        }
        provision(args.passwd, args.acl, passwords, args.name, block)
    except (AccountError, OSError) as exc:
        print(f"broker_accounts: {exc}", file=sys.stderr)
        return 1
    for name, path in written.items():
        print(f"{name}: {path}")
    print("reload the broker (systemctl reload mosquitto), then install each file as its config names it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
