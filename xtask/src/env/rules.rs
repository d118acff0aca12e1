//! The spec's rules for each variable, declared once as data, and the one validator that applies
//! them (data-model.md, "4. Environment Configuration").

use std::collections::BTreeMap;

use url::Url;

use super::parse::Entry;
use super::report::{Problem, Var};

/// How much of a value may be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrecy {
    Plain,
    /// Never shown: `**** (N chars)`.
    Secret,
    /// A connection URL whose password (in the user part or a `password=` query parameter) is
    /// replaced by `****`; the whole value is masked when it cannot be parsed.
    UrlPassword,
}

/// Everything the project knows about one variable.
pub struct VarRule {
    pub name: &'static str,
    /// The heading it sits under in `env/.env.example`, which a test holds the file to.
    #[cfg_attr(not(test), allow(dead_code))]
    pub group: &'static str,
    pub required: bool,
    pub secrecy: Secrecy,
    /// The short name reported when `check` fails.
    pub rule: &'static str,
    /// What a valid value is, completing "NAME must be ...".
    pub describe: &'static str,
    pub fix: &'static str,
    /// Says why a non-empty value breaks the rule, in words that never contain the value of a
    /// secret.
    pub check: fn(&str) -> Result<(), String>,
}

/// Every variable the containers and the xtask read. A variable not listed here gets a warning.
pub const RULES: &[VarRule] = &[
    VarRule {
        name: "DATABASE_URL",
        group: "Database",
        required: true,
        secrecy: Secrecy::UrlPassword,
        rule: "postgres-url",
        describe: "a PostgreSQL connection string (postgresql://USER:PASSWORD@HOST/DBNAME)",
        fix: "copy the connection string from the Neon console (Connection Details), e.g. \
              postgresql://USER:PASSWORD@ep-name-123456.us-east-2.aws.neon.tech/neondb?sslmode=require",
        check: postgres_url,
    },
    VarRule {
        name: "BETTER_AUTH_SECRET",
        group: "Authentication",
        required: true,
        secrecy: Secrecy::Secret,
        rule: "min-length",
        describe: "at least 32 characters long",
        fix: "generate one with `openssl rand -base64 32`; frontend and backend share this value",
        check: at_least_32_chars,
    },
    VarRule {
        name: "BETTER_AUTH_URL",
        group: "Authentication",
        required: true,
        secrecy: Secrecy::Plain,
        rule: "http-url",
        describe: "an http:// or https:// URL with a host (the frontend's address in the browser)",
        fix: "e.g. BETTER_AUTH_URL=http://localhost:3000",
        check: http_url,
    },
    VarRule {
        name: "OPENAI_API_KEY",
        group: "AI",
        required: true,
        secrecy: Secrecy::Secret,
        rule: "openai-key",
        describe: "an OpenAI API key (it starts with `sk-`)",
        fix: "create a key at https://platform.openai.com/api-keys and paste it whole",
        check: openai_key,
    },
    VarRule {
        name: "AGENT_MODEL",
        group: "AI",
        required: true,
        secrecy: Secrecy::Plain,
        rule: "model-id",
        describe: "an OpenAI model identifier, without spaces",
        fix: "e.g. AGENT_MODEL=gpt-4o",
        check: model_id,
    },
    VarRule {
        name: "NEXT_PUBLIC_API_URL",
        group: "Service URLs",
        required: true,
        secrecy: Secrecy::Plain,
        rule: "http-url",
        describe: "an http:// or https:// URL with a host (the backend API's address)",
        fix: "e.g. NEXT_PUBLIC_API_URL=http://localhost:8000",
        check: http_url,
    },
    VarRule {
        name: "FRONTEND_URL",
        group: "Service URLs",
        required: true,
        secrecy: Secrecy::Plain,
        rule: "http-url",
        describe: "an http:// or https:// URL with a host (the frontend's address in the browser)",
        fix: "e.g. FRONTEND_URL=http://localhost:3000",
        check: http_url,
    },
    VarRule {
        name: "DOCKER_REGISTRY",
        group: "Docker registry",
        required: false,
        secrecy: Secrecy::Plain,
        rule: "registry",
        describe: "a registry namespace: NAME (a Docker Hub user), HOST[:PORT] or \
                   HOST[:PORT]/NAMESPACE",
        fix: "e.g. DOCKER_REGISTRY=myuser for Docker Hub or localhost:5000/todo for a local \
              registry; leave it empty to keep the images local",
        check: registry,
    },
    VarRule {
        name: "VERSION",
        group: "Docker registry",
        required: true,
        secrecy: Secrecy::Plain,
        rule: "semver",
        describe: "a semantic version with a leading v (v1.0.0, v1.2.3-rc.1)",
        fix: "e.g. VERSION=v1.0.0",
        check: version,
    },
    VarRule {
        name: "OPENAI_BASE_URL",
        group: "AI",
        required: false,
        secrecy: Secrecy::Plain,
        rule: "http-url",
        describe: "an http:// or https:// URL with a host (an OpenAI-compatible API)",
        fix: "e.g. OPENAI_BASE_URL=http://localhost:11434/v1, or leave it empty for OpenAI itself",
        check: http_url,
    },
    VarRule {
        name: "COSIGN_KEY",
        group: "Release signing",
        required: false,
        secrecy: Secrecy::Plain,
        rule: "key-path",
        describe: "the absolute path of a cosign private key (its .pub beside it)",
        fix: "make a key pair with `cargo xtask keygen` and give the path it prints, e.g. \
              COSIGN_KEY=/root/.config/todo-chatbot/cosign.key; empty releases need --no-sign",
        check: key_path,
    },
    VarRule {
        name: "COSIGN_PASSWORD",
        group: "Release signing",
        required: false,
        secrecy: Secrecy::Secret,
        rule: "trimmed",
        describe: "the password of the cosign key, without spaces around it",
        fix: "the password given to `cargo xtask keygen`, as typed (a space before or after is \
              usually a copy error)",
        check: trimmed,
    },
];

/// Settings the containers read beyond the spec's variables, each with a default and checked by
/// the container itself at start (the limits and optional routes of backend/README.md and
/// frontend/README.md). Set in `.env`, compose passes them on, so `check` does not call them
/// unknown; they stay out of `env/.env.example`, whose variables are the spec's.
pub const TUNABLES: &[&str] = &[
    "MAX_REQUEST_BYTES",
    "CHAT_TURNS_PER_MINUTE",
    "CHAT_MAX_TOOL_ROUNDS",
    "CHAT_MAX_TOOL_CALLS_PER_RESPONSE",
    "CHAT_MAX_TOOL_CALLS_PER_TURN",
    "CHAT_TOOL_RESULT_MAX_BYTES",
    "CHAT_HISTORY_MAX_BYTES",
    "TODOS_PER_USER_MAX",
    "LIST_PAGE_SIZE",
    "LIST_PAGE_SIZE_MAX",
    "OPS_SLOW_ENABLED",
    "API_DOCS_ENABLED",
    "TRUSTED_PROXIES",
];

/// The marker `env/.env.example` puts where a secret must go. A value still holding it was
/// copied and not filled in, which deserves its own message rather than a confusing rule error.
pub const PLACEHOLDER: &str = "REPLACE_ME";

pub fn rule_for(name: &str) -> Option<&'static VarRule> {
    RULES.iter().find(|r| r.name == name)
}

fn is_placeholder(value: &str) -> bool {
    value
        .to_ascii_uppercase()
        .replace('-', "_")
        .contains(PLACEHOLDER)
}

/// What [`validate`] found: the problems, the variables that won (last one per name), and every
/// raw secret string seen, for [`super::report::Report::new`] to scrub.
pub struct Validated {
    pub problems: Vec<Problem>,
    pub vars: BTreeMap<String, Var>,
    pub secrets: Vec<String>,
}

/// Applies [`RULES`] to the assignments, in file order. When a name is set twice the last one
/// wins, as in docker compose; only the winner is checked.
pub fn validate(entries: &[Entry]) -> Validated {
    let mut problems = Vec::new();
    let mut secrets = Vec::new();
    let mut winners: BTreeMap<&str, &Entry> = BTreeMap::new();
    for entry in entries {
        if let Some(rule) = rule_for(&entry.key) {
            secrets.extend(secret_parts(rule.secrecy, &entry.value));
        }
        if let Some(earlier) = winners.insert(&entry.key, entry) {
            let before = match earlier.line {
                Some(line) => format!("line {line}"),
                None => "earlier".to_string(),
            };
            problems.push(
                Problem::warning(
                    "duplicate",
                    format!(
                        "{} is set again (also on {before}); the last one wins, as in docker \
                         compose",
                        entry.key
                    ),
                    "delete the line you do not want",
                )
                .at(entry.line)
                .var(&entry.key),
            );
        }
    }

    for rule in RULES {
        let name = rule.name;
        let Some(entry) = winners.get(name) else {
            if rule.required {
                problems.push(
                    Problem::error(
                        "required",
                        format!("{name} is not set"),
                        format!("add {name}=... (see env/.env.example): {}", rule.fix),
                    )
                    .var(name),
                );
            }
            continue;
        };
        let value = entry.value.as_str();
        let problem = if value.is_empty() {
            // An optional variable left empty means "not used", as compose reads it.
            rule.required.then(|| {
                Problem::error(
                    "empty",
                    format!("{name} is empty; it is required"),
                    rule.fix,
                )
            })
        } else if is_placeholder(value) {
            Some(Problem::error(
                "placeholder",
                format!("{name} still holds the {PLACEHOLDER} placeholder from env/.env.example"),
                rule.fix,
            ))
        } else {
            (rule.check)(value).err().map(|reason| {
                Problem::error(
                    rule.rule,
                    format!("{name} must be {}: {reason}", rule.describe),
                    rule.fix,
                )
            })
        };
        problems.extend(problem.map(|p| p.at(entry.line).var(name)));
    }

    for (name, entry) in &winners {
        if rule_for(name).is_some() || name.starts_with("COMPOSE_") || TUNABLES.contains(name) {
            // `COMPOSE_*` variables are docker compose's own settings, read from the same file.
            continue;
        }
        let fix = match suggest(name) {
            Some(known) => format!("did you mean {known}? rename it"),
            None => "remove it, or add it to RULES in xtask/src/env/rules.rs if a container now \
                     reads it"
                .to_string(),
        };
        problems.push(
            Problem::warning(
                "unknown",
                format!("{name} is not a variable the containers read; it is ignored"),
                fix,
            )
            .at(entry.line)
            .var(name),
        );
    }

    let vars = winners
        .into_iter()
        .map(|(name, entry)| {
            // Unknown variables are masked: nothing says they are not secrets.
            let secrecy = rule_for(name).map_or(Secrecy::Secret, |r| r.secrecy);
            let shown = show(secrecy, &entry.value);
            let var = Var::new(
                entry.line,
                entry.value.clone(),
                shown,
                secrecy != Secrecy::Plain,
            );
            (name.to_string(), var)
        })
        .collect();
    Validated {
        problems,
        vars,
        secrets,
    }
}

/// The known name an unknown one was probably meant to be: same letters in another case, or at
/// most two edits away.
fn suggest(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    RULES
        .iter()
        .map(|r| (strsim::levenshtein(&upper, r.name), r.name))
        .filter(|&(distance, _)| distance <= 2)
        .min()
        .map(|(_, known)| known)
}

/// The value as it may be printed.
pub fn show(secrecy: Secrecy, value: &str) -> String {
    match secrecy {
        Secrecy::Plain => value.to_string(),
        Secrecy::Secret => masked(value),
        Secrecy::UrlPassword => mask_url_password(value).unwrap_or_else(|| masked(value)),
    }
}

fn masked(value: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        format!("**** ({} chars)", value.chars().count())
    }
}

fn mask_url_password(value: &str) -> Option<String> {
    let mut url = Url::parse(value).ok()?;
    let passwords = url_passwords(&url);
    if url.password().is_some() {
        url.set_password(Some("****")).ok()?;
    }
    if url.query_pairs().any(|(key, _)| key == "password") {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    "****".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    let shown = url.to_string();
    // A password that is also the user name or part of the host would still show through: then
    // nothing of the URL is shown.
    let after_scheme = &shown[url.scheme().len()..];
    if passwords
        .iter()
        .any(|p| !p.is_empty() && after_scheme.contains(p.as_str()))
    {
        return None;
    }
    Some(shown)
}

/// The password of a connection URL, as written and decoded, from the user part and from a
/// `password=` query parameter.
fn url_passwords(url: &Url) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(password) = url.password() {
        found.push(password.to_string());
        found.push(
            percent_encoding::percent_decode_str(password)
                .decode_utf8_lossy()
                .into_owned(),
        );
    }
    found.extend(
        url.query_pairs()
            .filter(|(k, _)| k == "password")
            .map(|(_, v)| v.into_owned()),
    );
    found
}

/// Every string that must not appear in a report for this value. The placeholder is no secret,
/// and scrubbing it would garble the message that names it.
pub(super) fn secret_parts(secrecy: Secrecy, value: &str) -> Vec<String> {
    let parts = match secrecy {
        Secrecy::Plain => vec![],
        Secrecy::Secret => vec![value.to_string()],
        Secrecy::UrlPassword => {
            let mut parts = vec![value.to_string()];
            if let Ok(url) = Url::parse(value) {
                parts.extend(url_passwords(&url));
            }
            parts
        }
    };
    parts.into_iter().filter(|p| !is_placeholder(p)).collect()
}

const POSTGRES_SCHEMES: &[&str] = &["postgresql", "postgres", "postgresql+psycopg"];

// The reasons below may name the scheme, host or database, never the user part or the password.
fn postgres_url(value: &str) -> Result<(), String> {
    if !value.contains("://") {
        return Err("it is not a connection URL (there is no `://`)".to_string());
    }
    let url = Url::parse(value).map_err(|err| format!("it cannot be parsed as a URL ({err})"))?;
    if !POSTGRES_SCHEMES.contains(&url.scheme()) {
        return Err("it does not start with postgresql://, postgres:// or \
                    postgresql+psycopg://"
            .to_string());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it has no host (the part after `@`)".to_string());
    }
    let database = url.path().trim_start_matches('/');
    if database.is_empty() {
        return Err("it names no database (the /DBNAME after the host)".to_string());
    }
    if database.contains('/') {
        return Err("the database name after the host contains `/`".to_string());
    }
    Ok(())
}

fn at_least_32_chars(value: &str) -> Result<(), String> {
    let length = value.chars().count();
    if length < 32 {
        return Err(format!("it is {length} characters long"));
    }
    Ok(())
}

fn openai_key(value: &str) -> Result<(), String> {
    let Some(rest) = value.strip_prefix("sk-") else {
        return Err("it does not start with `sk-`".to_string());
    };
    if rest.is_empty() {
        return Err("there is nothing after `sk-`".to_string());
    }
    if value.chars().any(char::is_whitespace) {
        return Err("it contains a space or a line break".to_string());
    }
    Ok(())
}

fn http_url(value: &str) -> Result<(), String> {
    if !value.contains("://") {
        return Err(format!(
            "`{value}` has no scheme; write http://{value} or https://{value}"
        ));
    }
    let url = Url::parse(value).map_err(|err| format!("`{value}` cannot be parsed ({err})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the scheme of `{value}` is `{}`", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{value}` has no host"));
    }
    Ok(())
}

fn version(value: &str) -> Result<(), String> {
    crate::release::parse_version(value).map(|_| ())
}

fn model_id(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("it holds only spaces".to_string());
    }
    if value.chars().any(char::is_whitespace) {
        return Err(format!("`{value}` contains a space"));
    }
    Ok(())
}

/// A private key must be named by its absolute path, so that it is plainly outside the project.
fn key_path(value: &str) -> Result<(), String> {
    if !value.starts_with('/') {
        return Err(format!("`{value}` is not an absolute path"));
    }
    Ok(())
}

/// Says nothing about the value itself: it is a secret.
fn trimmed(value: &str) -> Result<(), String> {
    if value.trim() != value {
        return Err("it begins or ends with a space".into());
    }
    Ok(())
}

/// Follows Docker's reference grammar: the first part is a registry host when it has a `.` or a
/// `:`, or is `localhost`; every other part is a lowercase path component.
fn registry(value: &str) -> Result<(), String> {
    if value.contains("://") {
        return Err(format!(
            "`{value}` has a scheme; write the registry without http:// or https://"
        ));
    }
    if value.ends_with('/') {
        return Err(format!(
            "`{value}` ends with `/`; the image name is appended after one"
        ));
    }
    let mut parts = value.split('/');
    let first = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let is_host = first.contains(['.', ':']) || first == "localhost";
    if is_host {
        registry_host(first)?;
    } else if !rest.is_empty() {
        return Err(format!(
            "`{first}` is not a registry host (a host has a `.` or a `:PORT`, or is localhost)"
        ));
    } else {
        path_component(first)?;
    }
    rest.into_iter().try_for_each(path_component)
}

fn registry_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!("`{host}` is not a valid registry host name"));
    }
    if let Some(port) = port {
        if !matches!(port.parse::<u16>(), Ok(p) if p > 0) || port.starts_with('+') {
            return Err(format!(
                "the port in `{host}` is not a number from 1 to 65535"
            ));
        }
    }
    Ok(())
}

/// A Docker repository path component: lowercase letters and digits, separated by one `.`, one
/// or two `_`, or any number of `-`.
fn path_component(part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err("it has an empty part between two `/`".to_string());
    }
    if part.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "`{part}` has capital letters; Docker names are lowercase"
        ));
    }
    let bad = || {
        Err(format!(
            "`{part}` is not a valid Docker name part (lowercase letters and digits, separated \
             by `.`, `_`, `__` or `-`)"
        ))
    };
    let is_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !part.starts_with(is_alnum) || !part.ends_with(is_alnum) {
        return bad();
    }
    for separator in part.split(is_alnum).filter(|s| !s.is_empty()) {
        let ok = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.chars().all(|c| c == '-');
        if !ok {
            return bad();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::parse::{parse, Quote};

    fn check(name: &str, value: &str) -> Result<(), String> {
        (rule_for(name).unwrap().check)(value)
    }

    fn assert_valid(name: &str, values: &[&str]) {
        for value in values {
            assert_eq!(check(name, value), Ok(()), "{name}={value} should be valid");
        }
    }

    /// Each invalid value with a piece of the reason expected.
    fn assert_invalid(name: &str, cases: &[(&str, &str)]) {
        for (value, reason) in cases {
            match check(name, value) {
                Ok(()) => panic!("{name}={value} should be invalid"),
                Err(got) => assert!(
                    got.contains(reason),
                    "{name}={value}: {got:?} lacks {reason:?}"
                ),
            }
        }
    }

    fn entry(line: usize, key: &str, value: &str) -> Entry {
        Entry {
            line: Some(line),
            key: key.into(),
            value: value.into(),
            quote: Quote::None,
        }
    }

    const GOOD: &[(&str, &str)] = &[
        (
            "DATABASE_URL",
            "postgresql://owner:s3cretpw@ep-x.neon.tech/neondb?sslmode=require",
        ),
        ("BETTER_AUTH_SECRET", "0123456789abcdef0123456789abcdef"),
        ("BETTER_AUTH_URL", "http://localhost:3000"),
        ("OPENAI_API_KEY", "sk-test-0123456789"),
        ("AGENT_MODEL", "gpt-4o"),
        ("NEXT_PUBLIC_API_URL", "http://localhost:8000"),
        ("FRONTEND_URL", "http://localhost:3000"),
        ("DOCKER_REGISTRY", "localhost:5000/todo"),
        ("VERSION", "v1.0.0"),
        ("OPENAI_BASE_URL", "http://localhost:11434/v1"),
        ("COSIGN_KEY", "/root/.config/todo-chatbot/cosign.key"),
        ("COSIGN_PASSWORD", "key-password"),
    ];

    fn good_entries() -> Vec<Entry> {
        GOOD.iter()
            .enumerate()
            .map(|(i, (k, v))| entry(i + 1, k, v))
            .collect()
    }

    fn found(entries: &[Entry]) -> Vec<(Option<usize>, String, &'static str, bool)> {
        validate(entries)
            .problems
            .into_iter()
            .map(|p| {
                (
                    p.line,
                    p.variable.clone().unwrap_or_default(),
                    p.rule,
                    p.is_error(),
                )
            })
            .collect()
    }

    #[test]
    fn database_url_rule() {
        assert_valid(
            "DATABASE_URL",
            &[
                "postgresql://u:p@host/db",
                "postgres://u:p@host:5432/db",
                "postgresql+psycopg://u:p@ep-x.us-east-2.aws.neon.tech/neondb?sslmode=require",
                "postgresql://host/db",
                "postgresql://u:p%40ss@host/db",
            ],
        );
        assert_invalid(
            "DATABASE_URL",
            &[
                ("host/db", "no `://`"),
                ("mysql://u:p@host/db", "does not start with postgresql://"),
                ("postgresql+asyncpg://u:p@host/db", "does not start with"),
                ("postgresql:///db", "no host"),
                ("postgresql://u:p@host", "names no database"),
                ("postgresql://u:p@host/", "names no database"),
                ("postgresql://u:p@host:99999/db", "cannot be parsed"),
            ],
        );
    }

    #[test]
    fn database_url_reasons_never_contain_the_password() {
        for value in [
            "mysql://u:hunter2pw@h/db",
            "postgresql://u:hunter2pw@h",
            "postgresql://u:hunter2pw@h:bad/db",
        ] {
            let reason = check("DATABASE_URL", value).unwrap_err();
            assert!(!reason.contains("hunter2pw"), "{reason}");
        }
    }

    #[test]
    fn auth_secret_rule() {
        assert_valid(
            "BETTER_AUTH_SECRET",
            &[&"x".repeat(32), &"é".repeat(32), &"x".repeat(80)],
        );
        assert_invalid(
            "BETTER_AUTH_SECRET",
            &[
                ("short", "5 characters"),
                (&"x".repeat(31), "31 characters"),
            ],
        );
    }

    #[test]
    fn openai_key_rule() {
        assert_valid("OPENAI_API_KEY", &["sk-abc", "sk-proj-AbC_123-xyz"]);
        assert_invalid(
            "OPENAI_API_KEY",
            &[
                ("pk-abc", "does not start with `sk-`"),
                ("SK-abc", "does not start"),
                ("sk-", "nothing after"),
                ("sk-ab c", "space"),
            ],
        );
        let reason = check("OPENAI_API_KEY", "xx-secretsecret").unwrap_err();
        assert!(!reason.contains("secretsecret"), "{reason}");
    }

    #[test]
    fn url_rules() {
        for name in ["BETTER_AUTH_URL", "NEXT_PUBLIC_API_URL", "FRONTEND_URL"] {
            assert_valid(
                name,
                &[
                    "http://localhost:3000",
                    "https://todo.example.com",
                    "http://backend:8000/api",
                    "http://127.0.0.1:8000",
                ],
            );
            assert_invalid(
                name,
                &[
                    ("localhost:3000", "no scheme"),
                    (
                        "ftp://example.com",
                        "scheme of `ftp://example.com` is `ftp`",
                    ),
                    ("http://", "cannot be parsed"),
                    ("http://exa mple.com", "cannot be parsed"),
                    ("http://host:70000", "cannot be parsed"),
                ],
            );
        }
    }

    #[test]
    fn version_rule() {
        assert_valid(
            "VERSION",
            &["v1.0.0", "v1.2.3-rc.1", "v0.0.1", "v10.20.30-alpha.beta"],
        );
        assert_invalid(
            "VERSION",
            &[
                ("1.0.0", "no leading v; write v1.0.0"),
                ("V1.0.0", "capital V"),
                ("v1.0", "not semantic versioning"),
                ("v1", "not semantic versioning"),
                ("v01.0.0", "not semantic versioning"),
                ("vlatest", "not semantic versioning"),
                ("v1.0.0+build.5", "+build metadata"),
            ],
        );
    }

    #[test]
    fn agent_model_rule() {
        assert_valid("AGENT_MODEL", &["gpt-4o", "gpt-4o-mini", "o3"]);
        assert_invalid(
            "AGENT_MODEL",
            &[("gpt 4o", "contains a space"), ("   ", "only spaces")],
        );
    }

    #[test]
    fn docker_registry_rule() {
        assert_valid(
            "DOCKER_REGISTRY",
            &[
                "myuser",
                "my-user",
                "my_user",
                "a.b",
                "localhost",
                "localhost:5000",
                "localhost:5000/todo",
                "ghcr.io/org",
                "ghcr.io/org/team",
                "registry.example.com:443/ns__x",
                "a--b",
            ],
        );
        assert_invalid(
            "DOCKER_REGISTRY",
            &[
                ("https://ghcr.io/org", "has a scheme"),
                ("myuser/", "ends with `/`"),
                ("MyUser", "capital letters"),
                ("ghcr.io/MyOrg", "capital letters"),
                ("user/team", "`user` is not a registry host"),
                ("localhost:0/x", "not a number from 1 to 65535"),
                ("localhost:abc/x", "not a number"),
                ("bad_host.io:5000/x", "not a valid registry host"),
                ("ghcr.io//x", "empty part"),
                ("-user", "not a valid Docker name part"),
                ("a___b", "not a valid Docker name part"),
                ("ghcr.io/a._b", "not a valid Docker name part"),
                ("user:tag", "not a number from 1 to 65535"),
            ],
        );
    }

    #[test]
    fn a_complete_set_of_good_values_is_clean() {
        let result = validate(&good_entries());
        assert!(result.problems.is_empty(), "{:?}", result.problems);
        assert_eq!(result.vars.len(), RULES.len());
    }

    #[test]
    fn every_rule_breaks_on_its_line_at_once() {
        let entries = vec![
            entry(1, "DATABASE_URL", "mysql://u:p@h/db"),
            entry(2, "BETTER_AUTH_SECRET", "short"),
            entry(3, "BETTER_AUTH_URL", "localhost:3000"),
            entry(4, "OPENAI_API_KEY", "pk-123"),
            entry(5, "AGENT_MODEL", "gpt 4"),
            entry(6, "NEXT_PUBLIC_API_URL", "ftp://x"),
            entry(7, "FRONTEND_URL", "x"),
            entry(8, "DOCKER_REGISTRY", "Bad"),
            entry(9, "VERSION", "1.0"),
            entry(10, "OPENAI_BASE_URL", "localhost:11434"),
            entry(11, "COSIGN_KEY", "keys/cosign.key"),
            entry(12, "COSIGN_PASSWORD", " pass"),
        ];
        let expected: Vec<_> = RULES
            .iter()
            .enumerate()
            .map(|(i, r)| (Some(i + 1), r.name.to_string(), r.rule, true))
            .collect();
        assert_eq!(found(&entries), expected);
    }

    #[test]
    fn missing_required_variables_are_errors_and_optional_ones_are_not() {
        let got = found(&[]);
        let required: Vec<_> = RULES
            .iter()
            .filter(|r| r.required)
            .map(|r| r.name.to_string())
            .collect();
        assert_eq!(
            got.iter().map(|p| p.1.clone()).collect::<Vec<_>>(),
            required
        );
        assert!(got
            .iter()
            .all(|p| p.0.is_none() && p.2 == "required" && p.3));
        assert!(!required.contains(&"DOCKER_REGISTRY".to_string()));
    }

    #[test]
    fn empty_required_value_is_an_error_and_empty_optional_is_fine() {
        let mut entries = good_entries();
        entries[4].value = String::new(); // AGENT_MODEL
        entries[7].value = String::new(); // DOCKER_REGISTRY
        assert_eq!(
            found(&entries),
            [(Some(5), "AGENT_MODEL".to_string(), "empty", true)]
        );
    }

    #[test]
    fn placeholder_gets_its_own_error() {
        let mut entries = good_entries();
        entries[0].value = "postgresql://owner:REPLACE_ME@h/db".into();
        entries[3].value = "replace-me".into();
        assert_eq!(
            found(&entries),
            [
                (Some(1), "DATABASE_URL".to_string(), "placeholder", true),
                (Some(4), "OPENAI_API_KEY".to_string(), "placeholder", true)
            ]
        );
    }

    #[test]
    fn duplicate_last_one_wins_with_a_warning() {
        let mut entries = good_entries();
        entries.push(entry(20, "VERSION", "bad"));
        assert_eq!(
            found(&entries),
            [
                (Some(20), "VERSION".to_string(), "duplicate", false),
                (Some(20), "VERSION".to_string(), "semver", true),
            ]
        );
        let result = validate(&entries);
        assert!(
            result.problems[0].message.contains("also on line 9"),
            "{:?}",
            result.problems[0]
        );
        assert_eq!(result.vars["VERSION"].line, Some(20));
    }

    #[test]
    fn unknown_variables_are_warnings_with_a_suggestion() {
        let mut entries = good_entries();
        entries.push(entry(10, "database_url", "x"));
        entries.push(entry(11, "OPENAI_API_KEYS", "x"));
        entries.push(entry(12, "SOMETHING_ELSE", "x"));
        entries.push(entry(13, "COMPOSE_PROJECT_NAME", "todo"));
        let result = validate(&entries);
        let warnings: Vec<_> = result
            .problems
            .iter()
            .map(|p| (p.line, p.rule, p.is_error(), p.fix.as_str()))
            .collect();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings.iter().all(|w| w.1 == "unknown" && !w.2));
        assert!(warnings.contains(&(
            Some(10),
            "unknown",
            false,
            "did you mean DATABASE_URL? rename it"
        )));
        assert!(warnings.contains(&(
            Some(11),
            "unknown",
            false,
            "did you mean OPENAI_API_KEY? rename it"
        )));
        assert!(warnings
            .iter()
            .any(|w| w.0 == Some(12) && w.3.starts_with("remove it")));
    }

    #[test]
    fn the_containers_tunables_are_not_unknown() {
        let mut entries = good_entries();
        entries.push(entry(10, "CHAT_TURNS_PER_MINUTE", "5"));
        entries.push(entry(11, "TRUSTED_PROXIES", "10.0.0.0/8"));
        entries.push(entry(12, "OPS_SLOW_ENABLED", "1"));
        let result = validate(&entries);
        assert!(result.problems.is_empty(), "{:?}", result.problems);
    }

    #[test]
    fn secrets_are_masked_in_the_variables() {
        let result = validate(&good_entries());
        let shown = |name: &str| format!("{:?}", result.vars[name]);
        assert!(shown("BETTER_AUTH_SECRET").contains("**** (32 chars)"));
        assert!(shown("OPENAI_API_KEY").contains("**** (18 chars)"));
        assert!(
            shown("DATABASE_URL")
                .contains("postgresql://owner:****@ep-x.neon.tech/neondb?sslmode=require"),
            "{}",
            shown("DATABASE_URL")
        );
        assert!(shown("VERSION").contains("v1.0.0"));
        for (_, value) in GOOD
            .iter()
            .filter(|(n, _)| rule_for(n).unwrap().secrecy == Secrecy::Secret)
        {
            assert!(result.secrets.contains(&value.to_string()));
        }
        assert!(result.secrets.contains(&"s3cretpw".to_string()));
    }

    #[test]
    fn url_masking_covers_query_passwords_and_unparsable_values() {
        assert_eq!(
            show(
                Secrecy::UrlPassword,
                "postgresql://h/db?user=u&password=topsecret"
            ),
            "postgresql://h/db?user=u&password=****"
        );
        assert_eq!(
            show(Secrecy::UrlPassword, "not a url at all"),
            "**** (16 chars)"
        );
        assert_eq!(
            show(Secrecy::UrlPassword, "postgresql://h/db"),
            "postgresql://h/db"
        );
        // A password equal to the user name would show through the user part.
        assert_eq!(
            show(Secrecy::UrlPassword, "postgresql://admin:admin@h/db"),
            "**** (29 chars)"
        );
        assert_eq!(
            show(Secrecy::UrlPassword, "postgresql://u:p%40ss@h/db"),
            "postgresql://u:****@h/db"
        );
    }

    #[test]
    fn unknown_values_are_masked() {
        let result = validate(&[entry(1, "SOME_TOKEN", "abcdef")]);
        assert!(format!("{:?}", result.vars["SOME_TOKEN"]).contains("**** (6 chars)"));
    }

    /// The example's decision: copied to `.env` it passes every rule except the three secrets,
    /// which hold the REPLACE_ME placeholder; it names every variable the rules know and no other,
    /// each under the heading of its group.
    #[test]
    fn example_file_matches_the_rules() {
        let text = include_str!("../../../env/.env.example");
        let (entries, problems) = parse(text.as_bytes());
        assert!(problems.is_empty(), "{problems:?}");
        let mut names: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        let mut known: Vec<&str> = RULES.iter().map(|r| r.name).collect();
        names.sort_unstable();
        known.sort_unstable();
        assert_eq!(
            names, known,
            "env/.env.example and RULES must name the same variables"
        );

        let lines: Vec<&str> = text.lines().collect();
        for entry in &entries {
            let heading = lines[..entry.line.unwrap() - 1].iter().rev().find_map(|l| {
                l.strip_prefix("# ---- ")
                    .and_then(|h| h.strip_suffix(" ----"))
            });
            assert_eq!(
                heading,
                Some(rule_for(&entry.key).unwrap().group),
                "{}",
                entry.key
            );
        }

        let result = validate(&entries);
        let mut placeholders: Vec<_> = result
            .problems
            .iter()
            .map(|p| (p.variable.clone().unwrap(), p.rule))
            .collect();
        placeholders.sort();
        assert_eq!(
            placeholders,
            [
                ("BETTER_AUTH_SECRET".to_string(), "placeholder"),
                ("DATABASE_URL".to_string(), "placeholder"),
                ("OPENAI_API_KEY".to_string(), "placeholder"),
            ]
        );

        // With the placeholders filled in, the example is clean.
        let filled: Vec<Entry> = entries
            .into_iter()
            .map(|mut e| {
                e.value = match e.key.as_str() {
                    "BETTER_AUTH_SECRET" => "x".repeat(40),
                    "OPENAI_API_KEY" => "sk-filled-in".to_string(),
                    _ => e.value.replace(PLACEHOLDER, "filled"),
                };
                e
            })
            .collect();
        let result = validate(&filled);
        assert!(result.problems.is_empty(), "{:?}", result.problems);
    }
}
