//! A device's transport: the real HTTP transport, losing answers on purpose
//! and counting round trips and bytes.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use fieldsync_core::protocol::{
    self, PrimeRequest, PrimeResponse, PullRequest, PullResponse, PushRequest, PushResponse,
    RepairRequest, RepairResponse,
};
use fieldsync_core::sync::{
    AttachmentDeclaration, AttachmentStatus, HttpTransport, LoginRequest, LoginResponse, Transport,
    TransportError,
};

/// The HTTP transport with faults on demand and counters.
#[derive(Debug)]
pub struct Faulty {
    inner: HttpTransport,
    /// Push answers to lose after the server handled the request.
    pub lose_push_answers: AtomicU32,
    /// Pull requests to let through before failing every further one.
    pub pulls_before_failure: AtomicU32,
    /// Whether pulls fail once `pulls_before_failure` reaches zero.
    pub fail_pulls: AtomicBool,
    /// Send every push twice (the second answer is the one returned).
    pub duplicate_pushes: AtomicBool,
    /// Requests sent (login and refresh included).
    pub requests: AtomicU64,
    /// CBOR body bytes sent and received on sync endpoints.
    pub bytes: AtomicU64,
    /// Chunk PUTs let through before every further one fails with a network
    /// error (`u32::MAX`: never).
    pub fail_chunks_after: AtomicU32,
    /// Chunk PUTs that reached the server.
    pub chunk_puts: AtomicU32,
    /// Attachment declarations sent.
    pub declarations: AtomicU32,
    /// Attachment completions sent.
    pub completions: AtomicU32,
}

impl Faulty {
    /// Wraps `inner`: no faults, counters at zero.
    pub fn new(inner: HttpTransport) -> Self {
        Faulty {
            inner,
            lose_push_answers: AtomicU32::new(0),
            pulls_before_failure: AtomicU32::new(0),
            fail_pulls: AtomicBool::new(false),
            duplicate_pushes: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            fail_chunks_after: AtomicU32::new(u32::MAX),
            chunk_puts: AtomicU32::new(0),
            declarations: AtomicU32::new(0),
            completions: AtomicU32::new(0),
        }
    }

    /// Zeroes the counters.
    pub fn reset_counters(&self) {
        self.requests.store(0, Ordering::SeqCst);
        self.bytes.store(0, Ordering::SeqCst);
    }

    /// (requests, bytes) so far.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::SeqCst),
            self.bytes.load(Ordering::SeqCst),
        )
    }

    fn count<Q: serde::Serialize, A: serde::Serialize>(&self, req: &Q, resp: &A) {
        let n = protocol::encode(req).len() + protocol::encode(resp).len();
        self.bytes.fetch_add(n as u64, Ordering::SeqCst);
    }
}

fn lost() -> TransportError {
    TransportError::Network("connection reset (injected)".into())
}

impl Transport for Faulty {
    fn login(&self, req: &LoginRequest) -> Result<LoginResponse, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.inner.login(req)
    }

    fn refresh(&self, refresh_token: &str) -> Result<LoginResponse, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.inner.refresh(refresh_token)
    }

    fn push(&self, token: &str, req: &PushRequest) -> Result<PushResponse, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.duplicate_pushes.load(Ordering::SeqCst) {
            self.inner.push(token, req)?;
        }
        let resp = self.inner.push(token, req)?;
        self.count(req, &resp);
        let lose = self
            .lose_push_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lose {
            return Err(lost());
        }
        Ok(resp)
    }

    fn pull(&self, token: &str, req: &PullRequest) -> Result<PullResponse, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.fail_pulls.load(Ordering::SeqCst)
            && self
                .pulls_before_failure
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err()
        {
            return Err(lost());
        }
        let resp = self.inner.pull(token, req)?;
        self.count(req, &resp);
        Ok(resp)
    }

    fn prime(&self, token: &str, req: &PrimeRequest) -> Result<PrimeResponse, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let resp = self.inner.prime(token, req)?;
        self.count(req, &resp);
        Ok(resp)
    }

    fn repair(&self, token: &str, req: &RepairRequest) -> Result<RepairResponse, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let resp = self.inner.repair(token, req)?;
        self.count(req, &resp);
        Ok(resp)
    }

    fn declare_attachment(
        &self,
        token: &str,
        req: &AttachmentDeclaration,
    ) -> Result<AttachmentStatus, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.declarations.fetch_add(1, Ordering::SeqCst);
        self.inner.declare_attachment(token, req)
    }

    fn put_attachment_chunk(
        &self,
        token: &str,
        sha256: &str,
        idx: u32,
        chunk: &[u8],
    ) -> Result<(), TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.chunk_puts.load(Ordering::SeqCst) >= self.fail_chunks_after.load(Ordering::SeqCst) {
            return Err(lost());
        }
        self.chunk_puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_attachment_chunk(token, sha256, idx, chunk)
    }

    fn complete_attachment(&self, token: &str, sha256: &str) -> Result<(), TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.completions.fetch_add(1, Ordering::SeqCst);
        self.inner.complete_attachment(token, sha256)
    }

    fn live(
        &self,
        token: &str,
    ) -> Result<Box<dyn fieldsync_core::sync::LiveStream>, TransportError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.inner.live(token)
    }
}
