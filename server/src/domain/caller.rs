//! Who is calling: the one type every rule and use case is given.
//!
//! The HTTP layer builds a [`Caller`] from a verified access token (the user's
//! role, team and territory come from the database, never from the token); the
//! managers' pages build one from a browser session; the server builds one for
//! itself or for a manager on whose behalf it writes ([`Caller::on_behalf`]).
//! Nothing downstream knows which front end a caller came through.
//!
//! What a caller may read is decided by its **principals** (the module
//! `db::records` documents the scope rows): every record carries `o:<org>`,
//! `u:<owner>`, `t:<team>` and, for the catalogue and the customers (accounts
//! and contacts: `RecordKind::is_territory_wide`), `r:<territory>`; a caller reads
//! a record when one of its principals is among the record's.

use fieldsync_core::model::{Actor, Role};
use fieldsync_core::protocol::ScopeWindow;
use fieldsync_core::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Who is calling: the authenticated user on their device, a manager's browser
/// session, or the server itself.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User, role (from the database, never from the token) and device.
    pub actor: Actor,
    /// The user's organisation.
    pub org: OrgId,
    /// The user's team.
    pub team: Option<TeamId>,
    /// The user's territory.
    pub territory: Option<TerritoryId>,
    /// The name to show for the user.
    pub display_name: String,
    /// The Automerge actor every new change of this caller must be made under.
    pub actor_id: automerge::ActorId,
    /// Today's window of dated records for the caller's role (`None`: every
    /// date). Limits downloads only; see [`crate::domain::scope`].
    pub window: Option<ScopeWindow>,
}

impl Caller {
    /// The calling user.
    pub fn user(&self) -> UserId {
        self.actor.user
    }

    /// The caller's role.
    pub fn role(&self) -> Role {
        self.actor.role
    }

    /// The device the call comes from (`None` for the server's own writes).
    pub fn device(&self) -> Option<DeviceId> {
        self.actor.device
    }

    /// The window's bounds for a query (every date when there is none).
    pub fn window_bounds(&self) -> (i64, i64) {
        self.window
            .map_or((i64::MIN, i64::MAX), |w| (w.from_ms, w.to_ms))
    }

    /// The principals this caller reads through. Always five, padded with a
    /// value no record carries, so every scope query has the same shape.
    pub fn principals(&self) -> [String; 5] {
        principals_of(
            self.org,
            self.actor.user,
            self.actor.role,
            self.team,
            self.territory,
        )
    }

    /// Whether this caller is in the back office (manager or administrator).
    pub fn is_back_office(&self) -> bool {
        self.actor.role.is_back_office()
    }

    /// The server itself in organisation `org`, for what it decides on its own
    /// after a push or on a timer (a job's roll-up, a visit nobody started
    /// marked missed, an order confirmed on a manager's approval): the
    /// organisation's server user ([`server_actor`]), reading everything of
    /// the organisation, on no device. Its Automerge actor is fresh for each
    /// call: two nodes (or two tasks of one node) writing the same record at
    /// the same moment make two distinct changes that merge, where one shared
    /// actor would make two changes with the same sequence number and the
    /// second would be refused.
    pub fn server(org: OrgId) -> Caller {
        let (actor, _) = server_actor(org);
        Caller {
            actor,
            org,
            team: None,
            territory: None,
            display_name: SERVER_NAME.into(),
            actor_id: automerge::ActorId::random(),
            window: None,
        }
    }

    /// The caller as whom the server writes on this user's behalf (a manager's
    /// decision taken in a browser): the same user and scope, no device, and
    /// the user's [`web_actor`].
    pub fn on_behalf(&self) -> Caller {
        Caller {
            actor: Actor::without_device(self.actor.user, self.actor.role),
            actor_id: web_actor(self.actor.user),
            ..self.clone()
        }
    }
}

/// The principals a user of `org` with this role, team and territory reads
/// through (see [`Caller::principals`]): what a change of role, team or
/// territory compares before and after (`service::people`).
pub fn principals_of(
    org: OrgId,
    user: UserId,
    role: Role,
    team: Option<TeamId>,
    territory: Option<TerritoryId>,
) -> [String; 5] {
    const NONE: &str = "-";
    let user = format!("u:{user}");
    let team = team.map_or_else(|| NONE.to_owned(), |t| format!("t:{t}"));
    let territory = territory.map_or_else(|| NONE.to_owned(), |t| format!("r:{t}"));
    match role {
        Role::Admin | Role::Server => [
            format!("o:{org}"),
            user,
            NONE.into(),
            NONE.into(),
            NONE.into(),
        ],
        Role::Manager => [user, team, territory, NONE.into(), NONE.into()],
        Role::Rep | Role::Technician => [user, territory, NONE.into(), NONE.into(), NONE.into()],
    }
}

/// The user id and Automerge actor under which the server writes what it
/// decides itself in an organisation (pricing an order): stable per
/// organisation, distinct from every user's and every device's.
pub fn server_actor(org: OrgId) -> (Actor, automerge::ActorId) {
    let digest = Sha256::digest(format!("fieldsync-server:{org}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let user = UserId::from_uuid(Uuid::from_bytes(bytes));
    (
        Actor::without_device(user, Role::Server),
        automerge::ActorId::from(&digest[16..32]),
    )
}

/// The name pages and notes show for the server's own changes.
pub const SERVER_NAME: &str = "Fieldsync (server)";

/// The Automerge actor under which the server writes a manager's decisions:
/// stable per manager, distinct from every device's.
pub fn web_actor(user: UserId) -> automerge::ActorId {
    let digest = Sha256::digest(format!("fieldsync-web:{user}").as_bytes());
    automerge::ActorId::from(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            actor: Actor::on_device(UserId::new(), role, DeviceId::new()),
            org: OrgId::new(),
            team: Some(TeamId::new()),
            territory: None,
            display_name: "Ana".into(),
            actor_id: automerge::ActorId::random(),
            window: None,
        }
    }

    #[test]
    fn every_role_reads_through_five_principals() {
        for role in [Role::Rep, Role::Technician, Role::Manager, Role::Admin] {
            let c = caller(role);
            let p = c.principals();
            assert!(p.contains(&format!("u:{}", c.user())), "{role:?}");
        }
        let manager = caller(Role::Manager);
        assert!(
            manager
                .principals()
                .contains(&format!("t:{}", manager.team.expect("team")))
        );
        let admin = caller(Role::Admin);
        assert_eq!(admin.principals()[0], format!("o:{}", admin.org));
    }

    #[test]
    fn on_behalf_keeps_the_scope_and_drops_the_device() {
        let c = caller(Role::Manager);
        let b = c.on_behalf();
        assert_eq!(b.user(), c.user());
        assert_eq!(b.device(), None);
        assert_eq!(b.principals(), c.principals());
        assert_eq!(b.actor_id, web_actor(c.user()));
        assert_ne!(b.actor_id, c.actor_id);
    }
}
