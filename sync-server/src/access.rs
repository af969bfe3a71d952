//! Who may read, write and escalate what: pure functions over grants.
//!
//! A grant gives a user one role in one grid. Whole-grid roles (网格员, 社区工作者, 社区书记,
//! 管理员) read and write every document of the grid. A 楼门长 reads and writes only documents
//! whose building is one of theirs; documents without a building are visible to whole-grid
//! roles only (ADR 0001).

use xiuhua_core::model::{Role, Tier};

use crate::error::Refusal;

/// One grant row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub user: String,
    pub grid: String,
    pub role: Role,
    /// For 楼门长: their buildings.
    pub buildings: Vec<String>,
}

/// What part of a grid a caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every document.
    Grid,
    /// Only documents whose building is one of these.
    Buildings(Vec<String>),
}

impl Scope {
    /// The scope a grant gives.
    pub fn of(grant: &GrantRow) -> Scope {
        if grant.role == Role::BuildingLeader {
            Scope::Buildings(grant.buildings.clone())
        } else {
            Scope::Grid
        }
    }

    /// The scope limited to `buildings` (a scope bootstrap); unchanged when empty. Never
    /// wider than `self`.
    pub fn narrowed_to(self, buildings: &[String]) -> Scope {
        if buildings.is_empty() {
            return self;
        }
        let wanted = buildings.iter().filter(|b| self.covers(Some(b.as_str())));
        Scope::Buildings(wanted.cloned().collect())
    }

    /// Whether a document with this building is in scope.
    pub fn covers(&self, building: Option<&str>) -> bool {
        match self {
            Scope::Grid => true,
            Scope::Buildings(bs) => xiuhua_core::access::covers(Some(bs), building),
        }
    }
}

/// The authenticated device and what its user may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub device: String,
    pub user: String,
    pub user_name: String,
    pub grants: Vec<GrantRow>,
    /// Grids the device has pulled or bootstrapped.
    pub held_grids: Vec<String>,
    /// The earlier devices of the same user this one succeeds (it was enrolled on a phone
    /// holding their data), nearest first: their changes are the caller's own.
    pub predecessors: Vec<String>,
}

impl Caller {
    /// The devices whose changes this caller pushes as its own: its own device first, then
    /// the ones it succeeds.
    pub fn own_devices(&self) -> Vec<String> {
        std::iter::once(self.device.clone())
            .chain(self.predecessors.iter().cloned())
            .collect()
    }

    /// Whether `device` is the caller's device or one it succeeds.
    pub fn is_own_device(&self, device: &str) -> bool {
        self.device == device || self.predecessors.iter().any(|p| p == device)
    }

    /// The caller's grant on a grid.
    pub fn grant(&self, grid: &str) -> Option<&GrantRow> {
        self.grants.iter().find(|g| g.grid == grid)
    }

    /// Grids the device held but may no longer read.
    pub fn purge_grids(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .held_grids
            .iter()
            .filter(|g| self.grant(g).is_none())
            .cloned()
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The read scope on a grid, or a refusal (code `purge` when the device held it).
    pub fn read_scope(&self, grid: &str) -> Result<Scope, Refusal> {
        match self.grant(grid) {
            Some(g) => Ok(Scope::of(g)),
            None => Err(Refusal::forbidden(format!(
                "user {} has no grant on grid {grid}",
                self.user
            ))),
        }
    }

    /// Checks that the caller may write a document of `grid` whose building is `building`
    /// (and was `old_building` before this change, for a registered document).
    pub fn check_write(
        &self,
        doc: &str,
        grid: &str,
        building: Option<&str>,
        old_building: Option<Option<&str>>,
    ) -> Result<(), Refusal> {
        let Some(g) = self.grant(grid) else {
            return Err(Refusal::forbidden(format!(
                "document {doc}: user {} has no grant on grid {grid}; nothing was stored",
                self.user
            )));
        };
        match xiuhua_core::access::write_refusal(
            doc,
            grid,
            &self.user,
            g.role,
            &g.buildings,
            building,
            old_building,
        ) {
            Some(why) => Err(Refusal::forbidden(why)),
            None => Ok(()),
        }
    }
}

/// Checks an escalation by a role from `from` to `to`.
pub fn check_escalation(role: Role, from: Tier, to: Tier) -> Result<(), Refusal> {
    if to <= from {
        return Err(Refusal::conflict(format!(
            "the task is already at tier {from}; escalation must go up (grid → community → linked_unit), not to {to}"
        )));
    }
    let allowed = match role {
        Role::GridMember => to == Tier::Community,
        Role::CommunityStaff | Role::Secretary | Role::Admin => true,
        Role::BuildingLeader => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Refusal::forbidden(format!(
            "a {role} may not escalate a task to {to}"
        )))
    }
}

/// The people of the caller's grids for the assignee picker: every user with a grant on
/// one of `caller_grants`' grids and not revoked, with their name and the role of that
/// grant — nothing more (no buildings, devices or contact details). Ordered by grid, user.
pub fn grid_people(
    caller_grants: &[GrantRow],
    all_grants: &[GrantRow],
    users: &[crate::storage::UserInfo],
) -> Vec<xiuhua_core::sync::proto::GridPerson> {
    let names: std::collections::HashMap<&str, &crate::storage::UserInfo> =
        users.iter().map(|u| (u.id.as_str(), u)).collect();
    let mut out: Vec<xiuhua_core::sync::proto::GridPerson> = all_grants
        .iter()
        .filter(|g| caller_grants.iter().any(|c| c.grid == g.grid))
        .filter_map(|g| {
            let u = names.get(g.user.as_str()).filter(|u| !u.revoked)?;
            Some(xiuhua_core::sync::proto::GridPerson {
                grid: g.grid.clone(),
                user: g.user.clone(),
                name: u.name.clone(),
                role: g.role.as_str().to_string(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.grid, &a.user).cmp(&(&b.grid, &b.user)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, buildings: &[&str]) -> Caller {
        Caller {
            device: "d1".into(),
            user: "u1".into(),
            user_name: "王伟".into(),
            grants: vec![GrantRow {
                user: "u1".into(),
                grid: "g1".into(),
                role,
                buildings: buildings.iter().map(|b| b.to_string()).collect(),
            }],
            held_grids: vec!["g1".into(), "g2".into()],
            predecessors: Vec::new(),
        }
    }

    #[test]
    fn building_leader_scope() {
        let c = caller(Role::BuildingLeader, &["3号楼"]);
        assert!(c.check_write("h", "g1", Some("3号楼"), None).is_ok());
        assert!(c.check_write("h", "g1", Some("4号楼"), None).is_err());
        assert!(c.check_write("h", "g1", None, None).is_err());
        assert!(
            c.check_write("h", "g1", Some("3号楼"), Some(Some("4号楼")))
                .is_err()
        );
        assert!(c.check_write("h", "g2", Some("3号楼"), None).is_err());
        assert_eq!(c.purge_grids(), vec!["g2".to_string()]);
        let m = caller(Role::GridMember, &[]);
        assert!(m.check_write("h", "g1", None, None).is_ok());
    }

    #[test]
    fn a_scope_bootstrap_never_widens_the_scope() {
        let b = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let lead = Scope::Buildings(b(&["1号楼", "2号楼"]));
        assert_eq!(lead.clone().narrowed_to(&[]), lead);
        assert_eq!(
            lead.narrowed_to(&b(&["2号楼", "9号楼"])),
            Scope::Buildings(b(&["2号楼"]))
        );
        assert_eq!(
            Scope::Grid.narrowed_to(&b(&["9号楼"])),
            Scope::Buildings(b(&["9号楼"]))
        );
    }

    #[test]
    fn escalation_rules() {
        assert!(check_escalation(Role::GridMember, Tier::Grid, Tier::Community).is_ok());
        assert!(check_escalation(Role::GridMember, Tier::Community, Tier::LinkedUnit).is_err());
        assert!(check_escalation(Role::CommunityStaff, Tier::Community, Tier::LinkedUnit).is_ok());
        assert!(check_escalation(Role::Secretary, Tier::Community, Tier::Community).is_err());
        assert!(check_escalation(Role::BuildingLeader, Tier::Grid, Tier::Community).is_err());
    }
}
