//! The customer signature a signed record carries.
//!
//! [`SignatureRef`] is a plain value kept on an order and on an assignment
//! (the job summary's sign-off): who signed, when and where, the SHA-256 of
//! the signature image (an attachment) and the SHA-256 of the canonical
//! rendering of what was signed, with the rendering's version. Its own rules
//! (a name, two well-formed hashes, a position on the globe) are checked
//! whenever the record carrying it is validated.
//!
//! What the hashes cover, how a signature is made and the verdict on it
//! (matches, no longer matches, unsigned) are the `signature` module's. The
//! value lives here, below the records that carry it, so that `order` and
//! `assignment` import it without importing the renderings, which read them.

use serde::{Deserialize, Serialize};

use super::ValidationError;
use super::types::{DeviceTime, GeoPoint};

fn first_version() -> u32 {
    1
}

/// A customer signature captured on the device (the image itself is an attachment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureRef {
    /// Who signed.
    pub signer_name: String,
    /// Their role at the customer, e.g. "store manager".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_role: Option<String>,
    /// When.
    pub at: DeviceTime,
    /// Where, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps: Option<GeoPoint>,
    /// SHA-256 (hex) of the signature image.
    pub image_sha256: String,
    /// SHA-256 (hex) of the canonical rendering of the content shown to the signer.
    pub document_sha256: String,
    /// The version of the canonical rendering `document_sha256` was computed
    /// with (1 for signatures made before versions were recorded).
    #[serde(default = "first_version")]
    pub rendering_version: u32,
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl SignatureRef {
    /// The signature's own rules: a signer name and two SHA-256 hashes.
    pub fn validate(&self, field: &str) -> Result<(), ValidationError> {
        if self.signer_name.trim().is_empty() {
            return Err(ValidationError::new(
                format!("{field}.signer_name"),
                "a signature needs the signer's name",
            ));
        }
        if !is_sha256_hex(&self.image_sha256) {
            return Err(ValidationError::new(
                format!("{field}.image_sha256"),
                "the signature image is named by its SHA-256 (64 lowercase hex digits)",
            ));
        }
        if !is_sha256_hex(&self.document_sha256) {
            return Err(ValidationError::new(
                format!("{field}.document_sha256"),
                "the signed content is named by its SHA-256 (64 lowercase hex digits)",
            ));
        }
        if self.gps.is_some_and(|g| !g.is_valid()) {
            return Err(ValidationError::new(
                format!("{field}.gps"),
                "the position is not on the globe",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature() -> SignatureRef {
        SignatureRef {
            signer_name: "Maria Lopes".into(),
            signer_role: None,
            at: DeviceTime::utc(0),
            gps: None,
            image_sha256: "0a".repeat(32),
            document_sha256: "1b".repeat(32),
            rendering_version: 1,
        }
    }

    /// The field at fault, and how to spoil it.
    type Spoil = (&'static str, fn(&mut SignatureRef));

    #[test]
    fn a_signature_needs_a_name_and_two_lowercase_hashes() {
        assert_eq!(signature().validate("signature"), Ok(()));
        let cases: [Spoil; 4] = [
            ("signature.signer_name", |s| s.signer_name = " ".into()),
            ("signature.image_sha256", |s| {
                s.image_sha256 = "0A".repeat(32)
            }),
            ("signature.document_sha256", |s| {
                s.document_sha256.truncate(63)
            }),
            ("signature.gps", |s| {
                s.gps = Some(GeoPoint {
                    lat: 91.0,
                    lng: 0.0,
                    accuracy_m: None,
                })
            }),
        ];
        for (field, spoil) in cases {
            let mut s = signature();
            spoil(&mut s);
            assert_eq!(
                s.validate("signature").map_err(|e| e.field),
                Err(field.to_owned())
            );
        }
    }

    #[test]
    fn a_signature_stored_before_versions_reads_as_version_one() {
        let mut json = serde_json::to_value(signature()).expect("json");
        if let Some(map) = json.as_object_mut() {
            map.remove("rendering_version");
        }
        let read: SignatureRef = serde_json::from_value(json).expect("read");
        assert_eq!(read.rendering_version, 1);
    }
}
