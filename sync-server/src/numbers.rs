//! Numbers for people at the server: the blocks a `/v1/session` hands a device. The rules
//! are `xiuhua_core::numbers` (written once, shared with the phone); this runs them over
//! the storage.

use std::collections::{BTreeMap, BTreeSet};

use xiuhua_core::numbers::{self, BLOCK_SIZE, NumberBlock, NumberHeld, Plan};
use xiuhua_core::sync::proto::Grant;

use crate::access::GrantRow;
use crate::error::StoreError;
use crate::storage::{GridInfo, Storage};

/// A grid's community and the numbers' prefix (its short name).
pub fn community_of(grids: &[GridInfo]) -> BTreeMap<String, (String, String)> {
    grids
        .iter()
        .map(|g| {
            (
                g.id.clone(),
                (g.community.clone(), numbers::prefix_of(&g.community_name)),
            )
        })
        .collect()
}

/// A grant as the phone is told it, with its grid's community.
pub fn grant_of(g: &GrantRow, communities: &BTreeMap<String, (String, String)>) -> Grant {
    let (community, number_prefix) = communities.get(&g.grid).cloned().unwrap_or_default();
    Grant {
        grid: g.grid.clone(),
        role: g.role.as_str().to_string(),
        buildings: g.buildings.clone(),
        community,
        number_prefix,
    }
}

/// The blocks an enrollment or a session sends `device`: for each community of its grants and
/// each year ([`numbers::years_for`], and the years the phone asks for within one of the
/// server's), what [`numbers::plan`] says: blocks whose reply was lost, or a new one. At
/// enrollment the phone holds nothing yet (`held` empty).
pub async fn device_blocks(
    storage: &dyn Storage,
    device: &str,
    grants: &[GrantRow],
    communities: &BTreeMap<String, (String, String)>,
    held: &[NumberHeld],
    now_ms: i64,
) -> Result<Vec<NumberBlock>, StoreError> {
    let ours: BTreeMap<&str, &str> = grants
        .iter()
        .filter_map(|g| communities.get(&g.grid))
        .map(|(c, p)| (c.as_str(), p.as_str()))
        .collect();
    let server_years = numbers::years_for(now_ms);
    let this_year = numbers::year_of(now_ms);
    let mut years: BTreeSet<i32> = server_years.iter().copied().collect();
    years.extend(
        held.iter()
            .map(|h| h.year)
            .filter(|y| (this_year - 1..=this_year + 1).contains(y)),
    );
    let mut out = Vec::new();
    for (community, prefix) in ours {
        for &year in &years {
            let said = held
                .iter()
                .find(|h| h.community == community && h.year == year);
            let issued = storage.number_blocks(device, community, year).await?;
            let blocks = match numbers::plan(said, &issued, now_ms) {
                Plan::Resend(lost) => lost,
                Plan::Reserve => vec![
                    storage
                        .reserve_number_block(device, community, year, BLOCK_SIZE, now_ms)
                        .await?,
                ],
                Plan::Nothing => Vec::new(),
            };
            out.extend(blocks.into_iter().map(|b| NumberBlock {
                community: community.to_string(),
                prefix: prefix.to_string(),
                year,
                start: b.start,
                end: b.end,
            }));
        }
    }
    Ok(out)
}
