//! What ships and what CI checks: the release image's binary leaves the load generator
//! out, and `.ci/run` refuses a machine that cannot lint.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The feature flags of the Dockerfile's `cargo build` line.
fn dockerfile_feature_flags() -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("cargo build"))
        .expect("the Dockerfile builds with cargo");
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut flags = Vec::new();
    for (i, w) in words.iter().enumerate() {
        match *w {
            "--no-default-features" | "--all-features" => flags.push((*w).to_owned()),
            "--features" | "-F" => flags.extend([(*w).to_owned(), words[i + 1].to_owned()]),
            _ if w.starts_with("--features=") => flags.push((*w).to_owned()),
            _ => {}
        }
    }
    flags
}

/// The crates that the `parlor` binary links, built with `flags`.
fn linked_crates(flags: &[String]) -> String {
    let out = Command::new(env!("CARGO"))
        .current_dir(ROOT)
        .args(["tree", "--locked", "-p", "parlor"])
        .args(["-e", "normal", "--prefix", "none"])
        .args(flags)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_release_image_leaves_the_load_generator_out_and_cargo_run_keeps_it() {
    let image = linked_crates(&dockerfile_feature_flags());
    assert!(image.contains("parlor-server"), "{image}");
    for c in ["parlor-bench", "plotters", "hdrhistogram"] {
        assert!(
            !image.lines().any(|l| l.starts_with(&format!("{c} "))),
            "the release image links {c}"
        );
    }
    // The default build, which `cargo run` gives, still has `parlor bench`.
    assert!(linked_crates(&[]).contains("parlor-bench"));
    let help = Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(["bench", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
}

/// Runs `.ci/run`'s machine checks with a `cargo` that lacks `missing` (if any). The shim
/// answers only `--version` questions, so the script can do nothing else with it.
fn ci_preflight(missing: Option<&str>) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let shim = dir.path().join("cargo");
    let refuse = missing.map_or(String::new(), |m| {
        format!("[ \"$1\" = {m} ] && {{ echo \"error: no such command: {m}\" >&2; exit 101; }}\n")
    });
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\n{refuse}[ \"$2\" = --version ] || {{ echo \"shim: refused $*\" >&2; exit 97; }}\nexec {} \"$@\"\n",
            env!("CARGO")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    Command::new("bash")
        .arg(Path::new(ROOT).join(".ci/run"))
        .env("PATH", path)
        .env("CI_PREFLIGHT_ONLY", "1")
        .output()
        .unwrap()
}

#[test]
fn ci_fails_on_a_machine_without_rustfmt_or_clippy() {
    for tool in ["fmt", "clippy"] {
        let out = ci_preflight(Some(tool));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "CI passed without cargo {tool}");
        assert!(err.contains(&format!("cargo {tool} is required")), "{err}");
    }
    let out = ci_preflight(None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("preflight ok"));
}
