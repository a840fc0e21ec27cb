//! The files setup reads and writes: a client's configuration file (checked
//! before it is read, replaced whole by a rename), and setup's own record
//! of what it wrote where, so that `--remove` takes back exactly that.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::words;

/// Where setup looks for things: the user's home and setup's data folder.
pub struct Places {
    pub home: PathBuf,
    /// `$XDG_DATA_HOME/session-bridge`, else `~/.local/share/session-bridge`
    /// (`%APPDATA%\session-bridge` on Windows).
    pub data: PathBuf,
}

impl Places {
    pub fn of_environment() -> Result<Places> {
        let home = env_path("HOME")
            .or_else(|| cfg!(windows).then(|| env_path("USERPROFILE")).flatten())
            .ok_or_else(|| anyhow!(words::no_home()))?;
        let data = match env_path("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
            Some(base) => base,
            None if cfg!(windows) => {
                env_path("APPDATA").unwrap_or_else(|| home.join("AppData/Roaming"))
            }
            None => home.join(".local/share"),
        }
        .join("session-bridge");
        Ok(Places { home, data })
    }

    pub fn record_file(&self) -> PathBuf {
        self.data.join("setup-record.json")
    }
}

/// A non-empty environment variable as a path.
pub fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The configuration file's text, or None when it does not exist. A
/// symbolic link, a folder or a device is refused, as is a file that is
/// not UTF-8.
pub fn read_config(path: &Path) -> Result<Option<String>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => bail!(words::unreadable(path, &err)),
    };
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path).unwrap_or_default();
        let target = if target.is_relative() {
            path.parent().unwrap_or(Path::new("")).join(target)
        } else {
            target
        };
        bail!(words::symlink(path, &target));
    }
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a folder"
        } else {
            "a special file (a FIFO, socket or device)"
        };
        bail!(words::not_regular(path, kind));
    }
    let bytes = fs::read(path).map_err(|err| anyhow!(words::unreadable(path, &err)))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| anyhow!(words::not_utf8(path)))
}

/// Creates the folders missing above `path`, returning those it created,
/// outermost first.
pub fn create_parents(path: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d.as_os_str().is_empty() || fs::symlink_metadata(d).is_ok() {
            break;
        }
        missing.push(d.to_path_buf());
        dir = d.parent();
    }
    missing.reverse();
    for d in &missing {
        fs::create_dir(d).with_context(|| format!("cannot create the folder {}", d.display()))?;
    }
    Ok(missing)
}

/// Replaces `path` with `text` at once (a temporary file renamed over it),
/// keeping the permissions the file had.
pub fn write_whole(path: &Path, text: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.bridge-setup-{}", std::process::id()));
    let permissions = fs::metadata(path).ok().map(|m| m.permissions());
    let result = (|| -> io::Result<()> {
        let mut file = fs::File::create(&temp)?;
        file.write_all(text)?;
        if let Some(permissions) = permissions {
            file.set_permissions(permissions)?;
        }
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(err) = result {
        let _ = fs::remove_file(&temp);
        return Err(anyhow!(err).context(words::cannot_write(path)));
    }
    Ok(())
}

/// Removes `dirs` (innermost last in the list) that are empty.
pub fn remove_empty_dirs(dirs: &[PathBuf]) {
    for dir in dirs.iter().rev() {
        // Fails, as it should, when the folder holds anything.
        let _ = fs::remove_dir(dir);
    }
}

pub fn digest(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

// ---- the record

/// What setup wrote, per configuration file (by absolute path).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub version: u32,
    pub files: BTreeMap<PathBuf, FileRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileRecord {
    pub client: String,
    /// BLAKE3 of the text setup last wrote.
    pub written: String,
    /// How to get from that text back to the file as it was before setup.
    pub undo: Undo,
    /// Folders setup created for the file, outermost first.
    #[serde(default)]
    pub created_dirs: Vec<PathBuf>,
    pub pieces: Vec<RecordedPiece>,
    /// Files of the Claude Code plugin setup wrote, under `pluginDir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedPiece {
    pub path: Vec<String>,
    pub value: Value,
    /// How many keys of the path existed before setup (the rest it made).
    pub existed: usize,
    /// The value setup replaced with `--force`, put back by `--remove`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginRecord {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub created_dirs: Vec<PathBuf>,
}

/// The way back from the text setup wrote to the text before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Undo {
    /// Setup created the file.
    Delete,
    /// The original is the written text with its bytes from `prefix` to
    /// `len - suffix` replaced by `middle`: only the part setup changed is
    /// kept, never a copy of the whole file.
    Splice {
        prefix: usize,
        suffix: usize,
        middle: String,
    },
}

impl Undo {
    /// The undo from `written` back to `original` (None: no file).
    pub fn between(written: &str, original: Option<&str>) -> Undo {
        let Some(original) = original else {
            return Undo::Delete;
        };
        let (a, b) = (written.as_bytes(), original.as_bytes());
        let mut prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        while !written.is_char_boundary(prefix) || !original.is_char_boundary(prefix) {
            prefix -= 1;
        }
        let limit = a.len().min(b.len()) - prefix;
        let mut suffix = a
            .iter()
            .rev()
            .zip(b.iter().rev())
            .take(limit)
            .take_while(|(x, y)| x == y)
            .count();
        while !written.is_char_boundary(a.len() - suffix)
            || !original.is_char_boundary(b.len() - suffix)
        {
            suffix -= 1;
        }
        Undo::Splice {
            prefix,
            suffix,
            middle: original[prefix..b.len() - suffix].to_string(),
        }
    }

    /// The text before setup, from the text it wrote (None: no file).
    pub fn apply(&self, written: &str) -> Option<String> {
        match self {
            Undo::Delete => None,
            Undo::Splice {
                prefix,
                suffix,
                middle,
            } => {
                let end = written.len().checked_sub(*suffix)?;
                let head = written.get(..*prefix)?;
                let tail = written.get(end..)?;
                Some(format!("{head}{middle}{tail}"))
            }
        }
    }
}

impl Record {
    pub fn load(path: &Path) -> Result<Record> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|err| anyhow!(words::record_unreadable(path, &err.to_string()))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Record {
                version: 1,
                ..Record::default()
            }),
            Err(err) => bail!(words::record_unreadable(path, &err.to_string())),
        }
    }

    /// Saves the record, or removes its file when it holds nothing.
    pub fn save(&self, path: &Path) -> Result<()> {
        if self.files.is_empty() {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err).context(format!("cannot remove {}", path.display())),
            }
            if let Some(dir) = path.parent() {
                let _ = fs::remove_dir(dir);
            }
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self).expect("a record serializes");
        write_whole(path, format!("{text}\n").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::Undo;

    #[test]
    fn undo_gives_back_the_original_exactly() {
        for (original, written) in [
            ("a\nb\n", "a\nx\nb\n"),
            ("", "{}\n"),
            ("{\n}\n", "{\n  \"k\": 1\n}\n"),
            ("é", "éé"),
            ("same", "same"),
            ("abc", "xyz"),
        ] {
            let undo = Undo::between(written, Some(original));
            assert_eq!(undo.apply(written).as_deref(), Some(original), "{undo:?}");
        }
        assert_eq!(Undo::between("x", None).apply("x"), None);
    }
}
