use super::*;
use crate::store::Inspection;

fn seen(exists: bool, applied: &[i64], writable: Result<(), &str>) -> Inspection {
    Inspection {
        location: "/srv/m.db".into(),
        exists,
        applied: applied.to_vec(),
        known: vec![1, 2, 3],
        writable: writable.map_err(str::to_string),
    }
}

#[test]
fn database_verdicts() {
    for (i, ok, want) in [
        (
            seen(true, &[1, 2, 3], Ok(())),
            true,
            "migrations current (3)",
        ),
        (seen(true, &[1, 2], Ok(())), true, "1 migration(s) to apply"),
        (
            seen(true, &[1, 2, 3, 4], Ok(())),
            false,
            "newer ppsync (migration 4",
        ),
        (
            seen(true, &[1, 2, 3], Err("readonly")),
            false,
            "not writable (readonly)",
        ),
        (seen(false, &[], Ok(())), true, "not created yet"),
        (
            seen(false, &[], Err("no dir")),
            false,
            "cannot be created (no dir)",
        ),
    ] {
        let c = database_verdict(&i);
        assert_eq!(c.ok, ok, "{i:?}: {c:?}");
        assert!(c.detail.contains(want), "{i:?}: {c:?}");
        assert!(c.detail.starts_with("/srv/m.db"), "{c:?}");
        assert!(!c.transient);
    }
}

#[test]
fn credentials_verdicts() {
    use crate::api::Error;
    let cases: Vec<(Result<(), Error>, bool, bool)> = vec![
        (Ok(()), true, false),
        (Err(Error::Deferred), true, false),
        (Err(Error::NoCredentials), false, false),
        (Err(Error::Unauthorized), false, false),
        (
            Err(Error::Server {
                path: "users/me".into(),
                status: 503,
                body: String::new(),
            }),
            false,
            true,
        ),
        (
            Err(Error::Client {
                path: "users/me".into(),
                status: 403,
                body: String::new(),
            }),
            false,
            false,
        ),
    ];
    for (answer, ok, transient) in cases {
        let shown = format!("{answer:?}");
        let c = credentials_verdict(answer);
        assert_eq!((c.ok, c.transient), (ok, transient), "{shown}: {c:?}");
    }
}

#[test]
fn command_programs() {
    for (cmd, want) in [
        (
            "/usr/bin/logger -t ppsync",
            Program::Path("/usr/bin/logger".into()),
        ),
        ("./hooks/n.sh", Program::Path("./hooks/n.sh".into())),
        ("curl -s https://x", Program::Name("curl".into())),
        ("  jq .", Program::Name("jq".into())),
        ("cat > /tmp/x", Program::Name("cat".into())),
        ("echo hi", Program::Builtin("echo".into())),
        ("true", Program::Builtin("true".into())),
        ("'/opt/my hooks/n.sh'", Program::Unknown),
        ("$HOME/n.sh", Program::Unknown),
        ("X=1 n.sh", Program::Unknown),
        ("(cd /tmp && n.sh)", Program::Unknown),
        ("", Program::Unknown),
    ] {
        assert_eq!(command_program(cmd), want, "{cmd}");
    }
}
