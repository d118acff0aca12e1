//! Reads the `--progress=rawjson` stream of one `docker buildx build`: pretty-printed JSON
//! status objects, one after another, with plain error lines between them. Turns it into the
//! build's steps, their timings and cache hits, and its log lines.

use std::collections::HashMap;
use std::time::SystemTime;

use base64::Engine as _;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct RawStatus {
    #[serde(default)]
    vertexes: Vec<RawVertex>,
    #[serde(default)]
    logs: Vec<RawLog>,
}

#[derive(Debug, Deserialize)]
struct RawVertex {
    digest: String,
    #[serde(default)]
    name: String,
    started: Option<String>,
    completed: Option<String>,
    #[serde(default)]
    cached: bool,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawLog {
    vertex: String,
    data: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub started: Option<SystemTime>,
    pub completed: Option<SystemTime>,
    pub cached: bool,
    pub error: Option<String>,
}

impl Step {
    /// Dockerfile instructions are named `[stage n/m] INSTRUCTION`; BuildKit's own work
    /// (`[internal] ...`, exporting, resolving) is not a step of the recipe.
    pub fn is_instruction(&self) -> bool {
        self.name.starts_with('[')
            && !self.name.starts_with("[internal]")
            && !self.name.starts_with("[auth]")
    }

    pub fn seconds(&self) -> Option<f64> {
        let (s, c) = (self.started?, self.completed?);
        Some(c.duration_since(s).unwrap_or_default().as_secs_f64())
    }
}

/// What one fed line changed, for the live display.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// A step started (or was found in the cache).
    Step { name: String, cached: bool },
    /// A line the build printed, or a plain line of buildx itself.
    Line(String),
}

#[derive(Debug, Default)]
pub struct BuildStream {
    steps: Vec<Step>,
    by_digest: HashMap<String, usize>,
    pending: Option<String>,
    partial_logs: HashMap<String, String>,
    /// The last plain (non-JSON) lines: buildx prints its final error this way.
    pub plain: Vec<String>,
}

impl BuildStream {
    /// Feeds one line of the stream.
    pub fn feed(&mut self, line: &str) -> Vec<Update> {
        // Objects open and close with a brace alone at the start of a line; the lines between
        // belong to the object being read.
        if let Some(buf) = self.pending.as_mut() {
            buf.push_str(line);
            buf.push('\n');
            if line == "}" {
                let text = self.pending.take().unwrap_or_default();
                return match serde_json::from_str::<RawStatus>(&text) {
                    Ok(status) => self.apply(status),
                    Err(_) => vec![],
                };
            }
            return vec![];
        }
        if line == "{" {
            self.pending = Some("{\n".to_string());
            return vec![];
        }
        if line.trim().is_empty() {
            return vec![];
        }
        self.plain.push(line.to_string());
        vec![Update::Line(line.to_string())]
    }

    fn apply(&mut self, status: RawStatus) -> Vec<Update> {
        let mut updates = Vec::new();
        for v in status.vertexes {
            let index = match self.by_digest.get(&v.digest) {
                Some(&i) => i,
                None => {
                    self.steps.push(Step {
                        name: v.name.clone(),
                        started: None,
                        completed: None,
                        cached: false,
                        error: None,
                    });
                    self.by_digest
                        .insert(v.digest.clone(), self.steps.len() - 1);
                    self.steps.len() - 1
                }
            };
            let step = &mut self.steps[index];
            let newly_started = step.started.is_none() && v.started.is_some();
            let newly_cached = !step.cached && v.cached;
            if let Some(t) = v.started.as_deref().and_then(parse_time) {
                // A vertex may run more than once (BuildKit restarts it); its first start counts.
                step.started.get_or_insert(t);
            }
            if let Some(t) = v.completed.as_deref().and_then(parse_time) {
                step.completed = Some(t);
            }
            step.cached |= v.cached;
            if v.error.is_some() {
                step.error = v.error;
            }
            if (newly_started || newly_cached) && step.is_instruction() {
                updates.push(Update::Step {
                    name: step.name.clone(),
                    cached: step.cached,
                });
            }
        }
        for log in status.logs {
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&log.data) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            let buf = self.partial_logs.entry(log.vertex.clone()).or_default();
            buf.push_str(&text);
            // Only whole lines are passed on; the rest waits for the next chunk.
            while let Some(pos) = buf.find('\n') {
                let line: String = buf.drain(..=pos).collect();
                let line = line.trim_end_matches(['\n', '\r']).to_string();
                let prefix = self
                    .by_digest
                    .get(&log.vertex)
                    .map(|&i| step_label(&self.steps[i].name))
                    .unwrap_or_default();
                updates.push(Update::Line(format!("{prefix}{line}")));
            }
        }
        updates
    }

    /// Steps that are Dockerfile instructions: (all, cached).
    pub fn counts(&self) -> (usize, usize) {
        let steps: Vec<&Step> = self.steps.iter().filter(|s| s.is_instruction()).collect();
        (steps.len(), steps.iter().filter(|s| s.cached).count())
    }

    /// Every Dockerfile instruction of the build in the order BuildKit reported it: (name,
    /// cached, seconds).
    pub fn instructions(&self) -> Vec<(String, bool, Option<f64>)> {
        self.steps
            .iter()
            .filter(|s| s.is_instruction())
            .map(|s| (s.name.clone(), s.cached, s.seconds()))
            .collect()
    }

    /// The `n` slowest steps that ran (not cached), slowest first.
    pub fn slowest(&self, n: usize) -> Vec<(String, f64)> {
        let mut ran: Vec<(String, f64)> = self
            .steps
            .iter()
            .filter(|s| s.is_instruction() && !s.cached)
            .filter_map(|s| Some((s.name.clone(), s.seconds()?)))
            .collect();
        ran.sort_by(|a, b| b.1.total_cmp(&a.1));
        ran.truncate(n);
        ran
    }

    /// The best one-line account of a failure: the failing step and its error, else buildx's
    /// own last error line.
    pub fn error_summary(&self) -> Option<String> {
        if let Some(step) = self
            .steps
            .iter()
            .rev()
            .find(|s| s.error.is_some() && s.is_instruction())
        {
            return Some(format!(
                "{}: {}",
                step.name,
                step.error.clone().unwrap_or_default()
            ));
        }
        self.plain
            .iter()
            .rev()
            .find(|l| l.contains("ERROR"))
            .cloned()
            .or_else(|| self.plain.last().cloned())
    }
}

/// The `[stage n/m] ` part of a step name, to prefix its log lines.
fn step_label(name: &str) -> String {
    match name.find(']') {
        Some(end) if name.starts_with('[') => format!("{} ", &name[..=end]),
        _ => String::new(),
    }
}

fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(stream: &mut BuildStream, text: &str) -> Vec<Update> {
        text.lines().flat_map(|l| stream.feed(l)).collect()
    }

    const SAMPLE: &str = r#"{
  "vertexes": [
    {
      "digest": "sha256:a",
      "name": "[internal] load build definition from Dockerfile",
      "started": "2026-11-25T18:36:00.000000000Z",
      "completed": "2026-11-25T18:36:00.100000000Z"
    }
  ]
}
{
  "vertexes": [
    {
      "digest": "sha256:b",
      "name": "[builder 1/2] RUN echo hi",
      "started": "2026-11-25T18:36:01.000000000Z"
    },
    {
      "digest": "sha256:c",
      "name": "[runner 2/2] COPY a b",
      "started": "2026-11-25T18:36:01.000000000Z",
      "completed": "2026-11-25T18:36:01.000000000Z",
      "cached": true
    }
  ]
}
{
  "logs": [
    {
      "vertex": "sha256:b",
      "stream": 1,
      "data": "aGVsbG8Kd29y",
      "timestamp": "2026-11-25T18:36:01.5Z"
    }
  ]
}
{
  "logs": [
    {
      "vertex": "sha256:b",
      "stream": 1,
      "data": "bGQK",
      "timestamp": "2026-11-25T18:36:01.6Z"
    }
  ]
}
{
  "vertexes": [
    {
      "digest": "sha256:b",
      "name": "[builder 1/2] RUN echo hi",
      "started": "2026-11-25T18:36:01.000000000Z",
      "completed": "2026-11-25T18:36:03.500000000Z",
      "error": "process \"/bin/sh -c echo hi\" did not complete successfully: exit code: 1"
    }
  ]
}
ERROR: failed to solve: process "/bin/sh -c echo hi" did not complete successfully: exit code: 1
"#;

    #[test]
    fn steps_timings_cache_hits_and_logs_are_read() {
        let mut stream = BuildStream::default();
        let updates = feed_all(&mut stream, SAMPLE);
        assert_eq!(
            updates,
            [
                Update::Step { name: "[builder 1/2] RUN echo hi".into(), cached: false },
                Update::Step { name: "[runner 2/2] COPY a b".into(), cached: true },
                Update::Line("[builder 1/2] hello".into()),
                Update::Line("[builder 1/2] world".into()),
                Update::Line("ERROR: failed to solve: process \"/bin/sh -c echo hi\" did not complete successfully: exit code: 1".into()),
            ]
        );
        assert_eq!(stream.counts(), (2, 1));
        let slowest = stream.slowest(3);
        assert_eq!(slowest.len(), 1);
        assert_eq!(slowest[0].0, "[builder 1/2] RUN echo hi");
        assert!((slowest[0].1 - 2.5).abs() < 1e-6);
        assert!(stream
            .error_summary()
            .unwrap()
            .starts_with("[builder 1/2] RUN echo hi: process"));
    }

    #[test]
    fn a_garbled_object_is_skipped_and_reading_goes_on() {
        let mut stream = BuildStream::default();
        let text = "{\n  \"vertexes\": [ nonsense\n}\nplain line\n";
        let updates = feed_all(&mut stream, text);
        assert_eq!(updates, [Update::Line("plain line".into())]);
        assert_eq!(stream.error_summary().as_deref(), Some("plain line"));
    }
}
