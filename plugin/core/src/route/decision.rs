//! The per-message routing decision.
//!
//! Rules: ordinary mail is never touched. For chats (including group chats
//! and read receipts, which are filed and tagged like chats) nothing happens
//! unless COI is enabled for the user; when it is, every copy gets `$Chat`,
//! and only `message-filter=active` files into `<root>/Chats` at delivery
//! (`seen` is handled later by the `\Seen` hook, `none` leaves INBOX alone).
//!
//! Invariants: total, no allocation; `reason` is a static string from a
//! closed set, usable in logs and as a bounded metric label.
//!
//! Callers: the plugin's `decide` op.

use crate::classify::KindCode;
use crate::settings::MessageFilter;

use super::policy::Policy;

/// What to do with one delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Add the `$Chat` keyword to every stored copy.
    pub add_chat_keyword: bool,
    /// Make `<root>/Chats` the delivery mailbox.
    pub file_into_chats: bool,
    /// Why, for the debug log.
    pub reason: &'static str,
}

/// Decides routing for a message of `kind` under `policy`.
pub fn decide(kind: KindCode, policy: &Policy) -> Decision {
    if !kind.is_chat() {
        return Decision {
            add_chat_keyword: false,
            file_into_chats: false,
            reason: "not a chat",
        };
    }
    if !policy.enabled {
        return Decision {
            add_chat_keyword: false,
            file_into_chats: false,
            reason: "COI not enabled for user",
        };
    }
    let (file_into_chats, reason) = match policy.filter {
        MessageFilter::Active => (true, "enabled, message-filter=active"),
        MessageFilter::None => (false, "enabled, message-filter=none: stays in INBOX"),
        MessageFilter::Seen => (false, "enabled, message-filter=seen: moved when read"),
    };
    Decision {
        add_chat_keyword: true,
        file_into_chats,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Source;

    fn policy(enabled: bool, filter: MessageFilter) -> Policy {
        Policy {
            enabled,
            enabled_source: Source::Default,
            filter,
            filter_source: Source::Default,
        }
    }

    #[test]
    fn decision_table() {
        use MessageFilter as F;
        let filters = [F::None, F::Active, F::Seen];
        for kind in KindCode::ALL {
            for enabled in [false, true] {
                for filter in filters {
                    let d = decide(kind, &policy(enabled, filter));
                    let want = match (kind, enabled, filter) {
                        (KindCode::NotChat, _, _) => (false, false, "not a chat"),
                        (_, false, _) => (false, false, "COI not enabled for user"),
                        (_, true, F::Active) => (true, true, "enabled, message-filter=active"),
                        (_, true, F::None) => {
                            (true, false, "enabled, message-filter=none: stays in INBOX")
                        }
                        (_, true, F::Seen) => {
                            (true, false, "enabled, message-filter=seen: moved when read")
                        }
                    };
                    assert_eq!(
                        (d.add_chat_keyword, d.file_into_chats, d.reason),
                        want,
                        "{kind:?} enabled={enabled} {filter:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn read_receipts_are_filed_like_chats() {
        let p = policy(true, MessageFilter::Active);
        assert_eq!(
            decide(KindCode::ReadReceipt, &p),
            decide(KindCode::Chat, &p)
        );
        assert_eq!(decide(KindCode::GroupChat, &p), decide(KindCode::Chat, &p));
        assert!(decide(KindCode::ReadReceipt, &p).file_into_chats);
    }

    #[test]
    fn end_to_end_from_raw_values() {
        let settings = crate::settings::PluginSettings::from_raw(Some(b"no"), None, None).unwrap();
        let md = crate::route::UserMetadata {
            enabled: Some(b"yes"),
            message_filter: Some(b"active"),
        };
        let kind = crate::classify::classify_header_block(
            b"Chat-Version: 1.0\r\nMessage-ID: <x@localhost>\r\n\r\n",
        );
        let d = decide(
            kind.code_kind(),
            &crate::route::resolve_policy(&settings, &md),
        );
        assert_eq!(
            d,
            Decision {
                add_chat_keyword: true,
                file_into_chats: true,
                reason: "enabled, message-filter=active",
            }
        );
    }
}
