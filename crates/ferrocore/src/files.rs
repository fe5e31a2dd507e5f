//! Writing the files ferrocore hands out or keeps: certificates world-readable,
//! private keys readable by their owner only.

use std::path::Path;

use anyhow::Context;

/// Writes and fsyncs `contents` to `path`; `private` files get mode 0600.
pub fn write_file(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mode = if private { 0o600 } else { 0o644 };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    // An existing file keeps its old mode on open: set it explicitly.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
