//! COI folder names.
//!
//! The root comes validated from settings (no leading/trailing separator) and
//! already includes any namespace prefix (DESIGN §3); the separator is the
//! INBOX namespace's hierarchy separator, which only the shim knows.
//!
//! Invariants: one allocation of exactly the needed size.
//!
//! Callers: the plugin's `user_new`/`decide` ops, which cache the result per
//! user.

/// Name of the chats folder below the COI root.
const CHATS: &str = "Chats";

/// `"<root><sep>Chats"`, e.g. `("COI", '/') -> "COI/Chats"`, `("INBOX.COI", '.') -> "INBOX.COI.Chats"`.
pub fn chats_folder(root: &str, separator: char) -> String {
    let mut name = String::with_capacity(root.len() + separator.len_utf8() + CHATS.len());
    name.push_str(root);
    name.push(separator);
    name.push_str(CHATS);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chats_folder_table() {
        let table = [
            ("COI", '/', "COI/Chats"),
            ("INBOX.COI", '.', "INBOX.COI.Chats"),
            ("COI", '.', "COI.Chats"),
            ("Общение", '/', "Общение/Chats"),
            ("X", '\u{2044}', "X\u{2044}Chats"),
        ];
        for (root, sep, want) in table {
            assert_eq!(chats_folder(root, sep), want);
        }
    }
}
