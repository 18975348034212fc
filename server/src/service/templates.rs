//! Checklist templates in the office: list the families and their versions,
//! read one version, create and edit drafts, publish, retire, and start the
//! next version of a published one. The pages (`web::templates`), the JSON API
//! (`http::templates`) and the CLI (`fieldsync template ...`) call these.
//!
//! Every change is an ordinary Automerge change written on the manager's or
//! administrator's behalf ([`Caller::on_behalf`]) and stored through the push
//! path ([`super::sync::push_since`]): the push checks it with the shared
//! model again (a published version is never edited; a new version follows a
//! published one with the next number), the change log names who did it, and
//! every device of the territory receives it with its next sync.
//!
//! A change to a published version is refused here before anything is
//! written, as [`Error::TemplatePublished`] (`template_published`).

use fieldsync_core::model::{ChecklistTemplate, DeviceTime, RecordDoc, RecordKind, RecordMeta};
use fieldsync_core::{RecordId, TeamId, TerritoryId};

use super::Context;
use crate::db::{records, templates as db_templates};
use crate::domain::templates::{
    self as rules, FamilyView, MAX_TEMPLATES, TemplateInput, TemplateView,
};
use crate::domain::{Caller, Error, Result};

/// Where a new template (family) is kept: its team and territory (the
/// territory's people all read it). `None` takes the caller's own.
#[derive(Debug, Clone, Copy, Default)]
pub struct Placement {
    /// The team that keeps it.
    pub team: Option<TeamId>,
    /// The territory whose people read it.
    pub territory: Option<TerritoryId>,
}

/// Every template family the caller can read, with every version (drafts
/// included), by name.
pub async fn list(ctx: &Context, caller: &Caller) -> Result<Vec<FamilyView>> {
    rules::may_manage(caller.role())?;
    Ok(rules::families(&all(ctx, caller).await?))
}

async fn all(ctx: &Context, caller: &Caller) -> Result<Vec<ChecklistTemplate>> {
    let rows = db_templates::readable(&ctx.db, caller, MAX_TEMPLATES).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, bytes) in rows {
        match RecordDoc::load(&bytes).and_then(|d| d.read::<ChecklistTemplate>()) {
            Ok(t) => out.push(t),
            // One unreadable record must not hide the others.
            Err(e) => tracing::warn!(%id, error = %e, "a stored checklist template does not read"),
        }
    }
    Ok(out)
}

/// One version, read-only; not found outside the caller's scope.
pub async fn get(ctx: &Context, caller: &Caller, id: &str) -> Result<TemplateView> {
    rules::may_manage(caller.role())?;
    let (t, _) = load(ctx, caller, rules::parse_id(id)?).await?;
    Ok(TemplateView::of(&t))
}

/// The id of the one item of `named`, if there is exactly one.
fn only<T: Copy>(named: Vec<crate::db::catalogue::Named<T>>) -> Option<T> {
    match named.as_slice() {
        [one] => Some(one.id),
        _ => None,
    }
}

/// Creates a draft (version 1 of a new family); answers it.
pub async fn create_draft(
    ctx: &Context,
    caller: &Caller,
    input: &TemplateInput,
    placement: Placement,
) -> Result<TemplateView> {
    rules::may_manage(caller.role())?;
    let (name, questions) = rules::build(input)?;
    let missing = |what: &str| {
        Error::BadRequest(format!(
            "you have no {what} to keep the template in; name one"
        ))
    };
    // Named, else the caller's own, else the organisation's only one (an
    // administrator made by `fieldsync org init` has neither), as imports do.
    let team = match placement.team.or(caller.team) {
        Some(t) => Some(t),
        None => only(crate::db::catalogue::teams(&ctx.db, caller.org).await?),
    };
    let territory = match placement.territory.or(caller.territory) {
        Some(t) => Some(t),
        None => only(crate::db::catalogue::territories(&ctx.db, caller.org).await?),
    };
    let meta = RecordMeta {
        id: RecordId::new(),
        org: caller.org,
        owner: caller.user(),
        team: team.ok_or_else(|| missing("team"))?,
        territory: territory.ok_or_else(|| missing("territory"))?,
    };
    let t = ChecklistTemplate {
        meta,
        name,
        version: 1,
        published: false,
        questions,
        family: None,
        supersedes: None,
        retired: false,
    };
    store_new(ctx, caller, &t).await?;
    Ok(TemplateView::of(&t))
}

/// Replaces a draft's name and questions; a published version is refused
/// (`template_published`).
pub async fn edit_draft(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    input: &TemplateInput,
) -> Result<TemplateView> {
    rules::may_manage(caller.role())?;
    let (name, questions) = rules::build(input)?;
    change(ctx, caller, id, |t| {
        if t.published {
            return Err(rules::published(t));
        }
        t.name = name;
        t.questions = questions;
        Ok(())
    })
    .await
}

/// Publishes a draft: from now on it is answered by the field and never
/// edited. Publishing a published version again is refused.
pub async fn publish(ctx: &Context, caller: &Caller, id: &str) -> Result<TemplateView> {
    rules::may_manage(caller.role())?;
    let versions = all(ctx, caller).await?;
    change(ctx, caller, id, |t| {
        if t.published {
            return Err(rules::published(t));
        }
        if t.questions.is_empty() {
            return Err(Error::BadRequest(
                "a template is published with at least one question".into(),
            ));
        }
        // Versions are numbered in order: a family publishes each number once.
        let family = t.family_id();
        if let Some(newer) = versions
            .iter()
            .filter(|v| v.family_id() == family && v.meta.id != t.meta.id && v.published)
            .find(|v| v.version >= t.version)
        {
            return Err(Error::Conflict(format!(
                "version {} of {} is already published; make a new version of it",
                newer.version, newer.name
            )));
        }
        t.published = true;
        Ok(())
    })
    .await
}

/// Retires a published version: offered for no new work, its answers kept.
pub async fn retire(ctx: &Context, caller: &Caller, id: &str) -> Result<TemplateView> {
    rules::may_manage(caller.role())?;
    change(ctx, caller, id, |t| {
        if !t.published {
            return Err(Error::Conflict(
                "a draft is not retired; it is edited until it is published".into(),
            ));
        }
        t.retired = true;
        Ok(())
    })
    .await
}

/// Starts the next version of a published version: a draft with its name and
/// questions, numbered next, in the same family. Refused while the family
/// already has a later version (a draft to finish, or a newer published one).
pub async fn new_version(ctx: &Context, caller: &Caller, id: &str) -> Result<TemplateView> {
    rules::may_manage(caller.role())?;
    let (t, _) = load(ctx, caller, rules::parse_id(id)?).await?;
    if !t.published {
        return Err(Error::Conflict(
            "this version is a draft; edit it, or publish it before making the next".into(),
        ));
    }
    let family = t.family_id();
    if let Some(later) = all(ctx, caller)
        .await?
        .into_iter()
        .find(|v| v.family_id() == family && v.version > t.version)
    {
        return Err(Error::Conflict(format!(
            "{} already has version {} ({}); start from the newest version",
            later.name,
            later.version,
            rules::status_of(&later)
        )));
    }
    let meta = RecordMeta {
        id: RecordId::new(),
        owner: caller.user(),
        ..t.meta
    };
    let next = t.next_version(meta);
    store_new(ctx, caller, &next).await?;
    Ok(TemplateView::of(&next))
}

/// Creates a template from a definition (a file given to the CLI, say), and
/// publishes it when `publish`.
pub async fn import(
    ctx: &Context,
    caller: &Caller,
    input: &TemplateInput,
    placement: Placement,
    publish: bool,
) -> Result<TemplateView> {
    let draft = create_draft(ctx, caller, input, placement).await?;
    if publish {
        return self::publish(ctx, caller, &draft.id).await;
    }
    Ok(draft)
}

/// The template `id` as the caller can read it, with its document.
async fn load(
    ctx: &Context,
    caller: &Caller,
    id: RecordId,
) -> Result<(ChecklistTemplate, RecordDoc)> {
    let Some((kind, bytes)) = records::readable_doc(&ctx.db, caller, id).await? else {
        return Err(Error::NotFound);
    };
    if kind != RecordKind::ChecklistTemplate {
        return Err(Error::NotFound);
    }
    let doc = RecordDoc::load(&bytes)
        .map_err(|e| Error::internal(format!("stored template {id} does not load: {e}")))?;
    if doc.is_deleted() {
        return Err(Error::NotFound);
    }
    let t = doc
        .read::<ChecklistTemplate>()
        .map_err(|e| Error::internal(format!("stored template {id} does not read: {e}")))?;
    Ok((t, doc))
}

/// Applies `edit` to template `id` on the caller's behalf (checked by the
/// write table for the caller's role, as a device would) and pushes it.
async fn change(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    edit: impl FnOnce(&mut ChecklistTemplate) -> Result<()>,
) -> Result<TemplateView> {
    let writer = caller.on_behalf();
    let id = rules::parse_id(id)?;
    let (mut t, mut doc) = load(ctx, &writer, id).await?;
    edit(&mut t)?;
    doc.set_actor(writer.actor_id.clone());
    let before = doc.heads();
    let wanted = t.clone();
    doc.update_by::<ChecklistTemplate>(Some(writer.role()), DeviceTime::now_utc(), |r| *r = wanted)
        .map_err(|e| Error::Conflict(e.to_string()))?;
    super::sync::push_since(
        ctx,
        &writer,
        id,
        RecordKind::ChecklistTemplate,
        &mut doc,
        &before,
    )
    .await?;
    Ok(TemplateView::of(&t))
}

async fn store_new(ctx: &Context, caller: &Caller, t: &ChecklistTemplate) -> Result<()> {
    let writer = caller.on_behalf();
    let mut doc = RecordDoc::create(t, writer.actor_id.clone(), DeviceTime::now_utc())
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    super::sync::push_since(
        ctx,
        &writer,
        t.meta.id,
        RecordKind::ChecklistTemplate,
        &mut doc,
        &[],
    )
    .await
}
