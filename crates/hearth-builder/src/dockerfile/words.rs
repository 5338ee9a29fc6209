//! Docker's word processing: quote removal, escapes and variable substitution.
//!
//! Docker substitutes variables in the arguments of ADD, COPY, ENV, EXPOSE,
//! FROM, LABEL, USER, WORKDIR and ARG (not in RUN, CMD or ENTRYPOINT, whose
//! shell does it). The rules follow its shell lexer:
//!
//! - outside quotes the escape character makes the next character literal;
//! - inside single quotes everything is literal;
//! - inside double quotes the escape character only escapes `"`, `$` and
//!   itself, and variables are expanded;
//! - `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME-word}`, `${NAME:+word}`,
//!   `${NAME+word}`, `${NAME:?message}` and `${NAME?message}`; a `$` that
//!   starts none of these is literal.

use std::iter::Peekable;
use std::str::Chars;

/// Why a word could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WordError {
    /// A quote was opened and never closed.
    #[error("unterminated {quote} quote in {word:?}")]
    UnterminatedQuote {
        /// The quote character.
        quote: char,
        /// The word being processed.
        word: String,
    },
    /// A `${` without its closing `}` or with an empty or malformed name.
    #[error("bad substitution in {word:?}")]
    BadSubstitution {
        /// The word being processed.
        word: String,
    },
    /// `${NAME:?message}` with NAME unset (or empty, for the `:` form).
    #[error("{name}: {message}")]
    Required {
        /// The variable's name.
        name: String,
        /// The message given after `?`, or a default one.
        message: String,
    },
}

/// Looks a variable up; `None` means unset.
pub trait Lookup {
    /// The value of `name`, if it is set.
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Processes one word: removes quotes and escapes and expands variables.
///
/// # Errors
///
/// [`WordError`] for an unterminated quote, a malformed `${…}` or a `:?`
/// expansion of an unset variable.
pub fn expand(word: &str, escape: char, env: &dyn Lookup) -> Result<String, WordError> {
    let mut lexer = Lexer {
        chars: word.chars().peekable(),
        escape,
        env,
        word,
    };
    lexer.process(None)
}

/// Processes a string into several words, splitting on unquoted whitespace
/// after expansion, as Docker does for EXPOSE.
///
/// # Errors
///
/// As [`expand`].
pub fn expand_fields(text: &str, escape: char, env: &dyn Lookup) -> Result<Vec<String>, WordError> {
    let mut out = Vec::new();
    for word in split_words(text, escape) {
        let expanded = expand(&word, escape, env)?;
        out.extend(expanded.split_whitespace().map(str::to_owned));
    }
    Ok(out)
}

/// Checks a word's syntax without knowing the variables' values.
///
/// # Errors
///
/// As [`expand`], except that no variable counts as unset.
pub fn validate(word: &str, escape: char) -> Result<(), WordError> {
    let anything = |_: &str| Some(String::from("x"));
    expand(word, escape, &anything).map(|_| ())
}

/// Splits a line into words on whitespace outside quotes, keeping quotes and
/// escapes in the words (Docker's `parseWords`).
pub fn split_words(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();

    while let Some(ch) = chars.next() {
        if quote.is_none() && ch.is_whitespace() {
            if in_word {
                words.push(std::mem::take(&mut current));
                in_word = false;
            }
            continue;
        }
        in_word = true;

        if ch == escape && quote != Some('\'') {
            current.push(ch);
            if let Some(next) = chars.next() {
                current.push(next);
            }
            continue;
        }

        if quote == Some(ch) {
            quote = None;
        } else if quote.is_none() && (ch == '"' || ch == '\'') {
            quote = Some(ch);
        }
        current.push(ch);
    }

    if in_word {
        words.push(current);
    }
    words
}

struct Lexer<'a> {
    chars: Peekable<Chars<'a>>,
    escape: char,
    env: &'a dyn Lookup,
    word: &'a str,
}

impl Lexer<'_> {
    /// Processes characters until the end, or until `stop` outside quotes
    /// (the `}` that ends a `${…}` word), which is consumed.
    fn process(&mut self, stop: Option<char>) -> Result<String, WordError> {
        let mut out = String::new();
        loop {
            let Some(ch) = self.chars.next() else {
                return match stop {
                    Some(_) => Err(self.bad_substitution()),
                    None => Ok(out),
                };
            };

            if Some(ch) == stop {
                return Ok(out);
            }

            match ch {
                '\'' => self.single_quoted(&mut out)?,
                '"' => self.double_quoted(&mut out)?,
                '$' => self.dollar(&mut out)?,
                c if c == self.escape => match self.chars.next() {
                    Some(next) => out.push(next),
                    None => out.push(c),
                },
                c => out.push(c),
            }
        }
    }

    fn single_quoted(&mut self, out: &mut String) -> Result<(), WordError> {
        for ch in self.chars.by_ref() {
            if ch == '\'' {
                return Ok(());
            }
            out.push(ch);
        }
        Err(WordError::UnterminatedQuote {
            quote: '\'',
            word: self.word.to_owned(),
        })
    }

    fn double_quoted(&mut self, out: &mut String) -> Result<(), WordError> {
        while let Some(ch) = self.chars.next() {
            match ch {
                '"' => return Ok(()),
                '$' => self.dollar(out)?,
                c if c == self.escape => match self.chars.peek().copied() {
                    Some(next) if next == '"' || next == '$' || next == self.escape => {
                        self.chars.next();
                        out.push(next);
                    }
                    _ => out.push(c),
                },
                c => out.push(c),
            }
        }
        Err(WordError::UnterminatedQuote {
            quote: '"',
            word: self.word.to_owned(),
        })
    }

    /// Expands what follows a `$`.
    fn dollar(&mut self, out: &mut String) -> Result<(), WordError> {
        match self.chars.peek().copied() {
            Some('{') => {
                self.chars.next();
                self.braced(out)
            }
            Some(c) if is_name_char(c) => {
                let name = self.name();
                out.push_str(&self.env.get(&name).unwrap_or_default());
                Ok(())
            }
            _ => {
                out.push('$');
                Ok(())
            }
        }
    }

    /// Expands `${…}` after its opening brace.
    fn braced(&mut self, out: &mut String) -> Result<(), WordError> {
        let name = self.name();
        if name.is_empty() {
            return Err(self.bad_substitution());
        }
        let value = self.env.get(&name);

        let Some(op) = self.chars.next() else {
            return Err(self.bad_substitution());
        };
        if op == '}' {
            out.push_str(&value.unwrap_or_default());
            return Ok(());
        }

        // `:` makes an empty value count as unset.
        let (colon, op) = if op == ':' {
            (
                true,
                self.chars.next().ok_or_else(|| self.bad_substitution())?,
            )
        } else {
            (false, op)
        };
        let set = match &value {
            Some(v) => !(colon && v.is_empty()),
            None => false,
        };

        let word = self.process(Some('}'))?;
        match op {
            '-' => out.push_str(&if set { value.unwrap_or_default() } else { word }),
            '+' => {
                if set {
                    out.push_str(&word);
                }
            }
            '?' => {
                if !set {
                    let message = if word.is_empty() {
                        String::from("is not allowed to be unset")
                    } else {
                        word
                    };
                    return Err(WordError::Required { name, message });
                }
                out.push_str(&value.unwrap_or_default());
            }
            _ => return Err(self.bad_substitution()),
        }
        Ok(())
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(&c) = self.chars.peek() {
            if !is_name_char(c) {
                break;
            }
            name.push(c);
            self.chars.next();
        }
        name
    }

    fn bad_substitution(&self) -> WordError {
        WordError::BadSubstitution {
            word: self.word.to_owned(),
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("apple".into()),
            "EMPTY" => Some(String::new()),
            "SP" => Some("a b".into()),
            _ => None,
        }
    }

    fn x(word: &str) -> String {
        expand(word, '\\', &env).unwrap()
    }

    #[test]
    fn plain_and_braced_variables_expand() {
        assert_eq!(x("$A"), "apple");
        assert_eq!(x("${A}s"), "apples");
        assert_eq!(x("x$A-y"), "xapple-y");
        assert_eq!(x("$NOPE"), "");
        assert_eq!(x("cost: $"), "cost: $");
        assert_eq!(x("$/"), "$/");
    }

    #[test]
    fn defaults_and_alternatives_follow_docker() {
        assert_eq!(x("${NOPE:-dflt}"), "dflt");
        assert_eq!(x("${EMPTY:-dflt}"), "dflt");
        assert_eq!(x("${EMPTY-dflt}"), "");
        assert_eq!(x("${A:-dflt}"), "apple");
        assert_eq!(x("${A:+alt}"), "alt");
        assert_eq!(x("${NOPE:+alt}"), "");
        assert_eq!(x("${EMPTY:+alt}"), "");
        assert_eq!(x("${EMPTY+alt}"), "alt");
        assert_eq!(x("${NOPE:-${A}}"), "apple");
    }

    #[test]
    fn quotes_and_escapes_are_removed() {
        assert_eq!(x(r#""v 2""#), "v 2");
        assert_eq!(x("'$A'"), "$A");
        assert_eq!(x(r#""$A""#), "apple");
        assert_eq!(x(r"\$A"), "$A");
        assert_eq!(x(r#""a\"b""#), "a\"b");
        assert_eq!(x(r#""a\nb""#), "a\\nb");
        assert_eq!(x(r"a\ b"), "a b");
    }

    #[test]
    fn backtick_escape_works() {
        assert_eq!(expand("`$A", '`', &env).unwrap(), "$A");
        assert_eq!(expand(r"C:\dir", '`', &env).unwrap(), r"C:\dir");
    }

    #[test]
    fn malformed_words_are_errors() {
        let bad = |w: &str| expand(w, '\\', &env).unwrap_err();
        assert!(matches!(bad("${A"), WordError::BadSubstitution { .. }));
        assert!(matches!(bad("${}"), WordError::BadSubstitution { .. }));
        assert!(matches!(bad("${A:x}"), WordError::BadSubstitution { .. }));
        assert!(matches!(
            bad("'open"),
            WordError::UnterminatedQuote { quote: '\'', .. }
        ));
        assert!(matches!(
            bad("\"open"),
            WordError::UnterminatedQuote { quote: '"', .. }
        ));
        assert_eq!(bad("${NOPE:?must be set}").to_string(), "NOPE: must be set");
        assert!(validate("${NOPE:?x}", '\\').is_ok());
    }

    #[test]
    fn split_words_keeps_quoted_whitespace() {
        let words = split_words(r#"k=v k2="v 2" k3='a b' k4=a\ b"#, '\\');
        assert_eq!(words, vec!["k=v", r#"k2="v 2""#, "k3='a b'", r"k4=a\ b"]);
    }

    #[test]
    fn fields_split_after_expansion() {
        assert_eq!(
            expand_fields("$SP c", '\\', &env).unwrap(),
            vec!["a", "b", "c"]
        );
    }
}
