//! Where the cookie comes from, as `erl` decides it: an explicit option, then
//! the `ERLANG_COOKIE` environment variable, then `~/.erlang.cookie`, which
//! must be readable by its owner only.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why no cookie could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// The cookie file is readable or writable by group or others; `erl`
    /// refuses it too.
    #[error("cookie file {0} must be accessible by owner only")]
    Permissions(PathBuf),
    /// The cookie file could not be read.
    #[error("cannot read cookie file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No option, no environment variable, and no usable file.
    #[error("no cookie: pass --cookie, set ERLANG_COOKIE or create ~/.erlang.cookie (mode 0400)")]
    Missing,
    /// The cookie is empty.
    #[error("the cookie is empty")]
    Empty,
}

/// Resolves the cookie: `explicit`, else `ERLANG_COOKIE`, else the file in
/// `$HOME`.
pub fn resolve(explicit: Option<&str>) -> Result<String, CookieError> {
    if let Some(c) = explicit {
        return non_empty(c.to_owned());
    }
    if let Ok(c) = std::env::var("ERLANG_COOKIE") {
        return non_empty(c);
    }
    let home = std::env::var_os("HOME").ok_or(CookieError::Missing)?;
    let path = Path::new(&home).join(".erlang.cookie");
    if !path.exists() {
        return Err(CookieError::Missing);
    }
    read_file(&path)
}

/// Reads a cookie file, refusing one that group or others can access.
pub fn read_file(path: &Path) -> Result<String, CookieError> {
    let meta = std::fs::metadata(path).map_err(|source| CookieError::Read {
        path: path.to_owned(),
        source,
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(CookieError::Permissions(path.to_owned()));
    }
    let text = std::fs::read_to_string(path).map_err(|source| CookieError::Read {
        path: path.to_owned(),
        source,
    })?;
    // erl takes the first line, without surrounding whitespace.
    non_empty(text.lines().next().unwrap_or("").trim().to_owned())
}

fn non_empty(c: String) -> Result<String, CookieError> {
    if c.is_empty() {
        Err(CookieError::Empty)
    } else {
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_permissions_are_checked() {
        let dir = std::env::temp_dir().join(format!("erldist-cookie-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("cookie");
        std::fs::write(&f, "secret\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(read_file(&f), Err(CookieError::Permissions(_))));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read_file(&f).unwrap(), "secret");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(resolve(Some("x")).unwrap(), "x");
        assert!(matches!(resolve(Some("")), Err(CookieError::Empty)));
    }
}
