//! The spec's requirements that `project.toml` does not hold, read from `expect.toml` (compiled
//! into the binary, so that a smoke run cannot pick up a stray copy).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub runtime: Runtime,
    pub image: ImageRules,
    pub service: BTreeMap<String, ServiceRules>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    pub network: String,
    pub database_alias: String,
    pub start_to_healthy_seconds: f64,
    pub health_latency_seconds: f64,
    pub service_call_seconds: f64,
    pub database_connect_seconds: f64,
    pub stop_grace_seconds: u64,
    pub stop_exit_codes: Vec<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRules {
    pub uid: u32,
    pub workdir: String,
    pub labels: Vec<String>,
    pub healthcheck: HealthRules,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthRules {
    pub interval_seconds: u64,
    pub timeout_seconds: u64,
    pub start_period_seconds: u64,
    pub retries: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRules {
    pub cmd: Vec<String>,
    pub idle_memory_mb: f64,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

const TEXT: &str = include_str!("expect.toml");

impl Expect {
    pub fn load() -> Result<Expect> {
        toml::from_str(TEXT).context("xtask/src/smoke/expect.toml is not valid")
    }

    /// The rules of one service; a service the spec does not describe gets none (empty), and the
    /// checks that need them say so.
    pub fn service(&self, service: &str) -> Option<&ServiceRules> {
        self.service.get(service)
    }
}

/// True when `actual` satisfies `expected`, where an expected value ending in `*` is a prefix.
pub fn env_matches(expected: &str, actual: &str) -> bool {
    match expected.strip_suffix('*') {
        Some(prefix) => actual.starts_with(prefix),
        None => actual == expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expectations_parse_and_cover_both_services() {
        let expect = Expect::load().unwrap();
        assert_eq!(expect.image.uid, 1001);
        assert_eq!(expect.image.labels.len(), 4);
        assert_eq!(
            expect.service("frontend").unwrap().cmd,
            ["node", "server.js"]
        );
        assert!(expect.service("backend").unwrap().env.contains_key("PATH"));
        assert!(expect.runtime.stop_exit_codes.contains(&143));
    }

    #[test]
    fn a_trailing_star_is_a_prefix() {
        assert!(env_matches("/opt/venv/bin:*", "/opt/venv/bin:/usr/bin"));
        assert!(!env_matches("/opt/venv/bin:*", "/usr/bin:/opt/venv/bin"));
        assert!(env_matches("production", "production"));
        assert!(!env_matches("production", "production "));
    }
}
