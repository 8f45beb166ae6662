"""The shipped broker (``edge_daemon/mosquitto/``: config and ACL) made runnable on a test's paths and port.

The config runs as shipped, with only its paths, its port and its log destination
swapped for the test's (each swap checks the shipped line is there).  The ACL is the
shipped file with the blocks the account tool appends for each post and operator;
the password file holds every account with a password anyone can work out from its
name (:func:`password_of`).  Used by ``tests/test_broker_acl.py`` and
``bench/broker_abuse.py``.

Example::

    broker = shipped_broker(Path("/tmp/broker"), make_pki(Path("/tmp/pki")), posts=["school-12/gate-north"])
    with broker:
        ...  # TLS on broker.port; "school-12/gate-north" logs in with password_of("school-12/gate-north")
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from edge_daemon.broker_accounts import operator_acl, post_accounts, post_acl, with_block, write_password_file
from hw_sim.certs import Pki
from hw_sim.mosquitto import Mosquitto, free_port
from hw_sim.paths import ROOT

SHIPPED = ROOT / "edge_daemon" / "mosquitto"
CENTRE_ACCOUNTS = ("centre", "operator", "homeassistant")  # the shipped ACL's own (Home Assistant's commented out)


def password_of(account: str) -> str:
    """The test password of ``account``."""
    return f"pw-{account}"


def shipped_config(folder: Path, pki: Pki, port: int, certificates: bool = False) -> str:
    """The shipped mosquitto.conf with the test's paths and port (and its client-certificate lines on, if asked)."""
    swaps = {
        "listener 8883": f"listener {port} 127.0.0.1",
        "cafile /etc/mosquitto/certs/ca.crt": f"cafile {pki.ca}",
        "certfile /etc/mosquitto/certs/server.crt": f"certfile {pki.server.cert}",
        "keyfile /etc/mosquitto/certs/server.key": f"keyfile {pki.server.key}",
        "password_file /etc/mosquitto/passwd": f"password_file {folder / 'passwd'}",
        "acl_file /etc/mosquitto/acl": f"acl_file {folder / 'acl'}",
        "persistence_location /var/lib/mosquitto/": f"persistence_location {folder}/",
        "log_dest file /var/log/mosquitto/mosquitto.log": "log_dest stderr\nlog_type all",
    }
    if certificates:
        swaps["#require_certificate true"] = "require_certificate true"
        swaps["#use_identity_as_username true"] = "use_identity_as_username true"
    lines = (SHIPPED / "mosquitto.conf").read_text().splitlines()
    for shipped, ours in swaps.items():
        assert lines.count(shipped) == 1, f"the shipped mosquitto.conf no longer has the line {shipped!r}"
        lines[lines.index(shipped)] = ours
    return "\n".join(lines) + "\n"


def shipped_acl(posts: Iterable[str] = (), operators: Iterable[str] = (), home_assistant: bool = False) -> str:
    """The shipped acl with each post's and operator's block; with ``home_assistant`` its commented lines on."""
    text = (SHIPPED / "acl").read_text()
    if home_assistant:
        text = re.sub(r"(?m)^#(?=(user|topic|pattern) )", "", text)
    for post in posts:
        text = with_block(text, post, post_acl(post))
    for operator in operators:
        text = with_block(text, operator, operator_acl(operator))
    return text


def accounts(posts: Iterable[str] = (), operators: Iterable[str] = ()) -> list[str]:
    """Every account of a broker for ``posts`` and ``operators``: the centre's, and three per post."""
    return [*CENTRE_ACCOUNTS, *operators, *(account for post in posts for account in post_accounts(post))]


def shipped_broker(
    folder: Path,
    pki: Pki,
    posts: Iterable[str] = (),
    operators: Iterable[str] = (),
    home_assistant: bool = False,
    certificates: bool = False,
) -> Mosquitto:
    """A broker (not started) on the shipped files, with the accounts of ``posts`` and ``operators``."""
    posts, operators = list(posts), list(operators)
    folder.mkdir(parents=True, exist_ok=True)
    write_password_file(folder / "passwd", {name: password_of(name) for name in accounts(posts, operators)})
    (folder / "acl").write_text(shipped_acl(posts, operators, home_assistant))
    port = free_port()
    return Mosquitto(folder, port=port, config=shipped_config(folder, pki, port, certificates))
