//! `.dockerignore`: which files of the build context COPY and ADD may see.
//!
//! The semantics are Docker's: one pattern a line; `#` starts a comment
//! line; blank lines are skipped; each pattern is cleaned (`./`, `//` and a
//! leading `/` go away) and matched against paths relative to the context
//! root. `*` and `?` never match `/`; `**` matches any number of
//! directories; `!` makes an exception. The last pattern that matches a
//! path decides, and a pattern that matches a directory also matches
//! everything under it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobMatcher};

/// Why a `.dockerignore` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// A pattern that does not compile.
    #[error(".dockerignore line {line}: invalid pattern {pattern:?}")]
    Pattern {
        /// Line number.
        line: usize,
        /// The pattern as written.
        pattern: String,
        /// The glob error.
        #[source]
        source: globset::Error,
    },
}

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    matcher: GlobMatcher,
    exception: bool,
}

impl IgnoreMatcher {
    /// A matcher that excludes nothing.
    pub fn empty() -> Self {
        IgnoreMatcher::default()
    }

    /// Reads `<context>/.dockerignore`; no file means nothing is excluded.
    ///
    /// # Errors
    ///
    /// [`IgnoreError`] for an unreadable file or a bad pattern.
    pub fn for_context(context: &Path) -> Result<Self, IgnoreError> {
        let path = context.join(".dockerignore");
        match fs::read_to_string(&path) {
            Ok(text) => IgnoreMatcher::parse(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(IgnoreMatcher::empty()),
            Err(source) => Err(IgnoreError::Read { path, source }),
        }
    }

    /// Compiles the text of a `.dockerignore`.
    ///
    /// # Errors
    ///
    /// [`IgnoreError::Pattern`] naming the line.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }

            let (exception, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(body);
            if cleaned.is_empty() {
                continue;
            }

            let glob = compile(&cleaned).map_err(|source| IgnoreError::Pattern {
                line: index + 1,
                pattern: raw.to_owned(),
                source,
            })?;
            patterns.push(Pattern {
                matcher: glob.compile_matcher(),
                exception,
            });
        }
        Ok(IgnoreMatcher { patterns })
    }

    /// Whether any pattern is an exception (`!`); then an excluded directory
    /// must still be walked, since something under it may be let back in.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `rel` (relative to the context root) is excluded.
    pub fn is_excluded(&self, rel: &Path) -> bool {
        let mut excluded = false;
        for pattern in &self.patterns {
            let hit = rel
                .ancestors()
                .filter(|a| !a.as_os_str().is_empty())
                .any(|a| pattern.matcher.is_match(a));
            if hit {
                excluded = !pattern.exception;
            }
        }
        excluded
    }
}

/// Docker's `filepath.Clean` of a pattern, without the leading `/`.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Compiles a Docker pattern; `{` and `}` are literal in Go's matcher.
fn compile(pattern: &str) -> Result<Glob, globset::Error> {
    let escaped = pattern.replace('{', "[{]").replace('}', "[}]");
    GlobBuilder::new(&escaped)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn m(text: &str) -> IgnoreMatcher {
        IgnoreMatcher::parse(text).unwrap()
    }

    fn ex(matcher: &IgnoreMatcher, path: &str) -> bool {
        matcher.is_excluded(Path::new(path))
    }

    #[test]
    fn simple_patterns_and_directories() {
        let matcher = m("# comment\n\n*.log\n/target\nnode_modules/\n");
        assert!(ex(&matcher, "a.log"));
        assert!(!ex(&matcher, "dir/a.log"), "* does not cross /");
        assert!(ex(&matcher, "target"));
        assert!(
            ex(&matcher, "target/debug/x"),
            "a matched directory excludes its tree"
        );
        assert!(ex(&matcher, "node_modules/pkg/index.js"));
        assert!(!ex(&matcher, "src/main.rs"));
    }

    #[test]
    fn double_star_crosses_directories() {
        let matcher = m("**/*.tmp\ndocs/**/draft\n");
        assert!(ex(&matcher, "x.tmp"));
        assert!(ex(&matcher, "a/b/c/x.tmp"));
        assert!(ex(&matcher, "docs/draft"));
        assert!(ex(&matcher, "docs/a/b/draft/file"));
        assert!(!ex(&matcher, "docs/drafts"));
    }

    #[test]
    fn exceptions_let_files_back_in_and_last_match_wins() {
        let matcher = m("*.md\n!README.md\n");
        assert!(ex(&matcher, "CHANGES.md"));
        assert!(!ex(&matcher, "README.md"));
        assert!(matcher.has_exceptions());

        let matcher = m("!README.md\n*.md\n");
        assert!(
            ex(&matcher, "README.md"),
            "a later pattern overrides the exception"
        );

        let matcher = m("secret\n!secret/public.txt\n");
        assert!(ex(&matcher, "secret/key"));
        assert!(!ex(&matcher, "secret/public.txt"));
    }

    #[test]
    fn patterns_are_cleaned() {
        let matcher = m("./a//b/../c\n");
        assert!(ex(&matcher, "a/c"));
        assert!(!ex(&matcher, "a/b"));
    }

    #[test]
    fn question_mark_and_classes_match_one_character() {
        let matcher = m("file?.txt\n[ab].bin\n{x}\n");
        assert!(ex(&matcher, "file1.txt"));
        assert!(!ex(&matcher, "file10.txt"));
        assert!(ex(&matcher, "a.bin"));
        assert!(!ex(&matcher, "c.bin"));
        assert!(ex(&matcher, "{x}"), "braces are literal");
    }

    #[test]
    fn bad_patterns_name_their_line() {
        let err = IgnoreMatcher::parse("ok\n[unclosed\n").unwrap_err();
        assert!(err
            .to_string()
            .starts_with(".dockerignore line 2: invalid pattern"));
    }
}
