//! A child process owned by a fixture: its stdout and stderr are forwarded line by line
//! to the test's stderr (prefixed with the child's name, so a failing test shows what
//! each process said), stdout lines can be awaited, and `Drop` kills it.
//!
//! The forwarding threads are spawned from the test's thread, so libtest captures what
//! they print with the test's own output and shows it only when the test fails.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many of the last stderr lines an error message quotes.
const STDERR_TAIL_LINES: usize = 30;

/// A running child process that is killed (SIGKILL) and reaped when dropped.
pub struct Supervised {
    /// The prefix of forwarded lines and error messages, e.g. `mailtrail` or `smtp-peer`.
    name: String,
    /// The child itself; `None` once it has been reaped.
    child: Option<Child>,
    /// Held open so a peer started with `--watch-stdin` sees EOF when we go away, even
    /// when the test process dies without running destructors.
    _stdin: Option<ChildStdin>,
    /// Stdout lines, until the first `wait_for_stdout_line` match drops the receiver.
    stdout_lines: Option<Receiver<String>>,
    /// The last stderr lines, quoted when the child dies before it is ready.
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Set when stderr reached EOF, so an error message can wait for the whole tail.
    stderr_closed: Arc<AtomicBool>,
    /// Every stderr line (up to [`STDERR_KEPT_LINES`]), for tests that read the log.
    stderr_all: Arc<Mutex<Vec<String>>>,
}

/// How many stderr lines are kept for [`Supervised::stderr_lines`].
const STDERR_KEPT_LINES: usize = 100_000;

impl Supervised {
    /// Spawns `command` with piped stdio and starts forwarding its output.
    pub fn spawn(name: &str, mut command: Command) -> std::io::Result<Supervised> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout was piped above");
        let stderr = child.stderr.take().expect("stderr was piped above");

        let (sender, receiver) = mpsc::channel();
        let prefix = name.to_owned();
        std::thread::spawn(move || {
            for_each_line(stdout, |line| {
                eprintln!("[{prefix}] {line}");
                // The receiver is gone once the fixture saw what it waited for.
                let _ = sender.send(line);
            })
        });
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_closed = Arc::new(AtomicBool::new(false));
        let stderr_all = Arc::new(Mutex::new(Vec::new()));
        let tail = Arc::clone(&stderr_tail);
        let closed = Arc::clone(&stderr_closed);
        let all = Arc::clone(&stderr_all);
        let prefix = name.to_owned();
        std::thread::spawn(move || {
            for_each_line(stderr, |line| {
                eprintln!("[{prefix}] {line}");
                {
                    let mut all = all.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if all.len() < STDERR_KEPT_LINES {
                        all.push(line.clone());
                    }
                }
                let mut tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            });
            closed.store(true, Ordering::SeqCst);
        });
        Ok(Supervised {
            name: name.to_owned(),
            child: Some(child),
            _stdin: stdin,
            stdout_lines: Some(receiver),
            stderr_tail,
            stderr_closed,
            stderr_all,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits until a stdout line satisfies `matches` and returns it. Gives up with an
    /// error that says why (timeout, or the child exited, with its stderr tail).
    pub fn wait_for_stdout_line(
        &mut self,
        timeout: Duration,
        mut matches: impl FnMut(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let receiver = self
            .stdout_lines
            .take()
            .ok_or_else(|| format!("{}: stdout is no longer watched", self.name))?;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(remaining) {
                // Returning drops the receiver: nobody waits for more lines, so the
                // reader thread stops queueing them.
                Ok(line) if matches(&line) => return Ok(line),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    self.stdout_lines = Some(receiver);
                    let tail = self.stderr_tail_text();
                    return Err(format!("{}: not ready after {timeout:?}{tail}", self.name));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Stdout closed: the child exited (or closed it, which is as bad).
                    let status = self.wait_exit(Duration::from_secs(2));
                    let status = status.map_or("still running".to_owned(), |s| s.to_string());
                    let tail = self.stderr_tail_text();
                    return Err(format!(
                        "{}: exited before it was ready ({status}){tail}",
                        self.name
                    ));
                }
            }
        }
    }

    /// The exit status if the child has exited (reaping it), else `None`.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status),
            _ => None,
        }
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_exit_status().is_none()
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            if self.child.is_none() || Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the child to exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.try_exit_status() {
            return Some(status);
        }
        // std has no portable "send this signal"; kill(1) is in every Debian base image.
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        if !matches!(sent, Ok(status) if status.success()) {
            eprintln!("[{}] could not send SIGTERM: {sent:?}", self.name);
        }
        self.wait_exit(timeout)
    }

    /// Kills the child with SIGKILL (`Child::kill` on Unix) and reaps it. Idempotent.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// Every stderr line so far (the log of a `mailtrail` child).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr_all
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The last stderr lines as an indented block for an error message. Once the child
    /// has exited, waits briefly for its stderr to be read to the end.
    pub fn stderr_tail_text(&mut self) -> String {
        if self.child.is_none() || self.try_exit_status().is_some() {
            let deadline = Instant::now() + Duration::from_secs(1);
            while !self.stderr_closed.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if tail.is_empty() {
            return String::new();
        }
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        format!("; last stderr lines:\n    {}", lines.join("\n    "))
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Calls `each` for every line of `stream` (lossy UTF-8, line ending removed).
fn for_each_line(stream: impl Read, mut each: impl FnMut(String)) {
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buffer);
                each(line.trim_end_matches(['\r', '\n']).to_owned());
            }
        }
    }
}
