//! Types for what the engine prints about its objects, read by serde instead of field by field:
//! `docker inspect` of containers and images (the CLI and the API socket print the same
//! objects), an image's history, the engine's image list, and what `docker buildx imagetools
//! inspect` says of a registry's manifests. Only the fields the project reads are declared.
//!
//! Docker prints `null` for an empty list or map (`"Cmd": null`, `"Labels": null`): every such
//! field reads `null` as empty.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// Reads `null` (or a missing field, with `#[serde(default)]`) as the type's empty value.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `docker container inspect`, one container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Container {
    pub id: String,
    #[serde(default)]
    pub created: String,
    /// The image id the container runs.
    #[serde(default)]
    pub image: String,
    /// The program and its arguments.
    #[serde(default)]
    pub path: String,
    #[serde(default, deserialize_with = "nullable")]
    pub args: Vec<String>,
    #[serde(default)]
    pub state: ContainerState,
    #[serde(default)]
    pub config: ContainerConfig,
    #[serde(default)]
    pub network_settings: NetworkSettings,
    #[serde(default, deserialize_with = "nullable")]
    pub mounts: Vec<Mount>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    /// created, running, exited, ...
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub running: bool,
    #[serde(default)]
    pub exit_code: i64,
    #[serde(default)]
    pub started_at: String,
    pub health: Option<Health>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// starting, healthy, unhealthy.
    pub status: String,
    #[serde(default, deserialize_with = "nullable")]
    pub log: Vec<HealthCheck>,
}

/// One run of a container's health check.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    #[serde(default)]
    pub end: String,
    pub exit_code: i64,
    #[serde(default)]
    pub output: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub env: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    /// `8000/tcp` -> the host addresses it is published on (null when it is not).
    #[serde(default, deserialize_with = "nullable")]
    pub ports: BTreeMap<String, Option<Vec<PortBinding>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    pub host_port: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    /// volume, bind, tmpfs.
    #[serde(rename = "Type")]
    pub kind: String,
    /// A volume's name (anonymous ones included); bind mounts have none.
    pub name: Option<String>,
}

/// `docker image inspect` (and the API's `/images/NAME/json`), one image.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Image {
    #[serde(default)]
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub repo_tags: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub repo_digests: Vec<String>,
    /// RFC 3339, with nanoseconds.
    #[serde(default)]
    pub created: String,
    /// Bytes, as the engine reports them (see `store::unpacked_size` for the containerd store).
    #[serde(default)]
    pub size: u64,
    #[serde(default, deserialize_with = "nullable")]
    pub config: ImageConfig,
    #[serde(default)]
    pub graph_driver: GraphDriver,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default, deserialize_with = "nullable")]
    pub env: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub entrypoint: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub cmd: Vec<String>,
    /// `8000/tcp` -> {}.
    #[serde(default, deserialize_with = "nullable")]
    pub exposed_ports: BTreeMap<String, serde::de::IgnoredAny>,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    pub healthcheck: Option<Healthcheck>,
}

/// An image's HEALTHCHECK; the durations are nanoseconds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    #[serde(default, deserialize_with = "nullable")]
    pub test: Vec<String>,
    #[serde(default)]
    pub interval: u64,
    #[serde(default)]
    pub timeout: u64,
    #[serde(default)]
    pub start_period: u64,
    #[serde(default)]
    pub retries: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriver {
    /// overlay2's LowerDir (folders joined by `:`) and UpperDir, among others.
    #[serde(default, deserialize_with = "nullable")]
    pub data: BTreeMap<String, String>,
}

/// One entry of the API's image list (`/images/json`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub repo_tags: Vec<String>,
    /// Seconds since the epoch.
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub size: u64,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
}

/// One entry of an image's history (the API's `/images/NAME/history`), newest first.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryEntry {
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub size: u64,
}

/// `docker buildx imagetools inspect --format '{{json .}}'` of one reference.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Remote {
    pub manifest: RemoteManifest,
    /// The image's configuration, or, for an index (several platforms), one per platform
    /// under its name (`linux/arm64`).
    #[serde(default)]
    pub image: Option<RemoteImages>,
}

/// The top manifest `imagetools inspect` read: an image's, or an index's with its entries.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RemoteManifest {
    pub digest: String,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// One configuration, or one per platform.
#[derive(Debug, Clone)]
pub enum RemoteImages {
    One(RemoteImage),
    Many(BTreeMap<String, RemoteImage>),
}

impl<'de> Deserialize<'de> for RemoteImages {
    /// An index's entries are keyed by platform (`linux/arm64`), which holds a `/`; a single
    /// image's keys (`created`, `config`) never do.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let map = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        if !map.is_empty() && map.keys().all(|k| k.contains('/')) {
            map.into_iter()
                .map(|(k, v)| Ok((k, serde_json::from_value(v).map_err(D::Error::custom)?)))
                .collect::<Result<_, D::Error>>()
                .map(RemoteImages::Many)
        } else {
            let value = serde_json::Value::Object(map.into_iter().collect());
            serde_json::from_value(value)
                .map(RemoteImages::One)
                .map_err(D::Error::custom)
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RemoteImage {
    pub config: Option<RemoteConfig>,
}

/// The part of an OCI image configuration the release reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RemoteConfig {
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
}

impl Remote {
    /// A label of the image's configuration; for an index, the label its platforms share, or
    /// None when they differ or one lacks it.
    pub fn label(&self, name: &str) -> Option<&str> {
        fn get<'a>(image: &'a RemoteImage, name: &str) -> Option<&'a str> {
            let config = image.config.as_ref()?;
            config.labels.get(name).map(String::as_str)
        }
        match self.image.as_ref()? {
            RemoteImages::One(image) => get(image, name),
            RemoteImages::Many(images) => {
                let mut values = images.values().map(|i| get(i, name));
                let first = values.next()??;
                values.all(|v| v == Some(first)).then_some(first)
            }
        }
    }

    /// An index's platforms (`linux/arm64`) and their manifest digests, sorted, without the
    /// attestation manifests (`unknown/unknown`); empty for a single image.
    pub fn platforms(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .manifest
            .manifests
            .iter()
            .filter_map(|m| {
                let p = m.platform.as_ref()?;
                (p.os != "unknown" && p.architecture != "unknown")
                    .then(|| (format!("{}/{}", p.os, p.architecture), m.digest.clone()))
            })
            .collect();
        out.sort();
        out
    }
}

/// A manifest as a registry serves it (`imagetools inspect --raw`): an image's (config and
/// layers) or an index's (one manifest per platform).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Manifest {
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

impl Manifest {
    /// The bytes of an image manifest's config and layers as the registry stores them
    /// (compressed); 0 for an index, which has neither.
    pub fn stored_bytes(&self) -> u64 {
        self.config.as_ref().map_or(0, |c| c.size) + self.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// A pointer to content in a registry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Descriptor {
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    /// An index's entries name the platform of each manifest.
    pub platform: Option<ManifestPlatform>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ManifestPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_has_its_platforms_and_the_labels_they_share() {
        let index: Remote = serde_json::from_str(
            r#"{"name": "r:t", "manifest": {"digest": "sha256:i", "manifests": [
                {"digest": "sha256:b", "platform": {"os": "linux", "architecture": "arm64"}},
                {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": "sha256:x", "platform": {"os": "unknown", "architecture": "unknown"}}]},
              "image": {"linux/amd64": {"architecture": "amd64", "config": {"Labels": {"v": "1", "r": "a"}}},
                        "linux/arm64": {"architecture": "arm64", "config": {"Labels": {"v": "1", "r": "b"}}}}}"#,
        )
        .unwrap();
        assert_eq!(
            index.platforms(),
            [
                ("linux/amd64".to_string(), "sha256:a".to_string()),
                ("linux/arm64".to_string(), "sha256:b".to_string())
            ]
        );
        assert_eq!(index.label("v"), Some("1"));
        assert_eq!(index.label("r"), None);
        let one: Remote = serde_json::from_str(
            r#"{"manifest": {"digest": "sha256:m"},
              "image": {"created": "2026-01-01T00:00:00Z", "architecture": "amd64", "config": {"Labels": {"v": "2"}}}}"#,
        )
        .unwrap();
        assert!(one.platforms().is_empty());
        assert_eq!(one.label("v"), Some("2"));
    }

    #[test]
    fn nulls_read_as_empty_and_unknown_fields_are_ignored() {
        let image: Image = serde_json::from_str(
            r#"{"Id": "sha256:1", "RepoTags": null, "Size": 5, "Os": "linux",
                "Config": {"Cmd": null, "Env": ["A=1"], "Labels": null, "ExposedPorts": {"8000/tcp": {}},
                           "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000}},
                "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": "/u"}}}"#,
        )
        .unwrap();
        assert!(image.repo_tags.is_empty() && image.config.cmd.is_empty());
        assert_eq!(image.config.env, ["A=1"]);
        assert!(image.config.exposed_ports.contains_key("8000/tcp"));
        let check = image.config.healthcheck.unwrap();
        assert_eq!((check.test.len(), check.interval), (2, 30_000_000_000));
        assert_eq!(image.graph_driver.data["UpperDir"], "/u");
        let bare: Image = serde_json::from_str(r#"{"Id": "x", "Config": null}"#).unwrap();
        assert!(bare.config.healthcheck.is_none());
    }

    #[test]
    fn a_container_reads_its_state_ports_and_mounts() {
        let c: Container = serde_json::from_str(
            r#"{"Id": "c1", "Created": "2026-12-01T10:00:00Z", "Image": "sha256:2", "Path": "python",
                "Args": ["-m", "app"],
                "State": {"Status": "running", "Running": true, "ExitCode": 0,
                          "StartedAt": "2026-12-01T10:00:01Z",
                          "Health": {"Status": "healthy", "Log": [{"End": "2026-12-01T10:00:03Z", "ExitCode": 0, "Output": ""}]}},
                "Config": {"Labels": {"com.docker.compose.service": "backend"}, "Env": null},
                "NetworkSettings": {"Ports": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40001"}], "9000/tcp": null}},
                "Mounts": [{"Type": "volume", "Name": "v1"}, {"Type": "bind"}]}"#,
        )
        .unwrap();
        assert_eq!(c.state.health.as_ref().unwrap().log[0].exit_code, 0);
        assert_eq!(
            c.network_settings.ports["8000/tcp"].as_ref().unwrap()[0].host_port,
            "40001"
        );
        assert!(c.network_settings.ports["9000/tcp"].is_none());
        assert_eq!(c.mounts[1].name, None);
    }

    #[test]
    fn a_remote_index_has_its_platforms_labels_and_an_image_has_its_own() {
        let image: Remote = serde_json::from_str(
            r#"{"name": "r/x:1", "manifest": {"mediaType": "m", "digest": "sha256:d", "size": 1},
                "image": {"config": {"Labels": {"org.opencontainers.image.version": "1.0.0"}}}}"#,
        )
        .unwrap();
        assert_eq!(image.manifest.digest, "sha256:d");
        assert_eq!(
            image.label("org.opencontainers.image.version"),
            Some("1.0.0")
        );
        let index: Remote = serde_json::from_str(
            r#"{"manifest": {"digest": "sha256:i", "manifests": []},
                "image": {"linux/amd64": {"config": {"Labels": {"a": "b"}}}}}"#,
        )
        .unwrap();
        assert_eq!(index.label("a"), Some("b"));
    }
}
