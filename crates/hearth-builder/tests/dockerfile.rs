//! The Dockerfile parser through the public API: a realistic file, and the
//! errors a user sees, each naming its line.
#![allow(clippy::unwrap_used)]

use hearth_builder::dockerfile::{CommandLine, Dockerfile, DockerfileError, Instruction};

const REALISTIC: &str = r#"# syntax=docker/dockerfile:1
# escape=\
ARG PYTHON=3.11

FROM --platform=$BUILDPLATFORM debian:12 AS base
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8
RUN apt-get update \
 # comments inside a continuation vanish
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/*

FROM base AS app
ARG PYTHON
WORKDIR /srv/app
COPY --chown=1000:1000 requirements.txt ./
COPY ["src dir/", "/srv/app/src/"]
ADD vendor.tar.gz /opt/vendor/
LABEL maintainer="team@example.com" version="${PYTHON:-3}"
EXPOSE 8080/tcp
USER 1000
HEALTHCHECK_DISABLED_BY_COMMENT=1
"#;

#[test]
fn a_realistic_dockerfile_parses_into_stages() {
    // The last line is not an instruction: drop it for the happy path.
    let text: String = REALISTIC
        .lines()
        .filter(|l| !l.starts_with("HEALTHCHECK"))
        .collect::<Vec<_>>()
        .join("\n");
    let df = Dockerfile::parse(&text).unwrap();

    assert_eq!(df.meta_args.len(), 1);
    assert_eq!(df.stages.len(), 2);
    assert_eq!(df.stages[0].name(), Some("base"));
    assert_eq!(
        df.stages[0].from.platform.as_deref(),
        Some("$BUILDPLATFORM")
    );
    assert_eq!(df.stages[1].from.image, "base");

    let run = &df.stages[0].steps[1];
    assert_eq!(run.line, 8);
    match &run.instruction {
        Instruction::Run(CommandLine::Shell(cmd)) => {
            assert!(
                cmd.starts_with("apt-get update  && apt-get install"),
                "{cmd}"
            );
            assert!(!cmd.contains("comments"));
        }
        other => panic!("{other:?}"),
    }
    let keywords: Vec<_> = df.stages[1]
        .steps
        .iter()
        .map(|s| s.instruction.keyword())
        .collect();
    assert_eq!(
        keywords,
        ["ARG", "WORKDIR", "COPY", "COPY", "ADD", "LABEL", "EXPOSE", "USER"]
    );
}

#[test]
fn unknown_word_on_a_late_line_is_reported_with_its_number() {
    let err = Dockerfile::parse(REALISTIC).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 22: unknown instruction HEALTHCHECK_DISABLED_BY_COMMENT=1"
    );
}

#[test]
fn every_unsupported_instruction_names_line_and_instruction() {
    for (instruction, rest) in [
        ("HEALTHCHECK", "CMD curl -f http://localhost/"),
        ("ONBUILD", "RUN echo"),
        ("VOLUME", "/data"),
        ("STOPSIGNAL", "SIGTERM"),
        ("MAINTAINER", "someone"),
    ] {
        let text = format!("FROM busybox\nRUN true\n\n# c\n\n\n{instruction} {rest}\n");
        let err = Dockerfile::parse(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("line 7: unsupported instruction {instruction}")
        );
        assert!(matches!(err, DockerfileError::Unsupported { line: 7, .. }));
    }
}

#[test]
fn syntax_errors_name_their_line() {
    let cases = [
        (
            "FROM a\nCOPY x\n",
            "line 2: COPY requires at least one source and a destination",
        ),
        (
            "FROM a\n\nRUN --network=none true\n",
            "line 3: RUN --network is not supported",
        ),
        (
            "FROM a\nENV\n",
            "line 2: ENV requires at least one argument",
        ),
        (
            "FROM a\nLABEL \"x\n",
            "line 2: LABEL \"x needs a value (NAME value or NAME=value)",
        ),
        (
            "FROM a\nUSER ${U:-x\n",
            "line 2: USER: bad substitution in \"${U:-x\"",
        ),
        (
            "# escape=^\nFROM a\n",
            "line 1: invalid escape directive \"^\" (expected \\ or `)",
        ),
        (
            "FROM a AS x\nFROM b AS x\n",
            "line 2: duplicate stage name x",
        ),
        ("COPY a b\n", "line 1: COPY before the first FROM"),
        (
            "FROM a\nSHELL sh -c\n",
            "line 2: SHELL requires a JSON array such as [\"/bin/sh\", \"-c\"]",
        ),
    ];
    for (text, expected) in cases {
        let err = Dockerfile::parse(text).unwrap_err();
        assert_eq!(err.to_string(), expected, "{text:?}");
    }
}
