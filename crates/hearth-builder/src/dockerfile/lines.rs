//! From a Dockerfile's text to logical lines: parser directives, comments
//! and line continuations.
//!
//! Parser directives (`# escape=` and `# syntax=`) count only at the very
//! top, before any comment, blank line or instruction. A line whose first
//! non-blank character is `#` is a comment. A line that ends with the escape
//! character (trailing blanks allowed) continues on the next one; comment
//! and blank lines inside a continuation are skipped, and the pieces are
//! joined as they are, as Docker does.

use super::DockerfileError;

/// One instruction's text, joined from its physical lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogicalLine {
    /// The 1-based number of the line where the instruction starts.
    pub line: usize,
    /// The joined text, with the continuation characters removed.
    pub text: String,
}

/// The result of splitting a Dockerfile into instructions.
#[derive(Debug)]
pub(crate) struct Lines {
    /// The escape character (`\` unless the `escape` directive changed it).
    pub escape: char,
    /// The instructions' texts.
    pub lines: Vec<LogicalLine>,
}

/// Splits Dockerfile text into logical lines.
pub(crate) fn split(source: &str) -> Result<Lines, DockerfileError> {
    let physical: Vec<&str> = source
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();

    let (escape, first) = directives(&physical)?;

    let mut lines = Vec::new();
    let mut current: Option<LogicalLine> = None;

    for (index, raw) in physical.iter().enumerate().skip(first) {
        let number = index + 1;
        let trimmed = raw.trim_start();

        match current.as_mut() {
            None => {
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                let (text, continues) = strip_continuation(trimmed, escape);
                let line = LogicalLine {
                    line: number,
                    text: text.to_owned(),
                };
                if continues {
                    current = Some(line);
                } else {
                    lines.push(line);
                }
            }
            Some(open) => {
                // Inside a continuation, comments and blank lines vanish.
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                let (text, continues) = strip_continuation(raw, escape);
                open.text.push_str(text);
                if !continues {
                    lines.extend(current.take());
                }
            }
        }
    }

    // A continuation at the end of the file ends the instruction.
    lines.extend(current);
    Ok(Lines { escape, lines })
}

/// Reads the parser directives at the top; returns the escape character and
/// the index of the first line that is not a directive.
fn directives(physical: &[&str]) -> Result<(char, usize), DockerfileError> {
    let mut escape = None;
    let mut syntax_seen = false;

    for (index, raw) in physical.iter().enumerate() {
        let Some((name, value)) = directive(raw) else {
            return Ok((escape.unwrap_or('\\'), index));
        };
        let line = index + 1;

        match name.as_str() {
            "escape" => {
                if escape.is_some() {
                    return Err(DockerfileError::DuplicateDirective { line, name });
                }
                escape = Some(match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => return Err(DockerfileError::BadEscape { line, value }),
                });
            }
            "syntax" | "check" => {
                if name == "syntax" && std::mem::replace(&mut syntax_seen, true) {
                    return Err(DockerfileError::DuplicateDirective { line, name });
                }
            }
            // An unknown directive is a comment, and ends the directives.
            _ => return Ok((escape.unwrap_or('\\'), index + 1)),
        }
    }
    Ok((escape.unwrap_or('\\'), physical.len()))
}

/// Parses `# name=value`; `None` when the line is not of that shape.
fn directive(raw: &str) -> Option<(String, String)> {
    let rest = raw.trim_start().strip_prefix('#')?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let value = value.trim();
    if value.chars().any(char::is_whitespace) {
        return None;
    }
    Some((name.to_ascii_lowercase(), value.to_owned()))
}

/// Removes a trailing escape character (and blanks after it); says whether
/// the line continues.
fn strip_continuation(text: &str, escape: char) -> (&str, bool) {
    let end = text.trim_end_matches([' ', '\t']);
    match end.strip_suffix(escape) {
        Some(kept) => (kept, true),
        None => (text.trim_end(), false),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<(usize, String)> {
        split(src)
            .unwrap()
            .lines
            .into_iter()
            .map(|l| (l.line, l.text))
            .collect()
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let src = "# a comment\n\nFROM x\n   # indented comment\nRUN a\n";
        assert_eq!(texts(src), vec![(3, "FROM x".into()), (5, "RUN a".into())]);
    }

    #[test]
    fn continuations_join_and_keep_the_start_line() {
        let src = "FROM x\nRUN a \\\n  && b \\\n# inner comment\n\n  && c\nCMD d\n";
        assert_eq!(
            texts(src),
            vec![
                (1, "FROM x".into()),
                (2, "RUN a   && b   && c".into()),
                (7, "CMD d".into())
            ]
        );
    }

    #[test]
    fn continuation_at_end_of_file_ends_the_instruction() {
        assert_eq!(
            texts("FROM x\nRUN a \\"),
            vec![(1, "FROM x".into()), (2, "RUN a ".into())]
        );
    }

    #[test]
    fn escape_directive_changes_the_continuation_character() {
        let src = "# escape=`\nFROM x\nRUN dir C:\\ `\n  /w\n";
        let lines = split(src).unwrap();
        assert_eq!(lines.escape, '`');
        assert_eq!(lines.lines[1].text, "RUN dir C:\\   /w");
    }

    #[test]
    fn directives_count_only_at_the_top() {
        let src = "FROM x\n# escape=`\nRUN a \\\n b\n";
        let lines = split(src).unwrap();
        assert_eq!(lines.escape, '\\');
        assert_eq!(lines.lines[1].text, "RUN a  b");
    }

    #[test]
    fn bad_and_duplicate_directives_are_errors() {
        let err = split("# escape=x\nFROM a\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 1: invalid escape directive \"x\" (expected \\ or `)"
        );
        let err = split("# escape=`\n# escape=\\\nFROM a\n").unwrap_err();
        assert_eq!(err.to_string(), "line 2: duplicate parser directive escape");
    }

    #[test]
    fn crlf_line_endings_are_accepted() {
        assert_eq!(
            texts("FROM x\r\nRUN a\r\n"),
            vec![(1, "FROM x".into()), (2, "RUN a".into())]
        );
    }
}
