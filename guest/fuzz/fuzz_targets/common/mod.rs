//! Pieces shared by the parse targets: fuzzed JSON values that are often,
//! but not always, what the wire format expects.

use arbitrary::Arbitrary;

const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Bytes mapped onto `[a-z0-9]`.
pub fn token(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| ALPHABET[(*b % 36) as usize] as char)
        .collect()
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A JSON scalar.
#[derive(Arbitrary, Debug, Clone)]
pub enum Leaf {
    MessageId([u8; 12]),
    SessionId([u8; 6]),
    Str(String),
    Kind(u8),
    Status(u8),
    Stamp(u32),
    /// An absolute path: `/` then the text.
    Path(String),
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Raw text spliced in as is, valid JSON or not.
    Raw(String),
}

impl Leaf {
    pub fn render(&self, out: &mut String) {
        match self {
            Leaf::MessageId(b) => out.push_str(&quoted(&format!("msg-{}", token(b)))),
            Leaf::SessionId(b) => out.push_str(&quoted(&token(b))),
            Leaf::Str(s) => out.push_str(&quoted(s)),
            Leaf::Kind(k) => out.push_str(
                [
                    "\"query\"",
                    "\"response\"",
                    "\"ping\"",
                    "\"session-ended\"",
                    "\"Query\"",
                ][*k as usize % 5],
            ),
            Leaf::Status(s) => {
                out.push_str(["\"pending\"", "\"read\"", "\"sent\"", "\"Read\""][*s as usize % 4])
            }
            Leaf::Stamp(secs) => {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs((*secs).into());
                out.push_str(&quoted(&session_bridge_guest::clock::stamp(t)))
            }
            Leaf::Path(s) => out.push_str(&quoted(&format!("/{s}"))),
            Leaf::Null => out.push_str("null"),
            Leaf::Int(i) => out.push_str(&i.to_string()),
            // Non-finite floats come out as `null`.
            Leaf::Float(f) => out.push_str(&serde_json::to_string(f).unwrap()),
            Leaf::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Leaf::Raw(s) => out.push_str(s),
        }
    }
}

/// A JSON value for one field.
#[derive(Arbitrary, Debug, Clone)]
pub enum Value {
    Leaf(Leaf),
    /// The shape of a message's `metadata`; None leaves a key out.
    Metadata {
        urgency: Option<Leaf>,
        from_project: Option<Leaf>,
    },
    Array(Vec<Leaf>),
    Object(Vec<(String, Leaf)>),
}

impl Value {
    pub fn str(text: &str) -> Value {
        Value::Leaf(Leaf::Str(text.to_string()))
    }

    pub fn leaf(leaf: Leaf) -> Option<Value> {
        Some(Value::Leaf(leaf))
    }

    pub fn render(&self, out: &mut String) {
        match self {
            Value::Leaf(leaf) => leaf.render(out),
            Value::Metadata {
                urgency,
                from_project,
            } => {
                let pairs = [("urgency", urgency), ("fromProject", from_project)];
                let pairs = pairs
                    .iter()
                    .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v)));
                render_object(out, pairs);
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.render(out);
                }
                out.push(']');
            }
            Value::Object(pairs) => {
                render_object(out, pairs.iter().map(|(k, v)| (k.clone(), v)));
            }
        }
    }
}

fn render_object<'a>(out: &mut String, pairs: impl Iterator<Item = (String, &'a Leaf)>) {
    out.push('{');
    for (i, (key, value)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quoted(&key));
        out.push(':');
        value.render(out);
    }
    out.push('}');
}

/// A JSON object with the given known keys, each present or not, plus
/// extra keys and one repeated known key.
#[derive(Arbitrary, Debug)]
pub struct Object<const N: usize> {
    /// One optional value per known key; None leaves the key out.
    pub fields: [Option<Value>; N],
    /// Extra keys, after the known ones.
    pub extra: Vec<(String, Value)>,
    /// A known key (by index) given a second time.
    pub duplicate: Option<(u8, Value)>,
    /// Reverses the key order.
    pub reversed: bool,
}

impl<const N: usize> Object<N> {
    pub fn render(&self, keys: &[&str; N]) -> Vec<u8> {
        let mut entries: Vec<String> = Vec::new();
        let mut entry = |key: &str, value: &Value| {
            let mut text = quoted(key);
            text.push(':');
            value.render(&mut text);
            entries.push(text);
        };
        for (key, value) in keys.iter().zip(&self.fields) {
            if let Some(value) = value {
                entry(key, value);
            }
        }
        for (key, value) in self.extra.iter().take(4) {
            entry(key, value);
        }
        if let Some((index, value)) = &self.duplicate {
            entry(keys[*index as usize % N], value);
        }
        if self.reversed {
            entries.reverse();
        }
        format!("{{{}}}", entries.join(",")).into_bytes()
    }
}

impl<const N: usize> Object<N> {
    /// An object with exactly the known keys, set to `fields`.
    pub fn with(fields: [Option<Value>; N]) -> Self {
        Object {
            fields,
            extra: Vec::new(),
            duplicate: None,
            reversed: false,
        }
    }
}

/// One change to a valid document.
#[derive(Arbitrary, Debug)]
pub enum Edit {
    /// Sets (Some) or removes (None) a known key, by index.
    Set(u8, Option<Value>),
    Extra(String, Value),
    Duplicate(u8, Value),
    Reverse,
    /// Overwrites one byte of the rendered text.
    Byte(u16, u8),
    /// Inserts text into the rendered text.
    Insert(u16, String),
    Truncate(u16),
}

/// `object` after `edits`, rendered.
pub fn edited<const N: usize>(mut object: Object<N>, keys: &[&str; N], edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        match edit {
            Edit::Set(index, value) => object.fields[*index as usize % N] = value.clone(),
            Edit::Extra(key, value) => object.extra.push((key.clone(), value.clone())),
            Edit::Duplicate(index, value) => object.duplicate = Some((*index, value.clone())),
            Edit::Reverse => object.reversed = !object.reversed,
            _ => {}
        }
    }
    let mut bytes = object.render(keys);
    for edit in edits {
        match edit {
            Edit::Byte(at, byte) if !bytes.is_empty() => {
                let at = *at as usize % bytes.len();
                bytes[at] = *byte;
            }
            Edit::Insert(at, text) => {
                let at = *at as usize % (bytes.len() + 1);
                bytes.splice(at..at, text.bytes());
            }
            Edit::Truncate(len) => bytes.truncate(*len as usize),
            _ => {}
        }
    }
    bytes
}

/// The string value of `key` in a JSON object, if any.
pub fn string_field(bytes: &[u8], key: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value.get(key)?.as_str().map(str::to_string)
}
