//! Limits at the server's edge that hold state: enrollment attempts (per client address and
//! overall, with a back-off that grows with each failure) and open long polls per device.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Failures from one address before its back-off starts.
pub const FREE_FAILURES: u32 = 5;
/// Longest back-off of one address.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Addresses whose failures are remembered at once (the oldest are forgotten first).
const MAX_TRACKED: usize = 16_384;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    blocked_until: Instant,
    last: Instant,
}

/// Failed enrollment attempts (a code that is unknown, used, expired or malformed): a rate
/// per client address and a rate overall (an address, or everyone, past its rate waits until
/// the rate allows another), and a back-off per address doubling with each failure after
/// [`FREE_FAILURES`]. Successful enrollments are not limited (a station enrols a room of
/// phones at once). Refusals are logged at most once per 10 s, with the number left out.
pub struct EnrollGuard {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    overall: DefaultDirectRateLimiter,
    overall_blocked_until: Mutex<Option<Instant>>,
    log: DefaultDirectRateLimiter,
    unlogged: AtomicU64,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl std::fmt::Debug for EnrollGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnrollGuard(..)")
    }
}

fn per_minute(n: u32) -> Quota {
    let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(n).allow_burst(n)
}

impl EnrollGuard {
    pub fn new(per_ip_per_minute: u32, overall_per_minute: u32) -> EnrollGuard {
        EnrollGuard {
            per_ip: RateLimiter::keyed(per_minute(per_ip_per_minute)),
            overall: RateLimiter::direct(per_minute(overall_per_minute)),
            overall_blocked_until: Mutex::new(None),
            log: RateLimiter::direct(
                Quota::with_period(Duration::from_secs(10))
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)),
            ),
            unlogged: AtomicU64::new(0),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one attempt from `ip`, or says how long to wait.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        if let Some(until) = *self
            .overall_blocked_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            && until > now
        {
            return Err(until - now);
        }
        if let Some(f) = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&ip)
            && f.blocked_until > now
        {
            return Err(f.blocked_until - now);
        }
        Ok(())
    }

    /// Records a failed attempt (unknown, used or malformed code) from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let clock = DefaultClock::default();
        let rate_wait = self
            .per_ip
            .check_key(&ip)
            .err()
            .map(|n| n.wait_time_from(clock.now()));
        if let Err(n) = self.overall.check() {
            *self
                .overall_blocked_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner) =
                Some(now + n.wait_time_from(clock.now()));
        }
        let mut m = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if m.len() >= MAX_TRACKED && !m.contains_key(&ip) {
            // Forget the addresses not blocked any more, then the least recent.
            m.retain(|_, f| f.blocked_until > now);
            if m.len() >= MAX_TRACKED
                && let Some(oldest) = m.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| *k)
            {
                m.remove(&oldest);
            }
        }
        let f = m.entry(ip).or_insert(Failures {
            count: 0,
            blocked_until: now,
            last: now,
        });
        f.count = f.count.saturating_add(1);
        f.last = now;
        if f.count > FREE_FAILURES {
            f.blocked_until = now + backoff(f.count - FREE_FAILURES);
        }
        if let Some(w) = rate_wait {
            f.blocked_until = f.blocked_until.max(now + w);
        }
        drop(m);
        self.per_ip.retain_recent();
    }

    /// Forgets the failures of `ip` after a successful enrollment.
    pub fn succeeded(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&ip);
    }

    /// Whether a refusal may be logged now; the count of refusals not logged since the last
    /// one is returned with it.
    pub fn may_log(&self) -> Option<u64> {
        if self.log.check().is_ok() {
            Some(self.unlogged.swap(0, Ordering::Relaxed))
        } else {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// The back-off after the `n`-th failure past the free ones: 2, 4, 8 … seconds, at most
/// [`MAX_BACKOFF`].
pub fn backoff(n: u32) -> Duration {
    let secs = 1u64.checked_shl(n.min(20)).unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// Open long polls per device.
#[derive(Debug, Default)]
pub struct LongPolls {
    open: Mutex<HashMap<String, usize>>,
}

/// One open long poll; closing it (drop) frees its place.
#[derive(Debug)]
pub struct LongPollSlot {
    polls: Arc<LongPolls>,
    device: String,
}

impl LongPolls {
    /// A place for one more long poll of `device`, unless it has `max` open.
    pub fn open(polls: &Arc<LongPolls>, device: &str, max: usize) -> Option<LongPollSlot> {
        let mut m = polls.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = m.entry(device.to_string()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(LongPollSlot {
            polls: polls.clone(),
            device: device.to_string(),
        })
    }
}

impl Drop for LongPollSlot {
    fn drop(&mut self) {
        let mut m = self
            .polls
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.device) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.device);
            }
        }
    }
}

/// Open connections per client address (see `server::serve`).
#[derive(Debug, Default)]
pub struct ConnectionsPerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of an address; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionSlot {
    table: Arc<ConnectionsPerIp>,
    ip: IpAddr,
}

impl ConnectionsPerIp {
    pub fn open(table: &Arc<ConnectionsPerIp>, ip: IpAddr, max: usize) -> Option<ConnectionSlot> {
        let mut m = table.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = m.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut m = self
            .table
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }

    #[test]
    fn an_address_is_limited_and_blocked_after_failures() {
        let g = EnrollGuard::new(100, 1000);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..FREE_FAILURES {
            assert!(g.admit(ip).is_ok());
            g.failed(ip);
        }
        assert!(g.admit(ip).is_ok());
        g.failed(ip);
        let wait = g.admit(ip).expect_err("blocked");
        assert!(wait > Duration::from_secs(1) && wait <= Duration::from_secs(2));
        assert!(g.admit(other).is_ok(), "another address is not blocked");
        g.succeeded(ip);
        assert!(g.admit(ip).is_ok());

        // Successes are not limited.
        let rate = EnrollGuard::new(3, 1000);
        for _ in 0..20 {
            assert!(rate.admit(ip).is_ok());
            rate.succeeded(ip);
        }
        // The 4th failure in a minute exceeds the address's rate.
        for _ in 0..3 {
            assert!(rate.admit(ip).is_ok());
            rate.failed(ip);
        }
        assert!(rate.admit(ip).is_ok());
        rate.failed(ip);
        let wait = rate.admit(ip).expect_err("rate exceeded");
        assert!(wait > Duration::from_secs(10), "{wait:?}");
        assert!(rate.admit(other).is_ok());
        // Failures from everyone together.
        let overall = EnrollGuard::new(100, 2);
        overall.failed(ip);
        overall.failed(other);
        assert!(overall.admit([10, 0, 0, 3].into()).is_ok());
        overall.failed([10, 0, 0, 3].into());
        assert!(overall.admit([10, 0, 0, 4].into()).is_err());
    }

    #[test]
    fn long_poll_and_connection_slots_are_freed() {
        let p = Arc::new(LongPolls::default());
        let a = LongPolls::open(&p, "d1", 2).expect("1");
        let _b = LongPolls::open(&p, "d1", 2).expect("2");
        assert!(LongPolls::open(&p, "d1", 2).is_none());
        assert!(LongPolls::open(&p, "d2", 2).is_some());
        drop(a);
        assert!(LongPolls::open(&p, "d1", 2).is_some());
        let c = Arc::new(ConnectionsPerIp::default());
        let ip: IpAddr = [127, 0, 0, 2].into();
        let s = ConnectionsPerIp::open(&c, ip, 1).expect("1");
        assert!(ConnectionsPerIp::open(&c, ip, 1).is_none());
        drop(s);
        assert!(ConnectionsPerIp::open(&c, ip, 1).is_some());
    }
}
