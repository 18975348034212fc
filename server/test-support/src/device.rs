//! A device of a [`World`](crate::World): a real `fieldsync-core` client, with
//! a SQLite device store on disk, the sync client and the HTTP transport
//! wrapped in [`Faulty`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fieldsync_core::model::Actor;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::{LoginResponse, SyncClient, SyncOptions};

use crate::faulty::Faulty;
use crate::world::Person;

/// Options that keep retries quick in tests.
pub fn fast_options() -> SyncOptions {
    SyncOptions {
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        ..SyncOptions::default()
    }
}

/// A device: a real store and sync client.
#[derive(Debug)]
pub struct Device {
    /// The client (store inside).
    pub client: SyncClient<Arc<DeviceStore>, Faulty>,
    /// The user on this device, for domain actions.
    pub actor: Actor,
    /// Who.
    pub person: Person,
    /// The store's file.
    pub path: PathBuf,
    /// What login answered.
    pub login: LoginResponse,
}

impl Device {
    /// The store.
    pub fn store(&self) -> &DeviceStore {
        self.client.store()
    }

    /// The fault-injecting transport.
    pub fn net(&self) -> &Faulty {
        self.client.transport()
    }

    /// The current access token (the device is logged in).
    pub fn access_token(&self) -> String {
        self.client.session().expect("session").access_token
    }

    /// One full sync that must succeed.
    pub fn sync(&self) -> fieldsync_core::sync::SyncReport {
        self.client
            .sync(&fieldsync_core::sync::NoProgress)
            .unwrap_or_else(|e| panic!("{} sync failed: {e}", self.person.email))
    }
}

impl Device {
    /// Pushes a change built by hand, as a modified app or a script with this
    /// device's token would: `edit` works on `copy` (the server's copy of a
    /// record, or one the device held) under this device's actor, with no check
    /// of the device's own, and whatever it wrote is pushed raw. Returns the
    /// server's answer for the record.
    pub fn push_forged(
        &self,
        mut copy: fieldsync_core::model::RecordDoc,
        edit: impl FnOnce(&mut fieldsync_core::model::RecordDoc),
    ) -> fieldsync_core::protocol::PushOutcome {
        copy.set_actor(self.actor_id());
        let heads = copy.heads();
        edit(&mut copy);
        self.push_raw(&mut copy, &heads)
    }

    /// Pushes a record made by hand from scratch (every change it holds), as
    /// [`Device::push_forged`] pushes an edit.
    pub fn push_new(
        &self,
        doc: &mut fieldsync_core::model::RecordDoc,
    ) -> fieldsync_core::protocol::PushOutcome {
        self.push_raw(doc, &[])
    }

    /// The Automerge actor the server assigned to this device.
    pub fn actor_id(&self) -> fieldsync_core::automerge::ActorId {
        let actor = hex::decode(&self.login.device.actor_id).expect("actor id hex");
        fieldsync_core::automerge::ActorId::from(actor)
    }

    fn push_raw(
        &self,
        doc: &mut fieldsync_core::model::RecordDoc,
        since: &[fieldsync_core::automerge::ChangeHash],
    ) -> fieldsync_core::protocol::PushOutcome {
        let changes: Vec<Vec<u8>> = doc
            .changes_since(since)
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        assert!(!changes.is_empty(), "the hand-made record holds no change");
        self.push_bytes(doc.id(), doc.kind(), changes)
    }

    /// Pushes `changes` (any bytes) as record `id` of `kind`, as a script
    /// with this device's token would. Returns the server's answer for the
    /// record.
    pub fn push_bytes(
        &self,
        id: fieldsync_core::RecordId,
        kind: fieldsync_core::model::RecordKind,
        changes: Vec<Vec<u8>>,
    ) -> fieldsync_core::protocol::PushOutcome {
        use fieldsync_core::sync::Transport as _;
        let changes = changes
            .into_iter()
            .map(serde_bytes::ByteBuf::from)
            .collect();
        let resp = self
            .net()
            .push(
                &self.access_token(),
                &fieldsync_core::protocol::PushRequest {
                    batch: uuid::Uuid::now_v7(),
                    records: vec![fieldsync_core::protocol::RecordChanges { id, kind, changes }],
                    health: None,
                    epochs: Vec::new(),
                },
            )
            .expect("push answered");
        resp.results
            .into_iter()
            .next()
            .map(|r| r.outcome)
            .expect("one result")
    }
}
