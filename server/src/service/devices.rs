//! Devices as people manage them: listing a user's devices (app version,
//! platform, first and last contact, revoked or not) and revoking one: its
//! refresh tokens die at once, and its next request (any access token it still
//! holds included) answers `device_revoked`, which makes the app wipe its local
//! data. Its live connection, on whichever node, ends at once too.
//!
//! Who may is `domain::devices::may_manage`: everyone their own devices, a
//! manager the devices of their team's reps and technicians (never an
//! administrator's or another manager's), an administrator every device of
//! the organisation. A device the caller may not manage answers like one that
//! does not exist.

use fieldsync_core::{DeviceId, UserId};

use super::Context;
use crate::db;
use crate::domain::devices::{Owner, may_manage};
use crate::domain::{Caller, Error, Result};

pub use crate::db::devices::DeviceInfo;

/// The devices of `user` (the caller's own when `None`): the caller's own, a
/// team member's for their manager, any in the organisation for an
/// administrator.
pub async fn list(ctx: &Context, caller: &Caller, user: Option<UserId>) -> Result<Vec<DeviceInfo>> {
    let user = user.unwrap_or(caller.user());
    let found = db::devices::list(&ctx.db, caller.org, Some(user), None).await?;
    if user != caller.user() {
        let owner = db::accounts::user_by_id(&ctx.db, user).await?;
        let allowed = owner.is_some_and(|o| {
            o.org == caller.org
                && may_manage(
                    caller,
                    Owner {
                        id: o.id,
                        team: o.team,
                        role: o.role,
                    },
                )
        });
        if !allowed {
            return Err(Error::Forbidden(
                "you may list your own devices, a manager those of their team's reps and technicians".into(),
            ));
        }
    }
    Ok(found.into_iter().map(|(d, _)| d).collect())
}

/// Revokes device `id` if the caller may manage it (`not_found` otherwise, as
/// for a device that does not exist). Answers whether this call revoked it
/// (false: it already was).
pub async fn revoke(ctx: &Context, caller: &Caller, id: DeviceId) -> Result<bool> {
    let found = db::devices::list(&ctx.db, caller.org, None, Some(id)).await?;
    let Some((_, owner)) = found.into_iter().next() else {
        return Err(Error::NotFound);
    };
    if !may_manage(caller, owner) {
        return Err(Error::NotFound);
    }
    let revoked = db::devices::revoke_device(&ctx.db, id).await?;
    tracing::info!(device = %id, by = %caller.user(), revoked, "device revoked");
    // Its live connection, on whichever node, ends now rather than at the
    // end of its token's lifetime.
    if let Err(e) = crate::live::announce_revocation(&ctx.db, &ctx.hub, caller.org, id).await {
        tracing::warn!(error = %e, device = %id, "could not announce the revocation to live connections");
    }
    Ok(revoked)
}
