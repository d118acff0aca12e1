//! The platforms the images are built for, and the QEMU user emulation that the arm64 bases need
//! while Debian's maintainer scripts run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::Shell;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(into = "String")]
pub enum Platform {
    Amd64,
    Arm64,
}

impl From<Platform> for String {
    fn from(p: Platform) -> String {
        p.docker().to_string()
    }
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::Amd64, Platform::Arm64];

    /// Docker's name: `linux/amd64`.
    pub fn docker(self) -> &'static str {
        match self {
            Platform::Amd64 => "linux/amd64",
            Platform::Arm64 => "linux/arm64",
        }
    }

    /// Debian's (and Docker's `TARGETARCH`) name of the architecture.
    pub fn arch(self) -> &'static str {
        match self {
            Platform::Amd64 => "amd64",
            Platform::Arm64 => "arm64",
        }
    }

    /// The machine name QEMU's user emulator carries (`qemu-aarch64-static`).
    fn qemu(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64",
            Platform::Arm64 => "aarch64",
        }
    }

    /// The ELF header's magic and mask that binfmt_misc matches for this machine, as Debian's
    /// qemu-user-static writes them in /usr/lib/binfmt.d.
    fn elf_magic(self) -> (&'static str, &'static str) {
        match self {
            Platform::Amd64 => (
                r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00",
                r"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
            ),
            Platform::Arm64 => (
                r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
                r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
            ),
        }
    }

    /// The platform of this host.
    pub fn host() -> Platform {
        match std::env::consts::ARCH {
            "aarch64" => Platform::Arm64,
            _ => Platform::Amd64,
        }
    }

    /// The list `linux/amd64,linux/arm64`, refused whole (before anything runs) when one entry
    /// is not a platform the bases can be made for.
    pub fn parse_list(list: &str) -> Result<Vec<Platform>> {
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some(platform) = Platform::ALL.into_iter().find(|p| p.docker() == name) else {
                bail!(
                    "unsupported platform `{name}`: the supported platforms are {} (as a \
                     comma-separated list, e.g. --platform linux/amd64,linux/arm64)",
                    supported()
                );
            };
            if !out.contains(&platform) {
                out.push(platform);
            }
        }
        if out.is_empty() {
            bail!(
                "no platform given: name one or more of {} (comma-separated)",
                supported()
            );
        }
        out.sort();
        Ok(out)
    }
}

/// `linux/amd64, linux/arm64`.
pub fn supported() -> String {
    Platform::ALL.map(Platform::docker).join(", ")
}

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// Foreign binaries run by QEMU's user emulator while this value lives: the binfmt_misc entry it
/// registered (with the `F` flag, so that containers and chroots use the host's emulator) is
/// removed when it is dropped. An entry that was already there (the host's own, or a test's) is
/// used and left in place.
#[derive(Debug)]
pub struct Emulation {
    registered: Option<PathBuf>,
}

impl Emulation {
    /// Nothing for the host's platform; otherwise installs qemu-user-static when missing, mounts
    /// binfmt_misc when it is not, and registers the emulator when no entry handles `platform`.
    pub fn ensure(sh: &Shell, platform: Platform) -> Result<Emulation> {
        if platform == Platform::host() {
            return Ok(Emulation { registered: None });
        }
        let program = format!("qemu-{}-static", platform.qemu());
        crate::engine::ensure_program(sh, &program, "qemu-user-static")?;
        let emulator = which::which(&program)?;
        if !Path::new(BINFMT).join("register").exists() {
            let status = std::process::Command::new("mount")
                .args(["-t", "binfmt_misc", "binfmt_misc", BINFMT])
                .status()
                .context("cannot run mount")?;
            if !status.success() {
                bail!(
                    "cannot mount binfmt_misc on {BINFMT}, which running {} programs needs: \
                     run as root, or mount it and run again",
                    platform.docker()
                );
            }
        }
        if handled(platform) {
            return Ok(Emulation { registered: None });
        }
        let name = format!(
            "todo-chatbot-qemu-{}-{}",
            platform.qemu(),
            std::process::id()
        );
        let (magic, mask) = platform.elf_magic();
        let line = format!(":{name}:M::{magic}:{mask}:{}:OCF", emulator.display());
        std::fs::write(Path::new(BINFMT).join("register"), line)
            .with_context(|| format!("cannot register {program} with binfmt_misc"))?;
        Ok(Emulation {
            registered: Some(Path::new(BINFMT).join(name)),
        })
    }
}

impl Drop for Emulation {
    fn drop(&mut self) {
        if let Some(entry) = &self.registered {
            let _ = std::fs::write(entry, "-1");
        }
    }
}

/// True when an enabled binfmt_misc entry runs this platform's ELF binaries.
fn handled(platform: Platform) -> bool {
    let (magic, _) = platform.elf_magic();
    // The entries list the magic as plain hex: 7f454c46...
    let hex: String = magic
        .replace("\\x7fELF", "\\x7f\\x45\\x4c\\x46")
        .split("\\x")
        .filter(|s| !s.is_empty())
        .collect();
    let Ok(entries) = std::fs::read_dir(BINFMT) else {
        return false;
    };
    entries.filter_map(|e| e.ok()).any(|e| {
        std::fs::read_to_string(e.path()).is_ok_and(|text| {
            text.lines().next() == Some("enabled")
                && text
                    .lines()
                    .any(|l| l.strip_prefix("magic ").is_some_and(|m| m == hex))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_parsed_sorted_and_without_repeats() {
        assert_eq!(
            Platform::parse_list("linux/arm64, linux/amd64,linux/arm64").unwrap(),
            vec![Platform::Amd64, Platform::Arm64]
        );
    }

    #[test]
    fn an_unknown_platform_is_refused_with_the_supported_ones() {
        let err = Platform::parse_list("linux/amd64,linux/s390x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("linux/s390x"), "{err}");
        assert!(err.contains("linux/amd64, linux/arm64"), "{err}");
        assert!(Platform::parse_list(" , ").is_err());
    }
}
