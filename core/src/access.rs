//! Who may write where, written once for the phone and the server: a 楼门长 (building
//! leader) writes only documents of their buildings; every other role the whole grid. The
//! server refuses a push that breaks it (`sync-server/src/access.rs`); the phone refuses the
//! action before it is saved, with the same message, so nothing waits in the outbox only to
//! be refused at the station.

use crate::model::Role;

/// The buildings a grant limits writes to: `None` for a whole-grid role.
pub fn write_scope(role: Role, buildings: &[String]) -> Option<&[String]> {
    (role == Role::BuildingLeader).then_some(buildings)
}

/// Whether a document with this building is inside `scope` (a document without a building
/// is outside any building scope).
pub fn covers(scope: Option<&[String]>, building: Option<&str>) -> bool {
    match scope {
        None => true,
        Some(bs) => building.is_some_and(|b| bs.iter().any(|x| x == b)),
    }
}

/// Why `user`, holding `role` on `grid` limited to `buildings`, may not write document
/// `doc` whose building is `building` (and was `old_building`, for a document that exists):
/// `None` when the write is allowed. The message is the server's refusal, word for word.
pub fn write_refusal(
    doc: &str,
    grid: &str,
    user: &str,
    role: Role,
    buildings: &[String],
    building: Option<&str>,
    old_building: Option<Option<&str>>,
) -> Option<String> {
    let scope = write_scope(role, buildings);
    if covers(scope, building) && old_building.is_none_or(|old| covers(scope, old)) {
        return None;
    }
    let b = building.unwrap_or("(none)");
    Some(format!(
        "document {doc}: as {role} in grid {grid}, user {user} may write only buildings [{}], not building {b}; nothing was stored",
        buildings.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_building_leader_writes_only_their_buildings() {
        let mine = vec!["3号楼".to_string(), "5号楼".to_string()];
        let refuse =
            |role, building, old| write_refusal("hh-1", "g1", "u-li", role, &mine, building, old);
        assert_eq!(refuse(Role::BuildingLeader, Some("3号楼"), None), None);
        assert_eq!(
            refuse(Role::BuildingLeader, Some("5号楼"), Some(Some("3号楼"))),
            None
        );
        let why = refuse(Role::BuildingLeader, Some("9号楼"), None).unwrap();
        assert_eq!(
            why,
            "document hh-1: as 楼门长 in grid g1, user u-li may write only buildings [3号楼, 5号楼], not building 9号楼; nothing was stored"
        );
        assert!(
            refuse(Role::BuildingLeader, None, None).is_some(),
            "no building: not theirs"
        );
        assert!(
            refuse(Role::BuildingLeader, Some("3号楼"), Some(Some("9号楼"))).is_some(),
            "moving a document out of another building"
        );
        assert_eq!(refuse(Role::GridMember, Some("9号楼"), None), None);
        assert_eq!(refuse(Role::CommunityStaff, None, Some(None)), None);
    }
}
