//! Where the `wssd` binary is, for tests outside the package that owns it.
//!
//! The binary belongs to the `wssd-cli` package (cli/), so
//! `env!("CARGO_BIN_EXE_wssd")` exists only in cli's own tests. Every other
//! test runs `target/<profile>/wssd`, beside its own `deps/` directory.
//! `cargo test` at the root (all members are default members) and
//! `make test` build it before any test runs (cargo builds a package's
//! binaries for its integration tests, and cli/tests/ has some);
//! `cargo test --test NAME` or `cargo test -p wssd` alone do not, so a
//! binary that is missing or older than the sources fails the test with
//! what to run instead of silently testing old code. Part of tests/support;
//! bench/tests/bench_support includes it too (through `#[path]`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

/// The path of the built `wssd` binary, checked to be present and fresh.
pub fn wssd_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        locate()
            .into_os_string()
            .into_string()
            .expect("a UTF-8 path to the wssd binary")
    })
}

fn locate() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/wssd
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let bin = dir.join("wssd");
    let hint = "build it with `cargo build` (add --release for release tests), or run \
                `cargo test` at the workspace root / `make test`, which build it first";
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{} is missing ({e}): {hint}", bin.display()));
    let root = workspace_root();
    for dir in ["src", "cli/src", "bench/src"] {
        if let Some((newest, path)) = newest_file(&root.join(dir)) {
            assert!(
                newest <= built,
                "{} is older than {}: {hint}",
                bin.display(),
                path.display()
            );
        }
    }
    bin
}

/// The workspace root: the manifest directory of the root package, or the
/// parent of a member's.
fn workspace_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("cli").join("Cargo.toml").exists() {
        assert!(
            dir.pop(),
            "no workspace root above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    }
    dir
}

/// The most recently modified file under `dir` and its time.
fn newest_file(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if let Ok(t) = meta.modified() {
                if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                    newest = Some((t, path));
                }
            }
        }
    }
    newest
}
