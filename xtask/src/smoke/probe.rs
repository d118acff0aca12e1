//! Measurements of the running stack: HTTP from the host, requests from inside a container
//! (one service to another by DNS, a service to PostgreSQL), memory at idle, and a graceful stop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::config::Runtime;
use crate::docker::docker;

/// One HTTP answer: status, body, and the time from connecting to the last byte.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub seconds: f64,
}

/// A plain HTTP/1.0 GET on loopback; the connection closes after the answer.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Result<Answer> {
    let start = Instant::now();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: `write!` would send the request in pieces.
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let seconds = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the answer is not HTTP")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(Answer {
        status,
        body,
        seconds,
    })
}

/// Statistics of a few timings, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timings {
    pub first: f64,
    pub median: f64,
    pub max: f64,
}

pub fn timings(samples: &[f64]) -> Timings {
    if samples.is_empty() {
        return Timings {
            first: 0.0,
            median: 0.0,
            max: 0.0,
        };
    }
    Timings {
        first: samples[0],
        median: crate::bench::median(samples),
        max: samples.iter().copied().fold(f64::MIN, f64::max),
    }
}

pub fn ms(seconds: f64) -> String {
    if seconds < 0.01 {
        format!("{:.1} ms", seconds * 1000.0)
    } else {
        format!("{:.0} ms", seconds * 1000.0)
    }
}

/// Requests `url` `count` times from inside a container with the image's own interpreter, and
/// returns (status or error, seconds) of each: the first request also resolves the name.
pub fn fetch_from(
    container: &str,
    runtime: Runtime,
    url: &str,
    count: usize,
) -> Result<Vec<(String, f64)>> {
    // A Rust string's debug form is a valid string literal in both languages for a URL.
    let script = match runtime {
        Runtime::Node => format!(
            "(async () => {{ const out = []; for (let i = 0; i < {count}; i++) {{ \
               const t = performance.now(); \
               try {{ const r = await fetch({url:?}, {{cache: 'no-store', signal: AbortSignal.timeout(5000)}}); \
                     await r.text(); out.push([String(r.status), (performance.now() - t) / 1000]); }} \
               catch (e) {{ out.push([String((e.cause && e.cause.code) || e.name), (performance.now() - t) / 1000]); }} \
             }} console.log(JSON.stringify(out)); }})()"
        ),
        // Lines joined explicitly: a `\` line continuation in Rust would eat the indentation.
        Runtime::Python => [
            "import json, time, urllib.error, urllib.request".to_string(),
            "out = []".into(),
            format!("for _ in range({count}):"),
            "    t = time.perf_counter()".into(),
            "    try:".into(),
            format!("        with urllib.request.urlopen({url:?}, timeout=5) as r:"),
            "            r.read()".into(),
            "            out.append([str(r.status), time.perf_counter() - t])".into(),
            "    except urllib.error.HTTPError as e:".into(),
            "        out.append([str(e.code), time.perf_counter() - t])".into(),
            "    except Exception as e:".into(),
            "        out.append([type(e).__name__, time.perf_counter() - t])".into(),
            "print(json.dumps(out))".into(),
        ]
        .join("\n"),
    };
    let flag = match runtime {
        Runtime::Node => "-e",
        Runtime::Python => "-c",
    };
    let program = runtime.program();
    let out = docker(["exec", container, program, flag, &script]).read()?;
    serde_json::from_str(out.lines().last().unwrap_or(""))
        .with_context(|| format!("unexpected output of {program}"))
}

/// Connects from inside the backend container to its DATABASE_URL with the image's own
/// psycopg, runs `SELECT 1`, and returns the seconds it took.
pub fn database_connect(container: &str) -> Result<f64> {
    // Lines joined explicitly: a `\` line continuation in Rust would eat the indentation.
    let script = [
        "import json, os, time",
        "import psycopg",
        "start = time.perf_counter()",
        "with psycopg.connect(os.environ['DATABASE_URL'], connect_timeout=5) as conn:",
        "    conn.execute('SELECT 1')",
        "print(json.dumps(time.perf_counter() - start))",
    ]
    .join("\n");
    let out = docker(["exec", container, Runtime::Python.program(), "-c", &script]).read()?;
    out.lines()
        .last()
        .and_then(|l| l.parse().ok())
        .context("unexpected output of python")
}

/// A container's memory as the engine's stats API gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Memory {
    /// What the container's processes hold: its memory use less the page cache of the files it
    /// read.
    pub own: u64,
    /// The page cache of files charged to the container: the image's files it was the first
    /// to read (on an engine whose image files no other container has read yet, the runtime's
    /// whole program), which the kernel shares and reclaims.
    pub file_cache: u64,
}

/// The container's own memory from `GET /containers/{id}/stats` on the engine's socket; None
/// when the socket does not answer (an engine behind TCP or SSH) or the figures are missing.
pub fn own_memory(id: &str) -> Option<Memory> {
    let (status, body) = crate::engine::api_get(&format!(
        "/containers/{id}/stats?stream=false&one-shot=true"
    ))?;
    if status != 200 {
        return None;
    }
    let stats: serde_json::Value = serde_json::from_str(&body).ok()?;
    memory_of(&stats["memory_stats"])
}

/// `memory_stats` of the stats API: `usage`, and the file cache as cgroup v2 (`file`) or v1
/// (`total_cache`, `cache`) names it.
fn memory_of(stats: &serde_json::Value) -> Option<Memory> {
    let usage = stats["usage"].as_u64()?;
    let detail = &stats["stats"];
    let file_cache = ["file", "total_cache", "cache"]
        .iter()
        .find_map(|key| detail[*key].as_u64())?;
    Some(Memory {
        own: usage.saturating_sub(file_cache),
        file_cache,
    })
}

/// Memory in bytes and CPU percent of each container, from one `docker stats --no-stream`.
pub fn idle_usage(ids: &[&str]) -> Result<Vec<(String, u64, f64)>> {
    let mut args = vec![
        "stats",
        "--no-stream",
        "--format",
        "{{.ID}}|{{.MemUsage}}|{{.CPUPerc}}",
    ];
    args.extend(ids);
    let out = docker(&args).read()?;
    out.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('|').collect();
            let memory = fields
                .get(1)
                .and_then(|m| m.split('/').next())
                .and_then(parse_size)
                .with_context(|| format!("unexpected docker stats line: {line}"))?;
            let cpu = fields
                .get(2)
                .and_then(|c| c.trim().trim_end_matches('%').parse().ok())
                .unwrap_or(0.0);
            Ok((fields[0].to_string(), memory, cpu))
        })
        .collect()
}

/// A size as docker prints it: `59.7MiB`, `1.2GiB`, `512kB`, `0B`.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let factor = match unit.trim() {
        "B" | "" => 1.0,
        "kB" | "KB" => 1e3,
        "KiB" => 1024.0,
        "MB" => 1e6,
        "MiB" => 1024.0 * 1024.0,
        "GB" => 1e9,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((number * factor) as u64)
}

/// Polls `GET path` until it answers 200, and stops waiting when the container `id` exits
/// (with its exit code and last log lines as the error).
pub fn wait_ok(id: &str, port: u16, path: &str, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if crate::interrupt::interrupted() {
            return Ok(());
        }
        let last = match http_get(port, path, Duration::from_secs(2)) {
            Ok(answer) if answer.status == 200 => return Ok(()),
            Ok(answer) => format!("GET {path} answered {}", answer.status),
            Err(e) => format!("{e:#}"),
        };
        let state = super::stack::state(id)?;
        if !state.running {
            bail!(
                "{}",
                super::stack::exited_cause(&state, &super::stack::last_logs(id, 5))
            );
        }
        if start.elapsed() >= timeout {
            bail!("{last}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How a graceful stop went.
#[derive(Debug, Clone)]
pub struct Stop {
    pub seconds: f64,
    pub exit_code: i64,
    /// The in-flight request's answer, when one was made.
    pub in_flight: Option<Result<Answer, String>>,
}

/// Stops a container with `docker stop` (SIGTERM, then SIGKILL after `grace`) while a request
/// to `slow_path` is in flight, when one is given.
pub fn graceful_stop(
    id: &str,
    port: u16,
    slow_path: Option<&str>,
    grace: Duration,
) -> Result<Stop> {
    let request = slow_path.map(|path| {
        let path = path.to_string();
        std::thread::spawn(move || {
            http_get(port, &path, Duration::from_secs(30)).map_err(|e| format!("{e:#}"))
        })
    });
    if request.is_some() {
        // Long enough for the request to reach the server, well inside its sleep.
        std::thread::sleep(Duration::from_millis(500));
    }
    let start = Instant::now();
    docker(["stop", "--time", &grace.as_secs().to_string(), id]).read()?;
    let seconds = start.elapsed().as_secs_f64();
    let exit_code = super::stack::state(id)?.exit_code;
    let in_flight = request.map(|r| {
        r.join()
            .unwrap_or_else(|_| Err("the request thread panicked".into()))
    });
    Ok(Stop {
        seconds,
        exit_code,
        in_flight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_leaves_out_the_file_cache_of_either_cgroup_version() {
        let v2 = serde_json::json!({"usage": 104_000_000u64, "stats": {"file": 44_000_000u64, "anon": 58_000_000u64}});
        assert_eq!(
            memory_of(&v2),
            Some(Memory {
                own: 60_000_000,
                file_cache: 44_000_000
            })
        );
        let v1 =
            serde_json::json!({"usage": 90_000_000u64, "stats": {"total_cache": 30_000_000u64}});
        assert_eq!(memory_of(&v1).unwrap().own, 60_000_000);
        assert_eq!(memory_of(&serde_json::json!({"usage": 1u64})), None);
    }

    #[test]
    fn docker_sizes_are_parsed() {
        assert_eq!(parse_size("59.7MiB"), Some(62_599_987));
        assert_eq!(parse_size("0B"), Some(0));
        assert_eq!(parse_size("512kB"), Some(512_000));
        assert_eq!(parse_size("1.5GiB"), Some(1_610_612_736));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn timings_have_first_median_and_max() {
        let t = timings(&[0.03, 0.001, 0.002, 0.004, 0.002]);
        assert_eq!(t.first, 0.03);
        assert_eq!(t.median, 0.002);
        assert_eq!(t.max, 0.03);
        assert_eq!(ms(0.0042), "4.2 ms");
        assert_eq!(ms(0.25), "250 ms");
    }

    #[test]
    fn http_get_reads_status_body_and_time() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                conn.read_exact(&mut byte).unwrap();
                request.push(byte[0]);
            }
            assert!(request.starts_with(b"GET /health HTTP/1.0\r\n"));
            conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\nno")
                .unwrap();
        });
        let answer = http_get(port, "/health", Duration::from_secs(5)).unwrap();
        server.join().unwrap();
        assert_eq!(answer.status, 503);
        assert_eq!(answer.body, "no");
        assert!(answer.seconds > 0.0);
    }
}
