//! Unix-domain sockets.
//!
//! Path convention: `<dir>/<alive>`. The directory is, in order:
//! `$ERLDIST_UDS_DIR` (or the node's `uds_dir` setting), else
//! `$XDG_RUNTIME_DIR/erldist`, else `/run/user/<uid>/erldist` when
//! `/run/user/<uid>` exists and belongs to the node's user, else
//! `$TMPDIR/erldist-<uid>` (`/tmp` without `TMPDIR`). The absolute socket
//! path is the transport's Extra in EPMD, so peers find it wherever it is.
//!
//! # Directory safety
//! Only the node's user may be able to reach the socket or replace it, so
//! the directory must be owned by that user (no symbolic link owned by
//! anyone else either) and writable by nobody else:
//! - At bind, a directory the node creates gets mode 0700; one it owns with
//!   wider permissions is narrowed to 0700. A *default* directory owned by
//!   another user (someone pre-created `/tmp/erldist-<uid>`) is not an
//!   error: the node falls back to a fresh directory made by `mkdtemp(3)`
//!   (`$TMPDIR/erldist-<uid>-XXXXXX`, which nobody can pre-create) and logs
//!   a warning naming both. A directory given explicitly is never replaced:
//!   an unsafe one stops the node, naming the setting.
//! - At each accept, the directory is checked again and the client's
//!   credentials (`SO_PEERCRED`) must be the node's user; while the
//!   directory is unsafe (e.g. made world-writable while the node runs)
//!   every connection is refused with a warning.
//! - Before each connect, the target's directory and the socket file must
//!   belong to the node's user and be writable by nobody else, and after
//!   connecting the listening process must run as the node's user: a
//!   socket planted by another user is refused, never used.
//! - [`UdsListener::still_ours`] says whether the socket file is still the
//!   one this node bound (same device and inode): when it is gone or was
//!   replaced the node unregisters its `uds` transport; the file is removed
//!   at drop only if it is still ours.
//!
//! The framing is the TCP one (`u16` during the handshake), the same as
//! OTP's `erl_uds_dist` example, whose socket is the node-name head in its
//! working directory: an `erl_uds_dist` node started in `<dir>` reaches this
//! node as `<alive>`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};
use tracing::warn;

use super::TransportError;

/// Linux's limit on a socket path, including the NUL.
const MAX_PATH: usize = 107;

fn my_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// The default socket directory (see the module documentation).
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ERLDIST_UDS_DIR") {
        return PathBuf::from(d);
    }
    default_dir_in(
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        Path::new("/run/user"),
        &std::env::temp_dir(),
    )
}

/// [`default_dir`] with its roots passed in (for tests).
fn default_dir_in(xdg: Option<PathBuf>, run_user: &Path, tmp: &Path) -> PathBuf {
    if let Some(d) = xdg.filter(|d| d.is_absolute()) {
        return d.join("erldist");
    }
    let uid = my_uid();
    let per_user = run_user.join(uid.to_string());
    if check_dir(&per_user).is_ok() {
        return per_user.join("erldist");
    }
    tmp.join(format!("erldist-{uid}"))
}

/// Why a directory is not safe for sockets, or `Ok` if it is. Follows
/// nothing it does not also check: a symbolic link must itself belong to
/// the node's user, and so must what it points to.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let uid = my_uid();
    let link = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if link.uid() != uid {
        return Err(format!(
            "owned by uid {}, not this node's uid {uid}",
            link.uid()
        ));
    }
    let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err("not a directory".into());
    }
    if meta.uid() != uid {
        return Err(format!(
            "owned by uid {}, not this node's uid {uid}",
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!("writable by other users (mode {mode:03o})"));
    }
    Ok(())
}

fn unsafe_dir(dir: &Path, reason: String) -> TransportError {
    TransportError::UdsUnsafe {
        path: dir.to_owned(),
        reason,
    }
}

/// Creates `dir` (mode 0700) if missing, then checks it and narrows an own
/// directory's mode to 0700.
fn secure_dir(dir: &Path) -> Result<(), TransportError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
        .map_err(|e| TransportError::io(format!("socket directory {}", dir.display()), e))?;
    let uid = my_uid();
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| TransportError::io(format!("socket directory {}", dir.display()), e))?;
    let target = std::fs::metadata(dir)
        .map_err(|e| TransportError::io(format!("socket directory {}", dir.display()), e))?;
    if meta.uid() == uid
        && target.uid() == uid
        && target.is_dir()
        && target.permissions().mode() & 0o077 != 0
    {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| TransportError::io(format!("chmod 0700 {}", dir.display()), e))?;
    }
    check_dir(dir).map_err(|r| unsafe_dir(dir, r))
}

/// A fresh private directory `<tmp>/erldist-<uid>-XXXXXX` (mode 0700,
/// created atomically by `mkdtemp`, so no other user can have made it).
fn fresh_dir(tmp: &Path) -> Result<PathBuf, TransportError> {
    let template = tmp.join(format!("erldist-{}-XXXXXX", my_uid()));
    let mut buf = template.into_os_string().into_vec();
    buf.push(0);
    // SAFETY: buf is NUL-terminated and mkdtemp only rewrites the XXXXXX
    // in place.
    let p = unsafe { libc::mkdtemp(buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return Err(TransportError::io(
            format!("mkdtemp in {}", tmp.display()),
            std::io::Error::last_os_error(),
        ));
    }
    buf.pop();
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

/// The directory to bind in: `dir` when safe; when `dir` is a default
/// (not configured by the user) and unsafe, a fresh private one in `tmp`.
fn choose_dir(dir: &Path, is_default: bool, tmp: &Path) -> Result<PathBuf, TransportError> {
    match secure_dir(dir) {
        Ok(()) => Ok(dir.to_owned()),
        Err(e) if is_default => {
            let fresh = fresh_dir(tmp)?;
            warn!(
                "default Unix socket directory {} is unusable ({e}); using the fresh private directory {} instead (its path is registered with EPMD)",
                dir.display(),
                fresh.display()
            );
            Ok(fresh)
        }
        Err(e) => Err(e),
    }
}

/// A bound Unix socket that removes its file when dropped (if the file is
/// still the one it bound).
#[derive(Debug)]
pub(crate) struct UdsListener {
    pub(crate) listener: UnixListener,
    pub(crate) path: PathBuf,
    /// The directory the socket is in (checked again at each accept).
    pub(crate) dir: PathBuf,
    /// Device and inode of the socket file as bound.
    id: (u64, u64),
}

impl UdsListener {
    /// Whether the socket file is still the one this listener bound.
    pub(crate) fn still_ours(&self) -> bool {
        std::fs::symlink_metadata(&self.path)
            .map(|m| (m.dev(), m.ino()) == self.id)
            .unwrap_or(false)
    }

    /// Accepts one connection that passes the checks: directory still safe,
    /// client running as the node's user. Refusals are logged and skipped.
    pub(crate) async fn accept(&self) -> std::io::Result<UnixStream> {
        loop {
            let (s, _) = self.listener.accept().await?;
            if let Err(reason) = check_dir(&self.dir) {
                warn!(
                    "refused a Unix-socket connection: socket directory {} is {reason}",
                    self.dir.display()
                );
                continue;
            }
            match s.peer_cred() {
                Ok(c) if c.uid() == my_uid() => return Ok(s),
                Ok(c) => warn!(
                    "refused a Unix-socket connection from uid {} (only uid {} may connect)",
                    c.uid(),
                    my_uid()
                ),
                Err(e) => warn!("refused a Unix-socket connection: no peer credentials: {e}"),
            }
        }
    }
}

impl Drop for UdsListener {
    fn drop(&mut self) {
        if self.still_ours() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds `<dir>/<alive>`, replacing a stale socket. A `dir` equal to
/// [`default_dir`] may be replaced by a fresh private directory (see the
/// module documentation); any other unsafe `dir` is an error.
pub(crate) async fn bind(dir: &Path, alive: &str) -> Result<UdsListener, TransportError> {
    let is_default = std::env::var_os("ERLDIST_UDS_DIR").is_none() && dir == default_dir();
    bind_in(dir, alive, is_default, &std::env::temp_dir()).await
}

async fn bind_in(
    dir: &Path,
    alive: &str,
    is_default: bool,
    tmp: &Path,
) -> Result<UdsListener, TransportError> {
    let dir = choose_dir(dir, is_default, tmp)?;
    let dir = std::fs::canonicalize(&dir).map_err(|e| TransportError::io("socket directory", e))?;
    let path = dir.join(alive);
    if path.as_os_str().len() > MAX_PATH - 1 {
        return Err(TransportError::BadUdsPath);
    }
    if let Ok(m) = std::fs::symlink_metadata(&path) {
        if m.file_type().is_socket() && UnixStream::connect(&path).await.is_ok() {
            return Err(TransportError::UdsInUse(path));
        }
        std::fs::remove_file(&path)
            .map_err(|e| TransportError::io(format!("remove stale {}", path.display()), e))?;
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| TransportError::io(format!("cannot listen on {}", path.display()), e))?;
    let m = std::fs::symlink_metadata(&path)
        .map_err(|e| TransportError::io(format!("stat {}", path.display()), e))?;
    Ok(UdsListener {
        listener,
        path,
        dir,
        id: (m.dev(), m.ino()),
    })
}

/// Checks a socket path before connecting: its directory is safe and the
/// file is a socket owned by the node's user.
pub fn check_socket(path: &Path) -> Result<(), String> {
    let dir = path.parent().ok_or("no directory")?;
    check_dir(dir).map_err(|r| format!("directory {}: {r}", dir.display()))?;
    let m = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if !m.file_type().is_socket() {
        return Err("not a socket".into());
    }
    let uid = my_uid();
    if m.uid() != uid {
        return Err(format!(
            "owned by uid {}, not this node's uid {uid}",
            m.uid()
        ));
    }
    Ok(())
}

/// Connects to the socket path carried in a transport's Extra, after
/// [`check_socket`], and checks the listener's credentials.
pub(crate) async fn connect(extra: &[u8]) -> Result<UnixStream, TransportError> {
    let path = std::str::from_utf8(extra).map_err(|_| TransportError::BadUdsPath)?;
    if !path.starts_with('/') || path.len() > MAX_PATH - 1 {
        return Err(TransportError::BadUdsPath);
    }
    let p = Path::new(path);
    match std::fs::symlink_metadata(p) {
        // A missing socket is unreachable (a stale registration), not a
        // security failure: another transport may be tried.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TransportError::io(format!("connect to {path}"), e))
        }
        _ => check_socket(p).map_err(|r| unsafe_dir(p, r))?,
    }
    let s = UnixStream::connect(path)
        .await
        .map_err(|e| TransportError::io(format!("connect to {path}"), e))?;
    let cred = s
        .peer_cred()
        .map_err(|e| TransportError::io(format!("peer credentials of {path}"), e))?;
    if cred.uid() != my_uid() {
        return Err(unsafe_dir(
            p,
            format!(
                "listening process runs as uid {}, not this node's uid {}",
                cred.uid(),
                my_uid()
            ),
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::chown;

    const NOBODY: u32 = 65534;

    fn tmp() -> PathBuf {
        let base = std::env::temp_dir().join(format!(
            "erldist-uds-unit-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        base
    }

    fn rand_suffix() -> u32 {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).unwrap();
        u32::from_ne_bytes(b)
    }

    fn is_root() -> bool {
        my_uid() == 0
    }

    /// The cases with another user's files need root (to chown to
    /// `nobody`); they fail rather than pass without checking anything.
    fn need_root() {
        assert!(
            is_root(),
            "this test needs root to create files owned by another user (nobody)"
        );
    }

    #[test]
    fn default_prefers_xdg_then_run_user_then_tmp() {
        let base = tmp();
        let run_user = base.join("run-user");
        std::fs::create_dir_all(&run_user).unwrap();
        let tmpd = base.join("tmp");
        let xdg = base.join("xdg");
        assert_eq!(
            default_dir_in(Some(xdg.clone()), &run_user, &tmpd),
            xdg.join("erldist")
        );
        // A relative XDG_RUNTIME_DIR is invalid by the spec: ignored.
        assert_eq!(
            default_dir_in(Some("rel".into()), &run_user, &tmpd),
            tmpd.join(format!("erldist-{}", my_uid()))
        );
        // No /run/user/<uid>: the temp directory.
        assert_eq!(
            default_dir_in(None, &run_user, &tmpd),
            tmpd.join(format!("erldist-{}", my_uid()))
        );
        // /run/user/<uid> of ours: used.
        let mine = run_user.join(my_uid().to_string());
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&mine)
            .unwrap();
        assert_eq!(default_dir_in(None, &run_user, &tmpd), mine.join("erldist"));
        need_root();
        {
            // Another user's /run/user/<uid> (e.g. pre-created): not used.
            chown(&mine, Some(NOBODY), None).unwrap();
            assert_eq!(
                default_dir_in(None, &run_user, &tmpd),
                tmpd.join(format!("erldist-{}", my_uid()))
            );
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[tokio::test]
    async fn precreated_default_dir_falls_back_to_a_fresh_private_one() {
        need_root();
        let base = tmp();
        let planted = base.join(format!("erldist-{}", my_uid()));
        std::fs::DirBuilder::new()
            .mode(0o777)
            .create(&planted)
            .unwrap();
        chown(&planted, Some(NOBODY), Some(NOBODY)).unwrap();
        // As a default directory: a fresh one is used instead.
        let l = bind_in(&planted, "n1", true, &base).await.unwrap();
        assert_ne!(l.dir, std::fs::canonicalize(&planted).unwrap());
        let name = l.dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(&format!("erldist-{}-", my_uid())),
            "{name}"
        );
        let m = std::fs::metadata(&l.dir).unwrap();
        assert_eq!(m.uid(), my_uid());
        assert_eq!(m.permissions().mode() & 0o777, 0o700);
        assert!(l.path.starts_with(&l.dir));
        // The planted directory was left alone and is still another user's.
        assert_eq!(std::fs::metadata(&planted).unwrap().uid(), NOBODY);
        drop(l);
        // Given explicitly, the same directory is an error naming it.
        let e = bind_in(&planted, "n2", false, &base).await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, TransportError::UdsUnsafe { .. }), "{msg}");
        assert!(msg.contains(&planted.display().to_string()), "{msg}");
        assert!(msg.contains("owned by uid 65534"), "{msg}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[tokio::test]
    async fn symlink_planted_by_another_user_is_refused() {
        need_root();
        let base = tmp();
        let real = base.join("real");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&real)
            .unwrap();
        let link = base.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(NOBODY), None).unwrap();
        let e = check_dir(&link).unwrap_err();
        assert!(e.contains("owned by uid 65534"), "{e}");
        let e = bind_in(&link, "n", false, &base).await.unwrap_err();
        assert!(matches!(e, TransportError::UdsUnsafe { .. }), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[tokio::test]
    async fn own_open_directory_is_narrowed_at_bind() {
        let base = tmp();
        let d = base.join("open");
        std::fs::DirBuilder::new().mode(0o777).create(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let l = bind_in(&d, "n", false, &base).await.unwrap();
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        drop(l);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[tokio::test]
    async fn world_writable_while_running_refuses_accept_and_connect() {
        let base = tmp();
        let d = base.join("run");
        let l = bind_in(&d, "n", false, &base).await.unwrap();
        let extra = l.path.as_os_str().as_encoded_bytes().to_vec();
        // Safe: a connection is accepted.
        let (c, a) = tokio::join!(connect(&extra), l.accept());
        c.unwrap();
        a.unwrap();
        // Made world-writable: the client refuses before connecting ...
        std::fs::set_permissions(&l.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = connect(&extra).await.unwrap_err();
        assert!(matches!(e, TransportError::UdsUnsafe { .. }), "{e}");
        assert!(e.to_string().contains("writable by other users"), "{e}");
        assert!(!e.allows_failover());
        // ... and the listener refuses what connects anyway (a raw
        // connect), so accept() does not return it.
        let _raw = UnixStream::connect(&l.path).await.unwrap();
        let r = tokio::time::timeout(std::time::Duration::from_millis(300), l.accept()).await;
        assert!(r.is_err(), "accepted while the directory was unsafe");
        // Safe again: accepted.
        std::fs::set_permissions(&l.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let (c, a) = tokio::join!(connect(&extra), l.accept());
        c.unwrap();
        a.unwrap();
        drop(l);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[tokio::test]
    async fn socket_of_another_user_is_refused() {
        need_root();
        let base = tmp();
        let d = base.join("planted");
        let l = bind_in(&d, "n", false, &base).await.unwrap();
        let extra = l.path.as_os_str().as_encoded_bytes().to_vec();
        // Another user's socket file in our directory.
        std::os::unix::fs::lchown(&l.path, Some(NOBODY), None).unwrap();
        let e = connect(&extra).await.unwrap_err();
        assert!(matches!(e, TransportError::UdsUnsafe { .. }), "{e}");
        assert!(e.to_string().contains("owned by uid 65534"), "{e}");
        drop(l);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[tokio::test]
    async fn replaced_or_deleted_socket_is_no_longer_ours() {
        let base = tmp();
        let d = base.join("gone");
        let l = bind_in(&d, "n", false, &base).await.unwrap();
        assert!(l.still_ours());
        std::fs::remove_file(&l.path).unwrap();
        assert!(!l.still_ours());
        // Someone else binds the same path: still not ours, and dropping
        // our listener leaves their socket in place.
        let other = UnixListener::bind(&l.path).unwrap();
        assert!(!l.still_ours());
        let path = l.path.clone();
        drop(l);
        assert!(path.exists());
        drop(other);
        // A missing socket is "unreachable" (failover allowed), not unsafe.
        std::fs::remove_file(&path).unwrap();
        let e = connect(path.as_os_str().as_encoded_bytes())
            .await
            .unwrap_err();
        assert!(e.allows_failover(), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
