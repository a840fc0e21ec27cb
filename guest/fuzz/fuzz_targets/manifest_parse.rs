//! `Manifest::parse` on hostile bytes and directory IDs.
//!
//! Never panics; whatever it accepts belongs to its directory, has an
//! absolute project path and survives `to_bytes` then `parse` unchanged.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use session_bridge_guest::ids::SessionId;
use session_bridge_guest::wire::Manifest;

mod common;
use common::{Edit, Leaf, Object, Value};

const KEYS: [&str; 7] = [
    "sessionId",
    "projectName",
    "projectPath",
    "startedAt",
    "lastHeartbeat",
    "status",
    "capabilities",
];

/// A manifest as written, before edits.
#[derive(Arbitrary, Debug)]
struct Valid {
    session_id: [u8; 6],
    project_name: String,
    project_path: String,
    started_at: u32,
    last_heartbeat: u32,
    status: String,
    capabilities: Option<Vec<String>>,
    edits: Vec<Edit>,
}

impl Valid {
    fn render(&self) -> Vec<u8> {
        let capabilities = self
            .capabilities
            .as_ref()
            .map(|list| Value::Array(list.iter().map(|c| Leaf::Str(c.clone())).collect()));
        let object = Object::with([
            Value::leaf(Leaf::SessionId(self.session_id)),
            Some(Value::str(&self.project_name)),
            Value::leaf(Leaf::Path(self.project_path.clone())),
            Value::leaf(Leaf::Stamp(self.started_at)),
            Value::leaf(Leaf::Stamp(self.last_heartbeat)),
            Some(Value::str(&self.status)),
            capabilities,
        ]);
        common::edited(object, &KEYS, &self.edits)
    }
}

#[derive(Arbitrary, Debug)]
enum Document {
    Raw(Vec<u8>),
    Built(Box<Object<7>>),
    Valid(Valid),
}

#[derive(Arbitrary, Debug)]
enum DirId {
    /// The document's own `sessionId`, when it is a valid session ID.
    FromSessionId,
    Token([u8; 6]),
    Text(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    document: Document,
    dir_id: DirId,
}

fuzz_target!(|input: Input| {
    let bytes = match &input.document {
        Document::Raw(bytes) => bytes.clone(),
        Document::Built(object) => object.render(&KEYS),
        Document::Valid(valid) => valid.render(),
    };
    let dir_id = match &input.dir_id {
        DirId::FromSessionId => common::string_field(&bytes, "sessionId"),
        DirId::Token(b) => Some(common::token(b)),
        DirId::Text(text) => Some(text.clone()),
    };
    let Some(dir_id) = dir_id.and_then(|text| SessionId::parse(&text).ok()) else {
        return;
    };

    let Ok(manifest) = Manifest::parse(&bytes, &dir_id) else {
        return;
    };

    assert_eq!(manifest.session_id, dir_id.as_str());
    assert!(manifest.project_path.starts_with('/'));
    // Never panics, whatever the timestamps hold.
    let _ = manifest.is_stale();

    let written = manifest.to_bytes();
    let again = Manifest::parse(&written, &dir_id).unwrap_or_else(|e| {
        panic!(
            "its own output was refused: {e}\n{}",
            String::from_utf8_lossy(&written)
        )
    });
    assert_eq!(again, manifest);
    assert_eq!(again.to_bytes(), written);
});
