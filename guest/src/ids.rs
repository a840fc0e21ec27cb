//! Session and message IDs. A string becomes an ID only by passing
//! validation here, and paths are only ever built from IDs, so a hostile ID
//! is refused before any path exists.

use std::fmt;

use crate::error::{BridgeError, Result};

const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const SESSION_ID_LEN: usize = 6;
const MESSAGE_ID_PREFIX: &str = "msg-";
const MESSAGE_ID_SUFFIX_LEN: usize = 12;

fn is_id_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn all_id_chars(s: &str) -> bool {
    s.bytes().all(is_id_char)
}

/// `len` characters of `[a-z0-9]`, uniformly drawn from the platform's
/// secure random source.
pub fn random_token(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 32];
    while out.len() < len {
        getrandom::fill(&mut buf).expect("the platform random source failed");
        // 252 = 7 * 36: rejecting the top 4 values keeps every character
        // equally likely.
        for &b in buf.iter().filter(|&&b| b < 252) {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[(b % 36) as usize] as char);
        }
    }
    out
}

/// A validated session ID: exactly 6 characters of `[a-z0-9]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

impl SessionId {
    /// Validates `text` as a session ID.
    ///
    /// # Errors
    /// `InvalidSessionId` when `text` is not 6 characters of `[a-z0-9]`.
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() == SESSION_ID_LEN && all_id_chars(text) {
            Ok(SessionId(text.to_string()))
        } else {
            Err(BridgeError::InvalidSessionId(text.to_string()))
        }
    }

    /// A fresh random session ID.
    pub fn random() -> Self {
        SessionId(random_token(SESSION_ID_LEN))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated message ID: `msg-` plus 12 characters of `[a-z0-9]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(String);

impl MessageId {
    /// Validates `text` as a message ID.
    ///
    /// # Errors
    /// `InvalidMessageId` when `text` is not `msg-` plus 12 characters of
    /// `[a-z0-9]`.
    pub fn parse(text: &str) -> Result<Self> {
        match text.strip_prefix(MESSAGE_ID_PREFIX) {
            Some(rest) if rest.len() == MESSAGE_ID_SUFFIX_LEN && all_id_chars(rest) => {
                Ok(MessageId(text.to_string()))
            }
            _ => Err(BridgeError::InvalidMessageId(text.to_string())),
        }
    }

    /// A fresh random message ID.
    pub fn random() -> Self {
        MessageId(format!(
            "{MESSAGE_ID_PREFIX}{}",
            random_token(MESSAGE_ID_SUFFIX_LEN)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The inbox file name: the ID plus `.json`.
    pub fn file_name(&self) -> String {
        format!("{}.json", self.0)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_accept_only_six_lowercase_alphanumerics() {
        assert!(SessionId::parse("a1b2c3").is_ok());
        for bad in [
            "", "a1b2c", "a1b2c3d", "A1B2C3", "../../", "a1/b2c", "a1b2c\0", "а1b2c3", "a1b2c.",
            " a1b2c",
        ] {
            assert_eq!(
                SessionId::parse(bad),
                Err(BridgeError::InvalidSessionId(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn message_ids_need_the_prefix_and_twelve_characters() {
        assert!(MessageId::parse("msg-0dzhx0wgcik9").is_ok());
        for bad in [
            "msg-0dzhx0wgcik",
            "msg-0dzhx0wgcik99",
            "MSG-0dzhx0wgcik9",
            "msg-../../etc/pa",
            "0dzhx0wgcik9",
            "msg-0dzhx0wgcIk9",
        ] {
            assert!(MessageId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn random_ids_are_valid_and_differ() {
        let a = SessionId::random();
        let b = MessageId::random();
        assert!(SessionId::parse(a.as_str()).is_ok());
        assert!(MessageId::parse(b.as_str()).is_ok());
        let many: std::collections::HashSet<_> = (0..1000).map(|_| MessageId::random()).collect();
        assert_eq!(many.len(), 1000);
    }
}
