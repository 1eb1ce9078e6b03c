//! Packaging: the systemd unit in deploy/ passes `systemd-analyze verify` with the built binary,
//! and the completions and man page come out of the CLI's definition.

use std::path::Path;
use std::process::Command;

/// The subcommands every generated document must name.
const SUBCOMMANDS: &[&str] = &["sync", "status", "run", "export", "health", "completions"];

fn ppsync(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ppsync"))
        .args(args)
        .env_remove("PPSYNC_LOG")
        .output()
        .expect("ppsync runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_systemd_unit_verifies_with_the_built_binary() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/ppsync.service"),
    )
    .expect("deploy/ppsync.service");
    for setting in [
        "DynamicUser=yes",
        "StateDirectory=ppsync",
        "ProtectSystem=strict",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "LoadCredential=ppsync.toml:/etc/ppsync/ppsync.toml",
    ] {
        assert!(
            unit.lines().any(|l| l == setting),
            "{setting} missing from the unit"
        );
    }
    let installed = "ExecStart=/usr/local/bin/ppsync ";
    assert_eq!(unit.matches(installed).count(), 1, "one ExecStart");
    let Ok(found) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: the unit was not verified");
        return;
    };
    assert!(found.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ppsync.service");
    let bin = env!("CARGO_BIN_EXE_ppsync");
    std::fs::write(&path, unit.replace(installed, &format!("ExecStart={bin} "))).unwrap();
    // --man=no: Documentation= names ppsync(1), which is not installed on a build machine (the
    // page itself is checked below).
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(!stderr.contains("ppsync.service"), "{stderr}");

    // Verify does look at the unit: a misspelt setting fails it.
    std::fs::write(
        &path,
        unit.replace(installed, &format!("ExecStart={bin} "))
            .replace("ProtectSystem=strict", "ProtectSystem=strickt"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("strickt"), "{stderr}");
}

#[test]
fn completions_and_the_man_page_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, out, err) = ppsync(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        for sub in SUBCOMMANDS {
            assert!(out.contains(sub), "{shell} completions lack {sub}");
        }
        assert!(out.contains("config"), "{shell}: the global options too");
    }
    let (code, out, err) = ppsync(&["completions", "tcsh"]);
    assert_eq!(code, 2);
    assert!(out.is_empty() && err.contains("tcsh"), "{err}");

    let (code, page, err) = ppsync(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH ppsync 1"), "{page}");
    assert!(page.contains(".SH SUBCOMMANDS"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!("ppsync\\-{sub}")),
            "the page lacks {sub}"
        );
    }
}
