//! A line-oriented dotenv parser that reports every malformed line with its number.
//!
//! This is not `dotenvy`: dotenvy stops at the first bad line, gives no line number for most
//! problems, and fails the whole file on bytes that are not UTF-8, while `env check` must list
//! every problem at once so that one run is enough to fix a file. The dialect is the one docker
//! compose reads, minus what the project does not need:
//!
//! - `NAME=value`, optionally preceded by `export `; spaces around `=` are allowed.
//! - Full-line comments start with `#`; after an unquoted value, ` #` (a `#` after a space or a
//!   tab) starts a comment. A `#` anywhere else, or inside quotes, is part of the value.
//! - Unquoted values are trimmed. Single quotes keep everything literally. Double quotes process
//!   `\n`, `\r`, `\t`, `\"`, `\\` and `\$`.
//! - LF or CRLF line endings; a UTF-8 byte order mark at the start is skipped.
//! - A value fits on one line: a quote left open is an error on that line rather than a value
//!   that silently swallows the rest of the file. None of the variables needs more than a line.
//! - No `${VAR}` interpolation: a value that compose would interpolate gets a warning instead.

use super::report::Problem;

/// How a value was written, which decides how it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    None,
    Single,
    Double,
}

/// One `NAME=value` assignment, with the value as the containers will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The 1-based line, or `None` for values that did not come from a file.
    pub line: Option<usize>,
    pub key: String,
    pub value: String,
    pub quote: Quote,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads a dotenv file into its assignments, in file order (duplicates included), and every
/// problem found on the way. Never fails: a line that cannot be read is a problem, and parsing
/// goes on with the next line.
pub fn parse(bytes: &[u8]) -> (Vec<Entry>, Vec<Problem>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut bytes = bytes;
    if let Some(rest) = bytes.strip_prefix(BOM) {
        problems.push(
            Problem::warning(
                "bom",
                "the file starts with a UTF-8 byte order mark; it is skipped here, but some \
                 tools read it as part of the first variable's name",
                "save the file as UTF-8 without a byte order mark",
            )
            .at(Some(1)),
        );
        bytes = rest;
    }
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(raw) {
            Ok(text) => parse_line(number, text, &mut entries, &mut problems),
            // The line's text is not shown: it may hold a secret, and it is not printable anyway.
            Err(err) => problems.push(
                Problem::error(
                    "utf8",
                    format!(
                        "this line is not valid UTF-8 (the first bad byte is at column {})",
                        err.valid_up_to() + 1
                    ),
                    "save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 FILE > FILE.new`, or \
                     retype the value",
                )
                .at(Some(number)),
            ),
        }
    }
    if entries.is_empty() && !problems.iter().any(Problem::is_error) {
        problems.push(Problem::error(
            "empty-file",
            "the file sets no variables",
            "start from the template: `cp env/.env.example .env` (from the repository root), \
             then replace every REPLACE_ME",
        ));
    }
    (entries, problems)
}

fn parse_line(number: usize, text: &str, entries: &mut Vec<Entry>, problems: &mut Vec<Problem>) {
    let line = Some(number);
    let trimmed = text.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return;
    }
    if text.contains('\r') {
        problems.push(
            Problem::error(
                "stray-cr",
                "this line has a carriage return (\\r) in the middle",
                "save the file with LF or CRLF line endings; an old Mac editor may have written \
                 CR alone",
            )
            .at(line),
        );
        return;
    }
    let body = strip_export(trimmed);
    let Some((key, after_eq)) = body.split_once('=') else {
        problems.push(no_equals(body.trim()).at(line));
        return;
    };
    let key = key.trim_end();
    if !is_valid_name(key) {
        // The text before `=` is not shown: on a pasted line it may be part of a secret.
        problems.push(
            Problem::error(
                "name",
                "the name before `=` is not a valid variable name",
                "use only letters, digits and `_`, not starting with a digit (e.g. \
                 DATABASE_URL=...)",
            )
            .at(line),
        );
        return;
    }
    let start = after_eq.trim_start_matches([' ', '\t']);
    let (value, quote) = match start.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let double = q == '"';
            let inner = &start[1..];
            let closed = if double {
                read_double(inner)
            } else {
                read_single(inner)
            };
            let Some(Read {
                value,
                rest,
                unknown_escapes,
            }) = closed
            else {
                let which = if double { "double" } else { "single" };
                problems.push(
                    Problem::error(
                        "unclosed-quote",
                        format!("the {which} quote that opens the value of {key} is never closed"),
                        format!(
                            "end the value with {q} on the same line; values cannot span lines \
                             (inside double quotes, write \\n for a newline)"
                        ),
                    )
                    .at(line)
                    .var(key),
                );
                return;
            };
            let rest = rest.trim_start();
            if !rest.is_empty() && !rest.starts_with('#') {
                problems.push(
                    Problem::error(
                        "after-quote",
                        format!("text follows the closing quote of {key}'s value"),
                        "put the whole value inside the quotes, or start a comment with ` #`",
                    )
                    .at(line)
                    .var(key),
                );
                return;
            }
            if !unknown_escapes.is_empty() {
                let list: Vec<String> = unknown_escapes.iter().map(|c| format!("\\{c}")).collect();
                problems.push(
                    Problem::warning(
                        "escape",
                        format!(
                            "the value of {key} has {} inside double quotes, which is kept as \
                             written (backslash included)",
                            list.join(", ")
                        ),
                        "write \\\\ for a backslash, or use single quotes to keep the text \
                         literally",
                    )
                    .at(line)
                    .var(key),
                );
            }
            if double && interpolates(inner) {
                problems.push(interpolation(key).at(line));
            }
            (value, if double { Quote::Double } else { Quote::Single })
        }
        _ => {
            let (raw, commented) = match inline_comment(after_eq) {
                Some(at) => (&after_eq[..at], true),
                None => (after_eq, false),
            };
            let value = raw.trim();
            if !commented && raw.trim_start().len() != value.len() {
                problems.push(
                    Problem::warning(
                        "trailing-space",
                        format!("the value of {key} ends with spaces, which are removed"),
                        "delete them, or quote the value if they are meant",
                    )
                    .at(line)
                    .var(key),
                );
            }
            if interpolates(value) {
                problems.push(interpolation(key).at(line));
            }
            (value.to_string(), Quote::None)
        }
    };
    entries.push(Entry {
        line,
        key: key.to_string(),
        value,
        quote,
    });
}

/// `export NAME=value` is accepted so that the same file can be `source`d by a shell.
fn strip_export(text: &str) -> &str {
    match text.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => text,
    }
}

fn no_equals(text: &str) -> Problem {
    if is_valid_name(text) {
        Problem::error(
            "no-equals",
            format!("{text} has no `=` and no value"),
            format!("write {text}=value (or {text}= for an empty value), or put # in front"),
        )
        .var(text)
    } else {
        // A line that is not a name may be a pasted secret: it is not shown.
        Problem::error(
            "no-equals",
            "this line is not a NAME=value assignment (its text is not shown: it may be a secret)",
            "write it as NAME=value, or put # in front to make it a comment",
        )
    }
}

pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Read<'a> {
    value: String,
    /// What follows the closing quote.
    rest: &'a str,
    unknown_escapes: Vec<char>,
}

/// Reads a double-quoted value up to its closing quote; `None` when the quote is never closed.
fn read_double(text: &str) -> Option<Read<'_>> {
    let mut value = String::new();
    let mut unknown_escapes = Vec::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => {
                return Some(Read {
                    value,
                    rest: &text[at + 1..],
                    unknown_escapes,
                })
            }
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                'r' => value.push('\r'),
                't' => value.push('\t'),
                escaped @ ('"' | '\\' | '$') => value.push(escaped),
                other => {
                    value.push('\\');
                    value.push(other);
                    unknown_escapes.push(other);
                }
            },
            _ => value.push(c),
        }
    }
    None
}

fn read_single(text: &str) -> Option<Read<'_>> {
    let end = text.find('\'')?;
    Some(Read {
        value: text[..end].to_string(),
        rest: &text[end + 1..],
        unknown_escapes: vec![],
    })
}

/// Where an inline comment starts in an unquoted value: a `#` after a space or a tab.
fn inline_comment(text: &str) -> Option<usize> {
    text.char_indices()
        .zip(text.chars().skip(1))
        .find(|&((_, before), c)| c == '#' && (before == ' ' || before == '\t'))
        .map(|((at, before), _)| at + before.len_utf8())
}

/// True when docker compose would replace part of the value with another variable: `$NAME` or
/// `${...}`. `$$` is compose's escape for a literal `$` and `\$` the double-quote one.
fn interpolates(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 2,
            b'$' => {
                if matches!(bytes.get(i + 1), Some(c) if *c == b'{' || c.is_ascii_alphabetic() || *c == b'_')
                {
                    return true;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    false
}

fn interpolation(key: &str) -> Problem {
    Problem::warning(
        "interpolation",
        format!(
            "the value of {key} contains `$NAME` or `${{...}}`, which docker compose replaces with \
             another variable's value"
        ),
        "write $$ for a literal $, or put the value in single quotes",
    )
    .var(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(String, String)> {
        let (entries, problems) = parse(text.as_bytes());
        let errors: Vec<_> = problems.iter().filter(|p| p.is_error()).collect();
        assert!(errors.is_empty(), "unexpected errors: {errors:#?}");
        entries.into_iter().map(|e| (e.key, e.value)).collect()
    }

    fn value(text: &str) -> String {
        let all = entries(text);
        assert_eq!(all.len(), 1, "{all:?}");
        all[0].1.clone()
    }

    /// (line, rule) of every problem, for asserting on the whole list at once.
    fn problems(text: &[u8]) -> Vec<(Option<usize>, &'static str)> {
        parse(text).1.iter().map(|p| (p.line, p.rule)).collect()
    }

    #[test]
    fn plain_assignments_with_line_numbers() {
        let (entries, problems) = parse(b"# comment\n\nA=1\n  B = two words  # note\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (
                entries[0].line,
                entries[0].key.as_str(),
                entries[0].value.as_str()
            ),
            (Some(3), "A", "1")
        );
        assert_eq!(
            (
                entries[1].line,
                entries[1].key.as_str(),
                entries[1].value.as_str()
            ),
            (Some(4), "B", "two words")
        );
    }

    #[test]
    fn empty_file_whitespace_and_comments_only_are_errors() {
        assert_eq!(problems(b""), [(None, "empty-file")]);
        assert_eq!(problems(b"\n  \n\t\n"), [(None, "empty-file")]);
        assert_eq!(problems(b"# only a comment\n"), [(None, "empty-file")]);
    }

    #[test]
    fn bom_is_skipped_with_a_warning() {
        let (entries, problems) = parse(b"\xEF\xBB\xBFA=1\n");
        assert_eq!(entries[0].key, "A");
        assert_eq!(problems.len(), 1);
        assert_eq!(
            (problems[0].line, problems[0].rule, problems[0].is_error()),
            (Some(1), "bom", false)
        );
    }

    #[test]
    fn crlf_line_endings_are_accepted() {
        assert_eq!(
            entries("A=1\r\nB=\"two\"\r\nC='three' # c\r\n"),
            [
                ("A".into(), "1".into()),
                ("B".into(), "two".into()),
                ("C".into(), "three".into())
            ]
        );
    }

    #[test]
    fn a_lone_carriage_return_is_an_error() {
        assert_eq!(problems(b"A=1\rB=2\n"), [(Some(1), "stray-cr")]);
    }

    #[test]
    fn export_prefix_is_accepted() {
        assert_eq!(
            entries("export A=1\nexport\tB=2\n"),
            [("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        // A variable may be called `export`-something.
        assert_eq!(entries("exported=1\n"), [("exported".into(), "1".into())]);
    }

    #[test]
    fn double_quotes_process_escapes() {
        assert_eq!(value(r#"A="a\nb \"q\" c\\d \$e""#), "a\nb \"q\" c\\d $e");
        assert_eq!(value(r#"A="tab\there""#), "tab\there");
    }

    #[test]
    fn unknown_escape_is_kept_with_a_warning() {
        let (entries, problems) = parse(br#"A="a\qb""#);
        assert_eq!(entries[0].value, "a\\qb");
        assert_eq!(
            (problems[0].line, problems[0].rule, problems[0].is_error()),
            (Some(1), "escape", false)
        );
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(value(r"A='a\nb $HOME \\'"), r"a\nb $HOME \\");
    }

    #[test]
    fn hash_inside_quotes_is_kept_and_after_them_is_a_comment() {
        assert_eq!(value("A=\"a # b\" # comment"), "a # b");
        assert_eq!(value("A='x#y' #c"), "x#y");
        assert_eq!(value("A=\"x\"#c"), "x");
    }

    #[test]
    fn inline_comment_needs_a_space_before_the_hash() {
        assert_eq!(value("A=abc#def"), "abc#def");
        assert_eq!(value("A=abc #def"), "abc");
        assert_eq!(value("A=abc\t#def"), "abc");
        assert_eq!(value("A= #only a comment"), "");
        assert_eq!(value("A=#value"), "#value");
    }

    #[test]
    fn unquoted_values_are_trimmed_and_trailing_spaces_warned() {
        let (entries, problems) = parse(b"A=  value   \n");
        assert_eq!(entries[0].value, "value");
        assert_eq!(
            problems
                .iter()
                .map(|p| (p.line, p.rule, p.is_error()))
                .collect::<Vec<_>>(),
            [(Some(1), "trailing-space", false)]
        );
        // The spaces before an inline comment are its separator, not trailing spaces.
        assert!(parse(b"A=value   # c\n").1.is_empty());
        // Spaces inside quotes are the value.
        assert_eq!(value("A=\"  padded  \""), "  padded  ");
    }

    #[test]
    fn empty_values_parse_as_empty() {
        assert_eq!(
            entries("A=\nB=\"\"\nC=''\n"),
            [
                ("A".into(), "".into()),
                ("B".into(), "".into()),
                ("C".into(), "".into())
            ]
        );
    }

    #[test]
    fn spaces_around_equals_are_allowed() {
        assert_eq!(entries("A = 1\n"), [("A".into(), "1".into())]);
    }

    #[test]
    fn equals_inside_a_value_is_kept() {
        assert_eq!(
            value("A=postgresql://h/db?sslmode=require&x=1"),
            "postgresql://h/db?sslmode=require&x=1"
        );
    }

    #[test]
    fn line_without_equals_is_an_error_naming_the_line() {
        let (entries, problems) = parse(b"A=1\nDATABASE_URL\nB=2\n");
        assert_eq!(entries.len(), 2);
        assert_eq!(problems.len(), 1);
        assert_eq!((problems[0].line, problems[0].rule), (Some(2), "no-equals"));
        assert_eq!(problems[0].variable.as_deref(), Some("DATABASE_URL"));
        assert!(
            problems[0].fix.contains("DATABASE_URL=value"),
            "{:?}",
            problems[0]
        );
    }

    #[test]
    fn a_pasted_secret_without_equals_is_not_echoed() {
        let (_, problems) = parse(b"A=1\nsk-proj-pasted secret words\n");
        assert_eq!((problems[0].line, problems[0].rule), (Some(2), "no-equals"));
        assert_eq!(problems[0].variable, None);
        assert!(!problems[0].message.contains("pasted"), "{:?}", problems[0]);
    }

    #[test]
    fn invalid_names_are_errors_and_not_echoed() {
        assert_eq!(
            problems(b"1A=x\nMY-VAR=y\nMY VAR=z\nOK=1\n"),
            [(Some(1), "name"), (Some(2), "name"), (Some(3), "name")]
        );
        let (_, found) = parse(b"c2Vj+cmV0/c2VjcmV0=\n");
        assert!(!found[0].message.contains("c2Vj"), "{:?}", found[0]);
    }

    #[test]
    fn unclosed_quote_is_an_error_on_its_line_and_parsing_goes_on() {
        let (entries, found) = parse(b"A=\"open\nB='open\nC=fine\n");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].key, "C");
        assert_eq!(
            found.iter().map(|p| (p.line, p.rule)).collect::<Vec<_>>(),
            [(Some(1), "unclosed-quote"), (Some(2), "unclosed-quote")]
        );
        // A backslash before the last quote escapes it.
        assert_eq!(
            problems(br#"A="ends with \""#),
            [(Some(1), "unclosed-quote")]
        );
    }

    #[test]
    fn text_after_the_closing_quote_is_an_error() {
        assert_eq!(problems(b"A=\"x\"y\nB=1\n"), [(Some(1), "after-quote")]);
    }

    #[test]
    fn non_utf8_bytes_are_an_error_with_line_and_column_and_parsing_goes_on() {
        let (entries, found) = parse(b"A=1\nB=caf\xE9\nC=3\n");
        assert_eq!(
            entries.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["A", "C"]
        );
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].line, found[0].rule), (Some(2), "utf8"));
        assert!(found[0].message.contains("column 6"), "{:?}", found[0]);
    }

    #[test]
    fn duplicates_are_all_returned_in_order() {
        // Which one wins is the validator's business; the parser keeps them all.
        let (entries, _) = parse(b"A=1\nA=2\n");
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.line, e.value.as_str()))
                .collect::<Vec<_>>(),
            [(Some(1), "1"), (Some(2), "2")]
        );
    }

    #[test]
    fn interpolation_is_warned_but_escapes_and_single_quotes_are_not() {
        assert_eq!(problems(b"A=x$HOME\n"), [(Some(1), "interpolation")]);
        assert_eq!(problems(b"A=\"${X}\"\n"), [(Some(1), "interpolation")]);
        assert!(problems(b"A=pa$$word\nB='$HOME'\nC=\"\\$HOME\"\nD=cost$5\nE=end$\n").is_empty());
    }

    #[test]
    fn quote_inside_an_unquoted_value_is_literal() {
        assert_eq!(value("A=it's"), "it's");
    }
}
