//! The rules of devices, with no I/O: who may see and revoke which device,
//! when a device may be (re-)registered at login, when a device still holds a
//! session, and what a device may say about itself.
//!
//! Invariants kept here:
//! - a device belongs to one user for its lifetime; a login of another user on
//!   it is refused (`device_in_use`), and a revoked device stays revoked;
//! - a token or session of a device counts only while the device is its user's
//!   and not revoked (`device_revoked` makes the app wipe its data);
//! - everyone manages their own devices, a manager those of their team's
//!   reps and technicians (never an administrator's, nor another manager's:
//!   nobody cuts off someone at or above their own rank), an administrator
//!   (and the server) every device of the organisation.

use fieldsync_core::model::Role;
use fieldsync_core::{TeamId, UserId};

use super::accounts::AccountError;
use super::{Caller, Error, Result};

/// Longest platform name or app version a device may report, in bytes.
pub const MAX_REPORTED_BYTES: usize = 64;

/// A role's rank in who may cut off whose devices: administrators (and the
/// server) above managers, managers above reps and technicians.
fn rank(role: Role) -> u8 {
    match role {
        Role::Admin | Role::Server => 2,
        Role::Manager => 1,
        Role::Rep | Role::Technician => 0,
    }
}

/// The devices of one user, as far as the rules of who manages them care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The user.
    pub id: UserId,
    /// Their team.
    pub team: Option<TeamId>,
    /// Their role.
    pub role: Role,
}

/// Whether `caller` may see and revoke the devices of `owner`, a user of the
/// caller's organisation: their own always; an administrator every device; a
/// manager those of their team's users below them (reps and technicians), so
/// a manager can never cut off an administrator or a fellow manager.
pub fn may_manage(caller: &Caller, owner: Owner) -> bool {
    if owner.id == caller.user() {
        return true;
    }
    match caller.role() {
        Role::Admin | Role::Server => true,
        Role::Manager => {
            caller.team.is_some()
                && owner.team == caller.team
                && rank(owner.role) < rank(caller.role())
        }
        Role::Rep | Role::Technician => false,
    }
}

/// Whether `user` may log in on a device that already exists, owned by
/// `owner` and revoked or not.
pub fn may_register(owner: UserId, revoked: bool, user: UserId) -> Result<(), AccountError> {
    if owner != user {
        return Err(AccountError::DeviceOfAnotherUser);
    }
    if revoked {
        return Err(AccountError::DeviceRevoked);
    }
    Ok(())
}

/// Whether a token or session of `user` on a device owned by `owner` still
/// counts: not when the device is someone else's (a forged or mixed-up token),
/// not when it was revoked.
pub fn check_session_device(owner: UserId, revoked: bool, user: UserId) -> Result<()> {
    if owner != user {
        return Err(Error::InvalidToken);
    }
    if revoked {
        return Err(Error::DeviceRevoked);
    }
    Ok(())
}

/// Checks something a device reports about itself (`field` names it in the
/// refusal): 1 to [`MAX_REPORTED_BYTES`] bytes.
pub fn check_reported(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_REPORTED_BYTES {
        return Err(Error::BadRequest(format!(
            "{field} must be 1 to {MAX_REPORTED_BYTES} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use fieldsync_core::model::Actor;
    use fieldsync_core::{DeviceId, OrgId};

    use super::*;

    fn caller(role: Role, team: Option<TeamId>) -> Caller {
        Caller {
            actor: Actor::on_device(UserId::new(), role, DeviceId::new()),
            org: OrgId::new(),
            team,
            territory: None,
            display_name: "Mona".into(),
            actor_id: automerge::ActorId::random(),
            window: None,
        }
    }

    fn owner(role: Role, team: Option<TeamId>) -> Owner {
        Owner {
            id: UserId::new(),
            team,
            role,
        }
    }

    #[test]
    fn everyone_manages_their_own_devices() {
        for role in [Role::Rep, Role::Technician, Role::Manager, Role::Admin] {
            let c = caller(role, None);
            let own = Owner {
                id: c.user(),
                team: None,
                role,
            };
            assert!(may_manage(&c, own), "{role:?}");
        }
    }

    #[test]
    fn a_manager_manages_their_teams_reps_and_technicians_and_no_others() {
        let north = TeamId::new();
        let mona = caller(Role::Manager, Some(north));
        for role in [Role::Rep, Role::Technician] {
            assert!(may_manage(&mona, owner(role, Some(north))), "{role:?}");
            assert!(!may_manage(&mona, owner(role, Some(TeamId::new()))));
            assert!(!may_manage(&mona, owner(role, None)));
        }
    }

    #[test]
    fn a_manager_never_manages_an_administrators_or_another_managers_devices() {
        let north = TeamId::new();
        let mona = caller(Role::Manager, Some(north));
        for (role, team) in [
            (Role::Admin, Some(north)),
            (Role::Admin, None),
            (Role::Manager, Some(north)),
        ] {
            assert!(!may_manage(&mona, owner(role, team)), "{role:?} {team:?}");
        }
    }

    #[test]
    fn a_manager_without_a_team_manages_only_their_own() {
        let mona = caller(Role::Manager, None);
        assert!(!may_manage(&mona, owner(Role::Rep, None)));
    }

    #[test]
    fn reps_and_technicians_manage_no_one_elses_devices() {
        let north = TeamId::new();
        for role in [Role::Rep, Role::Technician] {
            let c = caller(role, Some(north));
            assert!(!may_manage(&c, owner(Role::Rep, Some(north))), "{role:?}");
        }
    }

    #[test]
    fn an_administrator_manages_every_device() {
        let adam = caller(Role::Admin, None);
        for role in [Role::Rep, Role::Manager, Role::Admin] {
            assert!(may_manage(&adam, owner(role, Some(TeamId::new()))));
            assert!(may_manage(&adam, owner(role, None)));
        }
    }

    #[test]
    fn a_device_is_registered_again_only_by_its_user_and_while_not_revoked() {
        let (ana, ben) = (UserId::new(), UserId::new());
        assert_eq!(may_register(ana, false, ana), Ok(()));
        assert_eq!(
            may_register(ana, false, ben),
            Err(AccountError::DeviceOfAnotherUser)
        );
        assert_eq!(
            may_register(ana, true, ben),
            Err(AccountError::DeviceOfAnotherUser)
        );
        assert_eq!(
            may_register(ana, true, ana),
            Err(AccountError::DeviceRevoked)
        );
    }

    #[test]
    fn a_session_holds_only_on_its_users_live_device() {
        let (ana, ben) = (UserId::new(), UserId::new());
        assert!(check_session_device(ana, false, ana).is_ok());
        assert!(matches!(
            check_session_device(ana, false, ben),
            Err(Error::InvalidToken)
        ));
        assert!(matches!(
            check_session_device(ana, true, ana),
            Err(Error::DeviceRevoked)
        ));
    }

    #[test]
    fn reported_values_are_one_to_64_bytes() {
        assert!(check_reported("device.platform", "ios").is_ok());
        assert!(check_reported("device.platform", &"x".repeat(64)).is_ok());
        let err = check_reported("device.platform", "").expect_err("empty");
        assert_eq!(err.to_string(), "device.platform must be 1 to 64 bytes");
        assert!(check_reported("device.app_version", &"x".repeat(65)).is_err());
    }
}
