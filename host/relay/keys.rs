//! The relay's keys: the machine's credentials file, read with errors that
//! name what is wrong in it; the key that signs what the relay publishes;
//! `bridge-host relay keygen` and `bridge-host relay trust`.
//!
//! Which key the receiving side accepts for a machine is the guest's rule
//! (guest/src/relay_keys.rs); the host only signs, and writes a key the
//! user trusts explicitly.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;

/// What the signature covers, before the two machine names and the
/// payload: the same as `SIGNED_CONTEXT` in guest/src/relay_keys.rs.
const SIGNED_CONTEXT: &str = "session-bridge relay v1";

/// A machine's credentials, as `--creds` gives them.
pub enum Creds {
    /// A `.creds` file (a user JWT and its seed), whole, and its seed.
    Jwt { text: String, seed: String },
    /// An nkey user seed.
    Seed(String),
}

impl Creds {
    pub fn seed(&self) -> &str {
        match self {
            Creds::Jwt { seed, .. } | Creds::Seed(seed) => seed,
        }
    }
}

/// Reads a credentials file: a `.creds` file as `nsc` writes it, or a file
/// holding an nkey user seed (`SU...`), alone or with its public key on
/// another line (as `nk -gen user -pubout` prints them).
pub fn read_creds(path: &Path) -> Result<Creds> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the credentials {}", path.display()))?;
    let make = "make one with `bridge-host relay keygen --out FILE`";
    if text.contains("-----BEGIN NATS USER JWT-----") {
        let seed = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("SU"))
            .with_context(|| {
                format!(
                    "{} holds a user JWT but no `-----BEGIN USER NKEY SEED-----` block with its \
                     seed (SU...)",
                    path.display()
                )
            })?;
        check_seed(path, seed)?;
        return Ok(Creds::Jwt {
            seed: seed.to_string(),
            text,
        });
    }
    let mut seed: Option<(usize, &str)> = None;
    let mut public: Vec<(usize, &str)> = Vec::new();
    for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.get(..2) {
            Some("SU") if seed.is_none() => seed = Some((n, line)),
            Some("SU") => bail!(
                "{} holds two nkey seeds (lines {} and {n}); keep the one this machine uses",
                path.display(),
                seed.map_or(0, |s| s.0)
            ),
            Some("SA" | "SO" | "SN" | "SC") => bail!(
                "line {n} of {} is an account, operator, server or cluster seed, not a user seed \
                 (SU...); {make}",
                path.display()
            ),
            _ if line.starts_with('U') && nkeys::KeyPair::from_public_key(line).is_ok() => {
                public.push((n, line))
            }
            _ => bail!(
                "line {n} of {} is neither an nkey user seed (SU...) nor its public key (U...), \
                 and the file is not a .creds file; {make}",
                path.display()
            ),
        }
    }
    let Some((_, seed)) = seed else {
        bail!(
            "{} holds no nkey user seed (a line SU...) and is not a .creds file; {make}",
            path.display()
        );
    };
    let pair = check_seed(path, seed)?;
    for (n, key) in public {
        if key != pair.public_key() {
            bail!(
                "line {n} of {} is the public key {key}, but the seed's public key is {}: the \
                 file mixes two keys",
                path.display(),
                pair.public_key()
            );
        }
    }
    Ok(Creds::Seed(seed.to_string()))
}

fn check_seed(path: &Path, seed: &str) -> Result<nkeys::KeyPair> {
    match nkeys::KeyPair::from_seed(seed) {
        Ok(pair) => Ok(pair),
        Err(err) => bail!(
            "the seed in {} is not a valid nkey user seed ({err}): a seed is one line of 58 \
             characters starting with SU; make one with `bridge-host relay keygen --out FILE`",
            path.display()
        ),
    }
}

/// The key that signs what this relay publishes: the seed of `--creds`
/// when given, else one kept next to the bridge directory (`<bridge
/// dir>.relay-key`, outside what the guest can reach), made on first use.
pub fn signing_key(creds: Option<&Creds>, bridge_dir: &Path) -> Result<nkeys::KeyPair> {
    if let Some(creds) = creds {
        return nkeys::KeyPair::from_seed(creds.seed()).context("the credentials' seed");
    }
    let path = own_key_path(bridge_dir);
    if path.exists() {
        return nkeys::KeyPair::from_seed(read_creds(&path)?.seed())
            .with_context(|| format!("the signing key {}", path.display()));
    }
    let pair = nkeys::KeyPair::new_user();
    write_secret(&path, &pair.seed().context("a new key's seed")?)?;
    Ok(pair)
}

fn own_key_path(bridge_dir: &Path) -> PathBuf {
    let mut name = bridge_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".relay-key");
    bridge_dir.with_file_name(name)
}

/// Writes `seed` to a new file only its owner can read.
fn write_secret(path: &Path, seed: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    writeln!(file, "{seed}")
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The headers that sign `payload`, published by `from_machine` for
/// `to_machine`.
pub fn sign(
    key: &nkeys::KeyPair,
    to_machine: &str,
    from_machine: &str,
    payload: &[u8],
) -> Result<(String, String)> {
    let mut signed = Vec::with_capacity(payload.len() + 64);
    signed.extend_from_slice(SIGNED_CONTEXT.as_bytes());
    for part in [to_machine, from_machine] {
        signed.push(b'\n');
        signed.extend_from_slice(part.as_bytes());
    }
    signed.push(b'\n');
    signed.extend_from_slice(payload);
    let signature = key.sign(&signed).context("cannot sign")?;
    Ok((
        key.public_key(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature),
    ))
}

/// `bridge-host relay keygen --out FILE`: a new machine key. The seed goes
/// into FILE (created, readable by its owner only); the public key is
/// printed, for the server's configuration.
pub fn keygen(out: &Path) -> Result<()> {
    let pair = nkeys::KeyPair::new_user();
    write_secret(out, &pair.seed().context("a new key's seed")?)?;
    println!("{}", pair.public_key());
    eprintln!(
        "wrote the seed to {} (pass it as --creds); the line above is its public key, for the \
         server's configuration (nkey: ...)",
        out.display()
    );
    Ok(())
}

/// `bridge-host relay trust MACHINE KEY`: from now on this machine accepts
/// mail from MACHINE only when KEY signed it.
pub fn trust(bridge_dir: &Path, machine: &str, key: &str) -> Result<()> {
    let plain = !machine.is_empty()
        && machine.len() <= 32
        && !machine.starts_with('-')
        && machine
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !plain {
        bail!("{machine:?} is not a machine name (1 to 32 characters of a-z, 0-9 and `-`)");
    }
    let user = nkeys::KeyPair::from_public_key(key)
        .ok()
        .filter(|k| matches!(k.key_pair_type(), nkeys::KeyPairType::User));
    if user.is_none() {
        bail!(
            "{key:?} is not an nkey user public key (56 characters starting with U): the \
             machine's relay logs its key when it starts (`signs as U...`)"
        );
    }
    let dir = bridge_dir.join("relay-keys");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{machine}.pub"));
    let before = std::fs::read_to_string(&path).ok();
    let temp = dir.join(format!(".{machine}.pub.{}", std::process::id()));
    std::fs::write(&temp, key).with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    match before.as_deref().map(str::trim) {
        Some(old) if old == key => println!("machine {machine}'s key was {key} already"),
        Some(old) => println!("machine {machine}'s key is now {key} (it was {old})"),
        None => println!("machine {machine}'s key is now {key}"),
    }
    Ok(())
}
