"""dsync between two test instances: the doveadm service on loopback, and 2.3 replication.

Owns the configuration lines an operator writes to let another backend run
dsync against this one (``doveadm_password``, ``doveadm_port``, a ``service
doveadm`` inet listener on 127.0.0.1) and to replicate users to another
backend (Dovecot 2.3: the ``notify`` and ``replication`` mail plugins,
``service replicator`` and ``service aggregator``, ``mail_replica``), in 2.3
or 2.4 syntax, plus the ``doveadm`` argument lists of a dsync over tcp.

Nothing here starts processes: the lines go into ``InstanceConfig.extra_config``
(or ``plugin_settings`` for ``mail_replica``), and the instance's own
``doveadm`` runs the commands.
"""

from __future__ import annotations

#: The doveadm password of every test instance (a shared secret between backends).
DOVEADM_PASSWORD = "dsync-secret"


def doveadm_service_config(port: int, version: str, password: str = DOVEADM_PASSWORD) -> str:
    """``extra_config`` text: a doveadm listener on 127.0.0.1:``port`` and the
    shared password; ``doveadm_port`` makes ``tcp:HOST`` without a port use it."""
    if version.startswith("2.4"):
        return "\n".join([
            f"doveadm_password = {password}",
            f"doveadm_port = {port}",
            "service doveadm {",
            "  inet_listener doveadm {",
            "    listen = 127.0.0.1",
            f"    port = {port}",
            "  }",
            "}",
        ]) + "\n"
    return "\n".join([
        f"doveadm_password = {password}",
        f"doveadm_port = {port}",
        "service doveadm {",
        "  inet_listener {",
        "    address = 127.0.0.1",
        f"    port = {port}",
        "  }",
        "}",
    ]) + "\n"


def replication_config(run_user: str | None) -> str:
    """``extra_config`` text (Dovecot 2.3) of a backend that replicates its users:
    the replication plugin on every mail process, the aggregator's notify fifo
    and socket and the replicator's sockets reachable by the mail processes
    (``run_user``: the user they run as, None when root), replication started
    at once, dsync over the doveadm protocol (``mail_replica`` is a plugin
    setting, see ``replica_settings``)."""
    owner = run_user or "root"
    return "\n".join([
        "mail_plugins = $mail_plugins notify replication",
        "service replicator {",
        "  process_min_avail = 1",
        "  unix_listener replicator-doveadm {",
        "    mode = 0600",
        f"    user = {owner}",
        "  }",
        "}",
        "service aggregator {",
        "  fifo_listener replication-notify-fifo {",
        f"    user = {owner}",
        "    mode = 0600",
        "  }",
        "  unix_listener replication-notify {",
        f"    user = {owner}",
        "    mode = 0600",
        "  }",
        "}",
        "replication_max_conns = 2",
    ]) + "\n"


def replica_settings(peer_doveadm_port: int) -> dict[str, str]:
    """``plugin {}`` settings naming the other backend."""
    return {"mail_replica": f"tcp:127.0.0.1:{peer_doveadm_port}"}


def tcp_location(port: int) -> str:
    """The dsync destination of another backend's doveadm service."""
    return f"tcp:127.0.0.1:{port}"


def password_args(password: str = DOVEADM_PASSWORD) -> list[str]:
    """``-o`` options giving the doveadm client the shared password."""
    return ["-o", f"doveadm_password={password}"]
