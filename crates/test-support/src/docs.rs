//! The documents' command blocks, read the way their tests run them.
//!
//! Every fenced shell block (```` ```sh ````) in README.md, CONTRIBUTING.md,
//! `docs/*.md` and `examples/*/README.md` carries a marker on the line just
//! above its fence:
//!
//! - `<!-- tested: NAME (path/to/test.rs) -->`: that test file reads the
//!   block by NAME with [`block`] and runs it;
//! - `<!-- not run: REASON -->`: the block is not run, for the reason given
//!   (it binds port 4369, it is the test suite itself, it needs systemd as
//!   PID 1, ...).
//!
//! `crates/test-support/tests/doc_blocks.rs` fails on an unmarked shell
//! block and on a `tested` marker whose file does not name the block, so a
//! new command in the docs cannot go untested by accident.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/test-support is two levels below the root")
        .to_path_buf()
}

/// What the line above a fenced block says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// `<!-- tested: NAME (FILE) -->`.
    Tested {
        /// The block's name, as the test asks for it.
        name: String,
        /// The test file, relative to the repository root.
        file: String,
    },
    /// `<!-- not run: REASON -->`.
    NotRun(String),
    /// No marker.
    None,
}

/// One fenced block of a document.
#[derive(Debug, Clone)]
pub struct Block {
    /// 1-based line of the opening fence.
    pub line: usize,
    /// The fence's language tag (`sh`, `erlang`, empty, ...).
    pub lang: String,
    /// What the line above says.
    pub marker: Marker,
    /// The lines between the fences, each ending in a newline.
    pub body: String,
}

fn parse_marker(line: &str) -> Marker {
    let l = line.trim();
    let Some(inner) = l.strip_prefix("<!--").and_then(|r| r.strip_suffix("-->")) else {
        return Marker::None;
    };
    let inner = inner.trim();
    if let Some(reason) = inner.strip_prefix("not run:") {
        return Marker::NotRun(reason.trim().to_owned());
    }
    if let Some(rest) = inner.strip_prefix("tested:") {
        let rest = rest.trim();
        if let (Some(open), true) = (rest.rfind(" ("), rest.ends_with(')')) {
            return Marker::Tested {
                name: rest[..open].trim().to_owned(),
                file: rest[open + 2..rest.len() - 1].to_owned(),
            };
        }
    }
    Marker::None
}

/// Every fenced block of the document at `rel` (relative to the root).
pub fn blocks(rel: &str) -> Result<Vec<Block>> {
    let path = repo_root().join(rel);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let marker = if i > 0 {
            parse_marker(lines[i - 1])
        } else {
            Marker::None
        };
        let start = i;
        let mut body = String::new();
        i += 1;
        while i < lines.len() && !lines[i].trim_start().starts_with("```") {
            body.push_str(lines[i]);
            body.push('\n');
            i += 1;
        }
        if i == lines.len() {
            bail!("{rel}:{}: unclosed fence", start + 1);
        }
        out.push(Block {
            line: start + 1,
            lang: lang.trim().to_owned(),
            marker,
            body,
        });
        i += 1;
    }
    Ok(out)
}

/// The body of the block of `rel` marked `tested: name`.
pub fn block(rel: &str, name: &str) -> Result<String> {
    blocks(rel)?
        .into_iter()
        .find(|b| matches!(&b.marker, Marker::Tested { name: n, .. } if n == name))
        .map(|b| b.body)
        .with_context(|| format!("{rel} has no block marked `tested: {name}`"))
}

/// Splits one shell command line into words: whitespace, `'...'`, `"..."`
/// and backslashes (a backslash-newline joins lines). `$VAR` is kept as
/// written; callers substitute what they need.
pub fn shell_words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\'' => {
                have = true;
                loop {
                    match it.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => bail!("unclosed ' in {s}"),
                    }
                }
            }
            '"' => {
                have = true;
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some('\\') => {
                            if let Some(x) = it.next() {
                                cur.push(x);
                            }
                        }
                        Some(x) => cur.push(x),
                        None => bail!("unclosed \" in {s}"),
                    }
                }
            }
            '\\' => match it.next() {
                Some('\n') | None => {}
                Some(x) => {
                    have = true;
                    cur.push(x);
                }
            },
            c if c.is_whitespace() => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            c => {
                have = true;
                cur.push(c);
            }
        }
    }
    if have {
        out.push(cur);
    }
    Ok(out)
}

/// One command of a shell block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The words, program first.
    pub words: Vec<String>,
    /// The line ended in `&` (run in the background).
    pub background: bool,
    /// The trailing `# ...` comment, which the docs use for the expected
    /// output.
    pub comment: String,
    /// The comment-only lines right below the command (up to a blank line
    /// or the next command), `# ` cut off: the docs' expected output when
    /// it takes several lines.
    pub output: Vec<String>,
}

impl Command {
    /// The command line re-joined for `sh`: plain words as they are (so a
    /// `*` still globs), words with `$` in double quotes (so `"$PWD/x"`
    /// still expands), anything else in single quotes.
    pub fn line(&self) -> String {
        let plain = |ch: char| ch.is_ascii_alphanumeric() || "-_./@:,=%+*".contains(ch);
        self.words
            .iter()
            .map(|w| {
                if !w.is_empty() && w.chars().all(plain) {
                    w.clone()
                } else if w.contains('$') && !w.contains(['"', '\\', '`']) {
                    format!("\"{w}\"")
                } else {
                    format!("'{}'", w.replace('\'', r"'\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Cuts a trailing ` # comment` that is outside quotes.
fn split_comment(line: &str) -> (&str, &str) {
    let (mut single, mut double) = (false, false);
    let b = line.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'#' if !single && !double && (i == 0 || b[i - 1].is_ascii_whitespace()) => {
                return (&line[..i], line[i + 1..].trim());
            }
            _ => {}
        }
    }
    (line, "")
}

/// The commands of a shell block: comment-only lines skipped,
/// backslash-continued lines joined, trailing comments and `&` split off,
/// the comment lines right below a command kept as its [`Command::output`].
pub fn commands(body: &str) -> Result<Vec<Command>> {
    let mut out: Vec<Command> = Vec::new();
    let mut pending = String::new();
    // Whether comment lines still belong to the last command's output.
    let mut in_output = false;
    for line in body.lines() {
        if pending.is_empty() && line.trim_start().starts_with('#') {
            if in_output {
                if let Some(last) = out.last_mut() {
                    let text = line.trim_start()[1..]
                        .strip_prefix(' ')
                        .unwrap_or(&line.trim_start()[1..]);
                    last.output.push(text.to_owned());
                }
            }
            continue;
        }
        if pending.is_empty() && line.trim().is_empty() {
            in_output = false;
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let (code, comment) = split_comment(&full);
        let mut code = code.trim();
        if code.is_empty() {
            continue;
        }
        let background = code.ends_with('&') && !code.ends_with("&&");
        if background {
            code = code[..code.len() - 1].trim_end();
        }
        out.push(Command {
            words: shell_words(code)?,
            background,
            comment: comment.to_owned(),
            output: Vec::new(),
        });
        in_output = true;
    }
    if !pending.is_empty() {
        bail!("block ends in a line continuation");
    }
    Ok(out)
}

/// The documents whose shell blocks must be marked.
pub fn documents() -> Result<Vec<String>> {
    let root = repo_root();
    let mut out = vec!["README.md".to_owned(), "CONTRIBUTING.md".to_owned()];
    let mut add_dir = |dir: &str, only: Option<&str>| -> Result<()> {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            return Ok(());
        };
        let mut found = Vec::new();
        for e in rd {
            let p = e?.path();
            match only {
                Some(f) => {
                    if p.join(f).is_file() {
                        found.push(format!(
                            "{dir}/{}/{f}",
                            p.file_name().unwrap().to_string_lossy()
                        ));
                    }
                }
                None => {
                    if p.extension().is_some_and(|x| x == "md") {
                        found.push(format!(
                            "{dir}/{}",
                            p.file_name().unwrap().to_string_lossy()
                        ));
                    }
                }
            }
        }
        found.sort();
        out.extend(found);
        Ok(())
    };
    add_dir("docs", None)?;
    add_dir("examples", Some("README.md"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        assert_eq!(
            parse_marker("<!-- tested: names3 (tests/adapter/tests/docs.rs) -->"),
            Marker::Tested {
                name: "names3".into(),
                file: "tests/adapter/tests/docs.rs".into()
            }
        );
        assert_eq!(
            parse_marker("<!-- not run: binds port 4369 -->"),
            Marker::NotRun("binds port 4369".into())
        );
        assert_eq!(parse_marker("text"), Marker::None);
    }

    #[test]
    fn commands_split_comments_continuations_and_background() {
        let cmds = commands(
            "# intro\nepmdx -daemon   # detach\nerl -sname a \\\n    -setcookie 'x # y' &\n",
        )
        .unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0].words, ["epmdx", "-daemon"]);
        assert_eq!(cmds[0].comment, "detach");
        assert!(!cmds[0].background);
        assert_eq!(cmds[1].words, ["erl", "-sname", "a", "-setcookie", "x # y"]);
        assert!(cmds[1].background);
        assert!(cmds[0].output.is_empty());
    }

    #[test]
    fn output_lines_below_a_command() {
        let cmds =
            commands("epmdx nodes\n# name s\n# name t\n\n# heading\nepmdx -names\n").unwrap();
        assert_eq!(cmds[0].output, ["name s", "name t"]);
        assert!(cmds[1].output.is_empty());
        assert_eq!(cmds[0].line(), "epmdx nodes");
        let c = &commands("erl -ssl_dist_optfile \"$PWD/x\" -e 'a b'\n").unwrap()[0];
        assert_eq!(c.line(), "erl -ssl_dist_optfile \"$PWD/x\" -e 'a b'");
    }
}

/// Does `actual` match `expected`, where every run of digits in `expected`
/// stands for any run of digits (ports, PIDs, creations differ per run)?
pub fn matches_output(expected: &str, actual: &str) -> bool {
    fn go(e: &[u8], a: &[u8]) -> bool {
        match e.first() {
            None => a.is_empty(),
            Some(c) if c.is_ascii_digit() => {
                let e_rest = e
                    .iter()
                    .position(|c| !c.is_ascii_digit())
                    .unwrap_or(e.len());
                let a_len = a
                    .iter()
                    .position(|c| !c.is_ascii_digit())
                    .unwrap_or(a.len());
                a_len > 0 && go(&e[e_rest..], &a[a_len..])
            }
            Some(c) => a.first() == Some(c) && go(&e[1..], &a[1..]),
        }
    }
    go(expected.trim().as_bytes(), actual.trim().as_bytes())
}

#[cfg(test)]
mod match_tests {
    use super::matches_output;

    #[test]
    fn digits_stand_for_any_digits() {
        assert!(matches_output(
            "name s at port 41531#inet_tcp",
            "name s at port 9#inet_tcp"
        ));
        assert!(!matches_output("name s at port 41531", "name s at port x"));
        assert!(!matches_output("pid 812 -> 2290", "pid 812 -> 2290, 3"));
    }
}

/// A shell in which a document's commands run as written: `epmdx` and
/// `erldist` on `PATH` are this build's, `ERL_EPMD_PORT` is a free private
/// port (never 4369), the working directory is a fresh temporary one, and
/// every background command and every `epmdx -daemon` it started is
/// stopped when it is dropped.
#[derive(Debug)]
pub struct Shell {
    dir: crate::erl::TempDir,
    port: u16,
    /// Every port a daemon of this shell may serve (killed on drop).
    ports: Vec<u16>,
    env: Vec<(String, String)>,
    subs: Vec<(String, String)>,
    children: Vec<crate::Background>,
}

impl Shell {
    /// A new shell with its own EPMD port.
    pub fn new(tag: &str) -> Result<Self> {
        let dir = crate::erl::TempDir::new(tag)?;
        let bin = dir.path().join(".bin");
        std::fs::create_dir_all(&bin)?;
        std::os::unix::fs::symlink(crate::epmdx_bin(), bin.join("epmdx"))?;
        std::os::unix::fs::symlink(crate::erldist_bin(), bin.join("erldist"))?;
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        let port = crate::free_port();
        let env = vec![
            ("PATH".into(), path),
            ("ERL_EPMD_PORT".into(), port.to_string()),
        ];
        Ok(Self {
            dir,
            port,
            ports: vec![port],
            env,
            subs: vec![("cargo run --release -p ".into(), "__cargo_run ".into())],
            children: Vec::new(),
        })
    }

    /// The shell's EPMD port (what `ERL_EPMD_PORT` says).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sets an environment variable for later commands.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// Replaces `from` by `to` in every later command line (a documented
    /// port such as `4370`, or an example path).
    pub fn substitute(&mut self, from: &str, to: &str) {
        self.subs.push((from.into(), to.into()));
    }

    /// Gives a port the document names (`4370`) a free private one in
    /// every later command line, and returns it.
    pub fn substitute_port(&mut self, documented: u16) -> u16 {
        let p = crate::free_port();
        self.substitute(&documented.to_string(), &p.to_string());
        self.ports.push(p);
        p
    }

    /// The command line as it will run: substitutions applied, and
    /// `cargo run --release -p PKG -- ARGS` turned into the binary it
    /// builds (the test runs this build's binary instead of rebuilding).
    pub fn localize(&self, line: &str) -> String {
        let mut s = line.to_owned();
        for (from, to) in &self.subs {
            s = s.replace(from, to);
        }
        for (pkg, bin) in [("epmdx", "epmdx"), ("erldist-cli", "erldist")] {
            s = s.replace(&format!("__cargo_run {pkg} --"), bin);
        }
        s
    }

    fn command(&self, line: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(self.localize(line))
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs one command line to completion (30 s deadline).
    pub fn run(&self, line: &str) -> Result<std::process::Output> {
        crate::run_with_timeout(&mut self.command(line), std::time::Duration::from_secs(30))
            .with_context(|| format!("running `{}`", self.localize(line)))
    }

    /// Runs one command line; it must exit 0. Returns its stdout.
    pub fn ok(&self, line: &str) -> Result<String> {
        let o = self.run(line)?;
        if !o.status.success() {
            bail!(
                "`{}` exited {:?}: {}{}",
                self.localize(line),
                o.status.code(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Starts one command line in the background (`exec`ed, so its PID is
    /// the program's); its output goes to `<dir>/bg-N.log`. Stopped by PID
    /// when the shell is dropped. Returns the log's path.
    pub fn spawn(&mut self, line: &str) -> Result<PathBuf> {
        let log = self
            .dir
            .path()
            .join(format!("bg-{}.log", self.children.len()));
        let f = std::fs::File::create(&log)?;
        let mut cmd = self.command(&format!("exec {line}"));
        // A pipe held open, so an interactive `erl` shell keeps running.
        cmd.stdin(std::process::Stdio::piped());
        cmd.stdout(f.try_clone()?).stderr(f);
        let child = crate::Background::spawn(&mut cmd)
            .with_context(|| format!("spawning `{}`", self.localize(line)))?;
        self.children.push(child);
        Ok(log)
    }

    /// Waits until the background log at `log` has a line satisfying
    /// `pred`, and returns it.
    pub fn wait_log_line(
        &self,
        log: &Path,
        timeout: std::time::Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let mut found = None;
        crate::wait_until(timeout, || {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            found = text.lines().find(|l| pred(l)).map(str::to_owned);
            found.is_some()
        });
        found.with_context(|| {
            format!(
                "no matching line in {}: {}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // Background commands first: a daemon without -relaxed_command_check
        // refuses -kill ("NO") while nodes are registered.
        self.children.clear();
        // Daemons detached with `epmdx -daemon` are not our children: stop
        // whatever serves the shell's ports with epmdx's own local -kill,
        // retried until the killed nodes' registrations are gone.
        for port in self.ports.clone() {
            crate::wait_until(std::time::Duration::from_secs(10), || {
                let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
                if !crate::names_answers_at(addr) {
                    return true;
                }
                let _ = crate::run_with_timeout(
                    &mut self.command(&format!("epmdx -port {port} -kill")),
                    std::time::Duration::from_secs(5),
                );
                false
            });
        }
    }
}

/// The blocks of `doc` marked `not run` whose reason names `file`: the test
/// in `file` checks them more cheaply than by running them (a benchmark's
/// flags, say).
pub fn not_run_blocks_naming(doc: &str, file: &str) -> Result<Vec<Block>> {
    Ok(blocks(doc)?
        .into_iter()
        .filter(|b| matches!(&b.marker, Marker::NotRun(r) if r.contains(file)))
        .collect())
}

/// The arguments of every invocation of the binary `bin` of package `pkg`
/// in `body`: `target/*/BIN ARGS`, `BIN ARGS`, or `cargo run ... -p PKG [--
/// ARGS]`.
pub fn invocations(body: &str, pkg: &str, bin: &str) -> Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for c in commands(body)? {
        let w = &c.words;
        let Some(first) = w.first() else { continue };
        if first == bin || first.ends_with(&format!("/{bin}")) {
            out.push(w[1..].to_vec());
        } else if w.len() >= 2 && first == "cargo" && w[1] == "run" {
            let is_pkg = w.windows(2).any(|p| p[0] == "-p" && p[1] == pkg);
            if is_pkg {
                let args = match w.iter().position(|x| x == "--") {
                    Some(i) => w[i + 1..].to_vec(),
                    None => Vec::new(),
                };
                out.push(args);
            }
        }
    }
    Ok(out)
}

/// Checks that every `--flag` of each invocation is listed by `exe
/// [SUBCOMMAND] --help` (a first argument that is not a flag is taken as
/// the subcommand). Returns how many flags were checked.
pub fn flags_in_help(exe: &Path, invocations: &[Vec<String>]) -> Result<usize> {
    let mut checked = 0;
    for args in invocations {
        let sub: Vec<&str> = args
            .first()
            .filter(|a| !a.starts_with('-'))
            .map(String::as_str)
            .into_iter()
            .collect();
        let mut cmd = std::process::Command::new(exe);
        cmd.args(&sub).arg("--help");
        let o = crate::run_with_timeout(&mut cmd, std::time::Duration::from_secs(10))?;
        let help = String::from_utf8_lossy(&o.stdout);
        if !o.status.success() {
            bail!(
                "{} {sub:?} --help exited {:?}",
                exe.display(),
                o.status.code()
            );
        }
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            let flag = flag.split('=').next().unwrap_or(flag);
            let listed = help
                .split(|c: char| c.is_whitespace() || c == ',')
                .any(|w| w == flag);
            if !listed {
                bail!(
                    "`{} {}` uses {flag}, which `{} {sub:?} --help` does not list:\n{help}",
                    exe.display(),
                    args.join(" "),
                    exe.display()
                );
            }
            checked += 1;
        }
    }
    Ok(checked)
}
