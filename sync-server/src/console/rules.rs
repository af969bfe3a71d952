//! The console's account rules, pure functions with `now` passed in: both storage backends
//! call them inside the transaction that reads and writes the rows, so the rule is written once.

use crate::storage::{ConsoleSession, LoginFailures};

/// Failed logins of an account before it is locked: the fifth failure locks it.
pub const FREE_FAILURES: u32 = 4;
/// How long the first lock lasts; each further failure after a lock doubles it.
pub const FIRST_LOCK_MS: i64 = 60_000;
/// The longest lock.
pub const MAX_LOCK_MS: i64 = 3_600_000;
/// Failures older than this (with no lock in force) are forgotten.
pub const FAILURE_MEMORY_MS: i64 = 24 * 3_600_000;

/// The failures of an account after one more failed login at `now`.
///
/// Failures 1 to [`FREE_FAILURES`] only count; the next one locks the account for
/// [`FIRST_LOCK_MS`], and every failure after that (possible only once the lock has ended)
/// locks it twice as long, up to [`MAX_LOCK_MS`]. A failure during a lock is not counted
/// (callers refuse those without checking the password).
pub fn after_failure(prev: Option<&LoginFailures>, now_ms: i64) -> LoginFailures {
    let prev = prev.filter(|p| {
        // Long-forgotten failures do not count, unless a lock is still in force.
        p.locked_until_ms > now_ms || now_ms.saturating_sub(p.last_ms) < FAILURE_MEMORY_MS
    });
    if let Some(p) = prev
        && p.locked_until_ms > now_ms
    {
        return p.clone();
    }
    let count = prev.map_or(0, |p| p.count).saturating_add(1);
    let locked_until_ms = if count > FREE_FAILURES {
        let doublings = (count - FREE_FAILURES - 1).min(16);
        now_ms.saturating_add(
            FIRST_LOCK_MS
                .saturating_mul(1_i64 << doublings)
                .min(MAX_LOCK_MS),
        )
    } else {
        0
    };
    LoginFailures {
        count,
        last_ms: now_ms,
        locked_until_ms,
    }
}

/// How long the account stays locked at `now` (`None`: it is not locked).
pub fn locked_for(f: Option<&LoginFailures>, now_ms: i64) -> Option<i64> {
    f.map(|f| f.locked_until_ms - now_ms).filter(|ms| *ms > 0)
}

/// How long a console session may last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Without a request for this long, the session ends.
    pub idle_ms: i64,
    /// However active, the session ends this long after the login.
    pub absolute_ms: i64,
}

impl SessionPolicy {
    /// 30 minutes idle, 12 hours in all.
    pub const DEFAULT: SessionPolicy = SessionPolicy {
        idle_ms: 30 * 60_000,
        absolute_ms: 12 * 3_600_000,
    };
}

/// Whether a session is still valid at `now` (a clock that went backwards past the login
/// ends it too).
pub fn session_live(s: &ConsoleSession, now_ms: i64, policy: &SessionPolicy) -> bool {
    now_ms >= s.created_ms.saturating_sub(60_000)
        && now_ms.saturating_sub(s.last_seen_ms) < policy.idle_ms
        && now_ms.saturating_sub(s.created_ms) < policy.absolute_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fifth_failure_locks_and_later_ones_double_the_lock() {
        let mut f = None;
        for i in 1..=4 {
            let n = after_failure(f.as_ref(), 1_000 * i);
            assert_eq!(n.count, u32::try_from(i).unwrap());
            assert_eq!(locked_for(Some(&n), 1_000 * i), None, "failure {i}");
            f = Some(n);
        }
        let fifth = after_failure(f.as_ref(), 5_000);
        assert_eq!(locked_for(Some(&fifth), 5_000), Some(FIRST_LOCK_MS));
        // During the lock nothing is counted and the lock does not grow.
        let during = after_failure(Some(&fifth), 6_000);
        assert_eq!(during, fifth);
        // After it, the next failure locks twice as long, then four times.
        let end = fifth.locked_until_ms;
        let sixth = after_failure(Some(&fifth), end);
        assert_eq!(locked_for(Some(&sixth), end), Some(2 * FIRST_LOCK_MS));
        let seventh = after_failure(Some(&sixth), sixth.locked_until_ms + 1);
        assert_eq!(
            locked_for(Some(&seventh), sixth.locked_until_ms + 1),
            Some(4 * FIRST_LOCK_MS)
        );
        // Capped at an hour.
        let mut f = seventh;
        for _ in 0..40 {
            f = after_failure(Some(&f), f.locked_until_ms + 1);
        }
        assert_eq!(f.locked_until_ms - f.last_ms, MAX_LOCK_MS);
    }

    #[test]
    fn old_failures_are_forgotten() {
        let f = LoginFailures {
            count: 4,
            last_ms: 0,
            locked_until_ms: 0,
        };
        assert_eq!(after_failure(Some(&f), FAILURE_MEMORY_MS).count, 1);
        assert_eq!(after_failure(Some(&f), FAILURE_MEMORY_MS - 1).count, 5);
    }

    #[test]
    fn sessions_end_when_idle_or_old() {
        let p = SessionPolicy {
            idle_ms: 100,
            absolute_ms: 1_000,
        };
        let s = ConsoleSession {
            hash: "h".into(),
            user: "u".into(),
            created_ms: 10_000,
            last_seen_ms: 10_500,
            ip: "127.0.0.1".into(),
        };
        assert!(session_live(&s, 10_599, &p));
        assert!(!session_live(&s, 10_600, &p), "idle");
        let busy = ConsoleSession {
            last_seen_ms: 10_990,
            ..s.clone()
        };
        assert!(session_live(&busy, 10_999, &p));
        assert!(!session_live(&busy, 11_000, &p), "absolute");
        assert!(
            !session_live(&s, 10_000 - 60_001, &p),
            "clock before the login"
        );
    }
}
