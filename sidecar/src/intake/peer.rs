//! Who may ring the doorbell: the peer-credential policy.
//!
//! Invariant: with both lists empty anyone who can reach the socket (file
//! mode and group decide that) is allowed; otherwise the peer's uid must be
//! in `allowed_uids` or its gid in `allowed_gids`. A datagram without
//! credentials is refused (cannot happen with SO_PASSCRED on Linux, but the
//! check does not rely on it).
//!
//! Callers: `intake::listener` for every datagram.

/// Credentials the kernel attached to a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Sender pid.
    pub pid: i32,
    /// Sender uid.
    pub uid: u32,
    /// Sender gid.
    pub gid: u32,
}

/// The allow lists of the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerPolicy {
    /// Allowed uids.
    pub uids: Vec<u32>,
    /// Allowed gids.
    pub gids: Vec<u32>,
}

impl PeerPolicy {
    /// Whether a datagram from `peer` is accepted.
    pub fn allows(&self, peer: Option<PeerCred>) -> bool {
        let Some(p) = peer else {
            return false;
        };
        (self.uids.is_empty() && self.gids.is_empty())
            || self.uids.contains(&p.uid)
            || self.gids.contains(&p.gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(uid: u32, gid: u32) -> Option<PeerCred> {
        Some(PeerCred { pid: 1, uid, gid })
    }

    #[test]
    fn policy_table() {
        let any = PeerPolicy::default();
        assert!(any.allows(cred(5, 5)));
        assert!(!any.allows(None));
        let p = PeerPolicy { uids: vec![100], gids: vec![200] };
        assert!(p.allows(cred(100, 1)));
        assert!(p.allows(cred(1, 200)));
        assert!(!p.allows(cred(1, 1)));
        let uid_only = PeerPolicy { uids: vec![0], gids: vec![] };
        assert!(!uid_only.allows(cred(1000, 0)));
    }
}
