//! The rules of administering people, with no I/O: who may list, add,
//! disable, re-enable and change whom, and which changes would leave the
//! organisation without an administrator.
//!
//! Invariants kept here:
//! - administrators (and the server, for the command line) administer
//!   everyone of their organisation: people, roles, teams, territories,
//!   passwords and devices;
//! - a manager may list the people and devices of their own team and revoke
//!   the devices of its reps and technicians (`domain::devices::may_manage`),
//!   nothing else: roles, teams and territories are the administrators';
//! - reps and technicians administer nobody;
//! - nobody disables, demotes or resets themselves here (an administrator
//!   cannot lock themselves out), and the organisation always keeps at least
//!   one active administrator;
//! - a user of another organisation answers like one that does not exist.

use fieldsync_core::model::Role;
use fieldsync_core::{OrgId, TeamId, UserId};

use super::{Caller, Error, Result};

/// Length of a generated temporary password, in characters.
pub const TEMPORARY_PASSWORD_CHARS: usize = 16;

/// Whose people the caller may list: everyone of the organisation (`None`,
/// administrators), or their own team (`Some`, a manager with a team).
pub fn listing_scope(caller: &Caller) -> Result<Option<TeamId>> {
    match caller.role() {
        Role::Admin | Role::Server => Ok(None),
        Role::Manager => caller.team.map(Some).ok_or_else(|| {
            Error::Forbidden("you manage no team, so there is nobody to list".into())
        }),
        Role::Rep | Role::Technician => Err(Error::Forbidden(
            "people and devices are listed for managers and administrators".into(),
        )),
    }
}

/// Whether the caller administers people, teams and territories: an
/// administrator (or the server).
pub fn may_administer(caller: &Caller) -> Result<()> {
    match caller.role() {
        Role::Admin | Role::Server => Ok(()),
        _ => Err(Error::Forbidden(
            "only administrators change people, roles, teams and territories".into(),
        )),
    }
}

/// A user as the rules see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject {
    /// The user.
    pub id: UserId,
    /// Their organisation.
    pub org: OrgId,
    /// Their role.
    pub role: Role,
    /// Whether their account is disabled.
    pub disabled: bool,
}

/// Checks that `subject` is of the caller's organisation (`not_found`
/// otherwise, as for a user that does not exist) and that the caller
/// administers people.
pub fn check_target(caller: &Caller, subject: &Subject) -> Result<()> {
    if subject.org != caller.org {
        return Err(Error::NotFound);
    }
    may_administer(caller)
}

/// Whether `subject` is the organisation's last active administrator, given
/// how many active administrators there are.
fn is_last_admin(subject: &Subject, active_admins: i64) -> bool {
    subject.role == Role::Admin && !subject.disabled && active_admins <= 1
}

/// Whether the caller may disable `subject`: never themselves, never the
/// last active administrator.
pub fn may_disable(caller: &Caller, subject: &Subject, active_admins: i64) -> Result<()> {
    check_target(caller, subject)?;
    if subject.id == caller.user() {
        return Err(Error::Conflict(
            "you cannot disable your own account; ask another administrator".into(),
        ));
    }
    if is_last_admin(subject, active_admins) {
        return Err(Error::Conflict(
            "this is the organisation's last active administrator; make someone else an administrator first".into(),
        ));
    }
    Ok(())
}

/// Whether the caller may give `subject` the role `role`: not the server's
/// role, not their own role, and not away from the last active
/// administrator.
pub fn may_set_role(
    caller: &Caller,
    subject: &Subject,
    role: Role,
    active_admins: i64,
) -> Result<()> {
    check_target(caller, subject)?;
    if role == Role::Server {
        return Err(Error::BadRequest(
            "use rep, technician, manager or admin".into(),
        ));
    }
    if role == subject.role {
        return Ok(());
    }
    if subject.id == caller.user() {
        return Err(Error::Conflict(
            "you cannot change your own role; ask another administrator".into(),
        ));
    }
    if is_last_admin(subject, active_admins) {
        return Err(Error::Conflict(
            "this is the organisation's last active administrator; make someone else an administrator first".into(),
        ));
    }
    Ok(())
}

/// Whether the caller may set `subject`'s password: an administrator, for
/// someone else (their own is changed where they sign in).
pub fn may_reset_password(caller: &Caller, subject: &Subject) -> Result<()> {
    check_target(caller, subject)?;
    if subject.id == caller.user() {
        return Err(Error::Conflict(
            "you cannot reset your own password here; ask another administrator".into(),
        ));
    }
    Ok(())
}

/// Whether `subject` may be named a team's manager: a manager (or an
/// administrator) who is not disabled.
pub fn may_manage_team(subject: &Subject) -> Result<()> {
    if subject.disabled {
        return Err(Error::Conflict(
            "a disabled account cannot manage a team".into(),
        ));
    }
    match subject.role {
        Role::Manager | Role::Admin => Ok(()),
        _ => Err(Error::Conflict(
            "only a manager (or an administrator) can manage a team; change their role first"
                .into(),
        )),
    }
}

/// Parses a role as administrators type it; the server's role is nobody's.
pub fn parse_role(text: &str) -> Result<Role> {
    match text.trim().parse::<Role>() {
        Ok(Role::Server) | Err(_) => Err(Error::BadRequest(format!(
            "unknown role {:?}: use rep, technician, manager or admin",
            text.trim()
        ))),
        Ok(role) => Ok(role),
    }
}

/// The principals a user with this role, team and territory reads through,
/// as a sorted set (the padding of [`Caller::principals`] left out).
pub fn principal_set(principals: &[String; 5]) -> Vec<String> {
    let mut set: Vec<String> = principals
        .iter()
        .filter(|p| p.as_str() != "-")
        .cloned()
        .collect();
    set.sort();
    set.dedup();
    set
}

/// What a change of principals means for a user's devices: the principals
/// gained (whose records they must now receive whole) and lost (whose
/// records they must drop unless another principal still grants them).
pub fn scope_delta(before: &[String], after: &[String]) -> (Vec<String>, Vec<String>) {
    let gained = after
        .iter()
        .filter(|p| !before.contains(p))
        .cloned()
        .collect();
    let lost = before
        .iter()
        .filter(|p| !after.contains(p))
        .cloned()
        .collect();
    (gained, lost)
}

#[cfg(test)]
mod tests {
    use fieldsync_core::DeviceId;
    use fieldsync_core::model::Actor;

    use super::*;

    fn caller(org: OrgId, role: Role, team: Option<TeamId>) -> Caller {
        Caller {
            actor: Actor::on_device(UserId::new(), role, DeviceId::new()),
            org,
            team,
            territory: None,
            display_name: "Adam".into(),
            actor_id: automerge::ActorId::random(),
            window: None,
        }
    }

    fn subject(org: OrgId, role: Role) -> Subject {
        Subject {
            id: UserId::new(),
            org,
            role,
            disabled: false,
        }
    }

    #[test]
    fn only_back_office_lists_and_a_manager_only_their_team() {
        let org = OrgId::new();
        let north = TeamId::new();
        assert_eq!(
            listing_scope(&caller(org, Role::Admin, None)).expect("admin"),
            None
        );
        assert_eq!(
            listing_scope(&caller(org, Role::Manager, Some(north))).expect("manager"),
            Some(north)
        );
        assert!(listing_scope(&caller(org, Role::Manager, None)).is_err());
        for role in [Role::Rep, Role::Technician] {
            assert!(matches!(
                listing_scope(&caller(org, role, Some(north))),
                Err(Error::Forbidden(_))
            ));
        }
    }

    #[test]
    fn only_administrators_change_people() {
        let org = OrgId::new();
        let target = subject(org, Role::Rep);
        for role in [Role::Rep, Role::Technician, Role::Manager] {
            let c = caller(org, role, Some(TeamId::new()));
            assert!(matches!(
                may_disable(&c, &target, 3),
                Err(Error::Forbidden(_))
            ));
            assert!(matches!(
                may_set_role(&c, &target, Role::Manager, 3),
                Err(Error::Forbidden(_))
            ));
        }
        let admin = caller(org, Role::Admin, None);
        assert!(may_disable(&admin, &target, 1).is_ok());
        assert!(may_set_role(&admin, &target, Role::Manager, 1).is_ok());
        assert!(may_reset_password(&admin, &target).is_ok());
    }

    #[test]
    fn another_organisations_user_does_not_exist() {
        let admin = caller(OrgId::new(), Role::Admin, None);
        let stranger = subject(OrgId::new(), Role::Rep);
        assert!(matches!(
            may_disable(&admin, &stranger, 2),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            may_reset_password(&admin, &stranger),
            Err(Error::NotFound)
        ));
    }

    #[test]
    fn nobody_disables_or_demotes_themselves() {
        let org = OrgId::new();
        let admin = caller(org, Role::Admin, None);
        let me = Subject {
            id: admin.user(),
            org,
            role: Role::Admin,
            disabled: false,
        };
        assert!(matches!(
            may_disable(&admin, &me, 5),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            may_set_role(&admin, &me, Role::Rep, 5),
            Err(Error::Conflict(_))
        ));
        assert!(may_set_role(&admin, &me, Role::Admin, 5).is_ok());
        assert!(matches!(
            may_reset_password(&admin, &me),
            Err(Error::Conflict(_))
        ));
    }

    #[test]
    fn the_last_active_administrator_stays() {
        let org = OrgId::new();
        let server = Caller::server(org);
        let last = subject(org, Role::Admin);
        let err = may_disable(&server, &last, 1).expect_err("last admin");
        assert!(
            err.to_string().contains("last active administrator"),
            "{err}"
        );
        assert!(may_set_role(&server, &last, Role::Manager, 1).is_err());
        assert!(may_disable(&server, &last, 2).is_ok());
        // A disabled administrator is not the one keeping the organisation.
        let disabled = Subject {
            disabled: true,
            ..last
        };
        assert!(may_set_role(&server, &disabled, Role::Rep, 1).is_ok());
    }

    #[test]
    fn the_servers_role_is_nobodys() {
        assert!(parse_role("server").is_err());
        assert!(parse_role("nonsense").is_err());
        assert_eq!(parse_role(" manager ").expect("role"), Role::Manager);
        let org = OrgId::new();
        assert!(matches!(
            may_set_role(
                &Caller::server(org),
                &subject(org, Role::Rep),
                Role::Server,
                2
            ),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn a_team_is_managed_by_an_active_manager_or_administrator() {
        let org = OrgId::new();
        assert!(may_manage_team(&subject(org, Role::Manager)).is_ok());
        assert!(may_manage_team(&subject(org, Role::Admin)).is_ok());
        assert!(may_manage_team(&subject(org, Role::Rep)).is_err());
        let disabled = Subject {
            disabled: true,
            ..subject(org, Role::Manager)
        };
        assert!(may_manage_team(&disabled).is_err());
    }

    #[test]
    fn a_scope_delta_names_what_was_gained_and_lost() {
        let before = vec!["r:a".to_owned(), "u:x".to_owned()];
        let after = vec!["r:b".to_owned(), "t:n".to_owned(), "u:x".to_owned()];
        let (gained, lost) = scope_delta(&before, &after);
        assert_eq!(gained, vec!["r:b".to_owned(), "t:n".to_owned()]);
        assert_eq!(lost, vec!["r:a".to_owned()]);
        let padded = [
            "u:x".to_owned(),
            "-".to_owned(),
            "r:a".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
        ];
        assert_eq!(principal_set(&padded), before);
    }
}
