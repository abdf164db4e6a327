//! The Debian package (docs/operations.md §2): `cargo deb -p epmdx` builds
//! `epmdx_<version>_<arch>.deb` with both binaries, the Erlang adapter's
//! modules and the systemd units, which `systemd-analyze verify` accepts;
//! the packaged binary runs and the packaged modules load in OTP.
//!
//! It reads the documented commands (docs/operations.md, block `debian
//! package`) and runs them, but to stay fast it packages the binaries this
//! test run was built with: it stages them as a `release` build in a
//! scratch target directory and runs `cargo deb --no-build --strip` there
//! (seconds), instead of a release build (minutes). Needs `cargo-deb` (scripts/test.sh installs it),
//! `dpkg-deb`, `systemd-analyze`, `erlc`/`erl`, and `target/<profile>/erldist`
//! (`cargo build --bins`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use test_support::erl::TempDir;
use test_support::{free_port, names_answers, wait_until};

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) -> Result<Output> {
    let o = cmd.output().with_context(|| format!("{cmd:?}"))?;
    ensure!(
        o.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(o)
}

/// docs/operations.md's package-build block, as commands.
fn doc_commands() -> Result<Vec<test_support::docs::Command>> {
    let body = test_support::docs::block("docs/operations.md", "debian package")?;
    test_support::docs::commands(&body)
}

#[test]
fn debian_package_contents_units_and_binaries() -> Result<()> {
    // The documented commands, run with two changes: the release build is
    // replaced by staging this run's binaries (same names, same place under
    // a scratch target directory), and `cargo deb` gets `--fast --strip -o`.
    let doc = doc_commands()?;
    ensure!(doc.len() == 3, "the package block changed: {doc:?}");
    let [adapter, build, package] = [&doc[0], &doc[1], &doc[2]];
    ensure!(
        adapter.words == ["bash", "erlang/build.sh", "target/release/erlang/ebin"],
        "{adapter:?}"
    );
    ensure!(
        build.words[..3] == ["cargo", "build", "--release"],
        "{build:?}"
    );
    let bins: Vec<&str> = build
        .words
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1].as_str())
        .collect();
    ensure!(bins == ["epmdx", "erldist"], "{build:?}");
    ensure!(
        package.words == ["cargo", "deb", "-p", "epmdx", "--no-build"],
        "{package:?}"
    );

    let scratch = TempDir::new("deb")?;
    let staged = scratch.path().join("target/release");
    std::fs::create_dir_all(&staged)?;
    for bin in bins {
        let from = target_dir().join(bin);
        ensure!(
            from.exists(),
            "{} not found: run `cargo build --bins` first",
            from.display()
        );
        std::fs::copy(&from, staged.join(bin))?;
    }
    let ebin = adapter.words[2].replace("target/release", &staged.display().to_string());
    run(Command::new(&adapter.words[0])
        .arg(&adapter.words[1])
        .arg(ebin)
        .current_dir(repo_root()))?;
    let out_dir = scratch.path().join("out");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let deb = run(Command::new(&cargo)
        .args(&package.words[1..])
        .args(["--fast", "--strip", "-o"])
        .arg(&out_dir)
        .current_dir(repo_root())
        .env("CARGO_TARGET_DIR", scratch.path().join("target")))
    .context("cargo deb (install it with `cargo install cargo-deb --locked`)")?;
    let printed = String::from_utf8_lossy(&deb.stdout);

    let version = env!("CARGO_PKG_VERSION");
    let arch = String::from_utf8(run(Command::new("dpkg").arg("--print-architecture"))?.stdout)?;
    let arch = arch.trim();
    let file = out_dir.join(format!("epmdx_{version}_{arch}.deb"));
    ensure!(
        file.exists(),
        "no {} (cargo deb said {printed})",
        file.display()
    );

    let info = String::from_utf8(run(Command::new("dpkg-deb").arg("-I").arg(&file))?.stdout)?;
    for field in [
        "Package: epmdx".to_owned(),
        format!("Version: {version}"),
        format!("Architecture: {arch}"),
    ] {
        ensure!(
            info.lines().any(|l| l.trim() == field),
            "no {field}:\n{info}"
        );
    }
    // No maintainer scripts: nothing diverts or replaces OTP's epmd, and
    // nothing enables the units behind the operator's back.
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        ensure!(!info.contains(script), "unexpected {script}:\n{info}");
    }
    ensure!(
        !info.contains("Conflicts:") && !info.contains("Replaces:"),
        "{info}"
    );

    let list = String::from_utf8(run(Command::new("dpkg-deb").arg("-c").arg(&file))?.stdout)?;
    let entry = |path: &str| {
        list.lines()
            .find(|l| l.ends_with(&format!(" ./{path}")))
            .map(str::to_owned)
    };
    for bin in ["usr/bin/epmdx", "usr/bin/erldist"] {
        let line = entry(bin).with_context(|| format!("no {bin}:\n{list}"))?;
        ensure!(line.starts_with("-rwxr-xr-x"), "{line}");
    }
    let bins: Vec<&str> = list
        .lines()
        .filter(|l| l.contains(" ./usr/bin/") && !l.ends_with('/'))
        .collect();
    ensure!(
        bins.len() == 2,
        "only epmdx and erldist in /usr/bin: {bins:?}"
    );
    let mut modules = Vec::new();
    for e in std::fs::read_dir(repo_root().join("erlang/src"))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "erl") {
            let m = p.file_stem().unwrap().to_string_lossy().into_owned();
            let path = format!("usr/lib/epmdx/ebin/{m}.beam");
            ensure!(entry(&path).is_some(), "no {path}:\n{list}");
            modules.push(m);
        }
    }
    ensure!(modules.iter().any(|m| m == "epmdx_epmd"));
    for unit in ["epmdx.socket", "epmdx.service"] {
        let path = format!("lib/systemd/system/{unit}");
        ensure!(entry(&path).is_some(), "no {path}:\n{list}");
    }

    // Unpacked: the units verify against the package's own files, the
    // binary serves, the modules load.
    let root = scratch.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&file).arg(&root))?;
    let socket = std::fs::read_to_string(root.join("lib/systemd/system/epmdx.socket"))?;
    ensure!(socket.lines().any(|l| l == "ListenStream=4369"), "{socket}");
    let service = std::fs::read_to_string(root.join("lib/systemd/system/epmdx.service"))?;
    ensure!(
        service
            .lines()
            .any(|l| l == "ExecStart=/usr/bin/epmdx -systemd"),
        "{service}"
    );
    // --root: ExecStart= resolves inside the unpacked package;
    // --recursive-errors=no: the root has no sysinit.target etc.
    run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("--recursive-errors=no")
        .arg("lib/systemd/system/epmdx.socket")
        .arg("lib/systemd/system/epmdx.service"))?;

    let port = free_port();
    let mut daemon = Command::new(root.join("usr/bin/epmdx"))
        .args(["-port", &port.to_string()])
        .env_remove("ERL_EPMD_PORT")
        .spawn()?;
    let up = wait_until(Duration::from_secs(10), || names_answers(port));
    let _ = daemon.kill();
    let _ = daemon.wait();
    ensure!(up, "packaged epmdx did not answer on {port}");
    let help = run(Command::new(root.join("usr/bin/erldist")).arg("--help"))?;
    ensure!(String::from_utf8_lossy(&help.stdout).contains("serve"));

    let ebin = root.join("usr/lib/epmdx/ebin");
    let expr = format!(
        "[{{module, _}} = code:load_file(M) || M <- [{}]], io:format(\"loaded~n\"), halt().",
        modules.join(",")
    );
    let o = run(Command::new("erl")
        .args(["-noshell", "-pa"])
        .arg(&ebin)
        .args(["-eval", &expr]))?;
    ensure!(
        String::from_utf8_lossy(&o.stdout).contains("loaded"),
        "{o:?}"
    );
    Ok(())
}
