//! The station's administration commands, run by the server binary directly on the data
//! folder's database. Each returns the text to print.

use std::fmt::Write;

use xiuhua_core::model::Role;

use crate::auth::{self, Secret};
use crate::error::StoreError;
use crate::storage::Storage;

/// Checks an id (district, community, grid, user): 1–64 of `A-Z a-z 0-9 _ - .`.
pub fn check_id(what: &str, id: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{what} id {id:?}: use 1 to 64 letters, digits, '_', '-' or '.'"
        )))
    }
}

/// Checks a display name: 1–64 characters, no control characters.
pub fn check_name(what: &str, name: &str) -> Result<String, StoreError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{what} {name:?}: use 1 to 64 characters without control characters"
        )));
    }
    Ok(n.to_string())
}

pub async fn add_district(s: &dyn Storage, id: &str, name: &str) -> Result<String, StoreError> {
    check_id("district", id)?;
    s.add_district(id, &check_name("name", name)?).await?;
    Ok(format!("district {id} added"))
}

pub async fn add_community(
    s: &dyn Storage,
    id: &str,
    name: &str,
    district: &str,
) -> Result<String, StoreError> {
    check_id("community", id)?;
    s.add_community(id, &check_name("name", name)?, district)
        .await?;
    Ok(format!("community {id} added to district {district}"))
}

pub async fn add_grid(
    s: &dyn Storage,
    id: &str,
    name: &str,
    community: &str,
) -> Result<String, StoreError> {
    check_id("grid", id)?;
    s.add_grid(id, &check_name("name", name)?, community)
        .await?;
    Ok(format!("grid {id} added to community {community}"))
}

pub async fn add_building(s: &dyn Storage, grid: &str, name: &str) -> Result<String, StoreError> {
    let name = check_name("building", name)?;
    if name.chars().count() > 32 {
        return Err(StoreError::Invalid(
            "a building name has at most 32 characters (as in household addresses)".into(),
        ));
    }
    s.add_building(grid, &name).await?;
    Ok(format!("building {name} added to grid {grid}"))
}

pub async fn add_user(s: &dyn Storage, id: &str, name: &str) -> Result<String, StoreError> {
    check_id("user", id)?;
    s.add_user(id, &check_name("name", name)?).await?;
    Ok(format!("user {id} added"))
}

/// Where a grant applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantTarget {
    Grid(String),
    /// Every grid of the community (one grant row each).
    Community(String),
}

pub async fn grant(
    s: &dyn Storage,
    user: &str,
    target: GrantTarget,
    role: &str,
    buildings: &[String],
) -> Result<String, StoreError> {
    let role = Role::parse(role.trim()).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let buildings: Vec<String> = buildings
        .iter()
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
    match (role, buildings.is_empty()) {
        (Role::BuildingLeader, true) => {
            return Err(StoreError::Invalid(
                "a 楼门长 grant needs at least one --building".into(),
            ));
        }
        (r, false) if r != Role::BuildingLeader => {
            return Err(StoreError::Invalid(format!(
                "--building applies to 楼门长 only; a {r} sees the whole grid"
            )));
        }
        _ => {}
    }
    let grids = match &target {
        GrantTarget::Grid(g) => vec![g.clone()],
        GrantTarget::Community(c) => {
            if role == Role::BuildingLeader {
                return Err(StoreError::Invalid(
                    "a 楼门长 is granted buildings of one grid; use --grid".into(),
                ));
            }
            let g = s.community_grids(c).await?;
            if g.is_empty() {
                return Err(StoreError::NotFound(format!(
                    "community {c} has no grids yet"
                )));
            }
            g
        }
    };
    s.grant(user, &grids, role, &buildings).await?;
    let mut out = format!("granted {role} to {user} on grid(s) {}", grids.join(", "));
    if !buildings.is_empty() {
        let _ = write!(out, " (buildings {})", buildings.join(", "));
    }
    Ok(out)
}

pub async fn revoke_grant(s: &dyn Storage, user: &str, grid: &str) -> Result<String, StoreError> {
    s.revoke_grant(user, grid).await?;
    Ok(format!(
        "revoked {user}'s grant on grid {grid}; their devices purge it at the next sync"
    ))
}

/// Sets a user's console password (argon2id); their console sessions end.
pub async fn set_password(
    s: &dyn Storage,
    user: &str,
    password: &str,
) -> Result<String, StoreError> {
    check_id("user", user)?;
    crate::console::password::check_new(password).map_err(StoreError::Invalid)?;
    let pw = password.to_string();
    let phc = tokio::task::spawn_blocking(move || crate::console::password::hash(&pw))
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
        .map_err(StoreError::Backend)?;
    s.set_password(user, &phc, crate::now_ms()).await?;
    Ok(format!(
        "console password of {user} set (argon2id); their console sessions ended"
    ))
}

/// Creates a one-time enrollment code for a user, valid 24 hours; returns it.
pub async fn enroll_code(
    s: &dyn Storage,
    secret: &Secret,
    user: &str,
) -> Result<String, StoreError> {
    let code = auth::new_enroll_code().map_err(|e| StoreError::Backend(e.to_string()))?;
    let hash = secret
        .code_hash(&code)
        .ok_or_else(|| StoreError::Backend("generated code is malformed".into()))?;
    let now = crate::now_ms();
    s.add_enroll_code(user, &hash, now + auth::ENROLL_CODE_TTL_MS, now)
        .await?;
    Ok(code)
}

pub async fn devices(s: &dyn Storage, user: Option<&str>) -> Result<String, StoreError> {
    let mut out = String::from("device\tuser\tname\tcreated_ms\tlast_seen_ms\tsucceeds\tstatus\n");
    for d in s.list_devices(user).await? {
        let status = if d.revoked {
            "revoked"
        } else if d.reset {
            "reset"
        } else {
            "active"
        };
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{status}",
            d.id,
            d.user,
            d.name,
            d.created_ms,
            d.last_seen_ms.map_or_else(|| "-".into(), |v| v.to_string()),
            d.succeeds.as_deref().unwrap_or("-"),
        );
    }
    Ok(out)
}

pub async fn revoke_device(s: &dyn Storage, device: &str) -> Result<String, StoreError> {
    s.revoke_device(device, crate::now_ms()).await?;
    Ok(format!(
        "device {device} revoked; it is told to delete its data at its next request"
    ))
}

pub async fn revoke_user(s: &dyn Storage, user: &str) -> Result<String, StoreError> {
    s.revoke_user(user, crate::now_ms()).await?;
    Ok(format!("user {user} and all their devices revoked"))
}

/// What `list` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Users,
    Grids,
    Grants,
}

pub async fn list(s: &dyn Storage, what: Listing) -> Result<String, StoreError> {
    let mut out = String::new();
    match what {
        Listing::Users => {
            out.push_str("user\tname\tstatus\n");
            for u in s.list_users().await? {
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}",
                    u.id,
                    u.name,
                    if u.revoked { "revoked" } else { "active" }
                );
            }
        }
        Listing::Grids => {
            out.push_str("grid\tname\tcommunity\tdistrict\tseq\tbuildings\n");
            for g in s.list_grids().await? {
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    g.id,
                    g.name,
                    g.community,
                    g.district,
                    g.seq,
                    g.buildings.join(",")
                );
            }
        }
        Listing::Grants => {
            out.push_str("user\tgrid\trole\tbuildings\n");
            for g in s.list_grants().await? {
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    g.user,
                    g.grid,
                    g.role,
                    g.buildings.join(",")
                );
            }
        }
    }
    Ok(out)
}

/// `xiuhua-server rebuild-projection`: recomputes every projection row from the stored
/// documents.
pub async fn rebuild_projection(s: &dyn Storage) -> Result<String, StoreError> {
    let started = std::time::Instant::now();
    let n = s.rebuild_projection().await?;
    Ok(format!(
        "projection rebuilt: {n} document(s) projected in {} ms\n",
        started.elapsed().as_millis()
    ))
}

/// `xiuhua-server check`: verifies every stored document, quarantining broken ones, and
/// reports every quarantined document. Returns the report and whether none is quarantined.
pub async fn check(s: &dyn Storage) -> Result<(String, bool), StoreError> {
    let report = crate::check::run(s, crate::now_ms()).await?;
    let mut out = crate::check::render(&report);
    let all = s.quarantined().await?;
    out.push_str(&format!("{} document(s) quarantined\n", all.len()));
    for q in &all {
        out.push_str(&format!("  {} (grid {}): {}\n", q.id, q.grid, q.reason));
    }
    Ok((out, all.is_empty()))
}
