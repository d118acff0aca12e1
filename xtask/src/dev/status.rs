//! One status line per service while the stack comes up: building, waiting, starting, healthy,
//! failed. Live lines on a terminal; elsewhere one printed line per change of status.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar};

use super::stack::PsEntry;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No container yet (compose creates a service after the ones it depends on are healthy).
    Waiting,
    /// Running, its health check not passed yet.
    Starting,
    Healthy,
    Failed(String),
}

impl Status {
    fn text(&self) -> String {
        match self {
            Status::Waiting => "waiting".into(),
            Status::Starting => "starting".into(),
            Status::Healthy => "healthy".into(),
            Status::Failed(why) => format!("failed: {why}"),
        }
    }
}

/// The status of a service from its container, if it has one.
pub fn status_of(container: Option<&PsEntry>) -> Status {
    let Some(c) = container else {
        return Status::Waiting;
    };
    match (c.state.as_str(), c.health.as_str()) {
        ("created", _) => Status::Waiting,
        ("running", "healthy") | ("running", "") => Status::Healthy,
        ("running", "unhealthy") => Status::Failed("unhealthy".into()),
        ("running", _) | ("restarting", _) => Status::Starting,
        (state, _) => Status::Failed(format!("{state} (exit code {})", c.exit_code)),
    }
}

pub struct Board {
    services: Vec<String>,
    statuses: Vec<Option<Status>>,
    since: Vec<Instant>,
    bars: Option<(MultiProgress, Vec<ProgressBar>)>,
    start: Instant,
}

impl Board {
    pub fn new(services: &[String]) -> Board {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| crate::build::spinner_bars(services));
        Board {
            services: services.to_vec(),
            statuses: vec![None; services.len()],
            since: vec![Instant::now(); services.len()],
            bars,
            start: Instant::now(),
        }
    }

    /// Sets a service's status; a change is shown at once.
    pub fn set(&mut self, service: &str, status: Status) {
        let Some(i) = self.services.iter().position(|s| s == service) else {
            return;
        };
        if self.statuses[i].as_ref() == Some(&status) {
            return;
        }
        let seconds = self.start.elapsed().as_secs_f64();
        match &self.bars {
            Some((_, bars)) => {
                if matches!(status, Status::Healthy | Status::Failed(_)) {
                    bars[i].finish_with_message(format!("{} at {seconds:.1}s", status.text()));
                } else {
                    bars[i].set_message(status.text());
                }
            }
            None => {
                let width = self.services.iter().map(String::len).max().unwrap_or(0);
                eprintln!("{:width$}  {:>6.1}s  {}", service, seconds, status.text());
            }
        }
        self.statuses[i] = Some(status);
        self.since[i] = Instant::now();
    }

    /// Sets every service from the containers of the project.
    pub fn update(&mut self, containers: &[PsEntry]) {
        for service in self.services.clone() {
            let container = containers.iter().find(|c| c.service == service);
            self.set(&service, status_of(container));
        }
    }

    pub fn all_healthy(&self) -> bool {
        self.statuses
            .iter()
            .all(|s| matches!(s, Some(Status::Healthy)))
    }

    /// The first failed service and why.
    pub fn failed(&self) -> Option<(String, String)> {
        self.services
            .iter()
            .zip(&self.statuses)
            .find_map(|(service, status)| match status {
                Some(Status::Failed(why)) => Some((service.clone(), why.clone())),
                _ => None,
            })
    }

    /// Removes the live lines (the printed ones stay).
    pub fn clear(&self) {
        if let Some((multi, bars)) = &self.bars {
            for bar in bars {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            let _ = multi.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(state: &str, health: &str, exit_code: i64) -> PsEntry {
        PsEntry {
            id: "id".into(),
            service: "backend".into(),
            state: state.into(),
            health: health.into(),
            exit_code,
            created: String::new(),
            image: String::new(),
            ports: Default::default(),
            volumes: vec![],
        }
    }

    #[test]
    fn container_states_map_to_statuses() {
        assert_eq!(status_of(None), Status::Waiting);
        assert_eq!(status_of(Some(&entry("created", "", 0))), Status::Waiting);
        assert_eq!(
            status_of(Some(&entry("running", "starting", 0))),
            Status::Starting
        );
        assert_eq!(
            status_of(Some(&entry("running", "healthy", 0))),
            Status::Healthy
        );
        assert_eq!(
            status_of(Some(&entry("running", "unhealthy", 0))),
            Status::Failed("unhealthy".into())
        );
        assert_eq!(
            status_of(Some(&entry("exited", "", 1))),
            Status::Failed("exited (exit code 1)".into())
        );
    }
}
