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
