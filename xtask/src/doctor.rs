//! `cargo xtask doctor`: one line per prerequisite, found or missing, with the fix for each.

use anyhow::Result;
use clap::Args;
use xshell::{cmd, Shell};

use crate::config::{BaseMode, Config};
use crate::{bases, engine, mirror};

#[derive(Debug, Args)]
pub struct DoctorCmd {
    /// Install and start what is missing, where this host allows it (Debian, root).
    #[arg(long)]
    fix: bool,
    /// Print the shell commands that install the engine on this host (what `--fix` would run
    /// when no engine is installed), and nothing else.
    #[arg(long, conflicts_with = "fix")]
    install_plan: bool,
    /// With `--install-plan`: ask apt for the plan (`apt-get -s`) instead of installing.
    #[arg(long, requires = "install_plan")]
    simulate: bool,
}

/// The builders buildx knows, the one a build would use (project.toml's `build.builder`, else
/// buildx's current one, which `BUILDX_BUILDER` chooses) and what it can do with a registry cache.
fn builder_lines(config: &Config) -> Vec<Line> {
    use crate::build::remote::{builders, Builder, Remote};
    let mut lines = Vec::new();
    let listed = builders();
    lines.push(Line {
        name: "builders",
        ok: listed.is_ok(),
        optional: true,
        detail: match &listed {
            Ok(all) => all
                .iter()
                .map(|(name, driver)| format!("{name} ({driver})"))
                .collect::<Vec<_>>()
                .join(", "),
            Err(err) => format!("`docker buildx ls` failed: {err}"),
        },
    });
    let remote = Remote::resolve(None, None, None, config);
    let chosen = config.build.builder.as_deref();
    let builder = Builder::inspect(chosen);
    let store = crate::store::store();
    lines.push(Line {
        name: "build builder",
        ok: builder.is_ok(),
        optional: false,
        detail: match &builder {
            Ok(b) => format!(
                "{} (driver {}, endpoint {}; {}), chosen by {}; registry cache: {}",
                b.name,
                b.driver,
                b.endpoint,
                if b.is_engine() && store == crate::store::Store::Classic {
                    "imports a registry cache, cannot export one on the classic image store"
                } else {
                    "imports and exports a registry cache"
                },
                if chosen.is_some() {
                    "project.toml's build.builder"
                } else if std::env::var_os("BUILDX_BUILDER").is_some() {
                    "BUILDX_BUILDER"
                } else {
                    "buildx's current builder"
                },
                match remote {
                    Ok(r) => match (r.cache_from, r.cache_to) {
                        (None, None) => "none configured".to_string(),
                        (from, to) => format!(
                            "imports {}, exports {}",
                            from.as_deref().unwrap_or("nothing"),
                            to.as_deref().unwrap_or("nothing")
                        ),
                    },
                    Err(err) => format!("{err:#}"),
                }
            ),
            Err(err) => format!("{err:#}"),
        },
    });
    lines
}

struct Line {
    name: &'static str,
    ok: bool,
    /// Missing but not needed on this host (e.g. local-base tools where Docker Hub is used).
    optional: bool,
    detail: String,
}

fn version_of(sh: &Shell, program: &str, args: &[&str]) -> Option<String> {
    which::which(program).ok()?;
    let out = cmd!(sh, "{program} {args...}")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()?;
    out.lines().next().map(|l| l.trim().to_string())
}

impl DoctorCmd {
    pub fn run(self, sh: &Shell, config: &Config) -> Result<()> {
        if self.install_plan {
            print!("{}", engine::host_install_plan(sh)?.script(self.simulate));
            return Ok(());
        }
        if self.fix {
            engine::ensure(sh)?;
            engine::ensure_program(sh, "mmdebstrap", "mmdebstrap")?;
        }
        let mut lines = Vec::new();
        let cli = version_of(sh, "docker", &["--version"]);
        lines.push(Line {
            name: "docker CLI",
            ok: cli.is_some(),
            optional: false,
            detail: cli.unwrap_or_else(|| format!("missing: {}", engine::INSTALL_HINT)),
        });
        let server = engine::server_version(sh);
        let endpoint = engine::endpoint();
        lines.push(Line {
            name: "engine endpoint",
            ok: endpoint.host.is_some(),
            optional: false,
            detail: match &endpoint.host {
                Some(host) => format!(
                    "context `{}` ({}): {host}",
                    endpoint.context, endpoint.chosen_by
                ),
                None => format!(
                    "context `{}` ({}) cannot be read: `docker context ls` lists the contexts",
                    endpoint.context, endpoint.chosen_by
                ),
            },
        });
        lines.push(Line {
            name: "Docker engine",
            ok: server.is_some(),
            optional: false,
            detail: match &server {
                Some(v) => format!("Engine {v}"),
                None if which::which("dockerd").is_ok() => {
                    "installed but not running: `cargo xtask doctor --fix` starts it".into()
                }
                None => format!(
                    "missing: `cargo xtask doctor --fix` installs it here, else {}",
                    engine::INSTALL_HINT
                ),
            },
        });
        for (name, plugin, package) in [
            ("buildx", "buildx", "docker-buildx"),
            ("compose", "compose", "docker-compose"),
        ] {
            let v = version_of(sh, "docker", &[plugin, "version"]);
            lines.push(Line {
                name,
                ok: v.is_some(),
                optional: false,
                detail: v.unwrap_or_else(|| {
                    format!("missing: install the Debian package {package} (trixie)")
                }),
            });
        }
        if server.is_some() {
            lines.extend(builder_lines(config));
        }
        let mode = crate::build::base_mode(None, config)?;
        let local_needed = mode != BaseMode::Public;
        for (name, program, package) in [
            ("mmdebstrap", "mmdebstrap", "mmdebstrap"),
            ("npm", "npm", "npm"),
        ] {
            let v = version_of(sh, program, &["--version"]);
            lines.push(Line {
                name,
                ok: v.is_some(),
                optional: !local_needed,
                detail: v.unwrap_or_else(|| {
                    format!("missing (needed for local bases): apt-get install {package}")
                }),
            });
        }
        let suite = &config.bases.debian_suite;
        let mirrors = mirror::resolve(&config.bases, suite);
        lines.push(Line {
            name: "Debian mirror",
            ok: mirrors.is_ok(),
            optional: !local_needed,
            detail: match &mirrors {
                Ok(m) => format!(
                    "{} for {suite} and {suite}-updates (from {}), {} for {suite}-security (from {})",
                    m.main, m.main_from, m.security, m.security_from
                ),
                Err(err) => format!("{err:#}"),
            },
        });
        if mirrors.is_ok() {
            let hash = bases::identity_or_recipe(config, &sh.current_dir())?;
            let images: Vec<_> = config.images.iter().collect();
            let local = bases::base_args(&images, BaseMode::Local, &hash);
            let present = server.is_some()
                && local.values().all(|r| {
                    crate::docker::docker(["image", "inspect", r])
                        .output()
                        .is_ok_and(|out| out.success())
                });
            lines.push(Line {
                name: "local bases",
                ok: present,
                optional: true,
                detail: if present {
                    format!("built for recipe {hash}")
                } else {
                    format!("not built for recipe {hash}: the next local build makes them (about 2 minutes)")
                },
            });
        }
        let ca = engine::ca_bundle();
        lines.push(Line {
            name: "proxy CA",
            ok: ca.is_some(),
            optional: true,
            detail: match ca {
                Some(p) => format!(
                    "{} (reaches builds as the BuildKit secret `ca`)",
                    p.display()
                ),
                None => {
                    "none named by SSL_CERT_FILE and friends: builds download without one".into()
                }
            },
        });
        let mut failed = false;
        for line in &lines {
            let mark = match (line.ok, line.optional) {
                (true, _) => "ok  ",
                (false, true) => "--  ",
                (false, false) => "MISS",
            };
            failed |= !line.ok && !line.optional;
            println!("{mark} {:<14} {}", line.name, line.detail);
        }
        println!("base mode: {mode:?}");
        if failed {
            anyhow::bail!("some prerequisites are missing: each line above says how to get it");
        }
        Ok(())
    }
}
