//! Running actions off the drain thread: one worker thread per configured
//! action, each behind a bounded queue ([`QUEUE`]). The drain thread only
//! `try_send`s: a full queue (an action slower than the events) drops the
//! event for that action with a warning, so no action can delay a drain.
//! The event itself is already in history when it is queued.
//!
//! - `log`: the event as one JSON line on stdout (the journal under
//!   systemd).
//! - `exec`: the program with the event as JSON on stdin and every scalar
//!   field as `NETMON_<FIELD>` in the environment (`NETMON_RULE`,
//!   `NETMON_VALUE_BYTES`, ...); no shell unless the action says
//!   `shell = true`; killed after its timeout.
//! - `webhook`: HTTP POST of the JSON (ureq, rustls), with
//!   `Authorization: Bearer` and `X-Netmon-Signature: sha256=<hex
//!   HMAC-SHA256 of the body>` when configured; a connection error, a 5xx
//!   or a 429 is retried after `backoff`, doubling, `retries` times; other
//!   4xx are not retried.
//! - `desktop`: `notify-send` run as the configured user with that user's
//!   session bus (`unix:path=/run/user/UID/bus`). A daemon has no desktop
//!   of its own: without a user logged in to a graphical session (whose
//!   bus is at that path), there is nobody to show it to, and the failure
//!   is logged.
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use hmac::Mac as _;

use crate::alerts::config::{Action, ActionKind};
use crate::wire::AlertEvent;

/// Events waiting per action.
pub const QUEUE: usize = 64;

/// One event, encoded once.
#[derive(Debug)]
struct Job {
    event: AlertEvent,
    json: String,
}

/// The action workers.
#[derive(Debug)]
pub struct Dispatcher {
    queues: Vec<(String, SyncSender<Arc<Job>>)>,
}

impl Dispatcher {
    /// Starts one worker per action.
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub fn start(actions: &[Action]) -> std::io::Result<Self> {
        let mut queues = Vec::new();
        for a in actions {
            let (tx, rx) = sync_channel::<Arc<Job>>(QUEUE);
            let kind = a.kind.clone();
            let name = a.name.clone();
            std::thread::Builder::new()
                .name(format!("alert-{}", a.name))
                .spawn(move || worker(&name, &kind, &rx))?;
            queues.push((a.name.clone(), tx));
        }
        Ok(Self { queues })
    }

    /// Queues `event` for the actions at `indices`; never blocks.
    pub fn send(&self, event: &AlertEvent, indices: &[usize]) {
        let json = match serde_json::to_string(event) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "encoding an alert event");
                return;
            }
        };
        let job = Arc::new(Job {
            event: event.clone(),
            json,
        });
        for i in indices {
            let Some((name, q)) = self.queues.get(*i) else {
                continue;
            };
            match q.try_send(Arc::clone(&job)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(action = %name, rule = %event.rule, "alert action queue full: event dropped for this action (it is in history)");
                }
                Err(TrySendError::Disconnected(_)) => {
                    tracing::error!(action = %name, "alert action worker is gone");
                }
            }
        }
    }
}

fn worker(name: &str, kind: &ActionKind, rx: &Receiver<Arc<Job>>) {
    // The programs an action runs get none of the daemon's load capabilities.
    if let Err(e) = crate::privilege::drop_reload_caps() {
        tracing::warn!(action = %name, error = %e, "cannot drop the load capabilities on this thread");
    }
    while let Ok(job) = rx.recv() {
        if let Err(e) = run(kind, &job) {
            tracing::warn!(action = %name, rule = %job.event.rule, error = %e, "alert action failed");
        }
    }
}

fn run(kind: &ActionKind, job: &Job) -> Result<(), String> {
    match kind {
        ActionKind::Log => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", job.json)
                .and_then(|()| out.flush())
                .map_err(|e| e.to_string())
        }
        ActionKind::Exec { argv, timeout } => exec(argv, *timeout, job),
        ActionKind::Webhook {
            url,
            bearer,
            hmac_secret,
            retries,
            backoff,
            timeout,
        } => webhook(
            url,
            bearer.as_deref(),
            hmac_secret.as_deref(),
            *retries,
            *backoff,
            *timeout,
            &job.json,
        ),
        ActionKind::Desktop { user } => desktop(user, &job.event),
    }
}

/// `NETMON_<FIELD>` for every scalar field of the event.
#[must_use]
pub fn env_of(event: &AlertEvent) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(event) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => return None,
            };
            Some((format!("NETMON_{}", k.to_ascii_uppercase()), s))
        })
        .collect()
}

/// Waits for `child` until `deadline`, killing it then.
fn wait_until(child: &mut std::process::Child, deadline: Instant) -> Result<(), String> {
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(format!("exited with {st}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("timed out: killed".to_owned());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn exec(argv: &[String], timeout: Duration, job: &Job) -> Result<(), String> {
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    let deadline = Instant::now() + timeout;
    let mut child = Command::new(prog)
        .args(args)
        .envs(env_of(&job.event))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {prog}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // Written from a helper thread: a program that never reads its
        // stdin must not hold this worker past the timeout.
        let body = job.json.clone();
        std::thread::spawn(move || {
            let _ = stdin.write_all(body.as_bytes());
            let _ = stdin.write_all(b"\n");
        });
    }
    wait_until(&mut child, deadline)
}

/// Lower-case hex of HMAC-SHA256(`key`, `body`).
#[must_use]
pub fn signature(key: &str, body: &[u8]) -> String {
    use std::fmt::Write as _;
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    let mut hex = String::with_capacity(64);
    for b in mac.finalize().into_bytes() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

fn webhook(
    url: &str,
    bearer: Option<&str>,
    secret: Option<&str>,
    retries: u32,
    backoff: Duration,
    timeout: Duration,
    body: &str,
) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let sig = secret.map(|k| format!("sha256={}", signature(k, body.as_bytes())));
    let mut wait = backoff;
    let mut last = String::new();
    for attempt in 0..=retries {
        if attempt > 0 {
            std::thread::sleep(wait);
            wait = wait.saturating_mul(2);
        }
        let mut req = agent
            .post(url)
            .header("Content-Type", "application/json")
            .header("User-Agent", concat!("netmon/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = bearer {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(s) = &sig {
            req = req.header("X-Netmon-Signature", s.as_str());
        }
        match req.send(body) {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => {
                let code = resp.status().as_u16();
                last = format!("HTTP {code}");
                if (400..500).contains(&code) && code != 429 {
                    return Err(last);
                }
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("{last} after {} tries", retries + 1))
}

fn desktop(user: &str, event: &AlertEvent) -> Result<(), String> {
    let u = nix::unistd::User::from_name(user)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no user {user:?}"))?;
    let uid = u.uid.as_raw();
    let runtime = format!("/run/user/{uid}");
    let bus = format!("{runtime}/bus");
    if !std::path::Path::new(&bus).exists() {
        return Err(format!(
            "{user} has no session bus at {bus} (not logged in to a desktop)"
        ));
    }
    let mut child = Command::new("notify-send")
        .arg("--app-name=netmon")
        .arg(format!("netmon: {}", event.rule))
        .arg(&event.message)
        .env_clear()
        .env("DBUS_SESSION_BUS_ADDRESS", format!("unix:path={bus}"))
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("HOME", &u.dir)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .uid(uid)
        .gid(u.gid.as_raw())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting notify-send: {e}"))?;
    wait_until(&mut child, Instant::now() + Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn env_names_every_scalar_field() {
        let e = AlertEvent {
            rule: "r".into(),
            value_bytes: Some(5),
            filters: vec!["app=a".into(), "user=b".into()],
            ..AlertEvent::default()
        };
        let env: std::collections::HashMap<String, String> = env_of(&e).into_iter().collect();
        assert_eq!(env.get("NETMON_RULE").map(String::as_str), Some("r"));
        assert_eq!(env.get("NETMON_VALUE_BYTES").map(String::as_str), Some("5"));
        assert_eq!(
            env.get("NETMON_FILTERS").map(String::as_str),
            Some("app=a user=b")
        );
        assert!(!env.contains_key("NETMON_CAP_BYTES"));
    }
}
