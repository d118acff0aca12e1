//! `cargo xtask build --explain`: for each image, which steps missed BuildKit's cache and why,
//! found by comparing what went into this build with what went into the previous one (both kept
//! in the history): the files of the context, the build arguments and labels, the base images'
//! ids and the Dockerfile's instructions. A miss that none of them explains is a pruned cache.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::context;
use super::report::{short_id, shorten, ImageResult, StepRecord};
use crate::plan::ImagePlan;

/// What went into one image's build, kept in the history for the next build to compare with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BuildInputs {
    /// Every file of the context after `.dockerignore`: path -> git blob id.
    pub context_files: BTreeMap<String, String>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Base image reference -> its image id, when the engine has it.
    pub bases: BTreeMap<String, String>,
    /// The Dockerfile's instructions, continuation lines joined, comments left out.
    pub dockerfile: Vec<String>,
    #[serde(default)]
    pub no_cache: bool,
}

/// Reads the inputs of one planned image: its context, its Dockerfile, and the ids of the base
/// images it names (through `base_id`, a look-up on the engine).
pub fn inputs(
    root: &Path,
    image: &ImagePlan,
    base_args: &[String],
    base_id: impl Fn(&str) -> Option<String>,
) -> Result<BuildInputs> {
    let dockerfile = std::fs::read_to_string(root.join(&image.dockerfile)).unwrap_or_default();
    let bases = base_args
        .iter()
        .filter_map(|arg| image.build_args.get(arg))
        .filter_map(|reference| Some((reference.clone(), base_id(reference)?)))
        .collect();
    Ok(BuildInputs {
        context_files: context::digests(&root.join(&image.context))?,
        build_args: image.build_args.clone(),
        labels: image.labels.clone(),
        bases,
        dockerfile: instructions(&dockerfile),
        no_cache: image.no_cache,
    })
}

/// The instructions of a Dockerfile, one string each with its whitespace collapsed.
pub fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if !current.is_empty() && trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(collapse(&current));
                current.clear();
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(collapse(&current));
    }
    out
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One reason for a cache miss or a new image.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cause {
    /// `context`, `dockerfile`, `build-arg`, `base-image`, `label`, `no-cache`,
    /// `after-no-cache`, `pruned`, `first-build`.
    pub kind: &'static str,
    /// The first step that missed the cache for this cause, when one did.
    pub step: Option<String>,
    pub detail: String,
}

/// The explanation of one image's build.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub service: String,
    pub steps: usize,
    /// The steps that ran, in BuildKit's order.
    pub missed: Vec<String>,
    pub causes: Vec<Cause>,
}

/// The part of a step's name after `[stage n/m] `, whitespace collapsed.
fn instruction_of(step: &str) -> String {
    let rest = match step.find("] ") {
        Some(i) if step.starts_with('[') => &step[i + 2..],
        _ => step,
    };
    collapse(rest)
}

/// How many paths a context line names before it says "and N more".
const SHOWN_FILES: usize = 5;

pub fn explain(now: &ImageResult, before: Option<&ImageResult>) -> Explanation {
    // A FROM step only names its base image: BuildKit never reports it as cached, and it never
    // runs anything, so it is neither a step that ran nor one that was reused.
    let steps: Vec<&StepRecord> = now
        .step_list
        .iter()
        .filter(|s| !instruction_of(&s.name).starts_with("FROM "))
        .collect();
    let missed: Vec<&StepRecord> = steps.iter().copied().filter(|s| !s.cached).collect();
    let mut causes = Vec::new();
    let first_missed = missed.first().map(|s| s.name.clone());
    // The first missed step whose instruction satisfies `f`, else the first missed step.
    let step_where = |f: &dyn Fn(&str) -> bool| {
        missed
            .iter()
            .find(|s| f(&instruction_of(&s.name)))
            .map(|s| s.name.clone())
            .or_else(|| first_missed.clone())
    };
    let (Some(inputs), Some(previous)) =
        (now.inputs.as_ref(), before.and_then(|b| b.inputs.as_ref()))
    else {
        if !missed.is_empty() {
            causes.push(Cause {
                kind: "first-build",
                step: first_missed.clone(),
                detail: "no earlier build of this image in the history to compare with".into(),
            });
        }
        return Explanation {
            service: now.service.clone(),
            steps: steps.len(),
            missed: missed.iter().map(|s| s.name.clone()).collect(),
            causes,
        };
    };
    if inputs.no_cache {
        causes.push(Cause {
            kind: "no-cache",
            step: first_missed.clone(),
            detail: "--no-cache: every step ran".into(),
        });
    }
    for instruction in inputs
        .dockerfile
        .iter()
        .filter(|i| !previous.dockerfile.contains(i))
    {
        let step = step_where(&|name| {
            name == instruction.as_str()
                || instruction.ends_with(name)
                || name.ends_with(instruction.as_str())
        });
        causes.push(Cause {
            kind: "dockerfile",
            step,
            detail: format!(
                "Dockerfile line new or changed: {}",
                shorten(instruction, 100)
            ),
        });
    }
    for (reference, id) in &inputs.bases {
        if let Some(old) = previous.bases.get(reference).filter(|old| *old != id) {
            causes.push(Cause {
                kind: "base-image",
                step: first_missed.clone(),
                detail: format!(
                    "base image {reference} is another image: {} then {}",
                    short_id(old),
                    short_id(id)
                ),
            });
        }
    }
    for (arg, value) in &inputs.build_args {
        match previous.build_args.get(arg) {
            Some(old) if old == value => {}
            old => causes.push(Cause {
                kind: "build-arg",
                step: step_where(&|name| name.contains(arg.as_str())),
                detail: format!(
                    "build argument {arg}: {} then {value}",
                    old.map(String::as_str).unwrap_or("(unset)")
                ),
            }),
        }
    }
    let files = context::changes(&previous.context_files, &inputs.context_files);
    if !files.is_empty() {
        let mut named: Vec<String> = files
            .iter()
            .take(SHOWN_FILES)
            .map(|(path, what)| format!("{path} ({what})"))
            .collect();
        if files.len() > SHOWN_FILES {
            named.push(format!("and {} more", files.len() - SHOWN_FILES));
        }
        causes.push(Cause {
            kind: "context",
            step: step_where(&|name| name.starts_with("COPY") || name.starts_with("ADD")),
            detail: format!(
                "{} file{} of the context: {}",
                files.len(),
                if files.len() == 1 { "" } else { "s" },
                named.join(", ")
            ),
        });
    }
    let changed_labels: Vec<&String> = inputs
        .labels
        .iter()
        .filter(|(k, v)| previous.labels.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    let new_image = match (&now.id, &before.and_then(|b| b.id.clone())) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    };
    if !changed_labels.is_empty() && new_image {
        causes.push(Cause {
            kind: "label",
            step: None,
            detail: format!(
                "labels changed (the image config only, no step reruns): {}",
                changed_labels
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    if causes.is_empty() && !missed.is_empty() && previous.no_cache {
        causes.push(Cause {
            kind: "after-no-cache",
            step: first_missed.clone(),
            detail: "the previous build ran with --no-cache, and BuildKit ran the step again though nothing that goes into it changed".into(),
        });
    }
    if causes.is_empty() && !missed.is_empty() {
        causes.push(Cause {
            kind: "pruned",
            step: first_missed.clone(),
            detail: "cache pruned: the step ran though nothing that goes into it changed (its cache was pruned or evicted)".into(),
        });
    }
    // First miss first: causes in the order of the steps they made run; those without a step last.
    let order = |c: &Cause| {
        c.step
            .as_ref()
            .and_then(|s| missed.iter().position(|m| &m.name == s))
            .unwrap_or(usize::MAX)
    };
    causes.sort_by_key(order);
    Explanation {
        service: now.service.clone(),
        steps: steps.len(),
        missed: missed.iter().map(|s| s.name.clone()).collect(),
        causes,
    }
}

/// The explanation as text: a heading line per image, then one line per cause.
pub fn render(explanations: &[Explanation]) -> String {
    let mut out = String::new();
    for e in explanations {
        if e.missed.is_empty() {
            out.push_str(&format!("{}: all {} steps cached\n", e.service, e.steps));
            for cause in &e.causes {
                out.push_str(&format!("  {}\n", cause.detail));
            }
            continue;
        }
        out.push_str(&format!(
            "{}: {} of {} steps ran\n",
            e.service,
            e.missed.len(),
            e.steps
        ));
        for cause in &e.causes {
            match &cause.step {
                Some(step) => {
                    out.push_str(&format!("  {}  <-  {}\n", shorten(step, 60), cause.detail))
                }
                None => out.push_str(&format!("  {}\n", cause.detail)),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, cached: bool) -> StepRecord {
        StepRecord {
            name: name.into(),
            cached,
            seconds: Some(1.0),
        }
    }

    fn result(id: &str, steps: Vec<StepRecord>, inputs: BuildInputs) -> ImageResult {
        // From JSON, so that fields other parts of the report gain need no change here.
        let mut result: ImageResult = serde_json::from_value(serde_json::json!({
            "service": "frontend", "image": "todo-frontend", "tags": [], "id": id,
            "seconds": 1.0, "size_bytes": 1, "budget_bytes": 2, "ok": true, "error": null
        }))
        .unwrap();
        result.steps = steps.len();
        result.cached_steps = steps.iter().filter(|s| s.cached).count();
        result.step_list = steps;
        result.inputs = Some(inputs);
        result
    }

    fn inputs() -> BuildInputs {
        BuildInputs {
            context_files: [("app/page.tsx", "1"), ("package.json", "2")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            build_args: [("APP_VERSION".to_string(), "1.0.0".to_string())].into(),
            labels: [(
                "org.opencontainers.image.revision".to_string(),
                "a".to_string(),
            )]
            .into(),
            bases: [("base:1".to_string(), "sha256:aaa".to_string())].into(),
            dockerfile: instructions("FROM base:1\n# note\nCOPY . .\nRUN npm run \\\n    build\n"),
            no_cache: false,
        }
    }

    fn steps(ran_from: usize) -> Vec<StepRecord> {
        [
            "[b 1/3] FROM docker.io/library/base:1",
            "[b 2/3] COPY . .",
            "[b 3/3] RUN npm run build",
        ]
        .iter()
        .enumerate()
        .map(|(i, n)| step(n, i < ran_from))
        .collect()
    }

    #[test]
    fn instructions_join_continuations_and_skip_comments() {
        assert_eq!(
            instructions("# c\nFROM a\nRUN x \\\n  # inner\n  && y\n"),
            ["FROM a", "RUN x && y"]
        );
    }

    #[test]
    fn a_changed_file_is_named_at_the_copy_that_ran() {
        let before = result("sha256:1", steps(3), inputs());
        let mut changed = inputs();
        changed
            .context_files
            .insert("app/page.tsx".into(), "9".into());
        let now = result("sha256:2", steps(1), changed);
        let e = explain(&now, Some(&before));
        assert_eq!(e.missed.len(), 2);
        assert_eq!(e.causes.len(), 1, "{:?}", e.causes);
        assert_eq!(e.causes[0].kind, "context");
        assert_eq!(e.causes[0].step.as_deref(), Some("[b 2/3] COPY . ."));
        assert!(e.causes[0].detail.contains("app/page.tsx (changed)"));
    }

    #[test]
    fn a_miss_with_nothing_changed_is_a_pruned_cache() {
        let before = result("sha256:1", steps(3), inputs());
        let now = result("sha256:1", steps(2), inputs());
        let e = explain(&now, Some(&before));
        assert_eq!(e.causes.len(), 1);
        assert_eq!(e.causes[0].kind, "pruned");
        assert_eq!(
            e.causes[0].step.as_deref(),
            Some("[b 3/3] RUN npm run build")
        );
    }

    #[test]
    fn dockerfile_lines_arguments_bases_and_labels_each_get_a_line() {
        let before = result("sha256:1", steps(3), inputs());
        let mut changed = inputs();
        changed.dockerfile[2] = "RUN npm run build --debug".into();
        changed
            .build_args
            .insert("APP_VERSION".into(), "1.0.1".into());
        changed.bases.insert("base:1".into(), "sha256:bbb".into());
        changed
            .labels
            .insert("org.opencontainers.image.revision".into(), "b".into());
        let mut ran = steps(0);
        ran[2].name = "[b 3/3] RUN npm run build --debug".into();
        let now = result("sha256:2", ran, changed);
        let e = explain(&now, Some(&before));
        let kinds: Vec<&str> = e.causes.iter().map(|c| c.kind).collect();
        // First miss first: the base (FROM) before the Dockerfile line of the last step.
        assert_eq!(
            kinds,
            ["base-image", "build-arg", "dockerfile", "label"],
            "{:?}",
            e.causes
        );
        assert!(e.causes[1].detail.contains("1.0.0 then 1.0.1"));
        let text = render(&[e]);
        assert!(text.starts_with("frontend: 2 of 2 steps ran\n"), "{text}");
        assert_eq!(text.lines().count(), 5, "{text}");
    }

    #[test]
    fn a_first_build_says_there_is_nothing_to_compare() {
        let now = result("sha256:1", steps(0), inputs());
        let e = explain(&now, None);
        assert_eq!(e.causes[0].kind, "first-build");
        let cached = result("sha256:1", steps(3), inputs());
        assert_eq!(
            render(&[explain(&cached, Some(&cached))]),
            "frontend: all 2 steps cached\n"
        );
    }
}
