"""Rendering of the throwaway ``dovecot.conf`` (Dovecot 2.3 syntax, or 2.4).

Owns every configuration line the harness writes. ``InstanceConfig`` is the
set of knobs a test can turn; ``render()`` turns it into the file text. Nothing
here starts processes or touches the filesystem. ``COI_DOVECOT_VERSION=2.4``
(or ``InstanceConfig.dovecot_version``) selects the 2.4 syntax
(``render_24()``, used by ``scripts/test-dovecot24``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .sysuser import MailIdentity

#: Default users of every instance; the password of every user is ``PASSWORD``.
DEFAULT_USERS = ("alice", "bob", "carol")
PASSWORD = "secret"
MAIL_DOMAIN = "example.org"


@dataclass
class InstanceConfig:
    """Everything that varies between throwaway Dovecot instances."""

    #: Load the coi plugin (``mail_plugins = $mail_plugins coi``).
    plugin: bool = True
    #: Load Pigeonhole Sieve for lmtp and lda.
    sieve: bool = False
    #: Extra ``plugin {}`` settings, e.g. ``{"coi_default_enabled": "yes"}``.
    plugin_settings: Mapping[str, str] = field(default_factory=dict)
    #: Text of a global ``sieve_before`` script (implies ``sieve``).
    sieve_before: str | None = None
    #: Hierarchy separator of the inbox namespace: ``/`` or ``.``.
    separator: str = "/"
    mail_debug: bool = False
    #: ``imap_metadata``: general IMAP METADATA (COI's own entries work
    #: either way).
    imap_metadata: bool = True
    lmtp_save_to_detail_mailbox: bool = False
    #: ``mail_location`` (``~`` is the user's home).
    mail_location: str = "maildir:~/Maildir"
    #: Raw lines appended at the end of the file.
    extra_config: str = ""
    #: Special-use mailboxes of the inbox namespace: name -> flag, e.g.
    #: ``{"Sent": "\\Sent"}`` (``mailbox Sent { special_use = \\Sent }``).
    special_use: Mapping[str, str] = field(default_factory=dict)
    #: Users: names, or name -> extra userdb fields (these become per-user
    #: plugin settings, e.g. ``{"coi_mailbox_root": "X"}``).
    users: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {u: {} for u in DEFAULT_USERS})
    #: Configuration syntax: "2.3" (default) or "2.4" (``$COI_DOVECOT_VERSION``).
    dovecot_version: str = field(
        default_factory=lambda: os.environ.get("COI_DOVECOT_VERSION", "2.3"))

    def __post_init__(self) -> None:
        if not isinstance(self.users, Mapping):
            self.users = {u: {} for u in self.users}
        if self.separator not in ("/", "."):
            raise ValueError(f"unsupported separator {self.separator!r}")

    @property
    def sieve_loaded(self) -> bool:
        return self.sieve or self.sieve_before is not None


@dataclass(frozen=True)
class InstanceLayout:
    """Absolute paths and ports of one instance (fixed for its lifetime)."""

    tmpdir: Path
    imap_port: int
    lmtp_port: int

    @property
    def conf_path(self) -> Path:
        return self.tmpdir / "dovecot.conf"

    @property
    def base_dir(self) -> Path:
        return self.tmpdir / "run"

    @property
    def state_dir(self) -> Path:
        return self.tmpdir / "state"

    @property
    def log_path(self) -> Path:
        return self.tmpdir / "dovecot.log"

    @property
    def module_dir(self) -> Path:
        return self.tmpdir / "modules"

    @property
    def passwd_path(self) -> Path:
        return self.tmpdir / "users.passwd"

    @property
    def sieve_before_path(self) -> Path:
        return self.tmpdir / "sieve-before" / "before.sieve"

    def home(self, user: str) -> Path:
        return self.tmpdir / "home" / user


def _quote(value: str) -> str:
    """Quote a setting value if Dovecot's parser would otherwise split or strip it."""
    if value == "" or any(c in value for c in ' \t#"{}\\') or value != value.strip():
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def _special_use_lines(cfg: InstanceConfig) -> list[str]:
    """``mailbox NAME { special_use = FLAG }`` lines (same syntax in 2.3 and 2.4)."""
    return [f"  mailbox {_quote(name)} {{\n    special_use = {flag}\n  }}"
            for name, flag in cfg.special_use.items()]


def render_passwd(cfg: InstanceConfig, layout: InstanceLayout, ident: MailIdentity) -> str:
    """passwd-file lines: ``user:{PLAIN}pw:uid:gid::home::userdb_extra=...``."""
    lines = []
    for user, extra in cfg.users.items():
        fields = " ".join(f"userdb_{k}={v}" for k, v in extra.items())
        lines.append(f"{user}:{{PLAIN}}{PASSWORD}:{ident.uid}:{ident.gid}::"
                     f"{layout.home(user)}::{fields}")
    return "\n".join(lines) + "\n"


def render(cfg: InstanceConfig, layout: InstanceLayout, ident: MailIdentity) -> str:
    """The complete dovecot.conf text."""
    if cfg.dovecot_version.startswith("2.4"):
        return render_24(cfg, layout, ident)
    yn = lambda b: "yes" if b else "no"  # noqa: E731
    out = [
        "# Generated by tests/harness/config.py for one throwaway test instance.",
        f"base_dir = {layout.base_dir}",
        f"state_dir = {layout.state_dir}",
        f"log_path = {layout.log_path}",
        "instance_name = " + layout.tmpdir.name,
        "listen = 127.0.0.1",
        "protocols = imap lmtp",
        "ssl = no",
        "disable_plaintext_auth = no",
        "auth_mechanisms = plain login",
        f"hostname = mx.{MAIL_DOMAIN}",
        f"postmaster_address = postmaster@{MAIL_DOMAIN}",
        f"mail_location = {cfg.mail_location}",
        f"mail_plugin_dir = {layout.module_dir}",
        f"mail_debug = {yn(cfg.mail_debug)}",
        f"imap_metadata = {yn(cfg.imap_metadata)}",
        "mail_attribute_dict = file:%h/dovecot-attributes",
        f"lmtp_save_to_detail_mailbox = {yn(cfg.lmtp_save_to_detail_mailbox)}",
        "recipient_delimiter = +",
        "lda_mailbox_autocreate = yes",
        "lda_mailbox_autosubscribe = yes",
        f"first_valid_uid = {min(ident.uid, 500)}",
        f"first_valid_gid = {min(ident.gid, 1)}",
    ]
    if cfg.plugin:
        out.append("mail_plugins = $mail_plugins coi")
    if not ident.running_as_root:
        out += [
            f"default_internal_user = {ident.user}",
            f"default_login_user = {ident.user}",
            f"default_internal_group = {ident.group}",
        ]
    out += [
        "",
        "passdb {",
        "  driver = passwd-file",
        f"  args = scheme=PLAIN username_format=%n {layout.passwd_path}",
        "}",
        "userdb {",
        "  driver = passwd-file",
        f"  args = username_format=%n {layout.passwd_path}",
        "}",
        "",
        "namespace inbox {",
        "  inbox = yes",
        "  prefix =",
        f"  separator = {cfg.separator}",
        *_special_use_lines(cfg),
        "}",
        "",
        "service imap-login {",
        "  inet_listener imap {",
        "    address = 127.0.0.1",
        f"    port = {layout.imap_port}",
        "  }",
        "  inet_listener imaps {",
        "    port = 0",
        "  }",
    ]
    if not ident.running_as_root:
        out.append("  chroot =")
    out += [
        "}",
        "service lmtp {",
        "  inet_listener lmtp {",
        "    address = 127.0.0.1",
        f"    port = {layout.lmtp_port}",
        "  }",
        "}",
    ]
    if not ident.running_as_root:
        out += ["service anvil {", "  chroot =", "}"]
    if cfg.sieve_loaded:
        out += [
            "protocol lmtp {",
            "  mail_plugins = $mail_plugins sieve",
            "}",
            "protocol lda {",
            "  mail_plugins = $mail_plugins sieve",
            "}",
        ]
    plugin_lines: dict[str, str] = {}
    if cfg.sieve_loaded:
        plugin_lines["sieve"] = "file:~/sieve;active=~/.dovecot.sieve"
        if cfg.sieve_before is not None:
            plugin_lines["sieve_before"] = str(layout.sieve_before_path)
    plugin_lines.update(cfg.plugin_settings)
    if plugin_lines:
        out.append("plugin {")
        out += [f"  {k} = {_quote(str(v))}" for k, v in plugin_lines.items()]
        out.append("}")
    if cfg.extra_config:
        out += ["", "# extra_config", cfg.extra_config.rstrip()]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- Dovecot 2.4
#: ``dovecot_config_version`` / ``dovecot_storage_version`` of the 2.4 files.
DOVECOT_24_CONFIG_VERSION = "2.4.1"


def _mail_location_24(location: str) -> tuple[str, str]:
    """2.3's ``driver:path`` as 2.4's (``mail_driver``, ``mail_path``); ``~`` stays."""
    driver, sep, rest = location.partition(":")
    if not sep or ":" in rest:
        raise ValueError(f"mail_location {location!r}: only driver:path is translated to 2.4")
    return driver, rest


def render_24(cfg: InstanceConfig, layout: InstanceLayout, ident: MailIdentity) -> str:
    """The complete dovecot.conf text in Dovecot 2.4 syntax (same instance as ``render``).

    Differences from 2.3: the version lines come first; ``mail_driver`` and
    ``mail_path`` replace ``mail_location``; ``mail_plugins`` and ``protocols``
    are boolean lists; passdb/userdb are named blocks with ``passwd_file_path``;
    the attribute dict is a ``mail_attribute { dict file {} }`` block; listener
    addresses are ``listen``; Sieve scripts are ``sieve_script`` blocks; and the
    plugin settings stand at the top level (``plugin {}`` is gone).
    ``extra_config`` is appended verbatim, so it must be 2.4 syntax too.
    """
    yn = lambda b: "yes" if b else "no"  # noqa: E731
    driver, path = _mail_location_24(cfg.mail_location)
    out = [
        f"dovecot_config_version = {DOVECOT_24_CONFIG_VERSION}",
        f"dovecot_storage_version = {DOVECOT_24_CONFIG_VERSION}",
        "# Generated by tests/harness/config.py (2.4 syntax) for one throwaway test instance.",
        f"base_dir = {layout.base_dir}",
        f"state_dir = {layout.state_dir}",
        f"log_path = {layout.log_path}",
        "instance_name = " + layout.tmpdir.name,
        "listen = 127.0.0.1",
        "protocols {",
        "  imap = yes",
        "  lmtp = yes",
        "}",
        "ssl = no",
        "auth_allow_cleartext = yes",
        "auth_mechanisms = plain login",
        f"hostname = mx.{MAIL_DOMAIN}",
        f"postmaster_address = postmaster@{MAIL_DOMAIN}",
        f"mail_driver = {driver}",
        f"mail_path = {path}",
        f"mail_plugin_dir = {layout.module_dir}",
        f"mail_debug = {yn(cfg.mail_debug)}",
        f"imap_metadata = {yn(cfg.imap_metadata)}",
        "mail_attribute {",
        "  dict file {",
        "    path = %{home}/dovecot-attributes",
        "  }",
        "}",
        f"lmtp_save_to_detail_mailbox = {yn(cfg.lmtp_save_to_detail_mailbox)}",
        "recipient_delimiter = +",
        "lda_mailbox_autocreate = yes",
        "lda_mailbox_autosubscribe = yes",
        f"first_valid_uid = {min(ident.uid, 500)}",
        f"first_valid_gid = {min(ident.gid, 1)}",
    ]
    if cfg.plugin:
        out += ["mail_plugins {", "  coi = yes", "}"]
    if not ident.running_as_root:
        out += [
            f"default_internal_user = {ident.user}",
            f"default_login_user = {ident.user}",
            f"default_internal_group = {ident.group}",
        ]
    out += [
        "",
        # per-db auth_username_format is 2.3's username_format=%n: the
        # lookup key only, the session keeps the full address
        "passdb passwd-file {",
        "  default_password_scheme = PLAIN",
        "  auth_username_format = %{user | username}",
        f"  passwd_file_path = {layout.passwd_path}",
        "}",
        "userdb passwd-file {",
        "  auth_username_format = %{user | username}",
        f"  passwd_file_path = {layout.passwd_path}",
        "}",
        "",
        "namespace inbox {",
        "  inbox = yes",
        '  prefix = ""',
        f"  separator = {cfg.separator}",
        *_special_use_lines(cfg),
        "}",
        "",
        "service imap-login {",
        "  inet_listener imap {",
        "    listen = 127.0.0.1",
        f"    port = {layout.imap_port}",
        "  }",
        "  inet_listener imaps {",
        "    port = 0",
        "  }",
    ]
    if not ident.running_as_root:
        out.append("  chroot =")
    out += [
        "}",
        "service lmtp {",
        "  inet_listener lmtp {",
        "    listen = 127.0.0.1",
        f"    port = {layout.lmtp_port}",
        "  }",
        "}",
    ]
    if not ident.running_as_root:
        out += ["service anvil {", "  chroot =", "}"]
    if cfg.sieve_loaded:
        for proto in ("lmtp", "lda"):
            out += [f"protocol {proto} {{", "  mail_plugins {", "    sieve = yes", "  }", "}"]
        out += [
            "sieve_script personal {",
            "  driver = file",
            "  path = ~/sieve",
            "  active_path = ~/.dovecot.sieve",
            "}",
        ]
        if cfg.sieve_before is not None:
            out += [
                "sieve_script before {",
                "  type = before",
                "  driver = file",
                f"  path = {layout.sieve_before_path}",
                "}",
            ]
    if cfg.plugin_settings:
        out.append("# plugin settings (top level in 2.4)")
        out += [f"{k} = {_quote(str(v))}" for k, v in cfg.plugin_settings.items()]
    if cfg.extra_config:
        out += ["", "# extra_config", cfg.extra_config.rstrip()]
    return "\n".join(out) + "\n"
