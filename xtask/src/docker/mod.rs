//! The layer between the commands and Docker: [`run`] runs the Docker CLI (docker, buildx,
//! compose) one way for every command, and [`inspect`] types what the engine and the registry
//! print about images, containers and manifests. Which engine the CLI talks to is resolved in
//! `crate::engine::endpoint`, and `doctor` reports it.

pub mod inspect;
pub mod run;

pub use run::{docker, Failed};
