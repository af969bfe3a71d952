//! Numbers for people: every 民情 record and 代办 task gets a number such as
//! `金湖-2026-000123` when it is created, offline, to give the resident.
//!
//! The rules, written once and used by the phone and the server:
//!
//! - A number is `<community>-<year>-<sequence>`: the community's short name (its name
//!   without 社区), the year in China time (UTC+8) of the creation, and a sequence of at
//!   least six digits, counted per community and year.
//! - The server hands each device **blocks** of sequences ([`BLOCK_SIZE`] each) at the start
//!   of a sync (`/v1/session`); a block belongs to one device, so two phones offline at once
//!   never give the same number. The phone asks for a new block while it holds fewer than
//!   [`LOW_WATER`] unused numbers of the community and year; a reply lost on the way is
//!   answered again at the next sync ([`NumberHeld::last_start`]), and a device gets at most
//!   [`MAX_BLOCKS_PER_DAY`] new blocks a day, so a hostile phone cannot run a community out.
//! - A phone with no number left gives a **provisional** number, `金湖-2026-临A1B2C3D4-7`
//!   (its device and a local count); its next sync replaces it with a number of a fresh
//!   block, and the document keeps the provisional one (`provisional_number`), so the record
//!   is found by either.

use serde::{Deserialize, Serialize};

/// Sequences in one block.
pub const BLOCK_SIZE: u64 = 100;
/// A phone holding fewer unused numbers than this (per community and year) asks for a block.
pub const LOW_WATER: u64 = 30;
/// New blocks one device may get per community and year in 24 hours.
pub const MAX_BLOCKS_PER_DAY: usize = 10;
/// The longest number a document may carry (a community name of 20 characters and room).
pub const MAX_NUMBER_CHARS: usize = 48;
/// The mark of a provisional number, between the year and the device.
pub const PROVISIONAL_MARK: &str = "临";

const CST_OFFSET_MS: i64 = 8 * 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// What a phone holds of one community and year, sent with `/v1/session`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberHeld {
    pub community: String,
    pub year: i32,
    /// Unused numbers left in its blocks.
    pub left: u64,
    /// The start of the latest block it received (0 for none): a block of the device that
    /// starts after it was reserved but its reply was lost, and is sent again.
    pub last_start: u64,
}

/// A block of sequences `[start, end)` of a community and year, reserved for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberBlock {
    pub community: String,
    /// The community's short name, the numbers' first part.
    pub prefix: String,
    pub year: i32,
    pub start: u64,
    pub end: u64,
}

/// A block the server has given a device: where it starts and when (server ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Issued {
    pub start: u64,
    pub end: u64,
    pub at_ms: i64,
}

/// What the server does for one community and year of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Send these blocks (reserved earlier, their reply lost) again.
    Resend(Vec<Issued>),
    /// Reserve a new block.
    Reserve,
    /// Nothing: the phone holds enough, or reached the day's limit.
    Nothing,
}

/// The year in China time (UTC+8) of `ms`.
pub fn year_of(ms: i64) -> i32 {
    let days = ms.saturating_add(CST_OFFSET_MS).max(0) / DAY_MS;
    let (year, _, _) = crate::hlc::civil_date(u64::try_from(days).unwrap_or(0));
    i32::try_from(year).unwrap_or(i32::MAX)
}

/// The years a session hands out blocks for at server time `now_ms`: this year, and in
/// December the next one too (a phone away over the new year keeps giving real numbers).
pub fn years_for(now_ms: i64) -> Vec<i32> {
    let year = year_of(now_ms);
    if year_of(now_ms.saturating_add(31 * DAY_MS)) > year {
        vec![year, year + 1]
    } else {
        vec![year]
    }
}

/// A community's short name: its name without the trailing 社区 (金湖社区 → 金湖), or the
/// name itself when that would leave nothing; whitespace and `-` are dropped, so the number
/// splits at its dashes.
pub fn prefix_of(community_name: &str) -> String {
    let clean: String = community_name
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    let short = clean.strip_suffix("社区").unwrap_or(&clean);
    let short = if short.is_empty() { &clean } else { short };
    short.chars().take(20).collect()
}

/// `金湖-2026-000123`.
pub fn format(prefix: &str, year: i32, seq: u64) -> String {
    format!("{prefix}-{year}-{seq:06}")
}

/// `金湖-2026-临A1B2C3D4-7`: the device's id (its first 8 hex digits) and a count of the
/// device's provisional numbers.
pub fn provisional(prefix: &str, year: i32, device: &str, count: u64) -> String {
    let dev: String = device
        .trim_start_matches('d')
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_uppercase();
    format!("{prefix}-{year}-{PROVISIONAL_MARK}{dev}-{count}")
}

/// Whether `number` is a provisional one.
pub fn is_provisional(number: &str) -> bool {
    number.contains(&format!("-{PROVISIONAL_MARK}"))
}

/// The server's decision for one community and year: resend the device's blocks that start
/// after what the phone last received; else reserve one when the phone holds fewer than
/// [`LOW_WATER`] and the device got fewer than [`MAX_BLOCKS_PER_DAY`] in the last day.
/// `held` is what the phone said (none: it holds nothing of it); `issued` the device's
/// blocks of that community and year.
pub fn plan(held: Option<&NumberHeld>, issued: &[Issued], now_ms: i64) -> Plan {
    let (left, last_start) = held.map_or((0, 0), |h| (h.left, h.last_start));
    let lost: Vec<Issued> = issued
        .iter()
        .filter(|b| b.start > last_start)
        .copied()
        .collect();
    if !lost.is_empty() {
        return Plan::Resend(lost);
    }
    if left >= LOW_WATER {
        return Plan::Nothing;
    }
    let today = issued
        .iter()
        .filter(|b| now_ms.saturating_sub(b.at_ms) < DAY_MS)
        .count();
    if today >= MAX_BLOCKS_PER_DAY {
        Plan::Nothing
    } else {
        Plan::Reserve
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_1_2027_CST: i64 = 1_798_761_600_000 - CST_OFFSET_MS;

    #[test]
    fn the_year_is_chinas() {
        assert_eq!(year_of(JAN_1_2027_CST), 2027);
        assert_eq!(year_of(JAN_1_2027_CST - 1), 2026);
        assert_eq!(years_for(JAN_1_2027_CST - 10 * DAY_MS), vec![2026, 2027]);
        assert_eq!(years_for(JAN_1_2027_CST - 40 * DAY_MS), vec![2026]);
        assert_eq!(years_for(JAN_1_2027_CST), vec![2027]);
    }

    #[test]
    fn numbers_read_as_people_expect() {
        assert_eq!(prefix_of("金湖社区"), "金湖");
        assert_eq!(prefix_of(" 罗 河-社区 "), "罗河");
        assert_eq!(prefix_of("社区"), "社区");
        assert_eq!(format("金湖", 2026, 123), "金湖-2026-000123");
        assert_eq!(format("金湖", 2026, 1_234_567), "金湖-2026-1234567");
        let p = provisional("金湖", 2026, "d1a2b3c4d5e6f7a8b", 7);
        assert_eq!(p, "金湖-2026-临1A2B3C4D-7");
        assert!(is_provisional(&p));
        assert!(!is_provisional("金湖-2026-000123"));
    }

    #[test]
    fn the_server_resends_lost_blocks_and_limits_new_ones() {
        let now = JAN_1_2027_CST;
        let b = |start, at_ms| Issued {
            start,
            end: start + BLOCK_SIZE,
            at_ms,
        };
        let held = |left, last_start| NumberHeld {
            community: "c".into(),
            year: 2027,
            left,
            last_start,
        };
        assert_eq!(plan(None, &[], now), Plan::Reserve);
        assert_eq!(plan(Some(&held(5, 0)), &[], now), Plan::Reserve);
        assert_eq!(
            plan(Some(&held(LOW_WATER, 1)), &[b(1, now)], now),
            Plan::Nothing
        );
        // The reply of the block at 201 was lost: the phone still says 101.
        let issued = [b(1, now), b(101, now), b(201, now)];
        assert_eq!(
            plan(Some(&held(0, 101)), &issued, now),
            Plan::Resend(vec![b(201, now)])
        );
        // A phone that lost everything (reinstalled) gets its blocks again.
        assert_eq!(plan(None, &issued, now), Plan::Resend(issued.to_vec()));
        let many: Vec<Issued> = (0..MAX_BLOCKS_PER_DAY as u64)
            .map(|i| b(1 + i * BLOCK_SIZE, now - 1000))
            .collect();
        let last = many.last().map_or(0, |b| b.start);
        assert_eq!(plan(Some(&held(0, last)), &many, now), Plan::Nothing);
        assert_eq!(
            plan(Some(&held(0, last)), &many, now + DAY_MS),
            Plan::Reserve
        );
    }
}
