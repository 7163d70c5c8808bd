//! What a mailbox CREATE, DELETE or RENAME means for COI (DESIGN §3:
//! "indirect enable/disable from any mail client").
//!
//! What this module owns the rules:
//! - CREATE of `<root>/Chats`, or RENAME of anything to it, enables COI;
//! - DELETE of `<root>/Chats` (or of an ancestor, which takes it along)
//!   disables COI;
//! - RENAME of `<root>/Chats` (or of an ancestor) to somewhere under the
//!   Trash folder disables COI; any other rename of it is refused, because
//!   clients and the delivery plugin find chats by that name.
//!
//! Enabling and disabling are the user's choice and are stored as such
//! (`enabled` `yes` / `no`, crate::imap_config), so a site default never
//! overrides them. The plugin's own folder creations (delivery, seen mode,
//! `enabled yes`) never reach these rules.
//!
//! Invariants: pure and total; names are compared as the UTF-8 mailbox
//! names Dovecot shows clients (case-sensitive, except that `INBOX` is not
//! involved here).
//!
//! Callers: the plugin's `folder_change` op, from the shim's create/delete/
//! rename vfuncs of IMAP and doveadm sessions.

/// The mailbox operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderOp<'a> {
    /// CREATE `name`.
    Create(&'a str),
    /// DELETE `name`.
    Delete(&'a str),
    /// RENAME `from` to `to`.
    Rename {
        /// Source name.
        from: &'a str,
        /// Destination name.
        to: &'a str,
    },
}

/// What the operation means for COI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderAction {
    /// Not about the chats folder.
    None,
    /// Carry on, then enable COI.
    Enable,
    /// Carry on, then disable COI.
    Disable,
    /// Refuse the operation with this message.
    Refuse(String),
}

impl FolderAction {
    /// The C enum code (`enum coi_folder_action`).
    pub fn code(&self) -> i32 {
        match self {
            FolderAction::None => 0,
            FolderAction::Enable => 1,
            FolderAction::Disable => 2,
            FolderAction::Refuse(_) => 3,
        }
    }
}

/// Whether `name` is `ancestor` itself or below it.
fn is_at_or_below(name: &str, ancestor: &str, separator: char) -> bool {
    name == ancestor
        || name
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with(separator))
}

/// Decides what `op` means, given the chats folder's name, the Trash
/// folder's name (the `\Trash` special-use mailbox, else `Trash`) and the
/// namespace separator.
pub fn folder_action(op: FolderOp<'_>, chats: &str, trash: &str, separator: char) -> FolderAction {
    match op {
        FolderOp::Create(name) if name == chats => FolderAction::Enable,
        FolderOp::Create(_) => FolderAction::None,
        FolderOp::Delete(name) if is_at_or_below(chats, name, separator) => FolderAction::Disable,
        FolderOp::Delete(_) => FolderAction::None,
        FolderOp::Rename { from, to } => {
            if is_at_or_below(chats, from, separator) {
                if is_at_or_below(to, trash, separator) && to != trash {
                    FolderAction::Disable
                } else {
                    FolderAction::Refuse(format!(
                        "{chats} is the COI chats folder: it cannot be renamed (move it under {trash} \
                         or DELETE it to disable COI)"
                    ))
                }
            } else if to == chats {
                FolderAction::Enable
            } else {
                FolderAction::None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATS: &str = "COI/Chats";

    fn act(op: FolderOp<'_>) -> FolderAction {
        folder_action(op, CHATS, "Trash", '/')
    }

    #[test]
    fn create_enables_only_for_the_chats_folder() {
        assert_eq!(act(FolderOp::Create("COI/Chats")), FolderAction::Enable);
        assert_eq!(act(FolderOp::Create("COI")), FolderAction::None);
        assert_eq!(act(FolderOp::Create("COI/Chats2")), FolderAction::None);
        assert_eq!(act(FolderOp::Create("coi/chats")), FolderAction::None);
    }

    #[test]
    fn delete_of_chats_or_an_ancestor_disables() {
        assert_eq!(act(FolderOp::Delete("COI/Chats")), FolderAction::Disable);
        assert_eq!(act(FolderOp::Delete("COI")), FolderAction::Disable);
        assert_eq!(act(FolderOp::Delete("CO")), FolderAction::None);
        assert_eq!(act(FolderOp::Delete("COI/Contacts")), FolderAction::None);
    }

    #[test]
    fn rename_under_trash_disables_other_renames_are_refused() {
        assert_eq!(act(FolderOp::Rename { from: "COI/Chats", to: "Trash/Chats" }), FolderAction::Disable);
        assert_eq!(act(FolderOp::Rename { from: "COI", to: "Trash/COI" }), FolderAction::Disable);
        let refused = act(FolderOp::Rename { from: "COI/Chats", to: "Chats" });
        assert_eq!(refused.code(), 3);
        assert!(matches!(refused, FolderAction::Refuse(m) if m.contains("cannot be renamed")));
        assert_eq!(act(FolderOp::Rename { from: "COI/Chats", to: "Trash" }).code(), 3);
        assert_eq!(act(FolderOp::Rename { from: "COI", to: "Archive/COI" }).code(), 3);
        assert_eq!(act(FolderOp::Rename { from: "COI/Chats", to: "TrashCan/x" }).code(), 3);
    }

    #[test]
    fn rename_to_chats_enables() {
        assert_eq!(act(FolderOp::Rename { from: "Old", to: "COI/Chats" }), FolderAction::Enable);
        assert_eq!(act(FolderOp::Rename { from: "Old", to: "COI/Other" }), FolderAction::None);
    }

    #[test]
    fn trash_name_and_separator_are_honoured() {
        let a = folder_action(FolderOp::Rename { from: "COI.Chats", to: "Deleted Items.x" }, "COI.Chats", "Deleted Items", '.');
        assert_eq!(a, FolderAction::Disable);
    }
}
