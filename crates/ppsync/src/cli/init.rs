//! `ppsync init`: the annotated configuration file, private from the moment it exists.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::config;

pub(super) fn init(path: Option<PathBuf>, force: bool) -> anyhow::Result<i32> {
    let path = path
        .or_else(|| std::env::var_os("PPSYNC_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    let exists = || {
        anyhow::anyhow!(
            "{} already exists: edit it, or pass --force to overwrite it",
            path.display()
        )
    };
    if path.exists() && !force {
        return Err(exists());
    }
    // The file will hold the client secret (and maybe a webhook secret, the status token): it is
    // readable by its owner only from the moment it exists.
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = opts.open(&path).and_then(|mut f| {
        // An existing file (--force) keeps its mode when opened: made private before it is written.
        #[cfg(unix)]
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(config::TEMPLATE.as_bytes())
    });
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists()),
        r => r.with_context(|| {
            format!(
                "cannot write {}: choose a writable --config path",
                path.display()
            )
        })?,
    }
    outln!(
        "wrote {}: set client_id and client_secret, then run `ppsync auth login`",
        path.display()
    );
    Ok(0)
}
