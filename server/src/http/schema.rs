//! Types that exist only to describe bodies in the OpenAPI description
//! (binary and free-form bodies, the health answer).

use serde::Serialize;
use utoipa::ToSchema;

/// A CBOR-encoded sync message (docs/protocol.md).
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct CborMessage(pub Vec<u8>);

/// Raw bytes.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

/// A JSON object whose fields are listed in the operation's description.
#[derive(Debug, ToSchema)]
#[schema(value_type = Object)]
pub struct JsonObject(pub serde_json::Value);

/// What `GET /healthz` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The server's version.
    pub version: String,
    /// `sqlite` or `postgres`.
    pub database: String,
}
