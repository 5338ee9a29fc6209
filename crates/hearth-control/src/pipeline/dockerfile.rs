//! The Dockerfile subset the built-in pipeline builds: one stage `FROM
//! busybox`, then `COPY`, `ENV`, `WORKDIR`, `EXPOSE`, `CMD`, `ENTRYPOINT`
//! and `LABEL`. Anything else is refused with its line number, so a build
//! fails saying what and where rather than building something else.

use super::BuildFailure;

/// The base images the built-in pipeline has.
const BUSYBOX_REFERENCES: &[&str] = &[
    "busybox",
    "busybox:latest",
    "docker.io/busybox",
    "docker.io/busybox:latest",
    "docker.io/library/busybox",
    "docker.io/library/busybox:latest",
];

/// One instruction, with the line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The 1-based line number.
    pub line: usize,
    /// What it does.
    pub instruction: Instruction,
}

/// The instructions of the subset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// `COPY src... dest`.
    Copy {
        /// Sources, relative to the build context.
        sources: Vec<String>,
        /// The destination in the image.
        dest: String,
    },
    /// `ENV` pairs.
    Env(Vec<(String, String)>),
    /// `WORKDIR`.
    Workdir(String),
    /// `EXPOSE` ports.
    Expose(Vec<u16>),
    /// `CMD`, as argv.
    Cmd(Vec<String>),
    /// `ENTRYPOINT`, as argv.
    Entrypoint(Vec<String>),
}

/// Parses a Dockerfile into its steps after `FROM`.
///
/// # Errors
///
/// A [`BuildFailure`] naming the line of the first instruction outside the
/// subset, or of a malformed one.
pub fn parse(text: &str) -> Result<Vec<Step>, BuildFailure> {
    let mut steps = Vec::new();
    let mut seen_from = false;
    for (line, body) in logical_lines(text) {
        let (keyword, args) = match body.split_once(char::is_whitespace) {
            Some((k, rest)) => (k.to_ascii_uppercase(), rest.trim().to_owned()),
            None => (body.to_ascii_uppercase(), String::new()),
        };
        let fail = |what: String| BuildFailure::new(format!("Dockerfile line {line}: {what}"));

        if !seen_from {
            if keyword != "FROM" {
                return Err(fail(format!("expected FROM, found {keyword}")));
            }
            let reference = args.split_whitespace().next().unwrap_or_default();
            if !BUSYBOX_REFERENCES.contains(&reference) {
                return Err(fail(format!(
                    "the built-in pipeline builds FROM busybox only, not {reference:?}"
                )));
            }
            seen_from = true;
            continue;
        }

        let instruction = match keyword.as_str() {
            "COPY" => copy(&args).map_err(fail)?,
            "ENV" => Instruction::Env(env(&args).map_err(fail)?),
            "WORKDIR" if !args.is_empty() => Instruction::Workdir(args),
            "EXPOSE" => Instruction::Expose(expose(&args).map_err(fail)?),
            "CMD" => Instruction::Cmd(command(&args).map_err(fail)?),
            "ENTRYPOINT" => Instruction::Entrypoint(command(&args).map_err(fail)?),
            "LABEL" => continue,
            "FROM" => return Err(fail("multi-stage builds need the full pipeline".to_owned())),
            "RUN" => {
                return Err(fail(
                    "RUN needs a build microVM, which the built-in pipeline does not run"
                        .to_owned(),
                ))
            }
            other => {
                return Err(fail(format!(
                    "{other} is not supported by the built-in pipeline"
                )))
            }
        };
        steps.push(Step { line, instruction });
    }
    if !seen_from {
        return Err(BuildFailure::new("Dockerfile has no FROM instruction"));
    }
    Ok(steps)
}

/// Joins continued lines and drops comments and blanks; each item is the
/// line number where the instruction starts and its text.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if current.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        let (continues, part) = match trimmed.strip_suffix('\\') {
            Some(part) => (true, part),
            None => (false, trimmed),
        };
        let entry = current.get_or_insert_with(|| (index + 1, String::new()));
        if !part.starts_with('#') {
            if !entry.1.is_empty() {
                entry.1.push(' ');
            }
            entry.1.push_str(part.trim());
        }
        if !continues {
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

/// `COPY [--flag] src... dest` (plain or JSON form).
fn copy(args: &str) -> Result<Instruction, String> {
    if let Some(flag) = args.split_whitespace().find(|w| w.starts_with("--")) {
        return Err(format!(
            "COPY {flag} is not supported by the built-in pipeline"
        ));
    }
    let mut words = if args.starts_with('[') {
        json_array(args)?
    } else {
        args.split_whitespace().map(str::to_owned).collect()
    };
    if words.len() < 2 {
        return Err("COPY needs at least one source and a destination".to_owned());
    }
    if let Some(glob) = words.iter().find(|w| w.contains(['*', '?', '['])) {
        return Err(format!(
            "COPY wildcard {glob:?} is not supported by the built-in pipeline"
        ));
    }
    let dest = words.pop().unwrap_or_default();
    Ok(Instruction::Copy {
        sources: words,
        dest,
    })
}

/// `ENV K=V ...` or `ENV K V`.
fn env(args: &str) -> Result<Vec<(String, String)>, String> {
    let words = shell_words(args)?;
    let Some(first) = words.first() else {
        return Err("ENV needs a name and a value".to_owned());
    };
    if !first.contains('=') {
        let value = args[first.len()..].trim();
        return Ok(vec![(first.clone(), unquote(value))]);
    }
    words
        .iter()
        .map(|word| match word.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("ENV {word:?} is not NAME=value")),
        })
        .collect()
}

/// `EXPOSE 8080 9000/tcp`.
fn expose(args: &str) -> Result<Vec<u16>, String> {
    args.split_whitespace()
        .map(|word| {
            let (port, proto) = word.split_once('/').unwrap_or((word, "tcp"));
            match (port.parse::<u16>(), proto.eq_ignore_ascii_case("tcp")) {
                (Ok(port), true) if port > 0 => Ok(port),
                _ => Err(format!("EXPOSE {word:?} is not a TCP port")),
            }
        })
        .collect()
}

/// The exec form (a JSON array) or the shell form (`/bin/sh -c`).
fn command(args: &str) -> Result<Vec<String>, String> {
    if args.starts_with('[') {
        return json_array(args);
    }
    if args.is_empty() {
        return Err("the command is empty".to_owned());
    }
    Ok(vec!["/bin/sh".to_owned(), "-c".to_owned(), args.to_owned()])
}

/// A JSON array of strings.
fn json_array(args: &str) -> Result<Vec<String>, String> {
    serde_json::from_str(args).map_err(|e| format!("not a JSON array of strings: {e}"))
}

/// Splits on whitespace outside double quotes, dropping the quotes.
fn shell_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => word.extend(chars.next()),
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".to_owned());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A value without its surrounding double quotes.
fn unquote(value: &str) -> String {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subset_parses() {
        let text = "# app\nFROM busybox\nWORKDIR /app\nCOPY start.sh \\\n  hook.sh ./\n\
                    ENV A=1 B=\"two words\"\nENV C three\nEXPOSE 8080 9000/tcp\n\
                    CMD [\"/bin/sh\", \"/app/start.sh\"]\n";
        let steps = parse(text).unwrap();
        let instructions: Vec<_> = steps.iter().map(|s| s.instruction.clone()).collect();
        assert_eq!(
            instructions,
            vec![
                Instruction::Workdir("/app".into()),
                Instruction::Copy {
                    sources: vec!["start.sh".into(), "hook.sh".into()],
                    dest: "./".into()
                },
                Instruction::Env(vec![
                    ("A".into(), "1".into()),
                    ("B".into(), "two words".into())
                ]),
                Instruction::Env(vec![("C".into(), "three".into())]),
                Instruction::Expose(vec![8080, 9000]),
                Instruction::Cmd(vec!["/bin/sh".into(), "/app/start.sh".into()]),
            ]
        );
        assert_eq!(steps[1].line, 4);
    }

    #[test]
    fn what_needs_a_build_vm_is_refused_with_its_line() {
        let error = parse("FROM busybox\nRUN echo hi\n").unwrap_err();
        assert!(
            error.state_reason.starts_with("Dockerfile line 2: RUN"),
            "{error}"
        );
        let error = parse("FROM debian:12\n").unwrap_err();
        assert!(error.state_reason.contains("line 1"), "{error}");
        let error = parse("COPY a b\n").unwrap_err();
        assert!(error.state_reason.contains("expected FROM"), "{error}");
    }
}
