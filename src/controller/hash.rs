//! Content hashes, as hex: what files, plans and lock keys are compared by.

use sha2::{Digest, Sha256};

/// The SHA-256 of `data`, lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
