//! A stage's evolving state: its image config, the build arguments in
//! scope, its SHELL, and the variable lookup that substitution uses.
//!
//! ARG rules (Docker's): an ARG before the first FROM is global and only
//! FROM lines see it; a stage sees an argument only after declaring it, and
//! takes the value from `--build-arg`, else its own default, else the
//! global one. ENV wins over an ARG of the same name.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::config::{ImageConfig, DEFAULT_PATH};
use crate::dockerfile::words::{self, WordError};
use crate::dockerfile::{ArgDecl, CommandLine, KeyValue};

/// Platform arguments every build defines, as BuildKit does.
pub(crate) const PLATFORM_ARGS: &[(&str, &str)] = &[
    ("TARGETPLATFORM", "linux/amd64"),
    ("TARGETOS", "linux"),
    ("TARGETARCH", "amd64"),
    ("TARGETVARIANT", ""),
    ("BUILDPLATFORM", "linux/amd64"),
    ("BUILDOS", "linux"),
    ("BUILDARCH", "amd64"),
    ("BUILDVARIANT", ""),
];

/// The global (meta) arguments, evaluated in order.
pub(crate) fn global_args(
    decls: &[ArgDecl],
    build_args: &BTreeMap<String, String>,
    escape: char,
) -> Result<BTreeMap<String, String>, WordError> {
    let mut values: BTreeMap<String, String> = PLATFORM_ARGS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for decl in decls {
        let value = match (build_args.get(&decl.name), &decl.default) {
            (Some(given), _) => Some(given.clone()),
            (None, Some(default)) => {
                let lookup = |name: &str| values.get(name).cloned();
                Some(words::expand(default, escape, &lookup)?)
            }
            (None, None) => None,
        };
        if let Some(value) = value {
            values.insert(decl.name.clone(), value);
        }
    }
    Ok(values)
}

/// One stage's state while its steps run.
#[derive(Debug, Clone)]
pub(crate) struct StageState {
    pub config: ImageConfig,
    pub shell: Vec<String>,
    escape: char,
    /// Arguments declared in this stage, with their values.
    args: Vec<(String, Option<String>)>,
    globals: BTreeMap<String, String>,
    build_args: BTreeMap<String, String>,
    cmd_set_here: bool,
}

impl StageState {
    pub fn new(
        config: ImageConfig,
        globals: BTreeMap<String, String>,
        build_args: BTreeMap<String, String>,
        escape: char,
    ) -> Self {
        StageState {
            config,
            shell: vec![String::from("/bin/sh"), String::from("-c")],
            escape,
            args: Vec::new(),
            globals,
            build_args,
            cmd_set_here: false,
        }
    }

    /// The value substitution sees for `name`: ENV first, then ARG.
    pub fn lookup(&self, name: &str) -> Option<String> {
        if let Some(value) = self.config.env_get(name) {
            return Some(value.to_owned());
        }
        self.args
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    }

    /// Expands one word.
    pub fn expand(&self, word: &str) -> Result<String, WordError> {
        let lookup = |name: &str| self.lookup(name);
        words::expand(word, self.escape, &lookup)
    }

    /// Expands a word into whitespace-separated fields.
    pub fn expand_fields(&self, word: &str) -> Result<Vec<String>, WordError> {
        let lookup = |name: &str| self.lookup(name);
        words::expand_fields(word, self.escape, &lookup)
    }

    /// The arguments in scope with values, for cache keys.
    pub fn args_in_scope(&self) -> Vec<(String, String)> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in &self.args {
            if let Some(value) = value {
                out.insert(name.clone(), value.clone());
            }
        }
        out.into_iter().collect()
    }

    /// ARG: declares arguments; returns the instruction's canonical text.
    pub fn declare(&mut self, decls: &[ArgDecl]) -> Result<String, WordError> {
        let mut parts = Vec::new();
        for decl in decls {
            let value = match (self.build_args.get(&decl.name), &decl.default) {
                (Some(given), _) => Some(given.clone()),
                (None, Some(default)) => Some(self.expand(default)?),
                (None, None) => self.globals.get(&decl.name).cloned(),
            };
            parts.push(match &value {
                Some(v) => format!("{}={v}", decl.name),
                None => decl.name.clone(),
            });
            self.args.push((decl.name.clone(), value));
        }
        Ok(format!("ARG {}", parts.join(" ")))
    }

    /// ENV or LABEL pairs, expanded.
    pub fn pairs(&self, pairs: &[KeyValue]) -> Result<Vec<(String, String)>, WordError> {
        pairs
            .iter()
            .map(|kv| Ok((self.expand(&kv.key)?, self.expand(&kv.value)?)))
            .collect()
    }

    /// ENV: sets variables one after another (a later one sees an earlier).
    pub fn set_env(&mut self, pairs: &[KeyValue]) -> Result<String, WordError> {
        let mut parts = Vec::new();
        for kv in pairs {
            let key = self.expand(&kv.key)?;
            let value = self.expand(&kv.value)?;
            parts.push(format!("{key}={value:?}"));
            self.config.set_env(&key, &value);
        }
        Ok(format!("ENV {}", parts.join(" ")))
    }

    /// The argv a CMD, ENTRYPOINT or RUN runs.
    pub fn argv(&self, command: &CommandLine) -> Vec<String> {
        match command {
            CommandLine::Exec(argv) => argv.clone(),
            CommandLine::Shell(text) => {
                let mut argv = self.shell.clone();
                argv.push(text.clone());
                argv
            }
        }
    }

    /// CMD.
    pub fn set_cmd(&mut self, command: &CommandLine) {
        self.config.cmd = self.argv(command);
        self.cmd_set_here = true;
    }

    /// ENTRYPOINT; it clears a CMD inherited from the base image.
    pub fn set_entrypoint(&mut self, command: &CommandLine) {
        self.config.entrypoint = self.argv(command);
        if !self.cmd_set_here {
            self.config.cmd.clear();
        }
    }

    /// WORKDIR: a relative path is relative to the current one.
    pub fn set_workdir(&mut self, path: &str) -> String {
        let base = match self.config.workdir.as_str() {
            "" => "/",
            dir => dir,
        };
        let joined = Path::new(base).join(path);
        let mut clean = PathBuf::from("/");
        for component in joined.components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::ParentDir => {
                    clean.pop();
                }
                _ => {}
            }
        }
        self.config.workdir = clean.to_string_lossy().into_owned();
        self.config.workdir.clone()
    }

    /// The environment a RUN step gets: ENV, then the arguments in scope
    /// that ENV does not override, and a default PATH.
    pub fn run_env(&self) -> Vec<(String, String)> {
        let mut env = self.config.env_pairs();
        for (name, value) in self.args_in_scope() {
            if !env.iter().any(|(k, _)| *k == name) {
                env.push((name, value));
            }
        }
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push((String::from("PATH"), String::from(DEFAULT_PATH)));
        }
        env
    }
}

/// Validates and normalizes one EXPOSE port (`8080`, `8080/tcp`, `53/udp`,
/// `8000-8002/tcp`); returns the ports it stands for.
pub(crate) fn parse_ports(word: &str) -> Option<Vec<String>> {
    let (range, proto) = match word.split_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (word, String::from("tcp")),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return None;
    }
    let (start, end) = match range.split_once('-') {
        Some((a, b)) => (a.parse::<u16>().ok()?, b.parse::<u16>().ok()?),
        None => {
            let p = range.parse::<u16>().ok()?;
            (p, p)
        }
    };
    if start == 0 || end < start || end - start > 1000 {
        return None;
    }
    Some((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn decl(name: &str, default: Option<&str>) -> ArgDecl {
        ArgDecl {
            name: name.into(),
            default: default.map(Into::into),
        }
    }

    #[test]
    fn args_follow_docker_scoping() {
        let build_args: BTreeMap<String, String> =
            [("GIVEN".to_string(), "cli".to_string())].into();
        let globals = global_args(
            &[
                decl("BASE", Some("debian")),
                decl("TAG", Some("${BASE}-12")),
                decl("GIVEN", Some("d")),
            ],
            &build_args,
            '\\',
        )
        .unwrap();
        assert_eq!(globals["TAG"], "debian-12");
        assert_eq!(globals["GIVEN"], "cli");
        assert_eq!(globals["TARGETARCH"], "amd64");

        let mut state = StageState::new(ImageConfig::default(), globals, build_args, '\\');
        assert_eq!(
            state.lookup("BASE"),
            None,
            "globals are invisible until declared"
        );
        state
            .declare(&[
                decl("BASE", None),
                decl("OWN", Some("x")),
                decl("GIVEN", Some("y")),
            ])
            .unwrap();
        assert_eq!(state.lookup("BASE").as_deref(), Some("debian"));
        assert_eq!(state.lookup("OWN").as_deref(), Some("x"));
        assert_eq!(state.lookup("GIVEN").as_deref(), Some("cli"));

        state
            .set_env(&[KeyValue {
                key: "OWN".into(),
                value: "env".into(),
            }])
            .unwrap();
        assert_eq!(
            state.lookup("OWN").as_deref(),
            Some("env"),
            "ENV wins over ARG"
        );
        let env = state.run_env();
        assert!(env.contains(&("GIVEN".into(), "cli".into())));
        assert!(env.contains(&("OWN".into(), "env".into())));
        assert!(env.iter().any(|(k, _)| k == "PATH"));
    }

    #[test]
    fn workdir_is_relative_to_the_previous_one() {
        let mut state = StageState::new(
            ImageConfig::default(),
            BTreeMap::new(),
            BTreeMap::new(),
            '\\',
        );
        assert_eq!(state.set_workdir("/app"), "/app");
        assert_eq!(state.set_workdir("src/../bin"), "/app/bin");
        assert_eq!(state.set_workdir("/"), "/");
    }

    #[test]
    fn entrypoint_clears_an_inherited_cmd_only() {
        let base = ImageConfig {
            cmd: vec!["bash".into()],
            ..ImageConfig::default()
        };
        let mut state = StageState::new(base.clone(), BTreeMap::new(), BTreeMap::new(), '\\');
        state.set_entrypoint(&CommandLine::Exec(vec!["/app".into()]));
        assert!(state.config.cmd.is_empty());

        let mut state = StageState::new(base, BTreeMap::new(), BTreeMap::new(), '\\');
        state.set_cmd(&CommandLine::Shell("serve".into()));
        state.set_entrypoint(&CommandLine::Exec(vec!["/app".into()]));
        assert_eq!(state.config.cmd, vec!["/bin/sh", "-c", "serve"]);
    }

    #[test]
    fn ports_parse() {
        assert_eq!(parse_ports("8080").unwrap(), vec!["8080/tcp"]);
        assert_eq!(parse_ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(parse_ports("8000-8002").unwrap().len(), 3);
        for bad in ["0", "70000", "80/icmp", "x", "9-1"] {
            assert!(parse_ports(bad).is_none(), "{bad}");
        }
    }
}
