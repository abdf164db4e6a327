//! Logging in the C epmd's shape: in the foreground, stderr lines
//! `epmd: {ctime}: {message}\r\n`; once daemonised, syslog at LOG_ERR as
//! `epmd: {message}`.
//!
//! Levels follow `-d`: without it only refusals and errors (the C server's
//! level 0) are shown; `-d` adds registrations, `-d -d` connections.
//! `RUST_LOG` overrides the filter.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

static DAEMONIZED: AtomicBool = AtomicBool::new(false);
static INIT: Once = Once::new();

/// Installs the subscriber (first call), or switches output to syslog
/// (`daemon = true`, after the fork).
pub(crate) fn init(debug: u8, daemon: bool) {
    if daemon {
        // SAFETY: the identifier is a static C string that outlives the process.
        unsafe { libc::openlog(c"epmd".as_ptr(), 0, libc::LOG_DAEMON) };
        DAEMONIZED.store(true, Ordering::SeqCst);
    }
    INIT.call_once(|| {
        let level = match debug {
            0 => "warn",
            1 => "debug",
            _ => "trace",
        };
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .event_format(EpmdFormat)
            .with_writer(LogWriter)
            .try_init();
    });
}

/// `epmd: {ctime}: ` in the foreground, nothing extra for syslog.
struct EpmdFormat;

impl<S, N> FormatEvent<S, N> for EpmdFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        if !DAEMONIZED.load(Ordering::Relaxed) {
            write!(writer, "epmd: {}: ", ctime_now())?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span
                    .extensions()
                    .get::<tracing_subscriber::fmt::FormattedFields<N>>()
                {
                    if !fields.is_empty() {
                        write!(writer, " [{fields}]")?;
                    }
                }
            }
        }
        writer.write_str("\r\n")
    }
}

/// `ctime(3)` without its newline, e.g. `Tue Nov  3 09:00:04 2015`.
fn ctime_now() -> String {
    // SAFETY: time/localtime_r/strftime write only into buffers we own.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        let mut buf = [0u8; 64];
        let n = libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%a %b %e %H:%M:%S %Y".as_ptr(),
            &tm,
        );
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// Routes each formatted event to stderr or syslog.
struct LogWriter;

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter(Vec::new())
    }
}

/// Buffers one event and emits it whole when dropped.
struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if DAEMONIZED.load(Ordering::Relaxed) {
            let text = String::from_utf8_lossy(&self.0);
            let line = text.trim_end_matches(['\r', '\n']).replace('\0', "");
            if let Ok(c) = std::ffi::CString::new(format!("epmd: {line}")) {
                // SAFETY: "%s" with a valid NUL-terminated string.
                unsafe { libc::syslog(libc::LOG_ERR, c"%s".as_ptr(), c.as_ptr()) };
            }
        } else {
            let _ = io::stderr().write_all(&self.0);
        }
    }
}
