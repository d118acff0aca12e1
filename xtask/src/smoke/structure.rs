//! The structure of an image, checked against the spec from `docker image inspect` and the
//! image's own `/etc/passwd`: user, working directory, port, command, labels, health check,
//! environment, size. Pure: the unit tests feed it JSON.

use super::expect::{env_matches, Expect};
use super::report::Row;
use crate::config::Image;
use crate::docker::inspect::{Image as Inspected, ImageConfig};

const GROUP: &str = "image";

/// Every structure row of one image. `inspect` is one element of `docker image inspect`'s array.
pub fn check(
    inspect: &Inspected,
    image: &Image,
    expect: &Expect,
    passwd: Option<&str>,
) -> Vec<Row> {
    let config = &inspect.config;
    let service = image.service.as_str();
    vec![
        user(config, image, expect, passwd),
        workdir(config, service, expect),
        port(config, image),
        cmd(config, service, expect),
        labels(config, service, expect),
        healthcheck(config, image, expect),
        env(config, service, expect),
        size(inspect, image),
    ]
}

/// (name, uid, gid) of each line of an /etc/passwd.
fn passwd_entries(passwd: &str) -> Vec<(&str, u32, u32)> {
    passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            Some((
                *fields.first()?,
                fields.get(2)?.parse().ok()?,
                fields.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

fn user(config: &ImageConfig, image: &Image, expect: &Expect, passwd: Option<&str>) -> Row {
    let row = Row::named(GROUP, "user", &image.service);
    let want_uid = expect.image.uid;
    let want_name = image.user.as_str();
    let wanted = format!("the spec wants {want_name} (uid {want_uid})");
    let user = config.user.trim();
    if user.is_empty() {
        return row
            .figure("root")
            .fail(format!("no USER: the container runs as root (uid 0); {wanted}: add `USER {want_uid}:{want_uid}`"));
    }
    let entries = passwd.map(passwd_entries).unwrap_or_default();
    let (who, group) = user.split_once(':').unwrap_or((user, ""));
    let (uid, name) = match who.parse::<u32>() {
        Ok(uid) => (
            uid,
            entries.iter().find(|e| e.1 == uid).map(|e| e.0.to_string()),
        ),
        Err(_) => match entries.iter().find(|e| e.0 == who) {
            Some(entry) => (entry.1, Some(who.to_string())),
            None => {
                return row.figure(format!("user {who}")).fail(format!(
                    "USER {who} is not in the image's /etc/passwd, so the engine cannot resolve it; {wanted}"
                ))
            }
        },
    };
    let shown = match &name {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    };
    let mut problems = Vec::new();
    if uid != want_uid {
        let root = if uid == 0 { " (root)" } else { "" };
        problems.push(format!(
            "the container runs as uid {uid}{root}; {wanted}: set `USER {want_uid}:{want_uid}`"
        ));
    } else {
        match &name {
            Some(name) if name == want_name => {}
            Some(name) => problems.push(format!(
                "uid {uid} is named `{name}` in /etc/passwd; the spec names it `{want_name}`"
            )),
            None if passwd.is_none() => problems.push(format!(
                "the image has no /etc/passwd, so uid {uid} has no name; the spec names it `{want_name}`"
            )),
            None => problems.push(format!(
                "uid {uid} has no line in the image's /etc/passwd; the spec names it `{want_name}`: add `{want_name}:x:{uid}:{uid}::/app:/usr/sbin/nologin`"
            )),
        }
    }
    if group == "0" || group == "root" {
        problems.push("the primary group is root (gid 0): use the user's own group".to_string());
    }
    row.figure(shown).problems(problems)
}

fn workdir(config: &ImageConfig, service: &str, expect: &Expect) -> Row {
    let dir = config.working_dir.as_str();
    let row = Row::named(GROUP, "workdir", service).figure(if dir.is_empty() { "/" } else { dir });
    if dir.trim_end_matches('/') == expect.image.workdir.trim_end_matches('/') {
        row.pass()
    } else {
        row.fail(format!(
            "the working directory is `{}`; the spec wants `WORKDIR {}`",
            if dir.is_empty() { "/" } else { dir },
            expect.image.workdir
        ))
    }
}

fn port(config: &ImageConfig, image: &Image) -> Row {
    let ports: Vec<String> = config.exposed_ports.keys().cloned().collect();
    let want = format!("{}/tcp", image.port);
    let row = Row::named(GROUP, "port", &image.service).figure(if ports.is_empty() {
        "none".to_string()
    } else {
        ports.join(", ")
    });
    if ports == [want.clone()] {
        row.pass()
    } else if ports.contains(&want) {
        row.fail(format!(
            "exposes {} besides {want}: expose only the service's port",
            ports.join(", ")
        ))
    } else {
        row.fail(format!(
            "does not expose {want}: add `EXPOSE {}`",
            image.port
        ))
    }
}

fn cmd(config: &ImageConfig, service: &str, expect: &Expect) -> Row {
    let all: Vec<String> = config
        .entrypoint
        .iter()
        .chain(&config.cmd)
        .cloned()
        .collect();
    let row = Row::named(GROUP, "cmd", service).figure(all.join(" "));
    let Some(rules) = expect.service(service) else {
        return row.not_checked(format!("the spec names no command for `{service}`"));
    };
    if all.len() >= 2 && all[0].ends_with("sh") && all[1] == "-c" {
        return row.fail(format!(
            "the command is in shell form, so a shell is PID 1 and the server never gets SIGTERM: \
             write `CMD {}`",
            serde_json::to_string(&rules.cmd).unwrap_or_default()
        ));
    }
    if all == rules.cmd {
        row.pass()
    } else {
        row.fail(format!(
            "the command is `{}`; the spec's entry point is `{}` (exec form)",
            all.join(" "),
            rules.cmd.join(" ")
        ))
    }
}

fn labels(config: &ImageConfig, service: &str, expect: &Expect) -> Row {
    let labels = &config.labels;
    let mut problems = Vec::new();
    let mut present = 0;
    for name in &expect.image.labels {
        let Some(value) = labels.get(name).filter(|v| !v.trim().is_empty()) else {
            problems.push(format!("label {name} is missing"));
            continue;
        };
        present += 1;
        let field = name.rsplit('.').next().unwrap_or("");
        let valid = match field {
            "version" => semver::Version::parse(value.trim_start_matches('v')).is_ok(),
            "created" => humantime::parse_rfc3339_weak(value).is_ok(),
            "revision" => value.len() >= 7 && value.chars().all(|c| c.is_ascii_hexdigit()),
            "source" => url::Url::parse(value)
                .map(|u| matches!(u.scheme(), "http" | "https"))
                .unwrap_or(false),
            _ => true,
        };
        if !valid {
            let what = match field {
                "version" => "a semantic version",
                "created" => "an RFC 3339 time",
                "revision" => "a git commit hash",
                _ => "an http(s) URL",
            };
            problems.push(format!("label {name}={value} is not {what}"));
        }
    }
    let figure = format!(
        "{present}/{} (v{})",
        expect.image.labels.len(),
        labels
            .get("org.opencontainers.image.version")
            .map_or("?", String::as_str)
            .trim_start_matches('v')
    );
    Row::named(GROUP, "labels", service)
        .figure(figure)
        .problems(problems)
}

fn healthcheck(config: &ImageConfig, image: &Image, expect: &Expect) -> Row {
    let row = Row::named(GROUP, "healthcheck", &image.service);
    let health = config.healthcheck.clone().unwrap_or_default();
    let test = &health.test;
    if test.is_empty() || test[0] == "NONE" {
        return row.figure("none").fail(format!(
            "no HEALTHCHECK: add one that requests {} every 30s",
            image.health_path
        ));
    }
    let seconds = |nanoseconds: u64| nanoseconds / 1_000_000_000;
    let (interval, timeout, start) = (
        seconds(health.interval),
        seconds(health.timeout),
        seconds(health.start_period),
    );
    let retries = health.retries;
    let want = &expect.image.healthcheck;
    let mut problems = Vec::new();
    // Docker writes 0 for a duration the Dockerfile left out, which means its own default
    // (30s interval and timeout, no start period, 3 retries): the spec asks for explicit values.
    for (name, got, wanted) in [
        ("interval", interval, want.interval_seconds),
        ("timeout", timeout, want.timeout_seconds),
        ("start period", start, want.start_period_seconds),
    ] {
        if got != wanted {
            problems.push(format!("{name} is {got}s, the spec says {wanted}s"));
        }
    }
    if retries != want.retries {
        problems.push(format!(
            "retries is {retries}, the spec says {}",
            want.retries
        ));
    }
    let command = test[1..].join(" ");
    if !command.contains(&image.health_path) {
        problems.push(format!(
            "the check does not request {} (it runs `{command}`)",
            image.health_path
        ));
    }
    row.figure(format!("{interval}s/{timeout}s/{start}s ×{retries}"))
        .problems(problems)
}

fn env(config: &ImageConfig, service: &str, expect: &Expect) -> Row {
    let row = Row::named(GROUP, "env", service);
    let Some(rules) = expect.service(service) else {
        return row.not_checked(format!("the spec lists no environment for `{service}`"));
    };
    let vars: Vec<(&str, &str)> = config
        .env
        .iter()
        .filter_map(|v| v.split_once('='))
        .collect();
    let mut problems = Vec::new();
    for (name, wanted) in &rules.env {
        match vars.iter().find(|(n, _)| n == name) {
            None => problems.push(format!("ENV {name} is not set (the spec: {wanted})")),
            // Only the spec's non-secret variables are compared, so showing the value is safe.
            Some((_, value)) if !env_matches(wanted, value) => {
                problems.push(format!("ENV {name}={value}, the spec says {wanted}"))
            }
            Some(_) => {}
        }
    }
    let ok = rules.env.len() - problems.len();
    row.figure(format!("{ok}/{} as specified", rules.env.len()))
        .problems(problems)
}

fn size(inspect: &Inspected, image: &Image) -> Row {
    let reported = inspect.size;
    // The unit tests' fixtures carry no id, and their sizes are meant as the engine's.
    let bytes = match inspect.id.as_str() {
        "" => Ok(reported),
        id => crate::store::unpacked_size(id, reported),
    };
    let row = Row::named(GROUP, "size", &image.service);
    let bytes = match bytes {
        Ok(bytes) => bytes,
        Err(err) => return row.fail(format!("cannot count the image's layers: {err:#}")),
    };
    let mb = bytes as f64 / 1e6;
    let budget = image.budget_bytes() as f64 / 1e6;
    let row = row
        .figure(format!("{mb:.1} MB (budget {budget:.0} MB)"))
        .measure(mb, "MB", Some(budget));
    if bytes <= image.budget_bytes() {
        row.pass()
    } else {
        row.fail(format!(
            "{mb:.1} MB is over the budget of {budget:.0} MB in project.toml"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::smoke::report::Outcome;
    use serde_json::Value;
    use std::path::Path;

    fn config() -> Config {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        Config::load(&root.join(crate::config::DEFAULT_FILE)).unwrap()
    }

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nappuser:x:1001:1001::/app:/usr/sbin/nologin\n";

    /// What `docker image inspect` says of a backend image built as the spec wants.
    fn good_backend() -> Value {
        serde_json::json!({
            "Size": 123_000_000u64,
            "Config": {
                "User": "1001:1001",
                "WorkingDir": "/app",
                "ExposedPorts": {"8000/tcp": {}},
                "Cmd": ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"],
                "Entrypoint": null,
                "Env": ["PATH=/opt/venv/bin:/usr/local/bin:/usr/bin", "PYTHONUNBUFFERED=1"],
                "Labels": {
                    "org.opencontainers.image.version": "1.0.0",
                    "org.opencontainers.image.created": "2026-11-25T18:53:17Z",
                    "org.opencontainers.image.revision": "793115f0a6c1e4b2d9b8e7c6a5f4e3d2c1b0a998",
                    "org.opencontainers.image.source": "https://github.com/todo-chatbot/todo-chatbot"
                },
                "Healthcheck": {
                    "Test": ["CMD", "python", "-c", "urlopen('http://127.0.0.1:8000/health')"],
                    "Interval": 30_000_000_000u64, "Timeout": 10_000_000_000u64,
                    "StartPeriod": 40_000_000_000u64, "StartInterval": 1_000_000_000u64, "Retries": 3
                }
            }
        })
    }

    fn run(inspect: &Value, passwd: Option<&str>) -> Vec<Row> {
        let config = config();
        check(
            &serde_json::from_value(inspect.clone()).unwrap(),
            config.image("backend").unwrap(),
            &Expect::load().unwrap(),
            passwd,
        )
    }

    fn failures(rows: &[Row]) -> Vec<(String, String)> {
        rows.iter()
            .filter(|r| r.result == Outcome::Fail)
            .map(|r| (r.check.to_string(), r.detail.clone().unwrap()))
            .collect()
    }

    #[test]
    fn an_image_built_as_the_spec_says_passes_every_row() {
        let rows = run(&good_backend(), Some(PASSWD));
        assert_eq!(failures(&rows), vec![]);
        assert_eq!(rows.len(), 8);
        assert_eq!(rows[0].figure, "uid 1001 (appuser)");
        assert_eq!(rows[5].figure, "30s/10s/40s ×3");
    }

    #[test]
    fn root_and_wrong_names_are_failures_that_say_so() {
        let mut image = good_backend();
        image["Config"]["User"] = "0".into();
        let fails = failures(&run(&image, Some(PASSWD)));
        assert_eq!(fails.len(), 1);
        assert!(fails[0].1.contains("runs as uid 0 (root)"), "{fails:?}");

        image["Config"]["User"] = "".into();
        assert!(failures(&run(&image, Some(PASSWD)))[0]
            .1
            .starts_with("no USER"));

        image["Config"]["User"] = "1001".into();
        let renamed = PASSWD.replace("appuser", "web");
        let fails = failures(&run(&image, Some(&renamed)));
        assert!(fails[0].1.contains("named `web`"), "{fails:?}");
        let fails = failures(&run(&image, Some("root:x:0:0::/root:/bin/sh\n")));
        assert!(
            fails[0].1.contains("no line in the image's /etc/passwd"),
            "{fails:?}"
        );

        image["Config"]["User"] = "appuser".into();
        assert_eq!(failures(&run(&image, Some(PASSWD))), vec![]);
        image["Config"]["User"] = "ghost".into();
        assert!(failures(&run(&image, Some(PASSWD)))[0]
            .1
            .contains("not in the image's /etc/passwd"));
    }

    #[test]
    fn every_structural_problem_is_reported_at_once() {
        let mut image = good_backend();
        let c = &mut image["Config"];
        c["WorkingDir"] = "".into();
        c["ExposedPorts"] = serde_json::json!({"8000/tcp": {}, "22/tcp": {}});
        c["Cmd"] = serde_json::json!(["/bin/sh", "-c", "uvicorn app.main:app"]);
        c["Labels"]
            .as_object_mut()
            .unwrap()
            .remove("org.opencontainers.image.revision");
        c["Labels"]["org.opencontainers.image.created"] = "yesterday".into();
        c["Healthcheck"]["Interval"] = 0.into();
        c["Healthcheck"]["Test"] = serde_json::json!(["CMD", "true"]);
        c["Env"] = serde_json::json!(["PATH=/usr/bin:/opt/venv/bin"]);
        image["Size"] = 151_000_000u64.into();
        let fails = failures(&run(&image, Some(PASSWD)));
        let checks: Vec<&str> = fails.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            checks,
            [
                "workdir",
                "port",
                "cmd",
                "labels",
                "healthcheck",
                "env",
                "size"
            ]
        );
        let text = format!("{fails:?}");
        for expected in [
            "WORKDIR /app",
            "22/tcp",
            "shell form",
            "revision is missing",
            "created=yesterday is not an RFC 3339 time",
            "interval is 0s, the spec says 30s",
            "does not request /health",
            "ENV PATH=/usr/bin:/opt/venv/bin, the spec says /opt/venv/bin:*",
            "151.0 MB is over the budget of 150 MB",
        ] {
            assert!(text.contains(expected), "{expected} not in {text}");
        }
    }

    #[test]
    fn a_missing_healthcheck_and_port_are_named() {
        let mut image = good_backend();
        image["Config"]["Healthcheck"] = Value::Null;
        image["Config"]["ExposedPorts"] = Value::Null;
        let fails = failures(&run(&image, Some(PASSWD)));
        assert!(fails.iter().any(|f| f.1.contains("no HEALTHCHECK")));
        assert!(fails.iter().any(|f| f.1.contains("add `EXPOSE 8000`")));
    }
}
