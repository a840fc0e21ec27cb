//! Editing a client's configuration file without touching what setup does
//! not own: TOML through `toml_edit`, JSON (with comments and trailing
//! commas where the client accepts them) through dprint's `jsonc-parser`
//! and its concrete syntax tree. Both keep every comment, blank line and
//! indentation of the parts they are not asked to change.
//!
//! A [`Piece`] is one keyed entry (`mcp_servers.bridge`,
//! `enabledPlugins."session-bridge@session-bridge"`); a client's
//! installation is a list of them, added and removed together.

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{CstInputValue, CstObject, CstRootNode};
use serde_json::Value;

/// The syntax a client reads its file in. Setup accepts exactly what the
/// client accepts, so that it never edits a file the client cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    /// JSON; `comments` and `trailing_commas` say what the client allows.
    Json {
        comments: bool,
        trailing_commas: bool,
    },
}

/// One entry setup owns: the value at `path` (keys from the root).
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub path: Vec<String>,
    pub value: Value,
}

impl Piece {
    pub fn new(path: &[&str], value: Value) -> Self {
        Piece {
            path: path.iter().map(|s| s.to_string()).collect(),
            value,
        }
    }

    /// The path as a user reads it: `mcp_servers.bridge`.
    pub fn dotted(&self) -> String {
        self.path
            .iter()
            .map(|key| {
                if key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    key.clone()
                } else {
                    format!("\"{key}\"")
                }
            })
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// Why a file could not be read as its client's format: the message, and
/// the 1-based line and column when the parser gives them.
#[derive(Debug)]
pub struct SyntaxError {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// Why an entry could not be placed: a key on its path holds something
/// other than a table or object.
#[derive(Debug)]
pub struct NotATable {
    /// The keys from the root to the value that is in the way.
    pub at: String,
}

/// A parsed configuration file.
pub enum Document {
    Toml(toml_edit::DocumentMut),
    Json(CstRootNode),
}

impl Document {
    /// Parses `text`; an empty (or all-blank) file is an empty document.
    pub fn parse(format: Format, text: &str) -> Result<Document, SyntaxError> {
        match format {
            Format::Toml => text
                .parse::<toml_edit::DocumentMut>()
                .map(Document::Toml)
                .map_err(|err| {
                    let (line, column) = match err.span() {
                        Some(span) => line_column(text, span.start),
                        None => (None, None),
                    };
                    SyntaxError {
                        message: err.message().to_string(),
                        line,
                        column,
                    }
                }),
            Format::Json {
                comments,
                trailing_commas,
            } => {
                let options = ParseOptions {
                    allow_comments: comments,
                    allow_trailing_commas: trailing_commas,
                    allow_loose_object_property_names: false,
                    allow_missing_commas: false,
                    allow_single_quoted_strings: false,
                    allow_hexadecimal_numbers: false,
                    allow_unary_plus_numbers: false,
                    ..ParseOptions::default()
                };
                let located = |err: jsonc_parser::errors::ParseError| SyntaxError {
                    message: err.kind().to_string(),
                    line: Some(err.line_display()),
                    column: Some(err.column_display()),
                };
                // The syntax tree keeps comments as tokens and so lets them
                // through whatever the options say; the plain parser first
                // holds the file to exactly what the client reads.
                jsonc_parser::parse_to_ast(text, &Default::default(), &options).map_err(located)?;
                let root = CstRootNode::parse(text, &options).map_err(located)?;
                match root.value() {
                    None => Ok(Document::Json(root)),
                    Some(value) if value.as_object().is_some() => Ok(Document::Json(root)),
                    Some(_) => Err(SyntaxError {
                        message: "the file holds a JSON value that is not an object".into(),
                        line: None,
                        column: None,
                    }),
                }
            }
        }
    }

    /// The value at `path` as JSON, when there is one.
    pub fn get(&self, path: &[String]) -> Option<Value> {
        match self {
            Document::Toml(doc) => {
                let mut item = doc.as_item();
                for key in path {
                    item = item.as_table_like()?.get(key)?;
                }
                toml_to_json(item)
            }
            Document::Json(root) => {
                let (last, parents) = path.split_last()?;
                let mut object = root.object_value()?;
                for key in parents {
                    object = object.object_value(key)?;
                }
                object.get(last)?.value()?.to_serde_value()
            }
        }
    }

    /// Sets `value` at `path`, creating the tables or objects on the way.
    /// Returns how many keys of the path already existed before the first
    /// one it created (`path.len()` when it replaced an existing value).
    pub fn set(&mut self, path: &[String], value: &Value) -> Result<usize, NotATable> {
        match self {
            Document::Toml(doc) => set_toml(doc, path, value),
            Document::Json(root) => set_json(root, path, value),
        }
    }

    /// Removes the value at `path`, then each parent that setup created
    /// (those past the first `keep` keys, as [`Document::set`] returned)
    /// and that is left empty. Returns whether there was a value to remove.
    pub fn remove(&mut self, path: &[String], keep: usize) -> bool {
        let removed = match self {
            Document::Toml(doc) => remove_toml(doc, path),
            Document::Json(root) => remove_json(root, path),
        };
        if removed {
            for depth in (keep + 1..path.len()).rev() {
                let parent = &path[..depth];
                if self.get(parent).is_some_and(|v| is_empty(&v)) {
                    match self {
                        Document::Toml(doc) => remove_toml(doc, parent),
                        Document::Json(root) => remove_json(root, parent),
                    };
                } else {
                    break;
                }
            }
        }
        removed
    }

    /// True when the document holds nothing at all.
    pub fn is_empty(&self) -> bool {
        match self {
            Document::Toml(doc) => doc.is_empty(),
            Document::Json(root) => root
                .object_value()
                .is_none_or(|object| object.properties().is_empty()),
        }
    }

    pub fn render(&self) -> String {
        match self {
            Document::Toml(doc) => doc.to_string(),
            Document::Json(root) => root.to_string(),
        }
    }
}

fn is_empty(value: &Value) -> bool {
    value.as_object().is_some_and(|o| o.is_empty())
}

fn line_column(text: &str, offset: usize) -> (Option<usize>, Option<usize>) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (Some(line), Some(column))
}

// ---- TOML

fn set_toml(
    doc: &mut toml_edit::DocumentMut,
    path: &[String],
    value: &Value,
) -> Result<usize, NotATable> {
    let (last, parents) = path.split_last().expect("a piece has a path");
    let mut table: &mut dyn toml_edit::TableLike = doc.as_table_mut();
    // Inside an inline table (`mcp_servers = { … }`) everything must be
    // inline too; elsewhere the entry gets a `[header]` of its own.
    let mut inline = false;
    let mut existed = 0;
    for (depth, key) in parents.iter().enumerate() {
        match table.get(key) {
            None => {
                let new = if inline {
                    toml_edit::Item::Value(toml_edit::Value::InlineTable(Default::default()))
                } else {
                    // A parent with only tables under it prints no header of
                    // its own: `[mcp_servers.bridge]`, not `[mcp_servers]` too.
                    let mut new = toml_edit::Table::new();
                    new.set_implicit(true);
                    toml_edit::Item::Table(new)
                };
                table.insert(key, new);
            }
            Some(item) => {
                if existed == depth {
                    existed += 1;
                }
                inline |= item.is_inline_table();
            }
        }
        let at = path[..=depth].join(".");
        table = table
            .get_mut(key)
            .and_then(|item| item.as_table_like_mut())
            .ok_or(NotATable { at })?;
    }
    if table.contains_key(last) && existed == parents.len() {
        existed += 1;
    }
    let item = if inline {
        toml_edit::Item::Value(json_to_toml_value(value))
    } else {
        json_to_toml_item(value)
    };
    table.insert(last, item);
    Ok(existed)
}

fn remove_toml(doc: &mut toml_edit::DocumentMut, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut table: &mut dyn toml_edit::TableLike = doc.as_table_mut();
    for key in parents {
        match table.get_mut(key).and_then(|item| item.as_table_like_mut()) {
            Some(next) => table = next,
            None => return false,
        }
    }
    table.remove(last).is_some()
}

fn json_to_toml_item(value: &Value) -> toml_edit::Item {
    match value {
        Value::Object(map) => {
            let mut table = toml_edit::Table::new();
            for (key, value) in map {
                let item = match value {
                    // Nested objects stay inline: `env = { A = "b" }`.
                    Value::Object(_) => toml_edit::Item::Value(json_to_toml_value(value)),
                    _ => json_to_toml_item(value),
                };
                table.insert(key, item);
            }
            toml_edit::Item::Table(table)
        }
        _ => toml_edit::Item::Value(json_to_toml_value(value)),
    }
}

fn json_to_toml_value(value: &Value) -> toml_edit::Value {
    match value {
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or_default().into(),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => {
            toml_edit::Value::Array(items.iter().map(json_to_toml_value).collect())
        }
        Value::Object(map) => {
            let mut table = toml_edit::InlineTable::new();
            for (key, value) in map {
                table.insert(key, json_to_toml_value(value));
            }
            toml_edit::Value::InlineTable(table)
        }
        // TOML has no null; setup never writes one.
        Value::Null => "".into(),
    }
}

fn toml_to_json(item: &toml_edit::Item) -> Option<Value> {
    match item {
        toml_edit::Item::None => None,
        toml_edit::Item::Value(value) => Some(toml_value_to_json(value)),
        toml_edit::Item::Table(table) => Some(Value::Object(
            table
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), toml_to_json(v)?)))
                .collect(),
        )),
        toml_edit::Item::ArrayOfTables(tables) => Some(Value::Array(
            tables
                .iter()
                .filter_map(|t| toml_to_json(&toml_edit::Item::Table(t.clone())))
                .collect(),
        )),
    }
}

fn toml_value_to_json(value: &toml_edit::Value) -> Value {
    match value {
        toml_edit::Value::String(s) => Value::String(s.value().clone()),
        toml_edit::Value::Integer(i) => Value::from(*i.value()),
        toml_edit::Value::Float(f) => Value::from(*f.value()),
        toml_edit::Value::Boolean(b) => Value::Bool(*b.value()),
        toml_edit::Value::Datetime(d) => Value::String(d.value().to_string()),
        toml_edit::Value::Array(items) => {
            Value::Array(items.iter().map(toml_value_to_json).collect())
        }
        toml_edit::Value::InlineTable(table) => Value::Object(
            table
                .iter()
                .map(|(k, v)| (k.to_string(), toml_value_to_json(v)))
                .collect(),
        ),
    }
}

// ---- JSON

fn set_json(root: &CstRootNode, path: &[String], value: &Value) -> Result<usize, NotATable> {
    let (last, parents) = path.split_last().expect("a piece has a path");
    let mut object: CstObject = match root.value() {
        None => root.object_value_or_set(),
        Some(_) => root.object_value().ok_or(NotATable { at: String::new() })?,
    };
    for (depth, key) in parents.iter().enumerate() {
        match object.get(key) {
            Some(prop) => {
                object = prop.object_value().ok_or(NotATable {
                    at: path[..=depth].join("."),
                })?;
            }
            None => {
                // Everything from here down is new: one insertion, so the
                // library lays it out in the file's own indentation.
                let nested = path[depth + 1..]
                    .iter()
                    .rev()
                    .fold(value.clone(), |inner, key| {
                        Value::Object([(key.clone(), inner)].into_iter().collect())
                    });
                object.append(key, json_to_cst(&nested));
                return Ok(depth);
            }
        }
    }
    match object.get(last) {
        Some(prop) => {
            prop.set_value(json_to_cst(value));
            Ok(path.len())
        }
        None => {
            object.append(last, json_to_cst(value));
            Ok(parents.len())
        }
    }
}

fn remove_json(root: &CstRootNode, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let Some(mut object) = root.object_value() else {
        return false;
    };
    for key in parents {
        match object.object_value(key) {
            Some(next) => object = next,
            None => return false,
        }
    }
    match object.get(last) {
        Some(prop) => {
            prop.remove();
            true
        }
        None => false,
    }
}

fn json_to_cst(value: &Value) -> CstInputValue {
    match value {
        Value::Null => CstInputValue::Null,
        Value::Bool(b) => CstInputValue::Bool(*b),
        Value::Number(n) => CstInputValue::Number(n.to_string()),
        Value::String(s) => CstInputValue::String(s.clone()),
        Value::Array(items) => CstInputValue::Array(items.iter().map(json_to_cst).collect()),
        Value::Object(map) => CstInputValue::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_cst(v)))
                .collect(),
        ),
    }
}

/// A unified diff from `before` to `after`, headed with `label`.
pub fn unified_diff(label: &str, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{label} (now)"), &format!("{label} (after)"))
        .to_string()
}
