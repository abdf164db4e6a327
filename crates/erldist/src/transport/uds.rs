//! Unix-domain sockets.
//!
//! Path convention: `<dir>/<alive>`, where `<dir>` is `$ERLDIST_UDS_DIR`,
//! else `$XDG_RUNTIME_DIR/erldist`, else `/tmp/erldist-<uid>`. The
//! directory is created with mode 0700 and must be owned by the node's
//! user, so only that user can reach the socket. The absolute path is the
//! transport's Extra in EPMD. A stale socket (nobody answers on it) is
//! replaced at start; the file is removed when the listener is dropped.
//!
//! The framing is the TCP one (`u16` during the handshake), the same as
//! OTP's `erl_uds_dist` example, whose socket is the node-name head in its
//! working directory: an `erl_uds_dist` node started in `<dir>` reaches this
//! node as `<alive>`.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use super::TransportError;

/// Linux's limit on a socket path, including the NUL.
const MAX_PATH: usize = 107;

/// The default socket directory.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ERLDIST_UDS_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(d).join("erldist");
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/tmp/erldist-{uid}"))
}

/// Creates `dir` (mode 0700) or checks that an existing one is ours and
/// closed to others.
fn secure_dir(dir: &Path) -> Result<(), TransportError> {
    let what = || format!("socket directory {}", dir.display());
    match std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => return Err(TransportError::io(what(), e)),
    }
    let meta = std::fs::metadata(dir).map_err(|e| TransportError::io(what(), e))?;
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    if meta.uid() != uid {
        return Err(TransportError::io(
            what(),
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "owned by another user",
            ),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| TransportError::io(what(), e))?;
    }
    Ok(())
}

/// A bound Unix socket that removes its file when dropped.
#[derive(Debug)]
pub(crate) struct UdsListener {
    pub(crate) listener: UnixListener,
    pub(crate) path: PathBuf,
}

impl Drop for UdsListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `<dir>/<alive>`, replacing a stale socket.
pub(crate) async fn bind(dir: &Path, alive: &str) -> Result<UdsListener, TransportError> {
    secure_dir(dir)?;
    let dir = std::fs::canonicalize(dir).map_err(|e| TransportError::io("socket directory", e))?;
    let path = dir.join(alive);
    if path.as_os_str().len() > MAX_PATH - 1 {
        return Err(TransportError::BadUdsPath);
    }
    if path.exists() {
        if UnixStream::connect(&path).await.is_ok() {
            return Err(TransportError::UdsInUse(path));
        }
        std::fs::remove_file(&path)
            .map_err(|e| TransportError::io(format!("remove stale {}", path.display()), e))?;
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| TransportError::io(format!("cannot listen on {}", path.display()), e))?;
    Ok(UdsListener { listener, path })
}

/// Connects to the socket path carried in a transport's Extra.
pub(crate) async fn connect(extra: &[u8]) -> Result<UnixStream, TransportError> {
    let path = std::str::from_utf8(extra).map_err(|_| TransportError::BadUdsPath)?;
    if !path.starts_with('/') || path.len() > MAX_PATH - 1 {
        return Err(TransportError::BadUdsPath);
    }
    UnixStream::connect(path)
        .await
        .map_err(|e| TransportError::io(format!("connect to {path}"), e))
}
