//! The network side of the sync client: one trait, one HTTP implementation.
//!
//! [`Transport`] is what [`super::SyncClient`] needs from the network. It is a
//! trait so a test can put a fault in the path (drop the connection after the
//! server has committed a push, say) while still talking to a real server.
//! [`HttpTransport`] is the real one: blocking HTTP with `ureq` (the FFI exports
//! are synchronous; apps call them off the main thread), CBOR bodies for sync
//! messages, JSON for authentication, and every HTTP failure mapped onto a
//! [`TransportError`] that says whether a retry can help.

use super::live::{LiveMessage, LiveStream};
use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::ids::{DeviceId, OrgId, TeamId, TerritoryId, UserId};
use crate::model::Role;
use crate::protocol::{
    self, CONTENT_TYPE, PROTOCOL_HEADER, PROTOCOL_VERSION, PrimeRequest, PrimeResponse,
    PullRequest, PullResponse, PushRequest, PushResponse, RepairRequest, RepairResponse,
};

/// `POST /v1/auth/login` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The organisation's slug.
    pub org: String,
    /// The user's email.
    pub email: String,
    /// The password (never logged).
    pub password: String,
    /// The device logging in.
    pub device: DeviceInfo,
}

/// The device part of a login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Made on the device once, kept for its lifetime.
    pub id: DeviceId,
    /// `android`, `ios`, `python`, ...
    pub platform: String,
    /// The app's version, shown to managers in the fleet view.
    pub app_version: String,
}

/// What login and refresh return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// Short-lived bearer token.
    pub access_token: String,
    /// Rotating token to get the next access token; bound to this device.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Who logged in.
    pub user: SessionUser,
    /// The device as the server knows it.
    pub device: SessionDevice,
}

/// The logged-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    /// User id.
    pub id: UserId,
    /// Organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<OrgId>,
    /// Role.
    pub role: Role,
    /// Team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<TeamId>,
    /// Territory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub territory: Option<TerritoryId>,
    /// Name to show.
    #[serde(default)]
    pub display_name: String,
}

/// The device's server-side identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDevice {
    /// Device id.
    pub id: DeviceId,
    /// The Automerge actor id (hex) every change of this device must be made under.
    pub actor_id: String,
}

/// `POST /v1/attachments` body: the device has this file for this record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentDeclaration {
    /// SHA-256 of the whole file, 64 lowercase hex digits.
    pub sha256: String,
    /// The record it belongs to.
    pub record_id: crate::ids::RecordId,
    /// `photo`, `signature` or `document`.
    pub kind: String,
    /// MIME type.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
}

/// Where an upload stands, as a declaration answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentStatus {
    /// The file's hash.
    pub sha256: String,
    /// Bytes per chunk (the last chunk may be shorter).
    pub chunk_size: u64,
    /// Number of chunks.
    pub chunks: u32,
    /// Indexes of the chunks the server holds.
    #[serde(default)]
    pub received: Vec<u32>,
    /// Whether the server has the whole file already.
    pub complete: bool,
}

/// A network or server failure, classified for the retry loop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No connection, timeout, connection dropped: retry with backoff.
    #[error("network: {0}")]
    Network(String),
    /// The access token is missing, expired or invalid: refresh, then retry.
    #[error("not authorized: {message}")]
    Unauthorized {
        /// Server's error code.
        code: String,
        /// Server's message.
        message: String,
    },
    /// The device was revoked: the app must wipe local data and log in again.
    #[error("this device was revoked: {0}")]
    Revoked(String),
    /// Too many requests: wait `retry_after`.
    #[error("rate limited; retry in {retry_after:?}")]
    RateLimited {
        /// How long the server asked to wait.
        retry_after: Duration,
    },
    /// The server failed (5xx): retry with backoff.
    #[error("server error {status}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Server's message.
        message: String,
    },
    /// The request was refused (4xx other than the above): retrying will not help.
    #[error("refused ({status} {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Server's error code.
        code: String,
        /// Server's message.
        message: String,
    },
    /// The server's answer could not be decoded.
    #[error("unreadable answer: {0}")]
    Protocol(String),
}

impl TransportError {
    /// Whether the same request may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            TransportError::Network(_)
                | TransportError::RateLimited { .. }
                | TransportError::Server { .. }
        )
    }
}

/// What the sync client needs from the network.
pub trait Transport: Send + Sync {
    /// Logs in with a password.
    fn login(&self, req: &LoginRequest) -> Result<LoginResponse, TransportError>;
    /// Trades a refresh token for a new pair.
    fn refresh(&self, refresh_token: &str) -> Result<LoginResponse, TransportError>;
    /// Pushes pending changes.
    fn push(&self, token: &str, req: &PushRequest) -> Result<PushResponse, TransportError>;
    /// Pulls a page of the feed.
    fn pull(&self, token: &str, req: &PullRequest) -> Result<PullResponse, TransportError>;
    /// Fetches a page of snapshots.
    fn prime(&self, token: &str, req: &PrimeRequest) -> Result<PrimeResponse, TransportError>;
    /// One round of repair.
    fn repair(&self, token: &str, req: &RepairRequest) -> Result<RepairResponse, TransportError>;
    /// Declares an attachment upload (or asks where it stands). Transports
    /// without attachments answer a protocol error.
    fn declare_attachment(
        &self,
        _token: &str,
        _req: &AttachmentDeclaration,
    ) -> Result<AttachmentStatus, TransportError> {
        Err(no_attachments())
    }
    /// Sends chunk `idx` of attachment `sha256`.
    fn put_attachment_chunk(
        &self,
        _token: &str,
        _sha256: &str,
        _idx: u32,
        _chunk: &[u8],
    ) -> Result<(), TransportError> {
        Err(no_attachments())
    }
    /// Asks the server to assemble and check attachment `sha256`.
    fn complete_attachment(&self, _token: &str, _sha256: &str) -> Result<(), TransportError> {
        Err(no_attachments())
    }
    /// Opens the live channel (see [`super::live`]). Transports without one
    /// answer a protocol error, and live sync keeps retrying with backoff.
    fn live(&self, _token: &str) -> Result<Box<dyn LiveStream>, TransportError> {
        Err(TransportError::Protocol(
            "this transport has no live channel".into(),
        ))
    }
}

fn no_attachments() -> TransportError {
    TransportError::Protocol("this transport has no attachment uploads".into())
}

/// The JSON error body every server error carries.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// Blocking HTTP transport.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    base: String,
    agent: ureq::Agent,
    /// For the live stream: no overall timeout, a limit on silence instead.
    live_agent: ureq::Agent,
}

impl HttpTransport {
    /// A transport for the server at `base_url` (e.g. `https://sync.example.com`).
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("fieldsync-core/", env!("CARGO_PKG_VERSION")))
            .build();
        let live = ureq::Agent::config_builder()
            .timeout_connect(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_per_read(Some(LIVE_SILENCE))
            .http_status_as_error(false)
            .user_agent(concat!("fieldsync-core/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            agent: config.into(),
            live_agent: live.into(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn json<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<Resp, TransportError> {
        let bytes =
            serde_json::to_vec(body).map_err(|e| TransportError::Protocol(e.to_string()))?;
        let resp = self
            .agent
            .post(&self.url(path))
            .header("content-type", "application/json")
            .send(&bytes[..])
            .map_err(network)?;
        let body = read_ok(resp)?;
        serde_json::from_slice(&body).map_err(|e| TransportError::Protocol(e.to_string()))
    }

    fn cbor<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
        body: &Req,
    ) -> Result<Resp, TransportError> {
        let bytes = protocol::encode(body);
        let resp = self
            .agent
            .post(&self.url(path))
            .header("content-type", CONTENT_TYPE)
            .header("accept", CONTENT_TYPE)
            .header("authorization", format!("Bearer {token}"))
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
            .send(&bytes[..])
            .map_err(network)?;
        let body = read_ok(resp)?;
        protocol::decode(&body).map_err(|e| TransportError::Protocol(e.to_string()))
    }
}

/// Longest silence on the live stream before it is taken for dead (the server
/// sends a heartbeat every 15 s).
const LIVE_SILENCE: Duration = Duration::from_secs(45);

/// The live stream over HTTP.
struct HttpLive {
    events: super::live::SseReader<std::io::BufReader<ureq::BodyReader<'static>>>,
}

impl LiveStream for HttpLive {
    fn next(&mut self) -> Result<Option<LiveMessage>, TransportError> {
        loop {
            match self.events.next_event() {
                Ok(Some((event, data))) => {
                    if let Some(message) = super::live::parse_live_event(&event, &data) {
                        return Ok(Some(message));
                    }
                }
                Ok(None) => return Ok(None),
                Err(e) => return Err(TransportError::Network(e.to_string())),
            }
        }
    }
}

/// Largest answer the client reads into memory (a page of snapshots is far below).
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

fn network(e: ureq::Error) -> TransportError {
    TransportError::Network(e.to_string())
}

fn read_ok(resp: ureq::http::Response<ureq::Body>) -> Result<Vec<u8>, TransportError> {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = resp
        .into_body()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(network)?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => (
            format!("http_{status}"),
            String::from_utf8_lossy(&body).chars().take(200).collect(),
        ),
    };
    Err(match status {
        401 if code == "device_revoked" => TransportError::Revoked(message),
        401 => TransportError::Unauthorized { code, message },
        429 => TransportError::RateLimited {
            retry_after: Duration::from_secs(retry_after.unwrap_or(5)),
        },
        // 408: the server's request timeout cut a slow request; sending it
        // again (later, or on a better network) can succeed.
        408 | 500..=599 => TransportError::Server { status, message },
        _ => TransportError::Refused {
            status,
            code,
            message,
        },
    })
}

impl Transport for HttpTransport {
    fn login(&self, req: &LoginRequest) -> Result<LoginResponse, TransportError> {
        self.json("/v1/auth/login", req)
    }

    fn refresh(&self, refresh_token: &str) -> Result<LoginResponse, TransportError> {
        #[derive(Serialize)]
        struct Refresh<'a> {
            refresh_token: &'a str,
        }
        self.json("/v1/auth/refresh", &Refresh { refresh_token })
    }

    fn push(&self, token: &str, req: &PushRequest) -> Result<PushResponse, TransportError> {
        self.cbor("/v1/sync/push", token, req)
    }

    fn pull(&self, token: &str, req: &PullRequest) -> Result<PullResponse, TransportError> {
        self.cbor("/v1/sync/pull", token, req)
    }

    fn prime(&self, token: &str, req: &PrimeRequest) -> Result<PrimeResponse, TransportError> {
        self.cbor("/v1/sync/prime", token, req)
    }

    fn repair(&self, token: &str, req: &RepairRequest) -> Result<RepairResponse, TransportError> {
        self.cbor("/v1/sync/repair", token, req)
    }

    fn declare_attachment(
        &self,
        token: &str,
        req: &AttachmentDeclaration,
    ) -> Result<AttachmentStatus, TransportError> {
        let bytes = serde_json::to_vec(req).map_err(|e| TransportError::Protocol(e.to_string()))?;
        let resp = self
            .agent
            .post(&self.url("/v1/attachments"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .send(&bytes[..])
            .map_err(network)?;
        let body = read_ok(resp)?;
        serde_json::from_slice(&body).map_err(|e| TransportError::Protocol(e.to_string()))
    }

    fn put_attachment_chunk(
        &self,
        token: &str,
        sha256: &str,
        idx: u32,
        chunk: &[u8],
    ) -> Result<(), TransportError> {
        // The server may refuse (401, 404, 409) before reading the body and close
        // the connection under a large chunk: that surfaces as a network error
        // (broken pipe), and the uploader declares again next time.
        let resp = self
            .agent
            .put(&self.url(&format!("/v1/attachments/{sha256}/chunks/{idx}")))
            .header("content-type", "application/octet-stream")
            .header("authorization", format!("Bearer {token}"))
            .header("x-chunk-sha256", crate::store::sha256_hex(chunk))
            .send(chunk)
            .map_err(network)?;
        read_ok(resp).map(drop)
    }

    fn complete_attachment(&self, token: &str, sha256: &str) -> Result<(), TransportError> {
        let resp = self
            .agent
            .post(&self.url(&format!("/v1/attachments/{sha256}/complete")))
            .header("authorization", format!("Bearer {token}"))
            .send_empty()
            .map_err(network)?;
        read_ok(resp).map(drop)
    }

    fn live(&self, token: &str) -> Result<Box<dyn LiveStream>, TransportError> {
        let resp = self
            .live_agent
            .get(&self.url("/v1/live"))
            .header("accept", "text/event-stream")
            .header("authorization", format!("Bearer {token}"))
            .call()
            .map_err(network)?;
        if !resp.status().is_success() {
            // The error shape of every other endpoint.
            return Err(read_ok(resp)
                .err()
                .unwrap_or_else(|| TransportError::Protocol("unexpected live answer".into())));
        }
        let reader = resp.into_body().into_reader();
        Ok(Box::new(HttpLive {
            events: super::live::SseReader::new(std::io::BufReader::new(reader)),
        }))
    }
}
