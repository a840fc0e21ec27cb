//! Arbitrary strings into `SessionId::parse` and `MessageId::parse`: an ID is
//! accepted exactly when it has the documented shape, and an accepted ID can
//! never carry a path separator, a dot or a NUL.

#![no_main]

use libfuzzer_sys::fuzz_target;
use session_bridge_guest::ids::{MessageId, SessionId};

fn id_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn is_session_shape(s: &str) -> bool {
    s.len() == 6 && id_chars(s)
}

fn is_message_shape(s: &str) -> bool {
    s.len() == 16 && s.starts_with("msg-") && id_chars(&s[4..])
}

fn no_path_tricks(s: &str) -> bool {
    !s.contains('/') && !s.contains('.') && !s.contains('\0') && !s.contains('\\')
}

fn check(text: &str) {
    match SessionId::parse(text) {
        Ok(id) => {
            assert!(is_session_shape(text), "accepted session id {text:?}");
            assert!(no_path_tricks(text));
            assert_eq!(id.as_str(), text);
            assert_eq!(id.to_string(), text);
            assert_eq!(SessionId::parse(id.as_str()).as_ref(), Ok(&id));
        }
        Err(_) => assert!(!is_session_shape(text), "refused session id {text:?}"),
    }
    match MessageId::parse(text) {
        Ok(id) => {
            assert!(is_message_shape(text), "accepted message id {text:?}");
            assert!(no_path_tricks(text));
            assert_eq!(id.as_str(), text);
            assert_eq!(id.to_string(), text);
            assert_eq!(id.file_name(), format!("{text}.json"));
            assert_eq!(MessageId::parse(id.as_str()).as_ref(), Ok(&id));
        }
        Err(_) => assert!(!is_message_shape(text), "refused message id {text:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    // Lossy decoding also feeds replacement characters and multi-byte
    // sequences that land on the length boundaries.
    check(&String::from_utf8_lossy(data));
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
        // Also with the prefix supplied, so the suffix is what gets mutated.
        check(&format!("msg-{text}"));
    }
});
