//! Access tokens minted by the tests themselves, to check what the server
//! accepts and refuses.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

/// The key id the server gives a configured signing secret (`jwt_secret`):
/// `cfg-` and the first 6 bytes of its SHA-256, in hex.
pub fn configured_kid(secret: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(secret.as_bytes());
    format!("cfg-{}", hex::encode(&d[..6]))
}

/// A token with `claims`, signed with `secret` by `alg` under `kid`.
pub fn sign_jwt(
    alg: Algorithm,
    kid: Option<String>,
    claims: &Value,
    secret: impl AsRef<[u8]>,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid;
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret.as_ref())).expect("sign")
}

/// Base64url without padding (a JWT's parts), written out here so a test can
/// forge a token by hand.
pub fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}
