//! The classifier's verdict, with and without payload.
//!
//! Invariant: the integer codes are `enum coi_kind` in `include/coi-shim.h`
//! (NOT_CHAT=0, CHAT=1, GROUP_CHAT=2, READ_RECEIPT=3) and the names are
//! stable strings used in logs and as a metric label (a closed set).
//!
//! Callers: the FFI layer converts between [`KindCode`] and `int32_t`; routing
//! ([`crate::route::decide`]) takes a [`KindCode`] because the group id does not
//! matter for where a message goes.

/// What kind of message a delivery is, as far as COI is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Ordinary mail: COI leaves it alone.
    NotChat,
    /// A one-to-one (or not further identified) chat message.
    Chat,
    /// A chat message of a COI group.
    GroupChat {
        /// The `<groupid>` of `chat$group.<groupid>.<unique>@domain`
        /// (`[0-9A-Za-z_-]`, 12 to 64 characters), or of a Delta Chat 1.x
        /// `Gr.<groupid>.<random>@domain` (11 or 16 characters).
        group_id: String,
    },
    /// A read receipt (RFC 8098 MDN) sent by a chat client: filed like a chat,
    /// but never pushed.
    ReadReceipt,
}

impl Kind {
    /// The `enum coi_kind` value for this kind.
    pub fn code(&self) -> i32 {
        self.code_kind().code()
    }

    /// The payload-free kind for an `enum coi_kind` value, `None` for a value
    /// the header does not define.
    pub fn from_code(code: i32) -> Option<KindCode> {
        KindCode::from_code(code)
    }

    /// This kind without its payload.
    pub fn code_kind(&self) -> KindCode {
        match self {
            Kind::NotChat => KindCode::NotChat,
            Kind::Chat => KindCode::Chat,
            Kind::GroupChat { .. } => KindCode::GroupChat,
            Kind::ReadReceipt => KindCode::ReadReceipt,
        }
    }

    /// True for every kind COI handles (chats, group chats, read receipts).
    pub fn is_chat(&self) -> bool {
        self.code_kind().is_chat()
    }

    /// Stable name for logs and metric labels.
    pub fn name(&self) -> &'static str {
        self.code_kind().name()
    }

    /// The group id of a group chat.
    pub fn group_id(&self) -> Option<&str> {
        match self {
            Kind::GroupChat { group_id } => Some(group_id),
            _ => None,
        }
    }
}

/// [`Kind`] without payload, for crossing FFI as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum KindCode {
    /// `COI_KIND_NOT_CHAT`
    NotChat = 0,
    /// `COI_KIND_CHAT`
    Chat = 1,
    /// `COI_KIND_GROUP_CHAT`
    GroupChat = 2,
    /// `COI_KIND_READ_RECEIPT`
    ReadReceipt = 3,
}

impl KindCode {
    /// Every kind, in code order.
    pub const ALL: [KindCode; 4] = [
        KindCode::NotChat,
        KindCode::Chat,
        KindCode::GroupChat,
        KindCode::ReadReceipt,
    ];

    /// The `enum coi_kind` value.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The kind for an `enum coi_kind` value, `None` if out of range.
    pub fn from_code(code: i32) -> Option<KindCode> {
        match code {
            0 => Some(KindCode::NotChat),
            1 => Some(KindCode::Chat),
            2 => Some(KindCode::GroupChat),
            3 => Some(KindCode::ReadReceipt),
            _ => None,
        }
    }

    /// Stable name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            KindCode::NotChat => "not-chat",
            KindCode::Chat => "chat",
            KindCode::GroupChat => "group-chat",
            KindCode::ReadReceipt => "read-receipt",
        }
    }

    /// True for every kind COI handles.
    pub fn is_chat(self) -> bool {
        self != KindCode::NotChat
    }
}

impl From<&Kind> for KindCode {
    fn from(kind: &Kind) -> KindCode {
        kind.code_kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_coi_shim_h() {
        // Mirrors enum coi_kind; changing one side without the other breaks FFI.
        let table = [
            (Kind::NotChat, 0, "not-chat", false),
            (Kind::Chat, 1, "chat", true),
            (
                Kind::GroupChat {
                    group_id: "abcdefABCDEF".into(),
                },
                2,
                "group-chat",
                true,
            ),
            (Kind::ReadReceipt, 3, "read-receipt", true),
        ];
        for (kind, code, name, is_chat) in table {
            assert_eq!(kind.code(), code, "{kind:?}");
            assert_eq!(kind.name(), name);
            assert_eq!(kind.is_chat(), is_chat);
            let kc = kind.code_kind();
            assert_eq!(kc.code(), code);
            assert_eq!(kc.name(), name);
            assert_eq!(kc.is_chat(), is_chat);
            assert_eq!(Kind::from_code(code), Some(kc));
            assert_eq!(KindCode::from(&kind), kc);
        }
    }

    #[test]
    fn from_code_rejects_unknown_values() {
        for code in [-1, 4, 5, i32::MIN, i32::MAX] {
            assert_eq!(Kind::from_code(code), None, "{code}");
        }
    }

    #[test]
    fn all_round_trips() {
        for (i, kc) in KindCode::ALL.iter().enumerate() {
            assert_eq!(kc.code(), i as i32);
            assert_eq!(KindCode::from_code(kc.code()), Some(*kc));
        }
    }

    #[test]
    fn group_id_accessor() {
        let g = Kind::GroupChat {
            group_id: "abcdefABCDEF12".into(),
        };
        assert_eq!(g.group_id(), Some("abcdefABCDEF12"));
        assert_eq!(Kind::Chat.group_id(), None);
    }
}
