//! `orderflow init`: a `.env` with fresh secrets for local use.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

use crate::crypto::generate_key_hex;

/// The file `init` writes, in the working directory.
pub const DOTENV_PATH: &str = ".env";

/// Writes `.env` unless it exists (then says so and succeeds without touching it).
pub fn init() -> anyhow::Result<()> {
    if write_dotenv(Path::new(DOTENV_PATH))? {
        eprintln!("wrote {DOTENV_PATH} with a fresh ENCRYPTION_MASTER_KEY and JWT_SECRET");
    } else {
        eprintln!("{DOTENV_PATH} already exists; left unchanged");
    }
    Ok(())
}

/// Creates `path` with fresh secrets; returns false if it already exists. `create_new` makes
/// the check and the creation one atomic step, so an existing file is never overwritten.
pub fn write_dotenv(path: &Path) -> anyhow::Result<bool> {
    let mut jwt = [0u8; 48];
    rand::rng().fill_bytes(&mut jwt);
    let contents = format!(
        "# Written by `orderflow init` for local use. Keep it out of version control.\n\
         ENCRYPTION_MASTER_KEY={}\nJWT_SECRET={}\n",
        generate_key_hex(),
        URL_SAFE_NO_PAD.encode(jwt),
    );
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}
