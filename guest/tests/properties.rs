//! Property tests of message and manifest parsing and of ID validation,
//! run by plain `cargo test` (256 cases each). The cargo-fuzz targets in
//! `fuzz/` check the same properties, and the claim logic, for longer.

use proptest::prelude::*;
use session_bridge_guest::ids::{MessageId, SessionId};
use session_bridge_guest::wire::{Kind, Manifest, Message, Metadata, Status};

const SESSION_ID: &str = "[a-z0-9]{6}";
const MESSAGE_ID: &str = "msg-[a-z0-9]{12}";

fn is_id_text(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn is_session_shape(s: &str) -> bool {
    s.len() == 6 && is_id_text(s)
}

fn is_message_shape(s: &str) -> bool {
    s.len() == 16 && s.starts_with("msg-") && is_id_text(&s[4..])
}

/// Strings near the ID shapes: right and wrong lengths, characters and
/// prefixes, path tricks and non-ASCII.
fn id_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9]{5,7}",
        "[a-zA-Z0-9./\\\\\u{0}_ -]{0,8}",
        "msg-[a-z0-9]{11,13}",
        "(msg|MSG|mSg)-[a-z0-9./\u{0}A-Z]{10,14}",
        "[a-z0-9é\u{430}]{5,7}",
        "msg-[a-z0-9é]{10,13}",
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Query),
        Just(Kind::Response),
        Just(Kind::Ping),
        Just(Kind::SessionEnded),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Pending),
        Just(Status::Read),
        Just(Status::Sent)
    ]
}

/// Any text, weighted towards the awkward: quotes, escapes, control
/// characters and non-BMP characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\"\\\\/\u{0}-\u{1f}\u{7f}\u{2028}\u{2029}\u{fffd}\u{1f600}a-z ]{0,24}",
        Just(String::new()),
    ]
}

/// A message that `parse` must accept.
fn message() -> impl Strategy<Value = Message> {
    (
        (MESSAGE_ID, SESSION_ID, SESSION_ID, kind(), status()),
        (
            text(),
            text(),
            proptest::option::of(MESSAGE_ID),
            text(),
            text(),
        ),
    )
        .prop_map(
            |(
                (id, from, to, kind, status),
                (timestamp, content, in_reply_to, urgency, project),
            )| {
                Message {
                    id,
                    from,
                    to,
                    kind,
                    timestamp,
                    status,
                    content,
                    in_reply_to,
                    metadata: Metadata {
                        urgency,
                        from_project: project,
                    },
                }
            },
        )
}

/// A manifest that `parse` must accept for its own session ID.
fn manifest() -> impl Strategy<Value = Manifest> {
    (
        SESSION_ID,
        text(),
        text().prop_map(|p| format!("/{p}")),
        text(),
        text(),
        text(),
        proptest::collection::vec(text(), 0..4),
    )
        .prop_map(
            |(session_id, project_name, project_path, started_at, last_heartbeat, status, caps)| {
                Manifest {
                    session_id,
                    project_name,
                    project_path,
                    started_at,
                    last_heartbeat,
                    status,
                    capabilities: caps,
                    client: None,
                    machine: None,
                }
            },
        )
}

/// A JSON value to put in place of a field.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        text().prop_map(Value::String),
        MESSAGE_ID.prop_map(Value::String),
        SESSION_ID.prop_map(Value::String),
        prop_oneof![
            Just("query"),
            Just("response"),
            Just("ping"),
            Just("session-ended"),
            Just("pending"),
            Just("read"),
            Just("sent"),
            Just("Query"),
        ]
        .prop_map(|s| Value::String(s.into())),
        Just(json!([])),
        Just(json!({})),
        (text(), text()).prop_map(|(u, p)| json!({"urgency": u, "fromProject": p})),
    ]
}

/// One change to a JSON object: a key set to a value, or removed.
fn json_edit() -> impl Strategy<Value = (String, Option<serde_json::Value>)> {
    let key = prop_oneof![
        Just("id"),
        Just("from"),
        Just("to"),
        Just("type"),
        Just("timestamp"),
        Just("status"),
        Just("content"),
        Just("inReplyTo"),
        Just("metadata"),
        Just("sessionId"),
        Just("projectName"),
        Just("projectPath"),
        Just("startedAt"),
        Just("lastHeartbeat"),
        Just("capabilities"),
        Just("extra"),
    ]
    .prop_map(String::from);
    (key, proptest::option::of(json_value()))
}

fn apply_json_edits(bytes: &[u8], edits: &[(String, Option<serde_json::Value>)]) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    let object = value.as_object_mut().unwrap();
    for (key, new) in edits {
        match new {
            Some(new) => object.insert(key.clone(), new.clone()),
            None => object.remove(key),
        };
    }
    serde_json::to_vec(&value).unwrap()
}

/// Byte-level damage: (position, replacement byte or deletion).
fn byte_edits() -> impl Strategy<Value = Vec<(usize, Option<u8>)>> {
    proptest::collection::vec((any::<usize>(), proptest::option::of(any::<u8>())), 1..4)
}

fn apply_byte_edits(mut bytes: Vec<u8>, edits: &[(usize, Option<u8>)]) -> Vec<u8> {
    for (at, byte) in edits {
        if bytes.is_empty() {
            break;
        }
        let at = at % bytes.len();
        match byte {
            Some(byte) => bytes[at] = *byte,
            None => {
                bytes.remove(at);
            }
        }
    }
    bytes
}

/// Whatever `Message::parse` accepts keeps its promises and round-trips.
fn check_accepted_message(bytes: &[u8], stem: &str, owner: Option<&SessionId>) {
    let Ok(message) = Message::parse(bytes, stem, owner) else {
        return;
    };
    assert_eq!(message.id, stem);
    assert!(MessageId::parse(&message.id).is_ok());
    assert!(message.sender().is_some());
    assert!(message.recipient().is_some());
    if let Some(owner) = owner {
        assert_eq!(message.to, owner.as_str());
    }
    if let Some(reply_to) = &message.in_reply_to {
        assert!(MessageId::parse(reply_to).is_ok());
    }
    let written = message.to_bytes();
    assert_eq!(Message::parse(&written, stem, owner).as_ref(), Ok(&message));
    assert_eq!(
        Message::parse(&written, stem, owner).unwrap().to_bytes(),
        written
    );
}

/// Whatever `Manifest::parse` accepts keeps its promises and round-trips.
fn check_accepted_manifest(bytes: &[u8], dir_id: &SessionId) {
    let Ok(manifest) = Manifest::parse(bytes, dir_id) else {
        return;
    };
    assert_eq!(manifest.session_id, dir_id.as_str());
    assert!(manifest.project_path.starts_with('/'));
    let _ = manifest.is_stale();
    let written = manifest.to_bytes();
    assert_eq!(Manifest::parse(&written, dir_id).as_ref(), Ok(&manifest));
    assert_eq!(
        Manifest::parse(&written, dir_id).unwrap().to_bytes(),
        written
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn well_formed_ids_are_accepted_as_they_are(s in SESSION_ID, m in MESSAGE_ID) {
        let session = SessionId::parse(&s).unwrap();
        prop_assert_eq!(session.as_str(), s.as_str());
        prop_assert_eq!(session.to_string(), s);
        let message = MessageId::parse(&m).unwrap();
        prop_assert_eq!(message.as_str(), m.as_str());
        prop_assert_eq!(message.file_name(), format!("{m}.json"));
    }

    #[test]
    fn ids_are_accepted_exactly_when_well_formed(text in id_like()) {
        let session = SessionId::parse(&text);
        prop_assert_eq!(session.is_ok(), is_session_shape(&text), "{:?}", text);
        let message = MessageId::parse(&text);
        prop_assert_eq!(message.is_ok(), is_message_shape(&text), "{:?}", text);
        if session.is_ok() || message.is_ok() {
            prop_assert!(!text.contains(['/', '.', '\0', '\\']));
        }
    }

    #[test]
    fn messages_round_trip(message in message()) {
        let owner = SessionId::parse(&message.to).unwrap();
        let bytes = message.to_bytes();
        let parsed = Message::parse(&bytes, &message.id, Some(&owner));
        prop_assert_eq!(parsed.as_ref(), Ok(&message));
        let unowned = Message::parse(&bytes, &message.id, None);
        prop_assert_eq!(unowned.as_ref(), Ok(&message));
        prop_assert_eq!(parsed.unwrap().to_bytes(), bytes);
    }

    #[test]
    fn misplaced_messages_are_refused(message in message(), stem in MESSAGE_ID, owner in SESSION_ID) {
        let bytes = message.to_bytes();
        if stem != message.id {
            prop_assert!(Message::parse(&bytes, &stem, None).is_err());
        }
        let owner = SessionId::parse(&owner).unwrap();
        if owner.as_str() != message.to {
            prop_assert!(Message::parse(&bytes, &message.id, Some(&owner)).is_err());
        }
    }

    #[test]
    fn messages_with_bad_ids_are_refused(message in message(), bad in id_like(), field in 0..3u8) {
        let mut message = message;
        let stem = message.id.clone();
        match field {
            0 if !is_message_shape(&bad) => message.id = bad.clone(),
            1 if !is_session_shape(&bad) => message.from = bad,
            2 if !is_session_shape(&bad) => message.to = bad,
            _ => return Ok(()),
        }
        let stem = if field == 0 { message.id.clone() } else { stem };
        prop_assert!(Message::parse(&message.to_bytes(), &stem, None).is_err());
    }

    #[test]
    fn a_bad_reply_reference_is_dropped_and_the_rest_kept(message in message(), bad in id_like()) {
        prop_assume!(!is_message_shape(&bad));
        let mut odd = message.clone();
        odd.in_reply_to = Some(bad.clone());
        let (parsed, dropped) = Message::parse_noting(&odd.to_bytes(), &message.id, None).unwrap();
        let mut expected = message;
        expected.in_reply_to = None;
        prop_assert_eq!(parsed, expected);
        prop_assert_eq!(dropped, (!bad.is_empty()).then_some(bad));
    }

    #[test]
    fn edited_messages_never_panic_and_round_trip(
        message in message(),
        edits in proptest::collection::vec(json_edit(), 1..4),
        with_owner in any::<bool>(),
    ) {
        let bytes = apply_json_edits(&message.to_bytes(), &edits);
        let owner = SessionId::parse(&message.to).unwrap();
        check_accepted_message(&bytes, &message.id, with_owner.then_some(&owner));
    }

    #[test]
    fn damaged_messages_never_panic_and_round_trip(message in message(), edits in byte_edits()) {
        let bytes = apply_byte_edits(message.to_bytes(), &edits);
        check_accepted_message(&bytes, &message.id, None);
    }

    #[test]
    fn arbitrary_bytes_never_panic_as_a_message(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        stem in prop_oneof![id_like(), MESSAGE_ID],
        owner in proptest::option::of(SESSION_ID),
    ) {
        let owner = owner.map(|o| SessionId::parse(&o).unwrap());
        check_accepted_message(&bytes, &stem, owner.as_ref());
    }

    #[test]
    fn manifests_round_trip(manifest in manifest()) {
        let id = SessionId::parse(&manifest.session_id).unwrap();
        let bytes = manifest.to_bytes();
        let parsed = Manifest::parse(&bytes, &id);
        prop_assert_eq!(parsed.as_ref(), Ok(&manifest));
        prop_assert_eq!(parsed.unwrap().to_bytes(), bytes);
        let _ = manifest.is_stale();
    }

    #[test]
    fn misplaced_or_relative_manifests_are_refused(manifest in manifest(), other in SESSION_ID, path in text()) {
        let id = SessionId::parse(&manifest.session_id).unwrap();
        let other = SessionId::parse(&other).unwrap();
        if other != id {
            prop_assert!(Manifest::parse(&manifest.to_bytes(), &other).is_err());
        }
        if !path.starts_with('/') {
            let mut relative = manifest;
            relative.project_path = path;
            prop_assert!(Manifest::parse(&relative.to_bytes(), &id).is_err());
        }
    }

    #[test]
    fn edited_manifests_never_panic_and_round_trip(
        manifest in manifest(),
        edits in proptest::collection::vec(json_edit(), 1..4),
    ) {
        let id = SessionId::parse(&manifest.session_id).unwrap();
        check_accepted_manifest(&apply_json_edits(&manifest.to_bytes(), &edits), &id);
    }

    #[test]
    fn damaged_manifests_never_panic_and_round_trip(manifest in manifest(), edits in byte_edits()) {
        let id = SessionId::parse(&manifest.session_id).unwrap();
        check_accepted_manifest(&apply_byte_edits(manifest.to_bytes(), &edits), &id);
    }

    #[test]
    fn arbitrary_bytes_never_panic_as_a_manifest(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        dir_id in SESSION_ID,
    ) {
        check_accepted_manifest(&bytes, &SessionId::parse(&dir_id).unwrap());
    }
}
