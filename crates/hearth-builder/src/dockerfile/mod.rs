//! The Dockerfile parser: text → stages of typed instructions.
//!
//! [`Dockerfile::parse`] reads parser directives, comments and line
//! continuations (`lines`), parses each instruction's flags and arguments
//! (`parse`) and groups them into stages, each started by a FROM. ARG
//! lines before the first FROM are the global (meta) arguments.
//!
//! Arguments keep their raw text: variable references are expanded by
//! [`words::expand`] when the build reaches them, since their values come
//! from ARG, ENV and the base image. Their syntax is checked at parse time,
//! and every error names the line it comes from.
//!
//! Supported: FROM, RUN, COPY, ADD, ENV, ARG, WORKDIR, USER, ENTRYPOINT,
//! CMD, EXPOSE, LABEL, SHELL. Any other instruction is an error.

mod lines;
mod parse;
pub mod words;

use parse::Parsed;
pub use words::WordError;

/// Why a Dockerfile could not be parsed. Every variant that comes from a
/// line names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerfileError {
    /// The file holds no instruction at all.
    #[error("the Dockerfile has no instructions")]
    Empty,
    /// There is no FROM.
    #[error("the Dockerfile has no FROM instruction")]
    NoFrom,
    /// An instruction Docker knows but hearth does not build.
    #[error("line {line}: unsupported instruction {instruction}")]
    Unsupported {
        /// Line number.
        line: usize,
        /// The instruction, uppercased.
        instruction: String,
    },
    /// A word that is no Dockerfile instruction.
    #[error("line {line}: unknown instruction {instruction}")]
    Unknown {
        /// Line number.
        line: usize,
        /// The word as written.
        instruction: String,
    },
    /// An instruction other than ARG before the first FROM.
    #[error("line {line}: {instruction} before the first FROM")]
    BeforeFrom {
        /// Line number.
        line: usize,
        /// The instruction.
        instruction: String,
    },
    /// A flag the instruction does not have.
    #[error("line {line}: unknown flag --{flag} for {instruction}")]
    UnknownFlag {
        /// Line number.
        line: usize,
        /// The instruction.
        instruction: String,
        /// The flag's name.
        flag: String,
    },
    /// A flag Docker has that hearth does not implement.
    #[error("line {line}: {instruction} --{flag} is not supported")]
    UnsupportedFlag {
        /// Line number.
        line: usize,
        /// The instruction.
        instruction: String,
        /// The flag's name.
        flag: String,
    },
    /// Arguments of the wrong shape.
    #[error("line {line}: {instruction} {reason}")]
    Syntax {
        /// Line number.
        line: usize,
        /// The instruction.
        instruction: String,
        /// What is wrong, in a few words.
        reason: String,
    },
    /// A word whose quotes or `${…}` are malformed.
    #[error("line {line}: {instruction}: {problem}")]
    Word {
        /// Line number.
        line: usize,
        /// The instruction.
        instruction: String,
        /// What is wrong with the word.
        problem: WordError,
    },
    /// Two stages with one name.
    #[error("line {line}: duplicate stage name {name}")]
    DuplicateStage {
        /// Line number of the second one.
        line: usize,
        /// The name.
        name: String,
    },
    /// `# escape=` with a character other than `\` or `` ` ``.
    #[error("line {line}: invalid escape directive {value:?} (expected \\ or `)")]
    BadEscape {
        /// Line number.
        line: usize,
        /// The value given.
        value: String,
    },
    /// A parser directive given twice.
    #[error("line {line}: duplicate parser directive {name}")]
    DuplicateDirective {
        /// Line number.
        line: usize,
        /// The directive.
        name: String,
    },
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character, `\` unless `# escape=` says otherwise.
    pub escape: char,
    /// ARG lines before the first FROM, in order.
    pub meta_args: Vec<ArgDecl>,
    /// The build stages, in order.
    pub stages: Vec<Stage>,
}

/// One build stage: a FROM and the steps after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Its position, from 0.
    pub index: usize,
    /// The FROM that starts it.
    pub from: FromInstruction,
    /// Its instructions after FROM.
    pub steps: Vec<Step>,
}

impl Stage {
    /// The name given with `AS`, lowercased.
    pub fn name(&self) -> Option<&str> {
        self.from.name.as_deref()
    }
}

/// A FROM line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromInstruction {
    /// Line number.
    pub line: usize,
    /// The image reference or stage name, raw.
    pub image: String,
    /// `--platform`, raw.
    pub platform: Option<String>,
    /// The `AS` name, lowercased.
    pub name: Option<String>,
}

/// One instruction in a stage, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The line it starts on.
    pub line: usize,
    /// Its text as written (continuations joined).
    pub text: String,
    /// What it says.
    pub instruction: Instruction,
}

/// A parsed instruction other than FROM. Strings are raw: quotes and
/// variable references are still in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// RUN.
    Run(CommandLine),
    /// COPY.
    Copy(CopyInstruction),
    /// ADD (never has `from`).
    Add(CopyInstruction),
    /// ENV, one or more pairs.
    Env(Vec<KeyValue>),
    /// ARG, one or more declarations.
    Arg(Vec<ArgDecl>),
    /// WORKDIR.
    Workdir(String),
    /// USER (`user[:group]`).
    User(String),
    /// ENTRYPOINT.
    Entrypoint(CommandLine),
    /// CMD.
    Cmd(CommandLine),
    /// EXPOSE, one word per port (`8080`, `8080/tcp`, `53/udp`).
    Expose(Vec<String>),
    /// LABEL, one or more pairs.
    Label(Vec<KeyValue>),
    /// SHELL, the new shell's argv.
    Shell(Vec<String>),
}

impl Instruction {
    /// The instruction's keyword, uppercased.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Cmd(_) => "CMD",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Label(_) => "LABEL",
            Instruction::Shell(_) => "SHELL",
        }
    }
}

/// The exec form (`["a", "b"]`) or shell form (`a b`) of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// A JSON array, run as is.
    Exec(Vec<String>),
    /// A string, run through the stage's SHELL.
    Shell(String),
}

/// COPY or ADD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyInstruction {
    /// Source paths or globs, raw.
    pub sources: Vec<String>,
    /// Destination, raw.
    pub dest: String,
    /// `--from=` a stage name, index or image (COPY only).
    pub from: Option<String>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=` octal mode.
    pub chmod: Option<String>,
}

/// `NAME=value`, raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The name.
    pub key: String,
    /// The value, raw.
    pub value: String,
}

/// `ARG NAME[=default]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// The default, raw.
    pub default: Option<String>,
}

impl Dockerfile {
    /// Parses a Dockerfile's text.
    ///
    /// # Errors
    ///
    /// [`DockerfileError`] naming the first offending line.
    pub fn parse(source: &str) -> Result<Dockerfile, DockerfileError> {
        let split = lines::split(source)?;
        if split.lines.is_empty() {
            return Err(DockerfileError::Empty);
        }

        let mut meta_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();

        for line in &split.lines {
            match parse::parse_line(line, split.escape)? {
                Parsed::From(from) => {
                    if let Some(name) = &from.name {
                        if stages.iter().any(|s| s.name() == Some(name)) {
                            return Err(DockerfileError::DuplicateStage {
                                line: line.line,
                                name: name.clone(),
                            });
                        }
                    }
                    stages.push(Stage {
                        index: stages.len(),
                        from,
                        steps: Vec::new(),
                    });
                }
                Parsed::Step(instruction) => match stages.last_mut() {
                    Some(stage) => stage.steps.push(Step {
                        line: line.line,
                        text: line.text.trim().to_owned(),
                        instruction,
                    }),
                    None => match instruction {
                        Instruction::Arg(decls) => meta_args.extend(decls),
                        other => {
                            return Err(DockerfileError::BeforeFrom {
                                line: line.line,
                                instruction: other.keyword().to_owned(),
                            })
                        }
                    },
                },
            }
        }

        if stages.is_empty() {
            return Err(DockerfileError::NoFrom);
        }
        Ok(Dockerfile {
            escape: split.escape,
            meta_args,
            stages,
        })
    }

    /// Finds a stage by its `AS` name (case-insensitive) or its index.
    pub fn stage(&self, name_or_index: &str) -> Option<&Stage> {
        let lower = name_or_index.to_ascii_lowercase();
        if let Some(stage) = self
            .stages
            .iter()
            .find(|s| s.name() == Some(lower.as_str()))
        {
            return Some(stage);
        }
        name_or_index
            .parse::<usize>()
            .ok()
            .and_then(|i| self.stages.get(i))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
