"""Test harness for running the coi plugin inside a real, throwaway Dovecot.

Modules (one purpose each):
  paths     repository, plugin build and Dovecot binary lookup
  sysuser   the unprivileged mail identity (``coitest`` when run as root)
  config    dovecot.conf / passwd-file rendering
  instance  DovecotInstance: temp tree, start/stop/reload, delivery entry points
  lmtp      LMTP client with per-recipient results
  imap      IMAP client (folders, fetch, METADATA); raw IDLE client
  doveadm   doveadm wrappers
  logs      Dovecot log reading and Panic/Fatal checks
  messages  builders for plain mail, COI and Delta Chat messages
  malformed deterministic generator of malformed messages
  nats      NatsCluster: real nats-server JetStream nodes clustered on loopback
  sidecar   SidecarProcess: the real coi-sidecar daemon (config, start/kill/stop, /metrics)
  receiver  WebhookReceiver: scriptable HTTP webhook receiver, Standard Webhooks verifier
  hostile   generator of hostile messages (injection, huge lines, bombs, forged ids)
  faults    small tmpfs / loop-mounted volumes and retrying LMTP bursts for fault tests
  smtprelay SmtpRelay: loopback submission (aiosmtpd, AUTH) handed to LMTP, every message kept
  deltachat the pinned Delta Chat core (scripts/deltachat-env.sh): DeltaChatCore, waits
  chatworld ChatWorld: Dovecot + plugin + relay + real Delta Chat users, shared steps
"""

from .config import DEFAULT_USERS, MAIL_DOMAIN, PASSWORD, InstanceConfig
from .doveadm import Doveadm, DoveadmError
from .imap import (COI_ENABLED, COI_MAILBOX_ROOT, COI_MESSAGE_FILTER, IdleClient,
                   IdleTimeout, ImapClient, ImapCommandFailed, Message)
from .instance import DovecotInstance, LdaResult, PluginMissing, free_ports
from .lmtp import LmtpSession, RcptResult, lmtp_deliver
from .logs import DovecotLog
from .paths import MissingBinary, find_binary, find_lda, plugin_so
from .receiver import ReceiverProcess, WebhookReceiver
from .sidecar import Metrics, SidecarMissing, SidecarProcess, Webhook

__all__ = [
    "COI_ENABLED", "COI_MAILBOX_ROOT", "COI_MESSAGE_FILTER", "DEFAULT_USERS", "Doveadm",
    "DoveadmError", "DovecotInstance", "DovecotLog", "IdleClient", "IdleTimeout", "ImapClient",
    "ImapCommandFailed", "InstanceConfig", "LdaResult", "LmtpSession", "MAIL_DOMAIN", "Message",
    "MissingBinary", "PASSWORD", "PluginMissing", "RcptResult", "find_binary", "find_lda",
    "free_ports", "lmtp_deliver", "plugin_so",
    "Metrics", "ReceiverProcess", "SidecarMissing", "SidecarProcess", "Webhook", "WebhookReceiver",
]
