//! The credential rules, once: what a refresh, an enrollment and an authenticated request
//! are answered, as pure functions over the rows a backend reads. Both storage backends
//! read the rows, call these, and write what the decision says, in one transaction; the
//! conformance suite checks the outcome on each.
//!
//! **Refresh tokens rotate, and survive a lost reply** (ADR 0001, "Refresh"): presenting a
//! token spends it and issues a child. A token already spent is accepted again as long as
//! none of its children has been presented (the reply carrying the child was lost, or the
//! request was duplicated): another child is issued, so the phone that retries gets a
//! working pair. The first child presented wins: its unused siblings are revoked then.
//! Once a child has been presented, its parent is worthless, and presenting the parent is
//! treated as theft: every refresh token of the device is revoked and the device must
//! enroll again (its access tokens are refused from then on, since every request checks
//! the device's standing; its data stays on the phone). A token never outlives its own
//! expiry. Backends serialize the refreshes of one device (SQLite: the writer; PostgreSQL:
//! the device's row locked first).

/// A refresh token as stored, with what the decision needs to know of its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRow {
    pub device: String,
    pub user: String,
    pub expires_ms: i64,
    /// When the token was spent (it then has a successor).
    pub used_ms: Option<i64>,
    /// When the token was revoked (device or user revoked, superseded, or theft).
    pub revoked_ms: Option<i64>,
    /// The device or its user is revoked.
    pub device_revoked: bool,
    /// The device's tokens were all revoked after a reuse: it must enroll again.
    pub device_reset: bool,
    /// The token this one was issued for (none for an enrollment's first token).
    pub parent: Option<String>,
    /// One of the tokens issued for this one has been presented.
    pub child_used: bool,
}

/// Why a refresh token, an enrollment code or an access token is refused. The messages
/// name no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialRefusal {
    /// The refresh token is not one this server issued.
    UnknownToken,
    /// The refresh token expired, or was revoked (superseded by a retry, or its device's
    /// tokens were revoked).
    TokenExpired,
    /// The refresh token was spent and its successor used: a copy of it is in other
    /// hands. Every token of the device has just been revoked.
    TokenReused,
    /// The device's tokens were revoked after a reuse.
    DeviceReset,
    /// The device is not enrolled (unknown, or enrolled for another user).
    NotEnrolled,
}

impl CredentialRefusal {
    /// The error code on the wire: `reenroll` for every refusal that only a new
    /// enrollment mends (the device keeps its data).
    pub fn code(self) -> &'static str {
        "reenroll"
    }

    /// What the refusal says to a person.
    pub fn message(self) -> &'static str {
        match self {
            CredentialRefusal::UnknownToken => {
                "unknown refresh token; enroll the device again (its data is kept)"
            }
            CredentialRefusal::TokenExpired => {
                "refresh token revoked or expired; enroll the device again (its data is kept)"
            }
            CredentialRefusal::TokenReused => {
                "this refresh token was already used and its successor too: every token of this device is revoked; enroll the device again (its data is kept)"
            }
            CredentialRefusal::DeviceReset => {
                "this device's tokens were revoked after a refresh token was reused; enroll the device again (its data is kept)"
            }
            CredentialRefusal::NotEnrolled => {
                "this device is not enrolled; enroll it again (its data is kept)"
            }
        }
    }
}

impl std::fmt::Display for CredentialRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// The message of a revoked device (or user): it must delete its data.
pub const REVOKED_MESSAGE: &str = "this device has been revoked: delete its data";
/// The error code of a revoked device.
pub const REVOKED_CODE: &str = "revoked";

/// What to do with a presented refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshDecision {
    /// Spend the token (`used_ms` = now), revoke the unused siblings (the other unused
    /// children of `parent`, when given) and store the new token as its child.
    Rotate {
        parent: Option<String>,
    },
    /// A retry after a lost reply: store the new token as one more child of the spent one.
    Reissue,
    /// Revoke every refresh token of the device and mark the device reset; answer
    /// [`CredentialRefusal::TokenReused`].
    Theft,
    /// The device or its user is revoked: answer with its grids to purge.
    Revoked,
    Refuse(CredentialRefusal),
}

/// The refresh rule.
pub fn decide_refresh(row: Option<&RefreshRow>, now_ms: i64) -> RefreshDecision {
    let Some(row) = row else {
        return RefreshDecision::Refuse(CredentialRefusal::UnknownToken);
    };
    if row.device_revoked {
        return RefreshDecision::Revoked;
    }
    if row.device_reset {
        return RefreshDecision::Refuse(CredentialRefusal::DeviceReset);
    }
    if row.revoked_ms.is_some() || row.expires_ms <= now_ms {
        return RefreshDecision::Refuse(CredentialRefusal::TokenExpired);
    }
    if row.used_ms.is_none() {
        return RefreshDecision::Rotate {
            parent: row.parent.clone(),
        };
    }
    if row.child_used {
        RefreshDecision::Theft
    } else {
        RefreshDecision::Reissue
    }
}

/// An enrollment code as stored, with its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRow {
    pub user: String,
    pub user_name: String,
    pub expires_ms: i64,
    pub used_ms: Option<i64>,
    pub user_revoked: bool,
}

/// The enrollment rule: a code enrolls once, before it expires, for a user not revoked.
/// Every refusal looks the same from outside (no oracle of which codes exist).
pub fn may_enroll(row: Option<&CodeRow>, now_ms: i64) -> bool {
    row.is_some_and(|r| r.used_ms.is_none() && r.expires_ms > now_ms && !r.user_revoked)
}

/// The message of a refused enrollment code.
pub const ENROLL_REFUSED: &str =
    "unknown, used or expired enrollment code; ask the station for a new one";

/// The device a phone names as the one its data was written as
/// (`EnrollRequest::previous_device`), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousDevice {
    pub id: String,
    /// Its user; `None` when this server does not know the device.
    pub owner: Option<String>,
}

/// What an enrollment is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollDecision {
    /// Spend the code and register the new device. `succeeds`: the earlier device of the
    /// same user whose data the phone holds. The new device then pushes that device's
    /// changes as its own (its outbox syncs), and the earlier device is retired: its
    /// refresh tokens are revoked and it is reset (a copy of its credentials elsewhere
    /// is told to enroll again, never to delete its data).
    Enroll { succeeds: Option<String> },
    /// The code is unknown, spent or expired, or its user is revoked (401).
    Refuse,
    /// The code is valid but for another user than the one the phone's data belongs to
    /// (409 `other_user`). The code is not spent: the phone may hand over (an empty
    /// outbox) and enroll again with it.
    OtherUser,
    /// The code is valid but this server does not know the device the phone's data was
    /// written as (409 `unknown_device`; the code is not spent): the phone is talking
    /// to another server than the one it was enrolled with.
    UnknownPrevious,
}

/// The enrollment rule. The code is judged first, so that the refusals of a bad code all
/// look the same (no oracle of which devices exist).
pub fn decide_enroll(
    code: Option<&CodeRow>,
    previous: Option<&PreviousDevice>,
    now_ms: i64,
) -> EnrollDecision {
    if !may_enroll(code, now_ms) {
        return EnrollDecision::Refuse;
    }
    let Some(code) = code else {
        return EnrollDecision::Refuse;
    };
    match previous {
        None => EnrollDecision::Enroll { succeeds: None },
        Some(PreviousDevice { owner: None, .. }) => EnrollDecision::UnknownPrevious,
        Some(PreviousDevice {
            owner: Some(owner), ..
        }) if owner != &code.user => EnrollDecision::OtherUser,
        Some(p) => EnrollDecision::Enroll {
            succeeds: Some(p.id.clone()),
        },
    }
}

/// The message of [`EnrollDecision::OtherUser`].
pub const ENROLL_OTHER_USER: &str = "this enrollment code is for another user than the one whose work this phone holds; the code was not used: sync that work first (or sign out, which deletes it), then enroll with this code";
/// The message of [`EnrollDecision::UnknownPrevious`].
pub const ENROLL_UNKNOWN_DEVICE: &str = "this server does not know the device this phone's data was written as: enroll with the station's server it was enrolled with; the code was not used";

/// Most links of a succession chain followed (a phone re-enrolled this many times).
pub const MAX_PREDECESSORS: usize = 32;

/// A device as stored, with its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub owner: String,
    pub user_name: String,
    /// The device or its user is revoked.
    pub revoked: bool,
    /// Its tokens were revoked after a reuse.
    pub reset: bool,
}

/// A device's standing at a request, as decided from its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The device is unknown or belongs to another user than the token says.
    Unknown,
    /// Revoked: it must delete its data.
    Revoked,
    /// Its tokens were revoked after a reuse: it must enroll again.
    Reset,
    Active,
}

/// The device-standing rule for an access token naming `device` and `user`.
pub fn decide_standing(row: Option<&DeviceRow>, user: &str) -> Standing {
    match row {
        None => Standing::Unknown,
        Some(r) if r.owner != user => Standing::Unknown,
        Some(r) if r.revoked => Standing::Revoked,
        Some(r) if r.reset => Standing::Reset,
        Some(_) => Standing::Active,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_ok() -> CodeRow {
        CodeRow {
            user: "u".into(),
            user_name: "n".into(),
            expires_ms: 100,
            used_ms: None,
            user_revoked: false,
        }
    }

    fn row() -> RefreshRow {
        RefreshRow {
            device: "d".into(),
            user: "u".into(),
            expires_ms: 1_000,
            used_ms: None,
            revoked_ms: None,
            device_revoked: false,
            device_reset: false,
            parent: None,
            child_used: false,
        }
    }

    #[test]
    fn refresh_rule() {
        assert_eq!(
            decide_refresh(None, 0),
            RefreshDecision::Refuse(CredentialRefusal::UnknownToken)
        );
        assert_eq!(
            decide_refresh(Some(&row()), 0),
            RefreshDecision::Rotate { parent: None }
        );
        let child = RefreshRow {
            parent: Some("p".into()),
            ..row()
        };
        assert_eq!(
            decide_refresh(Some(&child), 0),
            RefreshDecision::Rotate {
                parent: Some("p".into())
            }
        );
        assert_eq!(
            decide_refresh(Some(&row()), 1_000),
            RefreshDecision::Refuse(CredentialRefusal::TokenExpired)
        );
        let spent = RefreshRow {
            used_ms: Some(5),
            ..row()
        };
        assert_eq!(decide_refresh(Some(&spent), 10), RefreshDecision::Reissue);
        let stolen = RefreshRow {
            child_used: true,
            ..spent.clone()
        };
        assert_eq!(decide_refresh(Some(&stolen), 10), RefreshDecision::Theft);
        let superseded = RefreshRow {
            revoked_ms: Some(7),
            ..child
        };
        assert_eq!(
            decide_refresh(Some(&superseded), 10),
            RefreshDecision::Refuse(CredentialRefusal::TokenExpired)
        );
        // Revocation and reset come before everything else.
        let revoked = RefreshRow {
            device_revoked: true,
            ..stolen.clone()
        };
        assert_eq!(decide_refresh(Some(&revoked), 10), RefreshDecision::Revoked);
        let reset = RefreshRow {
            device_reset: true,
            ..spent
        };
        assert_eq!(
            decide_refresh(Some(&reset), 10),
            RefreshDecision::Refuse(CredentialRefusal::DeviceReset)
        );
    }

    #[test]
    fn enroll_and_standing_rules() {
        let code = CodeRow {
            user: "u".into(),
            user_name: "n".into(),
            expires_ms: 100,
            used_ms: None,
            user_revoked: false,
        };
        assert!(may_enroll(Some(&code), 99));
        assert!(!may_enroll(Some(&code), 100));
        assert!(!may_enroll(None, 0));
        assert!(!may_enroll(
            Some(&CodeRow {
                used_ms: Some(1),
                ..code.clone()
            }),
            0
        ));
        assert!(!may_enroll(
            Some(&CodeRow {
                user_revoked: true,
                ..code
            }),
            0
        ));
        assert_eq!(
            decide_enroll(Some(&code_ok()), None, 0),
            EnrollDecision::Enroll { succeeds: None }
        );
        let mine = PreviousDevice {
            id: "d0".into(),
            owner: Some("u".into()),
        };
        assert_eq!(
            decide_enroll(Some(&code_ok()), Some(&mine), 0),
            EnrollDecision::Enroll {
                succeeds: Some("d0".into())
            }
        );
        let theirs = PreviousDevice {
            owner: Some("v".into()),
            ..mine.clone()
        };
        assert_eq!(
            decide_enroll(Some(&code_ok()), Some(&theirs), 0),
            EnrollDecision::OtherUser
        );
        let unknown = PreviousDevice {
            owner: None,
            ..mine.clone()
        };
        assert_eq!(
            decide_enroll(Some(&code_ok()), Some(&unknown), 0),
            EnrollDecision::UnknownPrevious
        );
        // A bad code is refused alike whatever the previous device: no oracle of devices.
        for p in [None, Some(&mine), Some(&theirs), Some(&unknown)] {
            assert_eq!(decide_enroll(None, p, 0), EnrollDecision::Refuse);
            assert_eq!(
                decide_enroll(Some(&code_ok()), p, 100),
                EnrollDecision::Refuse
            );
        }
        let d = DeviceRow {
            owner: "u".into(),
            user_name: "n".into(),
            revoked: false,
            reset: false,
        };
        assert_eq!(decide_standing(Some(&d), "u"), Standing::Active);
        assert_eq!(decide_standing(Some(&d), "v"), Standing::Unknown);
        assert_eq!(decide_standing(None, "u"), Standing::Unknown);
        let reset = DeviceRow {
            reset: true,
            ..d.clone()
        };
        assert_eq!(decide_standing(Some(&reset), "u"), Standing::Reset);
        let revoked = DeviceRow {
            revoked: true,
            ..reset
        };
        assert_eq!(decide_standing(Some(&revoked), "u"), Standing::Revoked);
    }
}
