//! The layer between the commands and Docker: [`run`] runs the Docker CLI (docker, buildx,
//! compose) one way for every command. Which engine the CLI talks to is resolved in
//! `crate::engine::endpoint`, and `doctor` reports it.

pub mod run;

pub use run::{docker, Failed};
