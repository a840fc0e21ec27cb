//! Which machine signed what arrives from the network.
//!
//! Each relay signs what it publishes with its machine's key (an ed25519
//! key, written as an nkey user public key `U...`), over the receiving
//! machine's name, its own name and the payload. The receiving guest
//! checks the signature against the key it holds for the publishing
//! machine: pinned on first sight, the way ssh's `known_hosts` pins a
//! host, or written beforehand by `bridge-host relay trust`. A message
//! signed by another key, or not signed, is refused and a warning logged;
//! only `bridge-host relay trust` changes a pinned key.
//!
//! So a server that lets every client publish anywhere still cannot make
//! one machine's mail look as if another machine sent it.

use std::path::PathBuf;

use ed25519_dalek::{Signature, VerifyingKey};

use crate::files;
use crate::{Bridge, Platform};

/// What the signature covers, before the two machine names and the payload.
pub const SIGNED_CONTEXT: &str = "session-bridge relay v1";

/// The folder, in the bridge directory, holding one file per machine:
/// `<machine>.pub`, its pinned public key.
pub const KEYS_DIR: &str = "relay-keys";

/// The prefix byte of an nkey user public key (`U`).
const USER_PREFIX: u8 = 20 << 3;

/// The bytes a relay signs for a message published by `from_machine` for
/// `to_machine`.
pub fn signed_bytes(to_machine: &str, from_machine: &str, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(payload.len() + 64);
    bytes.extend_from_slice(SIGNED_CONTEXT.as_bytes());
    for part in [to_machine.as_bytes(), from_machine.as_bytes()] {
        bytes.push(b'\n');
        bytes.extend_from_slice(part);
    }
    bytes.push(b'\n');
    bytes.extend_from_slice(payload);
    bytes
}

/// CRC-16/XMODEM, the checksum at the end of an nkey.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The ed25519 key an nkey user public key (`U` and 55 more characters)
/// names; None when it is not one.
pub fn decode_user_key(text: &str) -> Option<VerifyingKey> {
    if text.len() != 56 || !text.starts_with('U') {
        return None;
    }
    let raw = data_encoding::BASE32_NOPAD.decode(text.as_bytes()).ok()?;
    let (body, crc) = raw.split_at_checked(raw.len().checked_sub(2)?)?;
    if body.len() != 33 || body[0] != USER_PREFIX {
        return None;
    }
    if u16::from_le_bytes([crc[0], crc[1]]) != crc16(body) {
        return None;
    }
    VerifyingKey::from_bytes(body[1..].try_into().ok()?).ok()
}

/// The nkey user public key of an ed25519 key.
pub fn encode_user_key(key: &VerifyingKey) -> String {
    let mut raw = vec![USER_PREFIX];
    raw.extend_from_slice(key.as_bytes());
    let crc = crc16(&raw);
    raw.extend_from_slice(&crc.to_le_bytes());
    data_encoding::BASE32_NOPAD.encode(&raw)
}

/// Why a received message's signature is not accepted.
pub enum Unsigned {
    /// No signature, or one that is not well formed: refused quietly, as
    /// any malformed message is.
    Missing(String),
    /// A well-formed signature that does not match the machine's key:
    /// refused, and a warning logged.
    Forged(String),
}

impl<P: Platform> Bridge<P> {
    fn key_file(&self, machine: &str) -> PathBuf {
        self.layout
            .root()
            .join(KEYS_DIR)
            .join(format!("{machine}.pub"))
    }

    /// The key pinned for `machine`, when one is.
    pub(crate) fn pinned_key(&self, machine: &str) -> Option<String> {
        let bytes = files::read_bounded(&self.key_file(machine), 256).ok()?;
        Some(String::from_utf8_lossy(&bytes).trim().to_string())
    }

    /// Checks that `payload`, published by `from_machine` for `machine`,
    /// is signed by `from_machine`'s key: the pinned one, or, when none is
    /// pinned yet, `signer`, which is then pinned.
    pub(crate) fn check_signature(
        &self,
        machine: &str,
        from_machine: &str,
        signer: &str,
        signature: &str,
        payload: &[u8],
    ) -> std::result::Result<(), Unsigned> {
        if signer.is_empty() || signature.is_empty() {
            return Err(Unsigned::Missing(format!(
                "it is not signed (every relay signs what it publishes: is the relay of machine \
                 {from_machine:?} older than this one?)"
            )));
        }
        let Some(key) = decode_user_key(signer) else {
            return Err(Unsigned::Missing(
                "its signer is not an nkey user public key".into(),
            ));
        };
        let Some(signature) = data_encoding::BASE64URL_NOPAD
            .decode(signature.as_bytes())
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
        else {
            return Err(Unsigned::Missing("its signature is not well formed".into()));
        };
        let pinned = self.pinned_key(from_machine);
        if let Some(pinned) = &pinned
            && pinned != signer
        {
            return Err(Unsigned::Forged(format!(
                "it was published as machine {from_machine:?} but signed by key {signer}, not by \
                 {from_machine:?}'s key {pinned}. If that machine's key really changed, run \
                 `bridge-host relay trust {from_machine} {signer}` on this machine"
            )));
        }
        let signed = signed_bytes(machine, from_machine, payload);
        if key.verify_strict(&signed, &signature).is_err() {
            return Err(Unsigned::Forged(format!(
                "its signature by key {signer} does not verify: it was altered or forged on the \
                 way"
            )));
        }
        if pinned.is_none() {
            let dir = self.layout.root().join(KEYS_DIR);
            // Pinned on first sight; a racing first sight of the same key
            // finds the file written.
            if files::ensure_dir(&dir).is_ok() {
                let _ = files::write_new_once(&self.key_file(from_machine), signer.as_bytes());
            }
            if self.pinned_key(from_machine).as_deref() != Some(signer) {
                return Err(Unsigned::Forged(format!(
                    "it was published as machine {from_machine:?} and signed by key {signer}, \
                     but another key was pinned for that machine meanwhile"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use ed25519_dalek::{Signer, SigningKey};

    /// A fixed signing key for `machine`.
    pub fn key(machine: &str) -> SigningKey {
        let mut seed = [7u8; 32];
        for (i, b) in machine.bytes().enumerate().take(32) {
            seed[i] ^= b;
        }
        SigningKey::from_bytes(&seed)
    }

    /// Messages as `machine` receives them, each signed by its publisher's
    /// key from [`key`].
    pub fn signed(machine: &str, batch: Vec<(String, Vec<u8>)>) -> Vec<crate::relay::InboundMail> {
        batch
            .into_iter()
            .map(|(from_machine, payload)| {
                let key = key(&from_machine);
                let signature = key.sign(&super::signed_bytes(machine, &from_machine, &payload));
                crate::relay::InboundMail {
                    signer: super::encode_user_key(&key.verifying_key()),
                    signature: data_encoding::BASE64URL_NOPAD.encode(&signature.to_bytes()),
                    from_machine,
                    payload,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;

    /// A signature over `payload` as machine `from` publishes it for
    /// `to`, by `key`: (signer, signature).
    fn sign(
        key: &ed25519_dalek::SigningKey,
        to: &str,
        from: &str,
        payload: &[u8],
    ) -> (String, String) {
        let signature = key.sign(&signed_bytes(to, from, payload));
        (
            encode_user_key(&key.verifying_key()),
            data_encoding::BASE64URL_NOPAD.encode(&signature.to_bytes()),
        )
    }

    #[test]
    fn relay_keys_are_pinned_on_first_sight_and_another_key_or_other_bytes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bridge = crate::Bridge::new(
            crate::Layout::new(dir.path()),
            crate::LocalPlatform::default(),
        );
        let (a, e) = (testing::key("a"), testing::key("e"));
        let check = |signer: &str, signature: &str, payload: &[u8]| {
            bridge.check_signature("here", "a", signer, signature, payload)
        };
        let refused = |result: std::result::Result<(), Unsigned>| match result {
            Ok(()) => panic!("accepted"),
            Err(Unsigned::Missing(why)) => format!("missing: {why}"),
            Err(Unsigned::Forged(why)) => format!("forged: {why}"),
        };
        assert!(refused(check("", "", b"{}")).starts_with("missing: it is not signed"));
        // First sight pins a's key.
        let (key_a, signature) = sign(&a, "here", "a", b"one");
        assert!(check(&key_a, &signature, b"one").is_ok());
        assert_eq!(bridge.pinned_key("a").as_deref(), Some(key_a.as_str()));
        // Other bytes, another key, a signature made for another machine.
        let why = refused(check(&key_a, &signature, b"two"));
        assert!(why.starts_with("forged: its signature by key"), "{why}");
        let (key_e, by_e) = sign(&e, "here", "a", b"one");
        let why = refused(check(&key_e, &by_e, b"one"));
        assert!(
            why.contains(&format!(
                "signed by key {key_e}, not by \"a\"'s key {key_a}"
            )) && why.contains(&format!("bridge-host relay trust a {key_e}")),
            "{why}"
        );
        let (_, elsewhere) = sign(&a, "other", "a", b"one");
        assert!(refused(check(&key_a, &elsewhere, b"one")).starts_with("forged:"));
        assert_eq!(bridge.pinned_key("a").as_deref(), Some(key_a.as_str()));
        assert!(refused(check(&key_a, "not base64!", b"one")).starts_with("missing:"));
        assert!(refused(check("UNOTAKEY", &signature, b"one")).starts_with("missing:"));
    }

    #[test]
    fn relay_keys_read_back_as_written_and_a_changed_character_is_no_key() {
        let key = testing::key("a").verifying_key();
        let text = encode_user_key(&key);
        assert!(text.starts_with('U') && text.len() == 56, "{text}");
        assert_eq!(decode_user_key(&text), Some(key));
        let mut bad = text.clone().into_bytes();
        bad[10] = if bad[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(decode_user_key(std::str::from_utf8(&bad).unwrap()), None);
        assert_eq!(decode_user_key("SUAM"), None);
    }
}
