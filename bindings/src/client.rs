//! `FieldsyncClient`: the one object an app holds. It owns the device store and
//! the sync client; every method is one local transaction (or one sync) and
//! returns plain records. Methods are synchronous: call them off the UI thread
//! (Kotlin `Dispatchers.IO`, Swift a background `Task`/queue, Python a worker
//! thread). They are not `async` because uniffi's async exports need a newer
//! kotlinx-coroutines than the platforms we test on provide, and because the
//! store's calls take about a millisecond.

use std::sync::Arc;
use std::time::Duration;

use fieldsync_core::automerge::ActorId;
use fieldsync_core::model::visit::{self, Site};
use fieldsync_core::model::{
    Account, Actor, Answer, AnswerValue, Assignment, AssignmentStatus, ChecklistResponse,
    ChecklistTemplate, DeviceTime, Money, Order, OrderLine, PartUsed, Qty, Question, QuestionKind,
    RecordKind, RecordMeta, Role, ServiceJob, Signer, TimeEntry, Visit, VisitReport, assignment,
    order, report,
};
use fieldsync_core::store::{AttachmentKind, DeviceStore, Gps, StoreKey, StoreOptions};
use fieldsync_core::sync::{
    DeviceInfo, HttpTransport, LiveEvent, LiveListener, LiveOptions, LiveSync, LoginRequest,
    Session, SyncClient, SyncOptions, SyncPhase, SyncProgress,
};
use fieldsync_core::{DeviceId, OrgId, RecordId, TeamId, TerritoryId, UserId};
use zeroize::Zeroizing;

use crate::error::{FieldsyncError, parse_id};
use crate::types::*;

/// Progress of a sync, implemented by the app (Kotlin, Swift, Python).
#[uniffi::export(with_foreign)]
pub trait SyncListener: Send + Sync {
    /// `done` records or changes so far in `stage`.
    fn on_progress(&self, stage: SyncStage, done: u64);
}

struct Forward(Option<Arc<dyn SyncListener>>);

impl SyncProgress for Forward {
    fn progress(&self, phase: SyncPhase, done: u64) {
        let stage = match phase {
            SyncPhase::Priming => SyncStage::Priming,
            SyncPhase::Pushing => SyncStage::Pushing,
            SyncPhase::Pulling => SyncStage::Pulling,
            SyncPhase::Uploading => SyncStage::Uploading,
        };
        if let Some(l) = &self.0 {
            l.on_progress(stage, done);
        }
    }
}

/// Events of live sync, implemented by the app (called on the live thread).
#[uniffi::export(with_foreign)]
pub trait LiveSyncListener: Send + Sync {
    /// One event.
    fn on_event(&self, event: LiveSyncEvent);
}

struct ForwardLive(Arc<dyn LiveSyncListener>);

impl LiveListener for ForwardLive {
    fn on_live(&self, event: LiveEvent) {
        let event = match event {
            LiveEvent::Connected => LiveSyncEvent::Connected,
            LiveEvent::Synced(r) => LiveSyncEvent::Synced {
                summary: summary(&r),
            },
            LiveEvent::SyncFailed(detail) => LiveSyncEvent::SyncFailed { detail },
            LiveEvent::Disconnected { reason, retry_in } => LiveSyncEvent::Disconnected {
                reason,
                retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
            },
            LiveEvent::Stopped { reason } => LiveSyncEvent::Stopped { reason },
        };
        self.0.on_event(event);
    }
}

/// A running live sync; stop it when the app goes to the background.
#[derive(Debug, uniffi::Object)]
pub struct LiveSyncHandle {
    inner: LiveSync,
}

#[uniffi::export]
impl LiveSyncHandle {
    /// Stops live sync (within a heartbeat at most; at once while reconnecting).
    pub fn stop(&self) {
        self.inner.stop();
    }

    /// Whether the live thread is still running.
    pub fn is_running(&self) -> bool {
        !self.inner.is_finished()
    }
}

fn summary(r: &fieldsync_core::sync::SyncReport) -> SyncSummary {
    SyncSummary {
        primed: r.primed,
        pushed: r.pushed,
        rejected: r.rejected,
        pulled: r.pulled,
        removed: r.removed,
        round_trips: r.round_trips,
        attachments_uploaded: r.attachments_uploaded,
        attachments_pending: r.attachments_pending,
        attachments_refused: r.attachments_refused,
        rewritten: r.rewritten,
        carried_over: r.carried_over,
        server_restored: r.server_restored,
    }
}

const META_USER: &str = "app.user";
const META_ROLE: &str = "app.role";
const META_NAME: &str = "app.display_name";
const META_ORG: &str = "app.org";
const META_TEAM: &str = "app.team";
const META_TERRITORY: &str = "app.territory";
const META_DEVICE: &str = "app.device";

/// The logged-in user, as the store remembers it.
pub(crate) struct Me {
    pub(crate) actor: Actor,
    org: OrgId,
    team: Option<TeamId>,
    territory: Option<TerritoryId>,
}

/// A field app's handle on Fieldsync: local records, domain actions, lists and sync.
#[derive(uniffi::Object)]
pub struct FieldsyncClient {
    client: Arc<SyncClient<Arc<DeviceStore>, HttpTransport>>,
}

impl std::fmt::Debug for FieldsyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FieldsyncClient { .. }")
    }
}

pub(crate) fn now() -> DeviceTime {
    DeviceTime::now_utc()
}

/// The capture time an app gives, or now.
fn captured_at(ms: Option<i64>) -> DeviceTime {
    ms.map_or_else(now, DeviceTime::utc)
}

fn to_gps(f: GeoFix) -> Gps {
    Gps {
        lat: f.lat,
        lng: f.lng,
        accuracy_m: f.accuracy_m,
    }
}

fn attachment_kind(kind: &str) -> Result<AttachmentKind, FieldsyncError> {
    AttachmentKind::parse(kind.trim()).ok_or_else(|| FieldsyncError::InvalidArgument {
        detail: format!("unknown attachment kind {kind:?}: photo, signature or document"),
    })
}

pub(crate) fn qty(quantity: f64) -> Result<Qty, FieldsyncError> {
    if !quantity.is_finite() || quantity <= 0.0 || quantity > 1e9 {
        return Err(FieldsyncError::InvalidArgument {
            detail: format!("quantity {quantity} must be a positive number"),
        });
    }
    Ok(Qty((quantity * Qty::SCALE as f64).round() as i64))
}

impl FieldsyncClient {
    pub(crate) fn store(&self) -> &DeviceStore {
        self.client.store()
    }

    fn sign_job_with(
        &self,
        id: RecordId,
        at: DeviceTime,
        name: String,
        role: Option<String>,
        image_sha256: String,
        gps: Option<GeoFix>,
    ) -> Result<SignatureCheck, FieldsyncError> {
        let me = self.me()?;
        let signer = Signer {
            name,
            role,
            image_sha256,
            gps: gps.map(Into::into),
        };
        self.store().sign_job(id, &me.actor, at, signer)?;
        self.job_signature(id.to_string())
    }

    fn sign_order_with(
        &self,
        id: RecordId,
        at: DeviceTime,
        name: String,
        role: Option<String>,
        image_sha256: String,
        gps: Option<GeoFix>,
    ) -> Result<SignatureCheck, FieldsyncError> {
        let me = self.me()?;
        let signer = Signer {
            name,
            role,
            image_sha256,
            gps: gps.map(Into::into),
        };
        self.store().sign_order(id, &me.actor, at, signer)?;
        self.order_signature(id.to_string())
    }

    pub(crate) fn me(&self) -> Result<Me, FieldsyncError> {
        let get = |k: &str| self.store().meta_get(k);
        let (Some(user), Some(role), Some(org), Some(device)) = (
            get(META_USER)?,
            get(META_ROLE)?,
            get(META_ORG)?,
            get(META_DEVICE)?,
        ) else {
            return Err(FieldsyncError::NotLoggedIn);
        };
        let role: Role = role.parse().map_err(|_| FieldsyncError::Storage {
            detail: format!("stored role {role:?} is unknown"),
        })?;
        Ok(Me {
            actor: Actor::on_device(
                parse_id::<UserId>("user", &user)?,
                role,
                parse_id::<DeviceId>("device", &device)?,
            ),
            org: parse_id("organisation", &org)?,
            team: get(META_TEAM)?.and_then(|t| t.parse().ok()),
            territory: get(META_TERRITORY)?.and_then(|t| t.parse().ok()),
        })
    }

    /// Ownership for a new record of `owner` (the caller when `None`).
    pub(crate) fn meta(
        &self,
        me: &Me,
        owner: Option<UserId>,
    ) -> Result<RecordMeta, FieldsyncError> {
        let (Some(team), Some(territory)) = (me.team, me.territory) else {
            return Err(FieldsyncError::InvalidArgument {
                detail: "your account has no team or territory; ask your administrator".into(),
            });
        };
        Ok(RecordMeta {
            id: RecordId::new(),
            org: me.org,
            owner: owner.unwrap_or(me.actor.user),
            team,
            territory,
        })
    }

    pub(crate) fn site_of(&self, account_id: RecordId) -> Site {
        let coords = self.store().read::<Account>(account_id).ok().and_then(|a| {
            a.locations
                .values()
                .next()
                .map(|l| (l.coords, l.geofence_radius_m))
        });
        match coords {
            Some((coords, radius)) => Site {
                coords,
                radius_m: radius,
            },
            None => Site {
                coords: None,
                radius_m: 150.0,
            },
        }
    }

    pub(crate) fn visit_item(&self, id: RecordId) -> Result<VisitItem, FieldsyncError> {
        let mut item = VisitItem::of(&self.store().read_stateful::<Visit>(id)?);
        item.read_only = self.store().is_reference(id);
        Ok(item)
    }
}

#[uniffi::export]
impl FieldsyncClient {
    /// Opens (creating if needed) the store at `path`, syncing with `server_url`.
    ///
    /// With `encryption_key` (32 random bytes the app keeps in the Android
    /// Keystore or the iOS Keychain) the whole file is encrypted at rest
    /// (SQLCipher); a new store is created encrypted. A key of another length is
    /// `InvalidArgument`; a key that does not open the file, a missing key for an
    /// encrypted file, or a key for a plaintext file is `Encryption` with a
    /// message saying which, and leaves the file as it was.
    #[uniffi::constructor(default(encryption_key = None))]
    pub fn open(
        path: String,
        server_url: String,
        encryption_key: Option<Vec<u8>>,
    ) -> Result<Arc<Self>, FieldsyncError> {
        // Zeroed when this call returns, whatever happens.
        let encryption_key = encryption_key.map(Zeroizing::new);
        let encryption_key = match &encryption_key {
            Some(bytes) => Some(StoreKey::from_slice(bytes)?),
            None => None,
        };
        let options = StoreOptions {
            encryption_key,
            ..StoreOptions::default()
        };
        let store = DeviceStore::open(&path, options)?;
        let transport = HttpTransport::new(&server_url, Duration::from_secs(30));
        Ok(Arc::new(FieldsyncClient {
            client: Arc::new(SyncClient::new(
                Arc::new(store),
                transport,
                SyncOptions::default(),
            )),
        }))
    }

    /// Logs in. The device keeps one id for its lifetime (made on first login).
    pub fn login(
        &self,
        org: String,
        email: String,
        password: String,
        platform: String,
        app_version: String,
    ) -> Result<SessionInfo, FieldsyncError> {
        let device: DeviceId = match self.store().meta_get(META_DEVICE)? {
            Some(d) => parse_id("device", &d)?,
            None => DeviceId::new(),
        };
        let resp = self.client.login(&LoginRequest {
            org,
            email,
            password,
            device: DeviceInfo {
                id: device,
                platform,
                app_version,
            },
        })?;
        let u = &resp.user;
        let set = |k: &str, v: &str| self.store().meta_set(k, v);
        set(META_DEVICE, &resp.device.id.to_string())?;
        set(META_USER, &u.id.to_string())?;
        set(META_ROLE, u.role.as_str())?;
        set(META_NAME, &u.display_name)?;
        if let Some(org) = u.org {
            set(META_ORG, &org.to_string())?;
        }
        set(
            META_TEAM,
            &u.team.map(|t| t.to_string()).unwrap_or_default(),
        )?;
        set(
            META_TERRITORY,
            &u.territory.map(|t| t.to_string()).unwrap_or_default(),
        )?;
        Ok(SessionInfo {
            user_id: u.id.to_string(),
            role: u.role.as_str().into(),
            display_name: u.display_name.clone(),
            device_id: resp.device.id.to_string(),
        })
    }

    /// The user this store belongs to, when someone has logged in on it.
    pub fn session(&self) -> Option<SessionInfo> {
        let me = self.me().ok()?;
        Some(SessionInfo {
            user_id: me.actor.user.to_string(),
            role: me.actor.role.as_str().into(),
            display_name: self.store().meta_get(META_NAME).ok()??,
            device_id: me.actor.device?.to_string(),
        })
    }

    /// The current tokens, to keep in the keychain (they rotate on refresh).
    pub fn tokens(&self) -> Option<SessionTokens> {
        self.client.session().map(|s| SessionTokens {
            access_token: s.access_token,
            refresh_token: s.refresh_token,
        })
    }

    /// Gives back tokens kept from an earlier run.
    pub fn restore_session(&self, tokens: SessionTokens) {
        self.client.set_session(Session {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
        });
    }

    /// Pushes local changes, pulls others' (priming first on a new device).
    pub fn sync(
        &self,
        listener: Option<Arc<dyn SyncListener>>,
    ) -> Result<SyncSummary, FieldsyncError> {
        let r = self.client.sync(&Forward(listener))?;
        Ok(summary(&r))
    }

    /// Starts live sync: while online, changes made elsewhere arrive within about
    /// a second (the server notifies, this device syncs). Reconnects on its own
    /// with backoff; stops when the device is revoked or `stop()` is called.
    pub fn start_live_sync(&self, listener: Arc<dyn LiveSyncListener>) -> Arc<LiveSyncHandle> {
        let inner = self
            .client
            .start_live(Arc::new(ForwardLive(listener)), LiveOptions::default());
        Arc::new(LiveSyncHandle { inner })
    }

    /// Changes not yet acknowledged by the server.
    pub fn pending_changes(&self) -> Result<u64, FieldsyncError> {
        Ok(self.store().pending_changes()?)
    }

    /// Creates an account (a customer site) owned by the caller.
    pub fn create_account(
        &self,
        name: String,
        site: Option<GeoFix>,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        let a = Account {
            meta: self.meta(&me, None)?,
            name,
            account_type: "outlet".into(),
            account_status: "active".into(),
            code: None,
            price_list_id: None,
            visit_frequency_days: None,
            locations: [(
                RecordId::new(),
                fieldsync_core::model::Location {
                    name: "Main site".into(),
                    address: String::new(),
                    coords: site.map(Into::into),
                    geofence_radius_m: 150.0,
                    opening_hours: None,
                },
            )]
            .into_iter()
            .collect(),
        };
        Ok(self.store().create(&a, now())?.to_string())
    }

    /// Plans a visit for the caller.
    pub fn plan_visit(
        &self,
        account_id: String,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        let v = Visit::planned(
            self.meta(&me, None)?,
            parse_id("account", &account_id)?,
            DeviceTime::utc(start_ms),
            DeviceTime::utc(end_ms),
        );
        Ok(self
            .store()
            .create_stateful(&v, &me.actor, now())?
            .to_string())
    }

    /// Checks in, with the device's fix when it has one (the geofence verdict is
    /// computed against the account's site).
    pub fn check_in(
        &self,
        visit_id: String,
        fix: Option<GeoFix>,
    ) -> Result<VisitItem, FieldsyncError> {
        let me = self.me()?;
        let id: RecordId = parse_id("visit", &visit_id)?;
        let v: Visit = self.store().read_stateful(id)?;
        let site = self.site_of(v.account_id);
        self.store().act(id, |d| {
            visit::check_in(d, &me.actor, now(), fix.map(Into::into), site)
        })?;
        self.visit_item(id)
    }

    /// Checks out with an outcome, completing the visit.
    pub fn check_out(
        &self,
        visit_id: String,
        fix: Option<GeoFix>,
        outcome: Outcome,
    ) -> Result<VisitItem, FieldsyncError> {
        let me = self.me()?;
        let id: RecordId = parse_id("visit", &visit_id)?;
        let v: Visit = self.store().read_stateful(id)?;
        let site = self.site_of(v.account_id);
        self.store().act(id, |d| {
            visit::check_out(
                d,
                &me.actor,
                now(),
                fix.map(Into::into),
                site,
                outcome.into(),
            )
        })?;
        self.visit_item(id)
    }

    /// Keeps a photo of record `record_id` (a visit, a job, ...) until the next
    /// sync uploads it; returns its SHA-256 (lowercase hex), by which the
    /// server serves it. The same bytes attached twice are kept once (and
    /// linked to both records). `captured_at_ms` defaults to now; `gps` is
    /// where it was taken.
    #[uniffi::method(default(captured_at_ms = None, gps = None))]
    pub fn attach_photo(
        &self,
        record_id: String,
        bytes: Vec<u8>,
        content_type: String,
        captured_at_ms: Option<i64>,
        gps: Option<GeoFix>,
    ) -> Result<String, FieldsyncError> {
        let id = parse_id("record", &record_id)?;
        Ok(self.store().attach(
            id,
            AttachmentKind::Photo,
            &content_type,
            &bytes,
            captured_at(captured_at_ms),
            gps.map(to_gps),
        )?)
    }

    /// Like [`FieldsyncClient::attach_photo`] for a file on disk, streamed
    /// into the store while it is hashed (never read whole into memory);
    /// `kind` is `photo`, `signature` or `document`.
    #[uniffi::method(default(captured_at_ms = None, gps = None))]
    pub fn attach_file(
        &self,
        record_id: String,
        path: String,
        kind: String,
        content_type: String,
        captured_at_ms: Option<i64>,
        gps: Option<GeoFix>,
    ) -> Result<String, FieldsyncError> {
        let id = parse_id("record", &record_id)?;
        let kind = attachment_kind(&kind)?;
        Ok(self.store().attach_file(
            id,
            kind,
            &content_type,
            std::path::Path::new(&path),
            captured_at(captured_at_ms),
            gps.map(to_gps),
        )?)
    }

    /// Attaches a file the device already keeps (by its SHA-256) to another
    /// record; the next sync tells the server without sending the bytes again.
    pub fn link_attachment(&self, sha256: String, record_id: String) -> Result<(), FieldsyncError> {
        let id = parse_id("record", &record_id)?;
        Ok(self.store().link_attachment(sha256.trim(), id)?)
    }

    /// The files attached to a record, oldest first.
    pub fn attachments_of(&self, record_id: String) -> Result<Vec<AttachmentItem>, FieldsyncError> {
        let id = parse_id("record", &record_id)?;
        Ok(self
            .store()
            .attachments_of(id)?
            .iter()
            .map(AttachmentItem::of)
            .collect())
    }

    /// Files with something left to upload (the bytes, or a record the server
    /// has not been told about), oldest first.
    pub fn pending_attachments(&self) -> Result<Vec<AttachmentItem>, FieldsyncError> {
        Ok(self
            .store()
            .pending_attachments()?
            .iter()
            .map(AttachmentItem::of)
            .collect())
    }

    /// Files the server refused for good, with its reason, newest first. They
    /// are kept but not sent again.
    pub fn refused_attachments(&self) -> Result<Vec<RefusedAttachmentItem>, FieldsyncError> {
        Ok(self
            .store()
            .refused_attachments()?
            .into_iter()
            .map(|r| RefusedAttachmentItem {
                attachment: AttachmentItem::of(&r.info),
                code: r.code,
                message: r.message,
                at_ms: r.at_ms,
            })
            .collect())
    }

    /// Takes a refused file out of the ledger: the next sync tries it again.
    pub fn retry_attachment(&self, sha256: String) -> Result<(), FieldsyncError> {
        Ok(self.store().retry_attachment(sha256.trim())?)
    }

    /// The Wi-Fi policy: whether files over 2 MiB are uploaded. Turn it off
    /// when the device is on a metered network and on again on Wi-Fi (or any
    /// unmetered network); large originals wait on the device meanwhile, small
    /// files and signatures still go. On by default.
    pub fn set_upload_large_attachments(&self, on: bool) {
        self.client.set_upload_large_attachments(on);
    }

    /// Whether files over 2 MiB are uploaded now.
    pub fn uploads_large_attachments(&self) -> bool {
        self.client.uploads_large_attachments()
    }

    /// The customer signs the job summary of an assignment: `image` is the
    /// drawn signature (`image/png` or `image/webp`), kept as an attachment of
    /// the assignment; the signature records the signer, the time, `gps` and
    /// the hash of the job summary as it is now (work done, parts, time,
    /// checklist answers; docs/mobile.md lists what is covered).
    #[uniffi::method(default(signer_role = None, gps = None))]
    pub fn sign_job(
        &self,
        assignment_id: String,
        signer_name: String,
        image: Vec<u8>,
        content_type: String,
        signer_role: Option<String>,
        gps: Option<GeoFix>,
    ) -> Result<SignatureCheck, FieldsyncError> {
        let id = parse_id("assignment", &assignment_id)?;
        let at = now();
        let sha = self.store().attach(
            id,
            AttachmentKind::Signature,
            &content_type,
            &image,
            at,
            gps.map(to_gps),
        )?;
        self.sign_job_with(id, at, signer_name, signer_role, sha, gps)
    }

    /// Like [`FieldsyncClient::sign_job`] with the drawn image in a file.
    #[uniffi::method(default(signer_role = None, gps = None))]
    pub fn sign_job_from_file(
        &self,
        assignment_id: String,
        signer_name: String,
        path: String,
        content_type: String,
        signer_role: Option<String>,
        gps: Option<GeoFix>,
    ) -> Result<SignatureCheck, FieldsyncError> {
        let id = parse_id("assignment", &assignment_id)?;
        let at = now();
        let sha = self.store().attach_file(
            id,
            AttachmentKind::Signature,
            &content_type,
            std::path::Path::new(&path),
            at,
            gps.map(to_gps),
        )?;
        self.sign_job_with(id, at, signer_name, signer_role, sha, gps)
    }

    /// Whether the assignment's signature still matches its job summary.
    pub fn job_signature(&self, assignment_id: String) -> Result<SignatureCheck, FieldsyncError> {
        let id = parse_id("assignment", &assignment_id)?;
        let verdict = self.store().job_signature_verdict(id)?;
        let a: Assignment = self.store().read_stateful(id)?;
        Ok(SignatureCheck::of(a.signature.as_ref(), verdict))
    }

    /// The customer signs an order (its lines, quantities, prices, discounts
    /// and totals as they are now); `image` is kept as an attachment of the order.
    #[uniffi::method(default(signer_role = None, gps = None))]
    pub fn sign_order(
        &self,
        order_id: String,
        signer_name: String,
        image: Vec<u8>,
        content_type: String,
        signer_role: Option<String>,
        gps: Option<GeoFix>,
    ) -> Result<SignatureCheck, FieldsyncError> {
        let id = parse_id("order", &order_id)?;
        let at = now();
        let sha = self.store().attach(
            id,
            AttachmentKind::Signature,
            &content_type,
            &image,
            at,
            gps.map(to_gps),
        )?;
        self.sign_order_with(id, at, signer_name, signer_role, sha, gps)
    }

    /// Like [`FieldsyncClient::sign_order`] with the drawn image in a file.
    #[uniffi::method(default(signer_role = None, gps = None))]
    pub fn sign_order_from_file(
        &self,
        order_id: String,
        signer_name: String,
        path: String,
        content_type: String,
        signer_role: Option<String>,
        gps: Option<GeoFix>,
    ) -> Result<SignatureCheck, FieldsyncError> {
        let id = parse_id("order", &order_id)?;
        let at = now();
        let sha = self.store().attach_file(
            id,
            AttachmentKind::Signature,
            &content_type,
            std::path::Path::new(&path),
            at,
            gps.map(to_gps),
        )?;
        self.sign_order_with(id, at, signer_name, signer_role, sha, gps)
    }

    /// Whether the order's signature still matches its lines and totals.
    pub fn order_signature(&self, order_id: String) -> Result<SignatureCheck, FieldsyncError> {
        let id = parse_id("order", &order_id)?;
        let verdict = self.store().order_signature_verdict(id)?;
        let o: Order = self.store().read_stateful(id)?;
        Ok(SignatureCheck::of(o.signature.as_ref(), verdict))
    }

    /// Replaces the visit's notes (merged character by character with others' edits).
    pub fn set_visit_notes(&self, visit_id: String, notes: String) -> Result<(), FieldsyncError> {
        let id = parse_id("visit", &visit_id)?;
        self.store()
            .update::<Visit>(id, now(), |v| v.notes = notes)?;
        Ok(())
    }

    /// One visit.
    pub fn visit(&self, visit_id: String) -> Result<VisitItem, FieldsyncError> {
        self.visit_item(parse_id("visit", &visit_id)?)
    }

    /// Visits planned (or checked in) between two times, earliest first.
    pub fn visits_between(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<VisitItem>, FieldsyncError> {
        self.store()
            .visits_between(from_ms, to_ms)?
            .into_iter()
            .filter(|p| !p.deleted)
            .map(|p| self.visit_item(p.id))
            .collect()
    }

    /// Today's visits (UTC day), earliest first.
    pub fn todays_visits(&self) -> Result<Vec<VisitItem>, FieldsyncError> {
        let now = now().at_ms;
        let day = 86_400_000;
        let start = now - now.rem_euclid(day);
        self.visits_between(start, start + day)
    }

    /// Writes the visit report (a draft until submitted).
    pub fn write_report(
        &self,
        visit_id: String,
        summary: String,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        let mut r = VisitReport::new(self.meta(&me, None)?, parse_id("visit", &visit_id)?);
        r.summary = summary;
        Ok(self
            .store()
            .create_stateful(&r, &me.actor, now())?
            .to_string())
    }

    /// Submits (or resubmits) a report for the manager's review.
    pub fn submit_report(&self, report_id: String) -> Result<ReportItem, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("report", &report_id)?;
        self.store()
            .act(id, |d| report::submit(d, &me.actor, now()))?;
        self.report(report_id)
    }

    /// Edits a report's summary (after changes were requested, say).
    pub fn edit_report(&self, report_id: String, summary: String) -> Result<(), FieldsyncError> {
        let id = parse_id("report", &report_id)?;
        self.store()
            .update::<VisitReport>(id, now(), |r| r.summary = summary)?;
        Ok(())
    }

    /// Approves a submitted report (managers).
    pub fn approve_report(
        &self,
        report_id: String,
        comment: Option<String>,
    ) -> Result<ReportItem, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("report", &report_id)?;
        self.store()
            .act(id, |d| report::approve(d, &me.actor, now(), comment))?;
        self.report(report_id)
    }

    /// Sends a submitted report back with a comment (managers).
    pub fn request_changes(
        &self,
        report_id: String,
        comment: String,
    ) -> Result<ReportItem, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("report", &report_id)?;
        self.store().act(id, |d| {
            report::request_changes(d, &me.actor, now(), comment)
        })?;
        self.report(report_id)
    }

    /// One report.
    pub fn report(&self, report_id: String) -> Result<ReportItem, FieldsyncError> {
        let id = parse_id("report", &report_id)?;
        Ok(ReportItem::of(
            &self.store().read_stateful::<VisitReport>(id)?,
        ))
    }

    /// Reports in a status (`submitted` is a manager's inbox).
    pub fn reports_by_status(&self, status: String) -> Result<Vec<ReportItem>, FieldsyncError> {
        self.store()
            .by_status(RecordKind::VisitReport, &status)?
            .into_iter()
            .map(|p| Ok(ReportItem::of(&self.store().read_stateful(p.id)?)))
            .collect()
    }

    /// Starts an order for an account, optionally taken during a visit.
    pub fn create_order(
        &self,
        account_id: String,
        currency: String,
        visit_id: Option<String>,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        let mut o = Order::new(
            self.meta(&me, None)?,
            parse_id("account", &account_id)?,
            currency,
        );
        o.visit_id = visit_id.map(|v| parse_id("visit", &v)).transpose()?;
        let id = self.store().create_stateful(&o, &me.actor, now())?;
        if let Some(v) = o.visit_id {
            self.store().update::<Visit>(v, now(), |visit| {
                visit.order_ids.insert(id, true);
            })?;
        }
        Ok(id.to_string())
    }

    /// Adds a line to a draft order.
    pub fn add_order_line(
        &self,
        order_id: String,
        product_id: String,
        quantity: f64,
        unit_price_minor: i64,
        tax_rate_bp: u32,
        discount_bp: Option<u32>,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        let id: RecordId = parse_id("order", &order_id)?;
        let currency = self.store().read_stateful::<Order>(id)?.currency;
        let line = OrderLine {
            product_id: parse_id("product", &product_id)?,
            qty: qty(quantity)?,
            unit_price: Money {
                minor: unit_price_minor,
                currency,
            },
            discount_percent_bp: discount_bp,
            discount_amount_minor: None,
            tax_rate_bp,
            description: None,
        };
        let mut line_id = None;
        self.store().act(id, |d| {
            let l = order::add_line(d, &me.actor, now(), line)?;
            line_id = Some(l);
            Ok(())
        })?;
        line_id
            .map(|l| l.to_string())
            .ok_or_else(|| FieldsyncError::Storage {
                detail: "the line was not added".into(),
            })
    }

    /// Changes a line's quantity and discount.
    pub fn edit_order_line(
        &self,
        order_id: String,
        line_id: String,
        quantity: f64,
        discount_bp: Option<u32>,
    ) -> Result<(), FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("order", &order_id)?;
        let line: RecordId = parse_id("line", &line_id)?;
        let q = qty(quantity)?;
        self.store().act(id, |d| {
            order::edit_line(d, &me.actor, now(), line, |l| {
                l.qty = q;
                l.discount_percent_bp = discount_bp;
            })
        })?;
        Ok(())
    }

    /// Removes a line from a draft order.
    pub fn remove_order_line(
        &self,
        order_id: String,
        line_id: String,
    ) -> Result<(), FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("order", &order_id)?;
        let line: RecordId = parse_id("line", &line_id)?;
        self.store()
            .act(id, |d| order::remove_line(d, &me.actor, now(), line))?;
        Ok(())
    }

    /// Submits a draft order (the server confirms it).
    pub fn submit_order(&self, order_id: String) -> Result<OrderItem, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("order", &order_id)?;
        self.store()
            .act(id, |d| order::submit(d, &me.actor, now()))?;
        self.order(order_id)
    }

    /// One order with its totals.
    pub fn order(&self, order_id: String) -> Result<OrderItem, FieldsyncError> {
        let id = parse_id("order", &order_id)?;
        OrderItem::of(&self.store().read_stateful::<Order>(id)?)
    }

    /// Orders of an account.
    pub fn orders_for_account(&self, account_id: String) -> Result<Vec<OrderItem>, FieldsyncError> {
        self.store()
            .orders_for_account(parse_id("account", &account_id)?)?
            .into_iter()
            .map(|p| OrderItem::of(&self.store().read_stateful(p.id)?))
            .collect()
    }

    /// Opens a service job at an account (managers).
    pub fn create_job(
        &self,
        account_id: String,
        description: String,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        let mut job = ServiceJob::new(
            self.meta(&me, None)?,
            parse_id("account", &account_id)?,
            "repair",
        );
        job.description = description;
        Ok(self
            .store()
            .create_stateful(&job, &me.actor, now())?
            .to_string())
    }

    /// Assigns a job to a technician of the manager's team and dispatches it.
    pub fn assign_job(
        &self,
        job_id: String,
        technician_id: String,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        let a = Assignment::new(
            self.meta(&me, Some(parse_id("technician", &technician_id)?))?,
            parse_id("job", &job_id)?,
            DeviceTime::utc(start_ms),
            DeviceTime::utc(end_ms),
        );
        let id = self.store().create_stateful(&a, &me.actor, now())?;
        self.store().act(id, |d| {
            assignment::advance(
                d,
                &me.actor,
                AssignmentStatus::Dispatched,
                now(),
                None,
                None,
            )
        })?;
        // An open job with an assignment is scheduled (the model's roll-up).
        self.roll_up_job(a.job_id, &me.actor)?;
        Ok(id.to_string())
    }

    /// Moves an assignment on (accept, travel, on site, start, complete, ...).
    pub fn advance_assignment(
        &self,
        assignment_id: String,
        step: AssignmentStep,
        fix: Option<GeoFix>,
        reason: Option<String>,
    ) -> Result<AssignmentItem, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("assignment", &assignment_id)?;
        self.store().act(id, |d| {
            assignment::advance(
                d,
                &me.actor,
                step.into(),
                now(),
                fix.map(Into::into),
                reason,
            )
        })?;
        // A technician out on the job puts it in progress (the model's
        // roll-up); completing it is their explicit `complete_job`, since this
        // device may not hold every assignment of the job.
        let a: Assignment = self.store().read_stateful(id)?;
        if a.status.is_active() {
            self.roll_up_job(a.job_id, &me.actor)?;
        }
        self.assignment(assignment_id)
    }

    /// Books a part used on an assignment: its serial number for a
    /// serialized part, whether the customer is billed (yes by default), and
    /// the van it was taken from (`van_stock().id`), whose balance goes down
    /// (below zero if the van was empty: the job is never blocked).
    #[uniffi::method(default(serial = None, billable = true, van_stock_id = None))]
    pub fn add_part(
        &self,
        assignment_id: String,
        product_id: String,
        quantity: f64,
        serial: Option<String>,
        billable: bool,
        van_stock_id: Option<String>,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("assignment", &assignment_id)?;
        let van = match van_stock_id {
            Some(v) => Some(self.usable_van(&me.actor, parse_id("van stock", &v)?)?),
            None => None,
        };
        let part = PartUsed {
            product_id: parse_id("product", &product_id)?,
            qty: qty(quantity)?,
            van_stock_id: van,
            serial: serial
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            billable,
            at: now(),
        };
        let mut entry = None;
        let used = part.clone();
        self.store().act(id, |d| {
            entry = Some(assignment::add_part(d, &me.actor, now(), part)?);
            Ok(())
        })?;
        let entry = entry.ok_or_else(|| FieldsyncError::Storage {
            detail: "the part was not booked".into(),
        })?;
        if let Some(van) = used.van_stock_id {
            self.take_from_van(&me.actor, van, id, entry, &used)?;
        }
        Ok(entry.to_string())
    }

    /// Books time on an assignment.
    pub fn add_time(
        &self,
        assignment_id: String,
        kind: TimeKindItem,
        start_ms: i64,
        end_ms: Option<i64>,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        let id = parse_id("assignment", &assignment_id)?;
        let entry = TimeEntry {
            kind: kind.into(),
            start: DeviceTime::utc(start_ms),
            end: end_ms.map(DeviceTime::utc),
            approval: Default::default(),
            note: None,
        };
        let mut made = None;
        self.store().act(id, |d| {
            made = Some(assignment::add_time_entry(d, &me.actor, now(), entry)?);
            Ok(())
        })?;
        made.map(|e| e.to_string())
            .ok_or_else(|| FieldsyncError::Storage {
                detail: "the time was not booked".into(),
            })
    }

    /// One assignment.
    pub fn assignment(&self, assignment_id: String) -> Result<AssignmentItem, FieldsyncError> {
        let id = parse_id("assignment", &assignment_id)?;
        Ok(AssignmentItem::of(
            &self.store().read_stateful::<Assignment>(id)?,
        ))
    }

    /// The caller's assignments in a status (`dispatched`, `accepted`, ...).
    pub fn assignments_by_status(
        &self,
        status: String,
    ) -> Result<Vec<AssignmentItem>, FieldsyncError> {
        self.store()
            .by_status(RecordKind::Assignment, &status)?
            .into_iter()
            .map(|p| Ok(AssignmentItem::of(&self.store().read_stateful(p.id)?)))
            .collect()
    }

    /// The catalogue of the caller's territory, by SKU.
    pub fn catalogue(&self) -> Result<Vec<ProductItem>, FieldsyncError> {
        let mut items = self
            .store()
            .all_of(RecordKind::Product)?
            .into_iter()
            .filter(|p| !p.deleted)
            .map(|p| {
                let product: fieldsync_core::model::Product = self.store().read(p.id)?;
                Ok(ProductItem {
                    id: p.id.to_string(),
                    sku: product.sku,
                    name: product.name,
                    spare_part: product.spare_part,
                })
            })
            .collect::<Result<Vec<_>, FieldsyncError>>()?;
        items.sort_by(|a, b| a.sku.cmp(&b.sku));
        Ok(items)
    }

    /// Publishes a checklist of yes/no questions (managers); returns its id.
    pub fn create_checklist_template(
        &self,
        name: String,
        questions: Vec<String>,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        let t = ChecklistTemplate {
            meta: self.meta(&me, None)?,
            name,
            version: 1,
            published: true,
            family: None,
            supersedes: None,
            retired: false,
            questions: questions
                .into_iter()
                .enumerate()
                .map(|(i, text)| {
                    (
                        format!("q{}", i + 1),
                        Question {
                            position: i as u32 + 1,
                            text,
                            kind: QuestionKind::YesNo,
                            choices: Vec::new(),
                            required: true,
                            show_if: None,
                        },
                    )
                })
                .collect(),
        };
        Ok(self.store().create(&t, now())?.to_string())
    }

    /// Answers a checklist about a subject (an assignment or a visit) at once
    /// and marks it complete; an assignment records that its checklist is
    /// done. Text answers a choice, photo, signature or barcode question when
    /// the template says so. Refused (`Validation`) when an answer does not fit
    /// its question or a shown required question is unanswered. To answer one
    /// question at a time, use `start_checklist`, `answer_question` and
    /// `complete_checklist`.
    pub fn answer_checklist(
        &self,
        template_id: String,
        subject_id: String,
        answers: Vec<AnswerItem>,
    ) -> Result<String, FieldsyncError> {
        let me = self.me()?;
        let subject: RecordId = parse_id("subject", &subject_id)?;
        let template_id: RecordId = parse_id("template", &template_id)?;
        let template: ChecklistTemplate = self.store().read(template_id)?;
        let at = now();
        let mut map = std::collections::BTreeMap::new();
        for a in answers {
            let kind = template
                .questions
                .get(&a.question)
                .map_or(QuestionKind::Text, |q| q.kind);
            let value = match (a.yes_no, a.number, a.text) {
                (Some(b), _, _) => AnswerValue::YesNo(b),
                (None, Some(n), _) => AnswerValue::Number(n),
                // Text is the answer of every text-like kind: the template says which.
                (None, None, Some(t)) => match kind {
                    QuestionKind::Choice => AnswerValue::Choice(t),
                    QuestionKind::Photo => AnswerValue::Photo(t),
                    QuestionKind::Signature => AnswerValue::Signature(t),
                    QuestionKind::Barcode => AnswerValue::Barcode(t),
                    _ => AnswerValue::Text(t),
                },
                (None, None, None) => {
                    return Err(FieldsyncError::InvalidArgument {
                        detail: format!("question {} has no answer", a.question),
                    });
                }
            };
            map.insert(
                a.question,
                Answer {
                    value,
                    at,
                    by: me.actor.user,
                },
            );
        }
        let r = ChecklistResponse {
            meta: self.meta(&me, None)?,
            template_id,
            template_version: template.version,
            subject_id: subject,
            answers: map,
            completed: true,
        };
        // The model's check: answers fit their questions, and every shown
        // required question is answered (the server checks it again).
        r.check_against(&template)?;
        let id = self.store().create(&r, at)?;
        if self.store().read_stateful::<Assignment>(subject).is_ok() {
            self.store().update::<Assignment>(subject, at, |a| {
                a.checklist_response_id = Some(id);
                a.checklist_complete = true;
            })?;
        }
        Ok(id.to_string())
    }

    /// Fields of a record that hold concurrent values.
    pub fn conflicts(&self, record_id: String) -> Result<Vec<ConflictItem>, FieldsyncError> {
        Ok(self
            .store()
            .conflicts(parse_id("record", &record_id)?)?
            .into_iter()
            .map(|c| {
                let mut values = c.values;
                values.sort_by_key(|v| !v.shown);
                ConflictItem {
                    field: c.path,
                    values: values.into_iter().map(|v| v.value.to_string()).collect(),
                }
            })
            .collect())
    }

    /// Changes the server refused, newest first.
    pub fn rejections(&self) -> Result<Vec<RejectionItem>, FieldsyncError> {
        Ok(self
            .store()
            .rejections()?
            .into_iter()
            .map(|r| RejectionItem {
                seq: r.seq,
                record_id: r.record_id.to_string(),
                kind: r.kind.as_str().into(),
                code: r.code,
                message: r.message,
                at_ms: r.at_ms,
            })
            .collect())
    }

    /// The Automerge actor id this device writes under (for support).
    pub fn actor_id(&self) -> String {
        let actor: ActorId = self.store().actor_id();
        actor.to_hex_string()
    }
}
