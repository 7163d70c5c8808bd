"""A user's COI state as the tests set it up and compare it across backends.

Owns: a VAPID key and event spool for an instance that accepts Web Push
subscriptions (``push_settings``), subscribing and validating as a client does
(``subscribe_validated``: SETMETADATA, the validation record from the spool,
the ``/validate`` answer), Delta Chat tokens, reading the raw COI entries of a
user from the ``file:`` attribute dict the harness configures
(``raw_coi_entries``; ``plant_raw_entries`` writes a hostile source's), and
the client's view over IMAP (``client_view``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .imap import COI_ENABLED, COI_MESSAGE_FILTER, ImapClient
from .spool import spool_records, wait_records

WEBPUSH_SUBS = "/private/vendor/vendor.dovecot/webpush/subscriptions/"
TOKENS = "/private/vendor/vendor.dovecot/coi/devicetokens"
PVT_COI = "vendor/vendor.dovecot/pvt/coi/"
SERVER_CONFIG = "vendor/vendor.dovecot/pvt/server/vendor/vendor.dovecot/coi/config/"
# RFC 8291 Appendix A: a real P-256 public key and auth secret (base64url).
P256DH = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
VAPID_PEM = ("-----BEGIN PUBLIC KEY-----\n"
             "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEJXGyvs3942BVGq8e0PTNNmwRzr5V\n"
             "X4m8t7GGpTM5FzFo7OLr4BhZe9MEebhuPI+OztV3ylkYfpJGmQ22ggCLDg==\n"
             "-----END PUBLIC KEY-----\n")


@dataclass
class PushFiles:
    """A spool the mail processes append to and the VAPID key they serve."""

    root: Path
    spool: Path
    vapid: Path

    def settings(self, **extra: str) -> dict[str, str]:
        out = {"coi_spool_path": str(self.spool),
               "coi_sidecar_socket": str(self.root / "no-sidecar.sock"),
               "coi_webpush_vapid_key": str(self.vapid),
               "coi_deltachat_push": "yes"}
        out.update(extra)
        return out

    def records(self) -> list[dict]:
        return spool_records(self.spool)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def push_files(prefix: str = "coi-push-") -> PushFiles:
    """A new spool directory and VAPID key, readable by the mail processes."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    spool = root / "spool"
    spool.mkdir()
    spool.chmod(0o777)
    vapid = root / "vapid-public.pem"
    vapid.write_text(VAPID_PEM)
    vapid.chmod(0o644)
    return PushFiles(root, spool, vapid)


def subscription_json(endpoint: str, msgtype: str = "chat", device: str = "phone") -> str:
    return json.dumps({"client": "coi-test", "device": device, "msgtype": msgtype,
                       "resource": {"endpoint": endpoint,
                                    "keys": {"p256dh": P256DH, "auth": AUTH}}})


def subscribe_validated(c: ImapClient, files: PushFiles, sub_id: str, endpoint: str) -> None:
    """Subscribe as a COI client, then answer the validation push with its secret."""
    c.setmetadata_ok(WEBPUSH_SUBS + sub_id, subscription_json(endpoint))
    found = wait_records(files.spool, lambda r: r.get("type") == "webpush_validation"
                         and r.get("target", {}).get("subscription_id") == sub_id)
    assert found, f"no validation record for {sub_id}"
    c.setmetadata_ok(WEBPUSH_SUBS + sub_id + "/validate", found[-1]["secret"])


def attribute_dict(inst, user: str) -> Path:
    return inst.home(user) / "dovecot-attributes"


def _read_dict(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    lines = path.read_text().split("\n")
    return [(lines[i], lines[i + 1]) for i in range(0, len(lines) - 1, 2)]


def raw_coi_entries(inst, user: str) -> dict[str, str]:
    """The user's stored COI values (config, subscriptions with their secrets,
    tokens) and ``comment``: attribute key below the mailbox GUID -> value."""
    out = {}
    for key, value in _read_dict(attribute_dict(inst, user)):
        parts = key.split("/", 2)
        if len(parts) == 3 and parts[0] == "priv":
            rel = parts[2]
            if rel.startswith((PVT_COI, SERVER_CONFIG)) or rel.endswith("/server/comment"):
                out[rel] = value
    return out


def plant_raw_entries(inst, user: str, entries: dict[str, str]) -> None:
    """Writes raw entries into the user's INBOX attributes, bypassing every
    check (a corrupt or hostile backend). The INBOX's GUID is taken from an
    entry already there."""
    path = attribute_dict(inst, user)
    pairs = _read_dict(path)
    guids = {k.split("/")[1] for k, _ in pairs if k.startswith("priv/")}
    assert len(guids) == 1, f"expected one mailbox in {path}: {guids}"
    guid = guids.pop()
    pairs += [(f"priv/{guid}/{k}", v) for k, v in entries.items()]
    path.write_text("".join(f"{k}\n{v}\n" for k, v in pairs))


def client_view(inst, user: str) -> dict[str, object]:
    """What a COI client reads over IMAP: config values, subscriptions (public
    part), token count."""
    with inst.imap(user) as c:
        view: dict[str, object] = {
            "enabled": c.getmetadata(COI_ENABLED),
            "message-filter": c.getmetadata(COI_MESSAGE_FILTER),
        }
    raw = raw_coi_entries(inst, user)
    view["subscriptions"] = sorted(k.rsplit("/", 1)[1] for k in raw
                                   if k.startswith(PVT_COI + "webpush/"))
    view["tokens"] = sorted(k.rsplit("/", 1)[1] for k in raw
                            if k.startswith(PVT_COI + "devicetokens/"))
    return view
