//! Which machine signed what arrives from the network.
//!
//! Each relay signs what it publishes with its machine's key (an ed25519
//! key, written as an nkey user public key `U...`): its mail over the
//! receiving machine's name, its own name and the payload; its presence
//! entries over its own name, the session and the manifest. The receiving
//! guest checks the signature against the key this machine trusts for the
//! publishing machine, which only `bridge-host relay trust` writes (from
//! the team's roster, or one key at a time).
//!
//! Nothing is trusted on first sight. The server's permissions do not stop
//! one machine from making the server itself publish under another
//! machine's name (a request's reply subject is not checked), so the
//! first message "from" a machine proves nothing. Mail signed by a key
//! this machine does not trust waits on the server, undelivered, until
//! the key is trusted; mail signed by a key other than the trusted one is
//! refused, and a warning logged; a presence entry that does not verify is
//! not shown.
//!
//! So a server that lets every client publish anywhere still cannot make
//! one machine's mail, or its sessions, look as if another machine sent
//! them.

use std::path::PathBuf;

use ed25519_dalek::{Signature, VerifyingKey};

use crate::files;
use crate::{Bridge, Platform};

/// What a mail signature covers, before the two machine names and the
/// payload.
pub const SIGNED_CONTEXT: &str = "session-bridge relay v1";

/// What a presence signature covers, before the machine's name, the
/// session ID and the manifest.
pub const PRESENCE_CONTEXT: &str = "session-bridge presence v1";

/// The folder, in the bridge directory, holding one file per machine:
/// `<machine>.pub`, its pinned public key.
pub const KEYS_DIR: &str = "relay-keys";

/// The prefix byte of an nkey user public key (`U`).
const USER_PREFIX: u8 = 20 << 3;

/// The bytes a relay signs for a message published by `from_machine` for
/// `to_machine`.
pub fn signed_bytes(to_machine: &str, from_machine: &str, payload: &[u8]) -> Vec<u8> {
    framed(SIGNED_CONTEXT, [to_machine, from_machine], payload)
}

/// The bytes a relay signs for the presence entry of its session
/// `session`.
pub fn presence_bytes(machine: &str, session: &str, manifest: &[u8]) -> Vec<u8> {
    framed(PRESENCE_CONTEXT, [machine, session], manifest)
}

/// `context`, each part and the payload, one line break between each.
/// Neither a machine name nor a session ID holds a line break, so no two
/// different inputs frame alike.
fn framed(context: &str, parts: [&str; 2], payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(payload.len() + 128);
    bytes.extend_from_slice(context.as_bytes());
    for part in parts {
        bytes.push(b'\n');
        bytes.extend_from_slice(part.as_bytes());
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
    /// Well formed and valid, but by a key this machine does not trust
    /// for that machine, which has no trusted key yet: the message waits
    /// until `bridge-host relay trust` trusts one.
    Untrusted(String),
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
    /// is signed by the key this machine trusts for `from_machine`.
    pub(crate) fn check_signature(
        &self,
        machine: &str,
        from_machine: &str,
        signer: &str,
        signature: &str,
        payload: &[u8],
    ) -> std::result::Result<(), Unsigned> {
        let signed = signed_bytes(machine, from_machine, payload);
        let lead = format!("mail from machine {from_machine:?} waits on the server, undelivered");
        self.check_signed(from_machine, signer, signature, &signed, &lead)
    }

    /// Checks that the presence entry of `session`, read under
    /// `from_machine`'s key in the bucket, is signed by the key this
    /// machine trusts for `from_machine`.
    pub(crate) fn check_presence_signature(
        &self,
        from_machine: &str,
        session: &str,
        signer: &str,
        signature: &str,
        manifest: &[u8],
    ) -> std::result::Result<(), Unsigned> {
        let signed = presence_bytes(from_machine, session, manifest);
        let lead = format!("the sessions of machine {from_machine:?} are not shown");
        self.check_signed(from_machine, signer, signature, &signed, &lead)
    }

    /// Checks `signature` by `signer` over `signed`, made as machine
    /// `from_machine`; `lead` says what waits for a trusted key.
    fn check_signed(
        &self,
        from_machine: &str,
        signer: &str,
        signature: &str,
        signed: &[u8],
        lead: &str,
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
        if key.verify_strict(signed, &signature).is_err() {
            return Err(Unsigned::Forged(format!(
                "its signature by key {signer} does not verify: it was altered or forged on the \
                 way"
            )));
        }
        match self.pinned_key(from_machine) {
            Some(trusted) if trusted == signer => Ok(()),
            Some(trusted) => Err(Unsigned::Forged(format!(
                "it was published as machine {from_machine:?} but signed by key {signer}, not by \
                 {from_machine:?}'s key {trusted}. If that machine's key really changed, run \
                 `bridge-host relay trust {from_machine} {signer}` on this machine"
            ))),
            None => Err(Unsigned::Untrusted(format!(
                "{lead}: this machine trusts no key for {from_machine:?} yet, and what it \
                 published is signed by key {signer}. If that is {from_machine:?}'s key (its relay logs `signs as \
                 U...` when it starts, and the team's roster lists it), run `bridge-host relay \
                 trust {from_machine} {signer}` here, or `bridge-host relay trust --roster FILE`"
            ))),
        }
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

    /// Trusts [`key`] of `machine` in the bridge directory `root`, as
    /// `bridge-host relay trust` does.
    pub fn trust(root: &std::path::Path, machine: &str) {
        let dir = root.join(super::KEYS_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        let text = super::encode_user_key(&key(machine).verifying_key());
        std::fs::write(dir.join(format!("{machine}.pub")), text).unwrap();
    }

    /// The presence entry `manifest` of `machine`'s session `id`, signed by
    /// [`key`] of `machine`.
    pub fn presence(machine: &str, id: &str, manifest: Vec<u8>) -> crate::RemoteEntry {
        let key = key(machine);
        let signature = key.sign(&super::presence_bytes(machine, id, &manifest));
        crate::RemoteEntry {
            machine: machine.into(),
            session_id: id.into(),
            payload: manifest,
            signer: super::encode_user_key(&key.verifying_key()),
            signature: data_encoding::BASE64URL_NOPAD.encode(&signature.to_bytes()),
        }
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
    fn nothing_is_trusted_on_first_sight_and_another_key_or_other_bytes_are_refused() {
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
            Err(Unsigned::Untrusted(why)) => format!("untrusted: {why}"),
        };
        assert!(refused(check("", "", b"{}")).starts_with("missing: it is not signed"));
        // First sight: a valid signature by a key nobody trusted waits, and
        // trusts nothing.
        let (key_a, signature) = sign(&a, "here", "a", b"one");
        let why = refused(check(&key_a, &signature, b"one"));
        assert_eq!(
            why,
            format!(
                "untrusted: mail from machine \"a\" waits on the server, undelivered: this \
                 machine trusts no key for \"a\" yet, and what it published is signed by key \
                 {key_a}. If that is \"a\"'s key (its relay logs `signs as U...` when it starts, \
                 and the team's roster lists it), run `bridge-host relay trust a {key_a}` here, \
                 or `bridge-host relay trust --roster FILE`"
            )
        );
        assert_eq!(bridge.pinned_key("a"), None);
        // A forgery first, then the real key: the forgery still pins nothing.
        let (key_e, by_e) = sign(&e, "here", "a", b"one");
        assert!(refused(check(&key_e, &by_e, b"one")).starts_with("untrusted:"));
        assert_eq!(bridge.pinned_key("a"), None);
        testing::trust(dir.path(), "a");
        assert!(check(&key_a, &signature, b"one").is_ok());
        // Other bytes, another key, a signature made for another machine.
        let why = refused(check(&key_a, &signature, b"two"));
        assert!(why.starts_with("forged: its signature by key"), "{why}");
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
        // A mail signature is no presence signature, and the other way
        // round, though both are a's.
        let presence = testing::presence("a", "abcdef", b"one".to_vec());
        let why = refused(bridge.check_presence_signature(
            "a",
            "abcdef",
            &presence.signer,
            &signature,
            b"one",
        ));
        assert!(why.starts_with("forged:"), "{why}");
        assert!(
            bridge
                .check_presence_signature(
                    "a",
                    "abcdef",
                    &presence.signer,
                    &presence.signature,
                    b"one"
                )
                .is_ok()
        );
        let why = refused(bridge.check_presence_signature(
            "a",
            "other1",
            &presence.signer,
            &presence.signature,
            b"one",
        ));
        assert!(why.starts_with("forged:"), "{why}");
        assert!(refused(check(&key_a, &presence.signature, b"one")).starts_with("forged:"));
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
