//! An in-memory server for the sync client's tests: the real merge-and-check
//! (`merge_incoming`, the code the server runs on every push) over a change
//! log in a vector, behind the client's `Transport` seam, with knobs for the
//! faults a network and a server show: a dropped request, a lost answer (the
//! server did the work), a duplicated request, an expired token, a revoked
//! device. Used by `sync_loop.rs` (the loop's decisions) and `simulation.rs`
//! (seeded runs of many devices with faults).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use fieldsync_core::automerge::ActorId;
use fieldsync_core::model::merge_incoming;
use fieldsync_core::protocol::{
    PrimeRequest, PrimeResponse, PullRequest, PullResponse, PushOutcome, PushRequest, PushResponse,
    PushResult, RecordChanges, Rejection, RepairRequest, RepairResponse, Snapshot,
};
use fieldsync_core::sync::{
    LoginRequest, LoginResponse, SessionDevice, SessionUser, Transport, TransportError,
};
use fieldsync_core::{Actor, OrgId, RecordDoc, RecordId, RecordKind};
use serde_bytes::ByteBuf;

/// SplitMix64: a seed's whole sequence, the same on every platform and every
/// release of every crate, so a failing seed replays by its number forever.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Faults drawn for every request while set: percentages per request.
#[derive(Debug, Clone)]
pub struct Chaos {
    pub rng: Rng,
    /// The request never reaches the server.
    pub drop_request: u64,
    /// The server does the work; the answer is lost on the way back.
    pub lose_answer: u64,
    /// The request reaches the server twice (a proxy retrying); the client
    /// gets the second answer.
    pub duplicate: u64,
    /// The access token has expired (the client refreshes once).
    pub expire: u64,
}

/// What the injected faults did, for the run's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub dropped: u64,
    pub lost_answers: u64,
    pub duplicated: u64,
    pub expired: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.dropped + self.lost_answers + self.duplicated + self.expired
    }
}

/// The server side: records, a change log, and knobs for faults.
pub struct Server {
    pub org: OrgId,
    pub records: BTreeMap<RecordId, RecordDoc>,
    pub log: Vec<(RecordId, RecordKind, Vec<u8>)>,
    /// Device actor ids by access token.
    pub sessions: BTreeMap<String, (Actor, ActorId)>,
    /// Fail this many requests with a network error first.
    pub drop_next: u32,
    /// Answer the next request with 401.
    pub expire_next: bool,
    /// Fail this many refresh requests with a network error first.
    pub drop_refreshes: u32,
    /// Handle the next request, then lose its answer.
    pub lose_next_answer: bool,
    /// Let this many more requests through, then fail every one (the
    /// network gone for good); `None`: no such limit.
    pub fail_after: Option<u32>,
    /// Snapshots served by prime answers.
    pub snapshots_served: u64,
    pub revoked: bool,
    pub requests: u32,
    /// Random faults on every request, when set.
    pub chaos: Option<Chaos>,
    pub faults: FaultCounts,
    /// The identity of the change log, named in every pull and prime; a
    /// restore from backup gives it a new one.
    pub log_id: String,
}

/// The server's stored state, as a backup holds it.
#[derive(Clone)]
pub struct Backup {
    records: BTreeMap<RecordId, RecordDoc>,
    log: Vec<(RecordId, RecordKind, Vec<u8>)>,
}

impl Server {
    pub fn new(org: OrgId) -> Self {
        Server {
            org,
            records: BTreeMap::new(),
            log: Vec::new(),
            sessions: BTreeMap::new(),
            drop_next: 0,
            expire_next: false,
            drop_refreshes: 0,
            lose_next_answer: false,
            fail_after: None,
            snapshots_served: 0,
            revoked: false,
            requests: 0,
            chaos: None,
            faults: FaultCounts::default(),
            log_id: "log-1".into(),
        }
    }

    /// A copy of what the server stores.
    pub fn backup(&self) -> Backup {
        Backup {
            records: self.records.clone(),
            log: self.log.clone(),
        }
    }

    /// Puts a backup back: everything stored since is gone, and the change
    /// log gets a new identity, as `fieldsync restore` does.
    pub fn restore(&mut self, backup: &Backup, new_log_id: &str) {
        self.records = backup.records.clone();
        self.log = backup.log.clone();
        self.log_id = new_log_id.into();
    }
}

/// What chaos decided for one request.
#[derive(Debug, Clone, Copy, Default)]
struct Draw {
    lose_answer: bool,
    duplicate: bool,
}

#[derive(Clone)]
pub struct MemTransport(pub Arc<Mutex<Server>>);

impl MemTransport {
    pub fn new(org: OrgId) -> Self {
        MemTransport(Arc::new(Mutex::new(Server::new(org))))
    }

    pub fn server(&self) -> MutexGuard<'_, Server> {
        self.0.lock().expect("server lock")
    }

    /// Lets `token` (and `refresh-<token>`) act as `actor` writing with `actor_id`.
    pub fn register(&self, token: &str, actor: &Actor, actor_id: &ActorId) {
        let mut s = self.server();
        s.sessions
            .insert(token.into(), (actor.clone(), actor_id.clone()));
        s.sessions.insert(
            format!("refresh-{token}"),
            (actor.clone(), actor_id.clone()),
        );
    }

    fn guard(&self, token: &str) -> Result<((Actor, ActorId), Draw), TransportError> {
        let mut s = self.server();
        s.requests += 1;
        // A request whose answer is to be lost gets through first; the
        // drops apply to the ones after it.
        let lose_this = std::mem::take(&mut s.lose_next_answer);
        match s.fail_after {
            Some(0) => return Err(TransportError::Network("no network".into())),
            Some(n) => s.fail_after = Some(n - 1),
            None => {}
        }
        if !lose_this && s.drop_next > 0 {
            s.drop_next -= 1;
            return Err(TransportError::Network("connection reset".into()));
        }
        if s.revoked {
            return Err(TransportError::Revoked("device revoked".into()));
        }
        let mut draw = Draw {
            lose_answer: lose_this,
            duplicate: false,
        };
        if let Some(chaos) = s.chaos.as_mut() {
            let (drop, expire) = (
                chaos.rng.chance(chaos.drop_request),
                chaos.rng.chance(chaos.expire),
            );
            draw.lose_answer |= chaos.rng.chance(chaos.lose_answer);
            draw.duplicate = chaos.rng.chance(chaos.duplicate);
            if drop {
                s.faults.dropped += 1;
                return Err(TransportError::Network("connection reset".into()));
            }
            if expire {
                s.faults.expired += 1;
                s.expire_next = true;
            }
            s.faults.lost_answers += u64::from(draw.lose_answer);
            s.faults.duplicated += u64::from(draw.duplicate);
        }
        if s.expire_next {
            s.expire_next = false;
            return Err(TransportError::Unauthorized {
                code: "token_expired".into(),
                message: "expired".into(),
            });
        }
        let session =
            s.sessions
                .get(token)
                .cloned()
                .ok_or_else(|| TransportError::Unauthorized {
                    code: "bad_token".into(),
                    message: "unknown token".into(),
                })?;
        Ok((session, draw))
    }

    fn merge(&self, actor: &Actor, actor_id: &ActorId, req: &PushRequest) -> PushResponse {
        let mut s = self.server();
        let org = s.org;
        let mut results = Vec::new();
        for rc in &req.records {
            let raw: Vec<Vec<u8>> = rc.changes.iter().map(|c| c.to_vec()).collect();
            let outcome = match merge_incoming(
                s.records.get(&rc.id),
                rc.id,
                rc.kind,
                &raw,
                actor_id,
                actor,
                org,
            ) {
                Ok(mut merged) => {
                    for (_, bytes) in &merged.new_changes {
                        s.log.push((rc.id, rc.kind, bytes.clone()));
                    }
                    let heads = merged
                        .doc
                        .heads()
                        .iter()
                        .map(|h| ByteBuf::from(h.0.to_vec()))
                        .collect();
                    s.records.insert(rc.id, merged.doc);
                    PushOutcome::Accepted { heads }
                }
                Err(e) => {
                    let mut rejection = Rejection::from(e);
                    rejection.server_doc = s
                        .records
                        .get(&rc.id)
                        .map(|d| ByteBuf::from(d.clone().save()));
                    PushOutcome::Rejected(rejection)
                }
            };
            results.push(PushResult { id: rc.id, outcome });
        }
        PushResponse { results }
    }
}

fn lost() -> TransportError {
    TransportError::Network("the answer was lost".into())
}

impl Transport for MemTransport {
    fn login(&self, _req: &LoginRequest) -> Result<LoginResponse, TransportError> {
        unreachable!("the tests set the session directly")
    }

    fn refresh(&self, refresh_token: &str) -> Result<LoginResponse, TransportError> {
        let mut s = self.server();
        if s.drop_refreshes > 0 {
            s.drop_refreshes -= 1;
            return Err(TransportError::Network("connection reset".into()));
        }
        let (actor, actor_id) =
            s.sessions
                .get(refresh_token)
                .cloned()
                .ok_or(TransportError::Unauthorized {
                    code: "bad_refresh".into(),
                    message: "unknown refresh token".into(),
                })?;
        let access = format!("{refresh_token}+");
        s.sessions
            .insert(access.clone(), (actor.clone(), actor_id.clone()));
        Ok(LoginResponse {
            access_token: access,
            refresh_token: refresh_token.into(),
            expires_in: 900,
            user: SessionUser {
                id: actor.user,
                org: None,
                role: actor.role,
                team: None,
                territory: None,
                display_name: String::new(),
            },
            device: SessionDevice {
                id: actor.device.unwrap_or_default(),
                actor_id: actor_id.to_hex_string(),
            },
        })
    }

    fn push(&self, token: &str, req: &PushRequest) -> Result<PushResponse, TransportError> {
        let ((actor, actor_id), draw) = self.guard(token)?;
        let mut answer = self.merge(&actor, &actor_id, req);
        if draw.duplicate {
            answer = self.merge(&actor, &actor_id, req);
        }
        if draw.lose_answer {
            return Err(lost());
        }
        Ok(answer)
    }

    fn pull(&self, token: &str, req: &PullRequest) -> Result<PullResponse, TransportError> {
        let (_, draw) = self.guard(token)?;
        if draw.lose_answer {
            return Err(lost());
        }
        let s = self.server();
        let start = usize::try_from(req.cursor)
            .unwrap_or(usize::MAX)
            .min(s.log.len());
        let end = (start + req.max_changes as usize).min(s.log.len());
        let mut records: Vec<RecordChanges> = Vec::new();
        for (id, kind, bytes) in &s.log[start..end] {
            match records.iter_mut().find(|r| r.id == *id) {
                Some(r) => r.changes.push(ByteBuf::from(bytes.clone())),
                None => records.push(RecordChanges {
                    id: *id,
                    kind: *kind,
                    changes: vec![ByteBuf::from(bytes.clone())],
                }),
            }
        }
        Ok(PullResponse {
            log: Some(s.log_id.clone()),
            history: None,
            records,
            removed: vec![],
            next_cursor: end as u64,
            more: end < s.log.len(),
            window: None,
            epochs: Vec::new(),
        })
    }

    fn prime(&self, token: &str, req: &PrimeRequest) -> Result<PrimeResponse, TransportError> {
        let (_, draw) = self.guard(token)?;
        if draw.lose_answer {
            return Err(lost());
        }
        let mut s = self.server();
        let cursor = req.cursor.unwrap_or(s.log.len() as u64);
        let page: Vec<Snapshot> = s
            .records
            .iter()
            .filter(|(id, _)| req.after.is_none_or(|a| **id > a))
            .take(req.max_records as usize)
            .map(|(id, doc)| Snapshot {
                id: *id,
                kind: doc.kind(),
                doc: ByteBuf::from(doc.clone().save()),
                // Like a server that predates projections in snapshots.
                projection: None,
            })
            .collect();
        s.snapshots_served += page.len() as u64;
        let next = if page.len() == req.max_records as usize {
            page.last().map(|p| p.id)
        } else {
            None
        };
        Ok(PrimeResponse {
            log: Some(s.log_id.clone()),
            snapshots: page,
            next,
            cursor,
            window: None,
            epochs: Vec::new(),
        })
    }

    /// One round of Automerge's sync protocol for one record, from a fresh
    /// state (as the server does): what the device sends is stored and logged,
    /// and the answer carries what the device lacks.
    fn repair(&self, token: &str, req: &RepairRequest) -> Result<RepairResponse, TransportError> {
        use fieldsync_core::automerge::ChangeHash;
        use fieldsync_core::automerge::sync::{Message, State, SyncDoc};
        let (_, draw) = self.guard(token)?;
        let bad = |e: String| TransportError::Protocol(format!("repair: {e}"));
        let message = Message::decode(&req.message).map_err(|e| bad(e.to_string()))?;
        let mut s = self.server();
        let mut doc = s
            .records
            .get(&req.id)
            .map(|d| d.clone().into_automerge())
            .unwrap_or_default();
        let before: Vec<ChangeHash> = doc.get_heads();
        let mut state = State::new();
        doc.sync()
            .receive_sync_message(&mut state, message)
            .map_err(|e| bad(e.to_string()))?;
        let new: Vec<Vec<u8>> = doc
            .get_changes(&before)
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        for bytes in new {
            s.log.push((req.id, req.kind, bytes));
        }
        if let Ok(record) = RecordDoc::from_automerge(doc.clone()) {
            s.records.insert(req.id, record);
        }
        let message = doc
            .sync()
            .generate_sync_message(&mut state)
            .map(|m| ByteBuf::from(m.encode()));
        if draw.lose_answer {
            return Err(lost());
        }
        Ok(RepairResponse { message })
    }
}
