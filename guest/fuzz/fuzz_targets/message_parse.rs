//! `Message::parse` on hostile bytes, file stems and owners.
//!
//! Never panics; whatever it accepts satisfies its documented checks and
//! survives `to_bytes` then `parse` unchanged. Inputs are raw bytes, JSON
//! objects assembled from fuzzed fields (missing, null, mistyped, repeated
//! or extra keys), or valid messages with a few such edits, so the accepting
//! path is reached often.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use session_bridge_guest::ids::{MessageId, SessionId};
use session_bridge_guest::wire::Message;

mod common;
use common::{Edit, Leaf, Object, Value};

const KEYS: [&str; 9] = [
    "id",
    "from",
    "to",
    "type",
    "timestamp",
    "status",
    "content",
    "inReplyTo",
    "metadata",
];

/// A message as written, before edits.
#[derive(Arbitrary, Debug)]
struct Valid {
    id: [u8; 12],
    from: [u8; 6],
    to: [u8; 6],
    kind: u8,
    stamp: u32,
    status: u8,
    content: String,
    in_reply_to: Option<[u8; 12]>,
    urgency: Option<String>,
    from_project: Option<String>,
    edits: Vec<Edit>,
}

impl Valid {
    fn render(&self) -> Vec<u8> {
        let metadata = Value::Metadata {
            urgency: self.urgency.clone().map(Leaf::Str),
            from_project: self.from_project.clone().map(Leaf::Str),
        };
        let object = Object::with([
            Value::leaf(Leaf::MessageId(self.id)),
            Value::leaf(Leaf::SessionId(self.from)),
            Value::leaf(Leaf::SessionId(self.to)),
            Value::leaf(Leaf::Kind(self.kind % 4)),
            Value::leaf(Leaf::Stamp(self.stamp)),
            Value::leaf(Leaf::Status(self.status % 3)),
            Some(Value::str(&self.content)),
            Some(match self.in_reply_to {
                Some(id) => Value::Leaf(Leaf::MessageId(id)),
                None => Value::Leaf(Leaf::Null),
            }),
            Some(metadata),
        ]);
        common::edited(object, &KEYS, &self.edits)
    }
}

#[derive(Arbitrary, Debug)]
enum Document {
    Raw(Vec<u8>),
    Built(Box<Object<9>>),
    Valid(Valid),
}

#[derive(Arbitrary, Debug)]
enum Stem {
    /// The document's own `id`, when it has a string one.
    FromId,
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Owner {
    None,
    /// The document's own `to`, when it is a valid session ID.
    FromTo,
    Text(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    document: Document,
    stem: Stem,
    owner: Owner,
}

fuzz_target!(|input: Input| {
    let bytes = match &input.document {
        Document::Raw(bytes) => bytes.clone(),
        Document::Built(object) => object.render(&KEYS),
        Document::Valid(valid) => valid.render(),
    };
    let stem = match &input.stem {
        Stem::FromId => common::string_field(&bytes, "id").unwrap_or_default(),
        Stem::Text(text) => text.clone(),
    };
    let owner = match &input.owner {
        Owner::None => None,
        Owner::FromTo => {
            common::string_field(&bytes, "to").and_then(|to| SessionId::parse(&to).ok())
        }
        Owner::Text(text) => SessionId::parse(text).ok(),
    };

    let Ok(message) = Message::parse(&bytes, &stem, owner.as_ref()) else {
        return;
    };

    // What parse promises about an accepted message.
    assert_eq!(message.id, stem);
    assert!(MessageId::parse(&message.id).is_ok());
    assert!(message.sender().is_some(), "bad from {:?}", message.from);
    assert!(message.recipient().is_some(), "bad to {:?}", message.to);
    if let Some(owner) = &owner {
        assert_eq!(message.to, owner.as_str());
    }
    if let Some(reply_to) = &message.in_reply_to {
        assert!(MessageId::parse(reply_to).is_ok());
    }

    // The round trip: written and read back, identical; written again, the
    // same bytes.
    let written = message.to_bytes();
    let again = Message::parse(&written, &stem, owner.as_ref()).unwrap_or_else(|e| {
        panic!(
            "its own output was refused: {e}\n{}",
            String::from_utf8_lossy(&written)
        )
    });
    assert_eq!(again, message);
    assert_eq!(again.to_bytes(), written);
    assert_eq!(Message::parse(&written, &stem, None).as_ref(), Ok(&message));
});
