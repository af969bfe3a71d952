//! Hybrid logical clocks (HLC) for offline-first event stamping.
//!
//! Every event a device records (a task transition, an edit, …) is stamped
//! with an [`Hlc`]: physical milliseconds plus a logical counter. Stamps
//! issued by one device are strictly increasing, and a device that has
//! observed a remote stamp issues later stamps that sort after it, so causal
//! order survives merging even when phone clocks are wrong.
//!
//! Phone clocks are often wrong (1970 after a battery swap, a year ahead
//! after a bad manual setting). At every sync the server returns its time and
//! the device is *anchored*: [`ClockState::offset_ms`] records
//! `server_ms - device_ms`, and the corrected physical time is
//! `device_ms + offset_ms`.
//!
//! This module is pure logic: the caller supplies the device clock reading
//! (`device_ms`, milliseconds since the Unix epoch, possibly wrong or even
//! negative) and persists [`ClockState`] via [`ClockState::to_bytes`].

use std::fmt;

/// A hybrid-logical-clock timestamp: milliseconds since the Unix epoch in the
/// high 48 bits, a logical counter in the low 16 bits. Totally ordered (by
/// wall time, then counter).
///
/// The wall time is capped at [`Hlc::MAX_WALL_MS`] (2^47 - 1 ms, i.e. year
/// 6429) so that the packed value always fits a *non-negative* `i64`: stored
/// in an SQLite `INTEGER` column the stamps sort exactly like `Hlc` values.
/// (The full 48-bit field would reach year 10889, but a wall time of 2^47 ms
/// or more would make the `i64` negative and break that ordering.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc(u64);

impl Hlc {
    /// The smallest timestamp: 1970-01-01T00:00:00.000Z, counter 0.
    pub const ZERO: Hlc = Hlc(0);
    /// The largest representable wall time in milliseconds (year 6429).
    pub const MAX_WALL_MS: u64 = (1 << 47) - 1;
    /// The largest timestamp: [`Hlc::MAX_WALL_MS`] with counter `u16::MAX`.
    pub const MAX: Hlc = Hlc((Self::MAX_WALL_MS << 16) | 0xFFFF);

    /// Builds a timestamp. A `wall_ms` beyond [`Hlc::MAX_WALL_MS`] saturates.
    pub fn new(wall_ms: u64, counter: u16) -> Hlc {
        let wall = wall_ms.min(Self::MAX_WALL_MS);
        Hlc((wall << 16) | u64::from(counter))
    }

    /// Milliseconds since the Unix epoch.
    pub fn wall_ms(self) -> u64 {
        self.0 >> 16
    }

    /// The logical counter that orders stamps sharing a wall time.
    pub fn counter(self) -> u16 {
        // Truncation to the low 16 bits is the point.
        (self.0 & 0xFFFF) as u16
    }

    /// The packed value for storage; always non-negative and order-preserving.
    pub fn as_i64(self) -> i64 {
        // Every constructor keeps bit 63 clear, so this cannot fail; saturate
        // rather than panic just in case.
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// Unpacks a stored value; `None` for negative input (never produced by
    /// [`Hlc::as_i64`]).
    pub fn from_i64(v: i64) -> Option<Hlc> {
        u64::try_from(v).ok().map(Hlc)
    }
}

impl fmt::Display for Hlc {
    /// ISO-8601 UTC with milliseconds, then `+counter`,
    /// e.g. `2026-11-26T15:04:05.123Z+3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.wall_ms();
        let millis = ms % 1000;
        let secs = ms / 1000;
        let (hour, minute, second) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
        let (year, month, day) = civil_date(secs / 86_400);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z+{}",
            self.counter()
        )
    }
}

fn is_leap_year(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// Proleptic Gregorian (year, month, day) of the day `days` after 1970-01-01.
pub fn civil_date(days: u64) -> (u64, u64, u64) {
    // Any 400 consecutive Gregorian years hold exactly 97 leap years, i.e.
    // 146_097 days, whatever year they start at; skip whole cycles first so
    // the year loop below runs at most 400 times.
    const DAYS_PER_400_YEARS: u64 = 146_097;
    let mut year = 1970 + 400 * (days / DAYS_PER_400_YEARS);
    let mut rest = days % DAYS_PER_400_YEARS;
    loop {
        let len = if is_leap_year(year) { 366 } else { 365 };
        if rest < len {
            break;
        }
        rest -= len;
        year += 1;
    }
    let february = if is_leap_year(year) { 29 } else { 28 };
    let month_lengths = [31, february, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 1;
    for len in month_lengths {
        if rest < len {
            break;
        }
        rest -= len;
        month += 1;
    }
    (year, month, rest + 1)
}

/// Days from 1970-01-01 to the proleptic Gregorian date `year-month-day`, the inverse of
/// [`civil_date`]; `None` for a date that does not exist or is before 1970 or after 9999.
pub fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    if !(1970..=9999).contains(&year) || day == 0 || day > days_in_month(year, month)? {
        return None;
    }
    // Whole years since 1970 (leap days counted by the 4/100/400 rule), then the months.
    let leaps = |y: u64| y / 4 - y / 100 + y / 400;
    let before_year = (year - 1970) * 365 + leaps(year - 1) - leaps(1969);
    let before_month: u64 = (1..month).filter_map(|m| days_in_month(year, m)).sum();
    Some(before_year + before_month + day - 1)
}

/// The days of `month` (1–12) of `year`, or `None` for a month that does not exist.
pub fn days_in_month(year: u64, month: u64) -> Option<u64> {
    Some(match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => return None,
    })
}

/// A remote stamp further than this ahead of our corrected time is not
/// adopted by [`ClockState::observe`] (one day).
pub const MAX_FORWARD_DRIFT_MS: u64 = 24 * 3600 * 1000;

/// Length of the blob produced by [`ClockState::to_bytes`].
const STATE_BYTES: usize = 18;
/// Format version, the first byte of the blob.
const STATE_VERSION: u8 = 1;

/// The persisted state of one device's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockState {
    /// The highest timestamp issued or observed (adopted).
    pub last: Hlc,
    /// Server anchor: `server_ms - device_ms` at the last sync (0 = never
    /// anchored).
    pub offset_ms: i64,
    /// Whether `offset_ms` came from a server.
    pub anchored: bool,
}

impl ClockState {
    /// Corrected physical time: `device_ms + offset_ms`, clamped to
    /// `0..=Hlc::MAX_WALL_MS` (never overflows).
    pub fn corrected_ms(&self, device_ms: i64) -> u64 {
        let corrected = i128::from(device_ms) + i128::from(self.offset_ms);
        let clamped = corrected.clamp(0, i128::from(Hlc::MAX_WALL_MS));
        u64::try_from(clamped).unwrap_or(0)
    }

    /// Issues a new timestamp strictly greater than `last` and records it.
    ///
    /// The wall time is `max(last.wall, corrected)`; the counter resets to 0
    /// when the wall time advances and increments otherwise. When the counter
    /// would overflow, the wall time is advanced by 1 ms and the counter
    /// reset. The only exception is `last == Hlc::MAX` (year 6429), where
    /// nothing greater exists and `Hlc::MAX` is returned again.
    pub fn tick(&mut self, device_ms: i64) -> Hlc {
        let corrected = self.corrected_ms(device_ms);
        let last = self.last;
        let next = if corrected > last.wall_ms() {
            Hlc::new(corrected, 0)
        } else if last.counter() < u16::MAX {
            Hlc::new(last.wall_ms(), last.counter() + 1)
        } else if last.wall_ms() < Hlc::MAX_WALL_MS {
            Hlc::new(last.wall_ms() + 1, 0)
        } else {
            Hlc::MAX
        };
        self.last = next;
        next
    }

    /// Observes a remote timestamp (from a merged event).
    ///
    /// The stamp is accepted when its wall time is at most
    /// [`MAX_FORWARD_DRIFT_MS`] ahead of the corrected time; `last` then
    /// becomes `max(last, remote)`, so later ticks sort after it. A stamp
    /// from further in the future (a peer with a wildly wrong clock) is not
    /// adopted, so it cannot drag this device's clock along. Returns whether
    /// the stamp was accepted (also `true` for an acceptable stamp that is
    /// not newer than `last`). `last` never moves backwards.
    pub fn observe(&mut self, remote: Hlc, device_ms: i64) -> bool {
        let limit = self
            .corrected_ms(device_ms)
            .saturating_add(MAX_FORWARD_DRIFT_MS);
        if remote.wall_ms() > limit {
            return false;
        }
        self.last = self.last.max(remote);
        true
    }

    /// Anchors to the server's clock: `offset_ms = server_ms - device_ms`
    /// (saturating), `anchored = true`. Call at every sync with the server
    /// time and the device reading taken at (about) the same moment.
    ///
    /// `last` is never moved backwards, because stamps already issued (and
    /// perhaps already synced) must stay ordered before any new stamp; it is
    /// raised to the server's time, so whatever the device clock does later
    /// (a battery swap back to 1970, a manual setting a year back) no stamp
    /// is ever issued before the anchor, and everything the server held at
    /// that moment sorts before this device's next stamp.
    ///
    /// Trade-off: a device whose clock ran, say, a year ahead before its
    /// first anchor has pushed `last` a year into the future. After the
    /// anchor its corrected time is right, but [`ClockState::tick`] still
    /// issues `max(last.wall, corrected)`, so its NEW stamps stay pinned at
    /// `last.wall` (only the counter grows, spilling into +1 ms steps every
    /// 65,536 stamps) until real time catches up with `last`. Its events
    /// therefore sort correctly among themselves and after everything it has
    /// seen, but their wall times overstate when they happened. We accept
    /// that rather than reorder history. Deadline checks are not affected:
    /// [`ClockState::now_ms`] uses the corrected time once anchored.
    pub fn anchor(&mut self, server_ms: i64, device_ms: i64) {
        self.offset_ms = server_ms.saturating_sub(device_ms);
        self.anchored = true;
        let server = Hlc::new(u64::try_from(server_ms).unwrap_or(0), 0);
        self.last = self.last.max(server);
    }

    /// Whether the clock was ever anchored to a server's time.
    pub fn is_anchored(&self) -> bool {
        self.anchored
    }

    /// "Now" for deadline checks (is a task overdue?).
    ///
    /// * Anchored: the corrected time `device_ms + offset_ms`. The server is
    ///   the source of truth; `last` is deliberately ignored, because a clock
    ///   that ran ahead before anchoring (or a peer's stamp up to a day
    ///   ahead) may have pushed `last` into the future, and using it as a
    ///   floor would make deadlines look passed.
    /// * Never anchored: `max(corrected, last.wall)`. Without server truth,
    ///   the history already issued or seen tells us time has at least
    ///   reached `last.wall`, which defeats a clock reset to 1970 after a
    ///   battery swap. (A never-anchored clock that runs ahead cannot be
    ///   detected; it is corrected at the first sync.)
    ///
    /// Limitation: if an anchored device's clock is reset afterwards (battery
    /// swap between syncs) the stale offset makes `now_ms` too early until
    /// the next anchor, i.e. deadlines look not yet passed. The next sync
    /// re-anchors and fixes it.
    pub fn now_ms(&self, device_ms: i64) -> u64 {
        let corrected = self.corrected_ms(device_ms);
        if self.anchored {
            corrected
        } else {
            corrected.max(self.last.wall_ms())
        }
    }

    /// Serializes to a fixed 18-byte blob: a version byte (1), `last` as a
    /// big-endian u64, `offset_ms` as a big-endian i64, `anchored` as 0 or 1.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(STATE_BYTES);
        out.push(STATE_VERSION);
        out.extend_from_slice(&self.last.0.to_be_bytes());
        out.extend_from_slice(&self.offset_ms.to_be_bytes());
        out.push(u8::from(self.anchored));
        out
    }

    /// Parses the blob written by [`ClockState::to_bytes`]. Returns `None`
    /// (never panics) for a wrong length, an unknown version, an anchored
    /// flag other than 0/1 or a timestamp beyond [`Hlc::MAX`].
    pub fn from_bytes(b: &[u8]) -> Option<ClockState> {
        let bytes: &[u8; STATE_BYTES] = b.try_into().ok()?;
        let (&version, rest) = bytes.split_first()?;
        if version != STATE_VERSION {
            return None;
        }
        let (last, rest) = rest.split_first_chunk::<8>()?;
        let (offset, rest) = rest.split_first_chunk::<8>()?;
        let anchored = match rest {
            [0] => false,
            [1] => true,
            _ => return None,
        };
        let last = u64::from_be_bytes(*last);
        if last > Hlc::MAX.0 {
            return None;
        }
        Some(ClockState {
            last: Hlc(last),
            offset_ms: i64::from_be_bytes(*offset),
            anchored,
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn days_from_civil_inverts_civil_date() {
        for days in (0..60_000)
            .step_by(7)
            .chain([59, 365, 10_957, 11_016, 2_932_896])
        {
            let (y, m, d) = civil_date(days);
            assert_eq!(days_from_civil(y, m, d), Some(days), "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(2026, 2, 29), None);
        assert_eq!(
            days_from_civil(2028, 2, 29).map(civil_date),
            Some((2028, 2, 29))
        );
        assert_eq!(days_from_civil(2026, 13, 1), None);
        assert_eq!(days_from_civil(1969, 12, 31), None);
        assert_eq!(days_from_civil(2026, 4, 31), None);
    }

    use super::*;

    const DAY_MS: i64 = 24 * 3600 * 1000;
    /// 2026-11-26T15:04:05.123Z
    const T2026: i64 = 1_795_705_445_123;

    /// A tiny linear congruential generator (Knuth's MMIX constants).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
    }

    #[test]
    fn hlc_packing_and_order() {
        let h = Hlc::new(T2026 as u64, 7);
        assert_eq!(h.wall_ms(), T2026 as u64);
        assert_eq!(h.counter(), 7);
        assert!(Hlc::new(5, u16::MAX) < Hlc::new(6, 0));
        assert!(Hlc::new(5, 1) < Hlc::new(5, 2));
        assert_eq!(Hlc::default(), Hlc::ZERO);
        assert_eq!(Hlc::new(u64::MAX, 0).wall_ms(), Hlc::MAX_WALL_MS);
        assert_eq!(Hlc::from_i64(h.as_i64()), Some(h));
        assert_eq!(Hlc::from_i64(Hlc::MAX.as_i64()), Some(Hlc::MAX));
        assert_eq!(Hlc::MAX.as_i64(), i64::MAX);
        assert!(Hlc::MAX.as_i64() > 0);
        assert_eq!(Hlc::from_i64(-1), None);
        assert_eq!(Hlc::from_i64(i64::MIN), None);
        // Storage order equals Hlc order.
        let a = Hlc::new(1000, 65535);
        let b = Hlc::new(1001, 0);
        assert!(a.as_i64() < b.as_i64());
    }

    #[test]
    fn display_known_values() {
        assert_eq!(
            Hlc::new(T2026 as u64, 3).to_string(),
            "2026-11-26T15:04:05.123Z+3"
        );
        assert_eq!(Hlc::ZERO.to_string(), "1970-01-01T00:00:00.000Z+0");
        assert_eq!(
            Hlc::new(1_700_000_000_000, 0).to_string(),
            "2023-11-14T22:13:20.000Z+0"
        );
        // Leap days, including the 400-year rule.
        assert_eq!(
            Hlc::new(951_782_400_000, 1).to_string(),
            "2000-02-29T00:00:00.000Z+1"
        );
        assert_eq!(
            Hlc::new(951_782_400_000 + DAY_MS as u64, 0).to_string(),
            "2000-03-01T00:00:00.000Z+0"
        );
        // 2100 is not a leap year: 2100-02-28 + 1 day = 2100-03-01.
        assert_eq!(
            Hlc::new(4_107_456_000_000, 0).to_string(),
            "2100-02-28T00:00:00.000Z+0"
        );
        assert_eq!(
            Hlc::new(4_107_456_000_000 + DAY_MS as u64, 0).to_string(),
            "2100-03-01T00:00:00.000Z+0"
        );
        assert_eq!(
            Hlc::new(1_704_067_199_999, 65535).to_string(),
            "2023-12-31T23:59:59.999Z+65535"
        );
        assert_eq!(Hlc::MAX.to_string(), "6429-10-17T02:45:55.327Z+65535");
    }

    #[test]
    fn monotonic_under_a_jumpy_clock() {
        let mut rng = Lcg(42);
        let mut state = ClockState::default();
        let mut prev = Hlc::ZERO;
        let mut device = T2026;
        for i in 0..10_000 {
            device = match rng.next() % 10 {
                // Battery swap: back to 1970 (or before).
                0 => (rng.next() % 1000) as i64 - 500,
                // Big jump forward or backward (up to ~1 year).
                1 => device + (rng.next() % (365 * DAY_MS as u64)) as i64 - 180 * DAY_MS,
                // Small jitter, often backwards.
                _ => device + (rng.next() % 2000) as i64 - 1000,
            };
            if i % 1000 == 500 {
                state.anchor(T2026 + i64::from(i), device);
            }
            let h = state.tick(device);
            assert!(h > prev, "tick {i}: {h} not after {prev}");
            assert_eq!(state.last, h);
            prev = h;
        }
    }

    #[test]
    fn counter_overflow_advances_wall() {
        let mut state = ClockState {
            last: Hlc::new(1000, u16::MAX - 1),
            ..ClockState::default()
        };
        assert_eq!(state.tick(0), Hlc::new(1000, u16::MAX));
        assert_eq!(state.tick(0), Hlc::new(1001, 0));
        assert_eq!(state.tick(0), Hlc::new(1001, 1));
        // Corrected time ahead of last: wall jumps, counter resets.
        assert_eq!(state.tick(5000), Hlc::new(5000, 0));
        // Saturation at the end of time does not panic.
        let mut end = ClockState {
            last: Hlc::MAX,
            ..ClockState::default()
        };
        assert_eq!(end.tick(i64::MAX), Hlc::MAX);
    }

    #[test]
    fn corrected_ms_clamps() {
        let mut state = ClockState::default();
        assert_eq!(state.corrected_ms(-5), 0);
        assert_eq!(state.corrected_ms(1234), 1234);
        state.anchor(i64::MAX, i64::MIN);
        assert_eq!(state.offset_ms, i64::MAX);
        assert_eq!(state.corrected_ms(i64::MAX), Hlc::MAX_WALL_MS);
        state.anchor(i64::MIN, i64::MAX);
        assert_eq!(state.corrected_ms(i64::MIN), 0);
    }

    #[test]
    fn restart_with_clock_reset_to_1970() {
        let mut state = ClockState::default();
        let mut before = Hlc::ZERO;
        for i in 0..100 {
            before = state.tick(T2026 + i / 3);
        }
        let blob = state.to_bytes();
        assert_eq!(blob.len(), 18);
        let restored = ClockState::from_bytes(&blob);
        assert_eq!(restored, Some(state));
        let mut restored = restored.unwrap_or_default();
        // After the restart the device clock reads 1970.
        let after = restored.tick(0);
        assert!(after > before);
        assert!(restored.tick(0) > after);
        // Never anchored: history tells us time has reached at least 2026.
        assert_eq!(restored.now_ms(0), before.wall_ms());

        // Round trip of an anchored state with a negative offset too.
        let mut anchored = restored;
        anchored.anchor(T2026, T2026 + 365 * DAY_MS);
        assert_eq!(ClockState::from_bytes(&anchored.to_bytes()), Some(anchored));
    }

    #[test]
    fn device_in_1970_anchors_to_2026() {
        let mut state = ClockState::default();
        // Before anchoring, the device stamps in 1970.
        let early = state.tick(5_000);
        assert_eq!(early.wall_ms(), 5_000);
        state.anchor(T2026, 6_000);
        assert!(state.anchored);
        assert_eq!(state.offset_ms, T2026 - 6_000);
        let h = state.tick(7_000);
        assert!(h > early);
        assert_eq!(h.wall_ms(), (T2026 + 1_000) as u64);
        assert!(h.to_string().starts_with("2026-11-26T15:04:06.123Z"));
        assert_eq!(state.now_ms(7_000), (T2026 + 1_000) as u64);
    }

    #[test]
    fn anchor_raises_last_and_a_clock_jumping_back_never_stamps_before_it() {
        let mut state = ClockState::default();
        // Anchored at T2026 by a device whose clock was right.
        state.anchor(T2026, T2026);
        assert!(state.last >= Hlc::new(T2026 as u64, 0));
        // The battery is swapped: the device clock reads 1970 from now on.
        let mut prev = Hlc::ZERO;
        for i in 0..1000 {
            let h = state.tick(i);
            assert!(h.wall_ms() >= T2026 as u64, "stamp {h} before the anchor");
            assert!(h > prev);
            prev = h;
        }
        // A negative server time cannot move anything backwards.
        let before = state.last;
        state.anchor(-5, 0);
        assert_eq!(state.last, before);
    }

    #[test]
    fn device_a_year_ahead_is_corrected_by_anchor() {
        let year = 365 * DAY_MS;
        let skew = year;
        let mut state = ClockState::default();
        // Never anchored, clock a year ahead: stamps a year in the future.
        let mut future = Hlc::ZERO;
        for i in 0..10 {
            future = state.tick(T2026 + skew + i);
        }
        assert!(future.wall_ms() >= (T2026 + year) as u64);
        let deadline = (T2026 + 7 * DAY_MS) as u64; // due next week
        assert!(
            state.now_ms(T2026 + skew) > deadline,
            "unanchored: looks overdue"
        );

        // Sync: the server says it is really T2026.
        state.anchor(T2026, T2026 + skew);
        assert_eq!(state.offset_ms, -skew);
        // now_ms is server time, so next week's deadline is not overdue...
        let device_now = T2026 + skew + 60_000;
        assert_eq!(state.now_ms(device_now), (T2026 + 60_000) as u64);
        assert!(state.now_ms(device_now) < deadline);
        // ...while new stamps still sort after the already issued ones,
        // pinned at last.wall (the documented trade-off).
        let next = state.tick(device_now);
        assert!(next > future);
        assert_eq!(next.wall_ms(), future.wall_ms());
        assert_eq!(next.counter(), future.counter() + 1);
        // Once real time catches up, the wall advances normally again.
        let caught_up = state.tick(T2026 + skew + year + 1_000);
        assert_eq!(caught_up.wall_ms(), (T2026 + year + 1_000) as u64);
        assert_eq!(caught_up.counter(), 0);
    }

    #[test]
    fn observe_adopts_honest_and_rejects_far_future() {
        let mut state = ClockState::default();
        state.anchor(T2026, T2026);
        let mine = state.tick(T2026);

        // An honest peer whose clock is 3 s ahead.
        let remote = Hlc::new((T2026 + 3_000) as u64, 9);
        assert!(state.observe(remote, T2026 + 10));
        assert_eq!(state.last, remote);
        let next = state.tick(T2026 + 20);
        assert!(next > remote);
        assert!(next > mine);

        // An old remote stamp is accepted but does not move last backwards.
        assert!(state.observe(Hlc::new(1_000, 0), T2026 + 30));
        assert_eq!(state.last, next);

        // A stamp 10 years ahead is not adopted.
        let bogus = Hlc::new((T2026 + 10 * 365 * DAY_MS) as u64, 0);
        assert!(!state.observe(bogus, T2026 + 40));
        assert_eq!(state.last, next);
        let after = state.tick(T2026 + 50);
        assert!(after < bogus);
        assert_eq!(after.wall_ms(), next.wall_ms());

        // Exactly at the drift limit is adopted; one ms beyond is not.
        let mut edge = ClockState::default();
        let limit = T2026 as u64 + MAX_FORWARD_DRIFT_MS;
        assert!(!edge.observe(Hlc::new(limit + 1, 0), T2026));
        assert!(edge.observe(Hlc::new(limit, 0), T2026));
        assert_eq!(edge.last, Hlc::new(limit, 0));
    }

    #[test]
    fn now_ms_floor_only_when_unanchored() {
        let mut state = ClockState {
            last: Hlc::new(T2026 as u64, 0),
            ..ClockState::default()
        };
        assert_eq!(state.now_ms(0), T2026 as u64);
        assert_eq!(state.now_ms(T2026 + 5), (T2026 + 5) as u64);
        state.anchor(T2026 - DAY_MS, T2026 - DAY_MS);
        assert_eq!(state.now_ms(T2026 - DAY_MS), (T2026 - DAY_MS) as u64);
    }

    #[test]
    fn from_bytes_rejects_malformed_input() {
        let good = ClockState {
            last: Hlc::new(T2026 as u64, 2),
            offset_ms: -42,
            anchored: true,
        }
        .to_bytes();
        assert!(ClockState::from_bytes(&good).is_some());
        assert_eq!(ClockState::from_bytes(&[]), None);
        assert_eq!(ClockState::from_bytes(&good[..17]), None);
        let mut long = good.clone();
        long.push(0);
        assert_eq!(ClockState::from_bytes(&long), None);
        let mut bad_version = good.clone();
        bad_version[0] = 2;
        assert_eq!(ClockState::from_bytes(&bad_version), None);
        let mut bad_flag = good.clone();
        bad_flag[17] = 2;
        assert_eq!(ClockState::from_bytes(&bad_flag), None);
        let mut bad_last = good.clone();
        bad_last[1] = 0x80;
        assert_eq!(ClockState::from_bytes(&bad_last), None);
        // Random garbage of every length up to 40 never panics.
        let mut rng = Lcg(7);
        for len in 0..40 {
            for _ in 0..50 {
                let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if let Some(s) = ClockState::from_bytes(&junk) {
                    assert_eq!(s.to_bytes(), junk);
                }
            }
        }
    }
}
