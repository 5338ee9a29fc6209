//! Parser tests: every instruction's forms and the error cases.

use super::*;

fn parse(src: &str) -> Dockerfile {
    Dockerfile::parse(src).unwrap()
}

fn steps(src: &str) -> Vec<Instruction> {
    parse(src).stages[0]
        .steps
        .iter()
        .map(|s| s.instruction.clone())
        .collect()
}

fn err(src: &str) -> String {
    Dockerfile::parse(src).unwrap_err().to_string()
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
    }
}

#[test]
fn from_with_name_and_platform() {
    let df = parse("FROM --platform=linux/amd64 debian:12 AS Build\nFROM build\n");
    assert_eq!(df.stages.len(), 2);
    assert_eq!(df.stages[0].from.image, "debian:12");
    assert_eq!(df.stages[0].from.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(df.stages[0].name(), Some("build"));
    assert_eq!(df.stages[1].from.image, "build");
    assert_eq!(df.stages[1].from.line, 2);
    assert_eq!(df.stage("BUILD").unwrap().index, 0);
    assert_eq!(df.stage("1").unwrap().index, 1);
    assert!(df.stage("nope").is_none());
}

#[test]
fn arg_before_from_is_a_meta_arg() {
    let df = parse("ARG BASE=debian:12\nARG V\nFROM ${BASE}\nARG V\n");
    assert_eq!(df.meta_args.len(), 2);
    assert_eq!(df.meta_args[0].default.as_deref(), Some("debian:12"));
    assert_eq!(df.meta_args[1].default, None);
    assert_eq!(df.stages[0].from.image, "${BASE}");
    assert_eq!(df.stages[0].steps.len(), 1);
}

#[test]
fn run_shell_and_exec_forms() {
    let got = steps("FROM x\nRUN echo hi && ls\nRUN [\"/bin/echo\", \"a b\"]\nrun [not json\n");
    assert_eq!(
        got,
        vec![
            Instruction::Run(CommandLine::Shell("echo hi && ls".into())),
            Instruction::Run(CommandLine::Exec(vec!["/bin/echo".into(), "a b".into()])),
            Instruction::Run(CommandLine::Shell("[not json".into())),
        ]
    );
}

#[test]
fn copy_and_add_flags_and_forms() {
    let got = steps(
        "FROM x\nCOPY --from=build --chown=app:app --chmod=0755 a b* /dst/\n\
         ADD [\"with space\", \"/d\"]\nCOPY src .\n",
    );
    assert_eq!(
        got[0],
        Instruction::Copy(CopyInstruction {
            sources: vec!["a".into(), "b*".into()],
            dest: "/dst/".into(),
            from: Some("build".into()),
            chown: Some("app:app".into()),
            chmod: Some("0755".into()),
        })
    );
    assert_eq!(
        got[1],
        Instruction::Add(CopyInstruction {
            sources: vec!["with space".into()],
            dest: "/d".into(),
            ..Default::default()
        })
    );
    assert!(matches!(&got[2], Instruction::Copy(c) if c.dest == "." && c.sources == ["src"]));
}

#[test]
fn env_both_forms() {
    let got = steps("FROM x\nENV A 1 2 3\nENV k=v k2=\"v 2\" k3=a\\ b\n");
    assert_eq!(got[0], Instruction::Env(vec![kv("A", "1 2 3")]));
    assert_eq!(
        got[1],
        Instruction::Env(vec![kv("k", "v"), kv("k2", "\"v 2\""), kv("k3", "a\\ b")])
    );
}

#[test]
fn label_arg_workdir_user_expose_shell() {
    let got = steps(
        "FROM x\nLABEL a=b \"c d\"=e\nARG X=1 Y\nWORKDIR /app\nUSER app:grp\n\
         EXPOSE 8080 53/udp 9000/tcp\nSHELL [\"/bin/bash\", \"-c\"]\n",
    );
    assert_eq!(
        got[0],
        Instruction::Label(vec![kv("a", "b"), kv("\"c d\"", "e")])
    );
    assert_eq!(
        got[1],
        Instruction::Arg(vec![
            ArgDecl {
                name: "X".into(),
                default: Some("1".into())
            },
            ArgDecl {
                name: "Y".into(),
                default: None
            },
        ])
    );
    assert_eq!(got[2], Instruction::Workdir("/app".into()));
    assert_eq!(got[3], Instruction::User("app:grp".into()));
    assert_eq!(
        got[4],
        Instruction::Expose(vec!["8080".into(), "53/udp".into(), "9000/tcp".into()])
    );
    assert_eq!(
        got[5],
        Instruction::Shell(vec!["/bin/bash".into(), "-c".into()])
    );
}

#[test]
fn entrypoint_and_cmd_both_forms() {
    let got = steps("FROM x\nENTRYPOINT [\"/app\"]\nCMD --port 8080\nCMD []\n");
    assert_eq!(
        got[0],
        Instruction::Entrypoint(CommandLine::Exec(vec!["/app".into()]))
    );
    assert_eq!(
        got[1],
        Instruction::Cmd(CommandLine::Shell("--port 8080".into()))
    );
    assert_eq!(got[2], Instruction::Cmd(CommandLine::Exec(vec![])));
}

#[test]
fn instructions_are_case_insensitive_and_keep_their_line() {
    let df = parse("from x\n\n# c\ncopy \\\n  a \\\n  b\nrun true\n");
    let stage = &df.stages[0];
    assert_eq!(stage.steps[0].line, 4);
    assert_eq!(stage.steps[1].line, 7);
    assert!(matches!(&stage.steps[0].instruction, Instruction::Copy(c) if c.dest == "b"));
}

#[test]
fn unsupported_instructions_name_line_and_instruction() {
    let src = "FROM x\nRUN a\n\n\n\n\nHEALTHCHECK CMD true\n";
    assert_eq!(err(src), "line 7: unsupported instruction HEALTHCHECK");
    for word in [
        "onbuild RUN x",
        "VOLUME /data",
        "STOPSIGNAL 9",
        "MAINTAINER me",
    ] {
        let msg = err(&format!("FROM x\n{word}\n"));
        assert!(msg.starts_with("line 2: unsupported instruction "), "{msg}");
    }
    assert_eq!(err("FROM x\nFOO bar\n"), "line 2: unknown instruction FOO");
}

#[test]
fn syntax_errors_name_their_line() {
    assert_eq!(err(""), "the Dockerfile has no instructions");
    assert_eq!(err("# only\n\n"), "the Dockerfile has no instructions");
    assert_eq!(err("ARG A\n"), "the Dockerfile has no FROM instruction");
    assert_eq!(err("RUN x\nFROM a\n"), "line 1: RUN before the first FROM");
    assert_eq!(err("FROM\n"), "line 1: FROM requires an image");
    assert_eq!(
        err("FROM a b\n"),
        "line 1: FROM expects `FROM image [AS name]`"
    );
    assert_eq!(
        err("FROM a AS 1x\n"),
        "line 1: FROM invalid stage name \"1x\""
    );
    assert_eq!(
        err("FROM a AS b\nFROM c AS B\n"),
        "line 2: duplicate stage name b"
    );
    assert_eq!(
        err("FROM a\nRUN\n"),
        "line 2: RUN requires at least one argument"
    );
    assert_eq!(
        err("FROM a\nRUN --mount=type=cache true\n"),
        "line 2: RUN --mount is not supported"
    );
    assert_eq!(
        err("FROM a\nCOPY --bogus=1 a b\n"),
        "line 2: unknown flag --bogus for COPY"
    );
    assert_eq!(
        err("FROM a\nADD --from=x a b\n"),
        "line 2: unknown flag --from for ADD"
    );
    assert_eq!(
        err("FROM a\nCOPY onlyone\n"),
        "line 2: COPY requires at least one source and a destination"
    );
    assert_eq!(
        err("FROM a\nCOPY --chown a b\n"),
        "line 2: COPY --chown needs a value"
    );
    assert_eq!(
        err("FROM a\nENV A\n"),
        "line 2: ENV A needs a value (NAME value or NAME=value)"
    );
    assert_eq!(
        err("FROM a\nENV A=1 B\n"),
        "line 2: ENV \"B\" is not of the form NAME=value"
    );
    assert_eq!(
        err("FROM a\nWORKDIR\n"),
        "line 2: WORKDIR requires exactly one argument"
    );
    assert_eq!(
        err("FROM a\nEXPOSE\n"),
        "line 2: EXPOSE requires at least one port"
    );
    assert!(err("FROM a\nSHELL /bin/sh -c\n").starts_with("line 2: SHELL requires a JSON array"));
    assert_eq!(err("FROM a\nARG 9-x\n"), "line 2: ARG invalid name \"9-x\"");
    assert_eq!(
        err("FROM a\nENV A=${B\n"),
        "line 2: ENV: bad substitution in \"${B\""
    );
    assert_eq!(
        err("FROM a\nWORKDIR \"/app\n"),
        "line 2: WORKDIR: unterminated \" quote in \"\\\"/app\""
    );
}

#[test]
fn escape_directive_applies_to_words() {
    let df = parse("# escape=`\nFROM x\nENV P=C:\\path `\n  Q=1\n");
    assert_eq!(df.escape, '`');
    assert_eq!(
        df.stages[0].steps[0].instruction,
        Instruction::Env(vec![kv("P", "C:\\path"), kv("Q", "1")])
    );
}
