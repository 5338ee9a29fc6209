//! From one logical line to an [`Instruction`]: the keyword, its flags and
//! its arguments, each in the forms Docker accepts.
//!
//! Arguments stay raw (quotes and `$` references in place) because their
//! values depend on the build's state; [`super::words`] expands them when
//! the step runs. Their syntax is checked here, so that a malformed word is
//! reported with its line before any step runs.

use super::lines::LogicalLine;
use super::words::{self, split_words};
use super::{
    ArgDecl, CommandLine, CopyInstruction, DockerfileError, FromInstruction, Instruction, KeyValue,
};

/// Instructions Docker knows that hearth does not build.
const UNSUPPORTED: &[&str] = &[
    "HEALTHCHECK",
    "ONBUILD",
    "VOLUME",
    "STOPSIGNAL",
    "MAINTAINER",
];

/// What one line parses to: a FROM starts a stage, anything else is a step.
#[derive(Debug)]
pub(crate) enum Parsed {
    From(FromInstruction),
    Step(Instruction),
}

/// Parses one logical line.
pub(crate) fn parse_line(line: &LogicalLine, escape: char) -> Result<Parsed, DockerfileError> {
    let text = line.text.trim();
    let (keyword, rest) = match text.find(char::is_whitespace) {
        Some(at) => (&text[..at], text[at..].trim()),
        None => (text, ""),
    };
    let upper = keyword.to_ascii_uppercase();
    let ctx = Ctx {
        line: line.line,
        instruction: upper.clone(),
        escape,
    };

    let instruction = match upper.as_str() {
        "FROM" => return ctx.from(rest).map(Parsed::From),
        "RUN" => ctx.run(rest)?,
        "COPY" => Instruction::Copy(ctx.copy(rest, false)?),
        "ADD" => Instruction::Add(ctx.copy(rest, true)?),
        "ENV" => Instruction::Env(ctx.name_values(rest)?),
        "LABEL" => Instruction::Label(ctx.name_values(rest)?),
        "ARG" => Instruction::Arg(ctx.args(rest)?),
        "WORKDIR" => Instruction::Workdir(ctx.single(rest)?),
        "USER" => Instruction::User(ctx.single(rest)?),
        "ENTRYPOINT" => Instruction::Entrypoint(ctx.command(rest)?),
        "CMD" => Instruction::Cmd(ctx.command(rest)?),
        "EXPOSE" => Instruction::Expose(ctx.expose(rest)?),
        "SHELL" => Instruction::Shell(ctx.shell(rest)?),
        _ if UNSUPPORTED.contains(&upper.as_str()) => {
            return Err(DockerfileError::Unsupported {
                line: line.line,
                instruction: upper,
            })
        }
        _ => {
            return Err(DockerfileError::Unknown {
                line: line.line,
                instruction: keyword.to_owned(),
            })
        }
    };
    Ok(Parsed::Step(instruction))
}

/// The line being parsed, for error messages.
struct Ctx {
    line: usize,
    instruction: String,
    escape: char,
}

/// A `--name=value` (or bare `--name`) flag before an instruction's
/// arguments.
struct Flag {
    name: String,
    value: Option<String>,
}

impl Ctx {
    fn syntax(&self, reason: impl Into<String>) -> DockerfileError {
        DockerfileError::Syntax {
            line: self.line,
            instruction: self.instruction.clone(),
            reason: reason.into(),
        }
    }

    /// Checks that a raw word will expand.
    fn check_word(&self, word: &str) -> Result<(), DockerfileError> {
        words::validate(word, self.escape).map_err(|problem| DockerfileError::Word {
            line: self.line,
            instruction: self.instruction.clone(),
            problem,
        })
    }

    /// Splits leading `--flag[=value]` words off the arguments.
    fn flags<'a>(&self, rest: &'a str) -> (Vec<Flag>, &'a str) {
        let mut flags = Vec::new();
        let mut rest = rest.trim_start();
        while let Some(after) = rest.strip_prefix("--") {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            let word = &after[..end];
            let (name, value) = match word.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (word, None),
            };
            flags.push(Flag {
                name: name.to_ascii_lowercase(),
                value,
            });
            rest = after[end..].trim_start();
        }
        (flags, rest)
    }

    /// Takes a flag's value, rejecting a bare flag or an empty value.
    fn flag_value(&self, flag: Flag) -> Result<String, DockerfileError> {
        match flag.value {
            Some(v) if !v.is_empty() => {
                self.check_word(&v)?;
                Ok(v)
            }
            _ => Err(self.syntax(format!("--{} needs a value", flag.name))),
        }
    }

    fn unknown_flag(&self, flag: &Flag) -> DockerfileError {
        DockerfileError::UnknownFlag {
            line: self.line,
            instruction: self.instruction.clone(),
            flag: flag.name.clone(),
        }
    }

    fn from(&self, rest: &str) -> Result<FromInstruction, DockerfileError> {
        let (flags, rest) = self.flags(rest);
        let mut platform = None;
        for flag in flags {
            match flag.name.as_str() {
                "platform" => platform = Some(self.flag_value(flag)?),
                _ => return Err(self.unknown_flag(&flag)),
            }
        }

        let words: Vec<&str> = rest.split_whitespace().collect();
        let (image, name) = match words.as_slice() {
            [image] => (*image, None),
            [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => (*image, Some(*name)),
            [] => return Err(self.syntax("requires an image")),
            _ => return Err(self.syntax("expects `FROM image [AS name]`")),
        };
        self.check_word(image)?;

        let name = match name {
            Some(n) => {
                let lower = n.to_ascii_lowercase();
                if !valid_stage_name(&lower) {
                    return Err(self.syntax(format!("invalid stage name {n:?}")));
                }
                Some(lower)
            }
            None => None,
        };

        Ok(FromInstruction {
            line: self.line,
            image: image.to_owned(),
            platform,
            name,
        })
    }

    fn run(&self, rest: &str) -> Result<Instruction, DockerfileError> {
        let (flags, rest) = self.flags(rest);
        if let Some(flag) = flags.first() {
            return Err(DockerfileError::UnsupportedFlag {
                line: self.line,
                instruction: self.instruction.clone(),
                flag: flag.name.clone(),
            });
        }
        let command = self.command(rest)?;
        if let CommandLine::Exec(argv) = &command {
            if argv.is_empty() {
                return Err(self.syntax("requires a command"));
            }
        }
        Ok(Instruction::Run(command))
    }

    /// The exec (JSON array) or shell form of RUN, CMD and ENTRYPOINT.
    fn command(&self, rest: &str) -> Result<CommandLine, DockerfileError> {
        if rest.is_empty() {
            return Err(self.syntax("requires at least one argument"));
        }
        Ok(match json_array(rest) {
            Some(argv) => CommandLine::Exec(argv),
            None => CommandLine::Shell(rest.to_owned()),
        })
    }

    fn copy(&self, rest: &str, is_add: bool) -> Result<CopyInstruction, DockerfileError> {
        let (flags, rest) = self.flags(rest);
        let mut out = CopyInstruction::default();

        for flag in flags {
            match flag.name.as_str() {
                "from" if !is_add => out.from = Some(self.flag_value(flag)?),
                "chown" => out.chown = Some(self.flag_value(flag)?),
                "chmod" => out.chmod = Some(self.flag_value(flag)?),
                // `--link` changes how BuildKit stores the layer, not its content.
                "link" => {}
                "parents" | "exclude" | "checksum" | "keep-git-dir" => {
                    return Err(DockerfileError::UnsupportedFlag {
                        line: self.line,
                        instruction: self.instruction.clone(),
                        flag: flag.name,
                    })
                }
                _ => return Err(self.unknown_flag(&flag)),
            }
        }

        let mut args = match json_array(rest) {
            Some(args) => args,
            None => rest.split_whitespace().map(str::to_owned).collect(),
        };
        if args.len() < 2 {
            return Err(self.syntax("requires at least one source and a destination"));
        }
        for arg in &args {
            self.check_word(arg)?;
        }

        out.dest = args.pop().unwrap_or_default();
        out.sources = args;
        Ok(out)
    }

    /// `NAME value` or `NAME=value NAME2="value 2"` (ENV and LABEL).
    fn name_values(&self, rest: &str) -> Result<Vec<KeyValue>, DockerfileError> {
        let words = split_words(rest, self.escape);
        let Some(first) = words.first() else {
            return Err(self.syntax("requires at least one argument"));
        };

        // The old form: the first word is the name, the rest of the line the value.
        if !first.contains('=') {
            let value = rest[first.len()..].trim();
            if value.is_empty() {
                return Err(
                    self.syntax(format!("{first} needs a value (NAME value or NAME=value)"))
                );
            }
            self.check_word(first)?;
            self.check_word(value)?;
            return Ok(vec![KeyValue {
                key: first.clone(),
                value: value.to_owned(),
            }]);
        }

        let mut pairs = Vec::new();
        for word in &words {
            let Some((key, value)) = word.split_once('=') else {
                return Err(self.syntax(format!("{word:?} is not of the form NAME=value")));
            };
            if key.is_empty() {
                return Err(self.syntax(format!("{word:?} has an empty name")));
            }
            self.check_word(key)?;
            self.check_word(value)?;
            pairs.push(KeyValue {
                key: key.to_owned(),
                value: value.to_owned(),
            });
        }
        Ok(pairs)
    }

    fn args(&self, rest: &str) -> Result<Vec<ArgDecl>, DockerfileError> {
        let words = split_words(rest, self.escape);
        if words.is_empty() {
            return Err(self.syntax("requires a name"));
        }

        let mut decls = Vec::new();
        for word in words {
            let (name, default) = match word.split_once('=') {
                Some((n, d)) => (n.to_owned(), Some(d.to_owned())),
                None => (word.clone(), None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(self.syntax(format!("invalid name {name:?}")));
            }
            if let Some(d) = &default {
                self.check_word(d)?;
            }
            decls.push(ArgDecl { name, default });
        }
        Ok(decls)
    }

    /// WORKDIR and USER take the rest of the line as one word.
    fn single(&self, rest: &str) -> Result<String, DockerfileError> {
        if rest.is_empty() {
            return Err(self.syntax("requires exactly one argument"));
        }
        self.check_word(rest)?;
        Ok(rest.to_owned())
    }

    fn expose(&self, rest: &str) -> Result<Vec<String>, DockerfileError> {
        let ports: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
        if ports.is_empty() {
            return Err(self.syntax("requires at least one port"));
        }
        for port in &ports {
            self.check_word(port)?;
        }
        Ok(ports)
    }

    fn shell(&self, rest: &str) -> Result<Vec<String>, DockerfileError> {
        match json_array(rest) {
            Some(argv) if !argv.is_empty() => Ok(argv),
            _ => Err(self.syntax("requires a JSON array such as [\"/bin/sh\", \"-c\"]")),
        }
    }
}

/// Parses a JSON array of strings; `None` when the text is not one.
fn json_array(text: &str) -> Option<Vec<String>> {
    if !text.starts_with('[') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// Docker's rule for stage names (after lowercasing).
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}
