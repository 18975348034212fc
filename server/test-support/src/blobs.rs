//! Attachment contents: made-up photos and their hashes.

use sha2::{Digest, Sha256};

/// The SHA-256 of `bytes` in lowercase hex (an attachment's name), computed
/// here rather than with the server's or the device's code.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..])
}

/// `len` bytes that stand in for a photo: the same for the same `seed`,
/// different from seed to seed (a linear congruential generator).
pub fn photo(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) as u8
        })
        .collect()
}
