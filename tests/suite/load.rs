//! The load script of issue 10 (findings 1–3), bounded in time and count, loopback
//! only: a flood of parallel wrong passwords, 1,100 connections that send nothing, half
//! their headers or part of a promised body, and logins with 5 MB user names. Resident
//! memory must stay under 150 MiB and `/healthz` must answer throughout.
//!
//! It prints its figures (`load:` lines); run it alone with
//! `cargo test --test tests load_ -- --nocapture`.

use super::hardening::rss_mib;
use crate::common::App;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Resident memory must stay under this (issue 10, "Done means").
const RSS_LIMIT_MIB: f64 = 150.0;
/// Parallel wrong passwords (finding 1 used 100 and 250).
const LOGIN_FLOOD: usize = 100;
/// Slow connections (finding 2 used 1,100).
const SLOW_SOCKETS: usize = 1_100;
/// Logins with 5 MB user names (finding 3 used 60).
const HUGE_LOGINS: usize = 60;

/// One `/healthz` on a fresh connection; its latency, or `None` when it failed.
fn probe(port: u16) -> Option<Duration> {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer
        .starts_with(b"HTTP/1.1 200")
        .then(|| started.elapsed())
}

#[test]
fn load_findings_1_to_3_keep_memory_bounded_and_healthz_answering() {
    let app = App::start();
    let pid = app.pid().expect("running");
    let port = app.port();
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));

    // Watchers: resident memory every 100 ms, /healthz every 250 ms (a probe counts as
    // failed only if three tries within 3 s all fail).
    let peak_kib = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (Arc::clone(&done), Arc::clone(&peak_kib));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max((rss_mib(pid) * 1024.0) as u64, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let probes = Arc::new(Mutex::new((0usize, 0usize, Duration::ZERO)));
    let prober = {
        let (done, probes) = (Arc::clone(&done), Arc::clone(&probes));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let mut got = None;
                for _ in 0..3 {
                    got = probe(port);
                    if got.is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                let mut p = probes.lock().expect("lock");
                p.0 += 1;
                match got {
                    Some(latency) => p.2 = p.2.max(latency),
                    None => p.1 += 1,
                }
                drop(p);
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    eprintln!("load: RSS at start {:.1} MiB", rss_mib(pid));
    // Finding 1: parallel wrong passwords for one user.
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, usize>::new()));
    let phase = Instant::now();
    let flood: Vec<_> = (0..LOGIN_FLOOD)
        .map(|_| {
            let (client, url, statuses) =
                (client.clone(), app.url("/login"), Arc::clone(&statuses));
            std::thread::spawn(move || {
                let status = client
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body("username=admin&password=wrong")
                    .send()
                    .map_or(0, |r| r.status().as_u16());
                *statuses.lock().expect("lock").entry(status).or_default() += 1;
            })
        })
        .collect();

    // Finding 2, at the same time: 1,100 connections that never finish a request.
    let opened = AtomicUsize::new(0);
    let mut slow = Vec::new();
    for i in 0..SLOW_SOCKETS {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            continue;
        };
        opened.fetch_add(1, Ordering::SeqCst);
        let _ = match i % 3 {
            0 => Ok(()),
            1 => s.write_all(b"GET /api/v1/projects HTTP/1.1\r\nHost: x\r\n"),
            _ => s.write_all(
                b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 8000\r\n\r\nusername=",
            ),
        };
        slow.push(s);
    }
    eprintln!(
        "load: RSS with the slow connections open {:.1} MiB",
        rss_mib(pid)
    );
    for handle in flood {
        handle.join().expect("login thread");
    }
    eprintln!("load: RSS after the login flood {:.1} MiB", rss_mib(pid));
    let flood_took = phase.elapsed();

    // By now (30 s and more) the server has closed every slow connection.
    let mut closed = 0;
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        // EOF, a reset, or an error answer followed by EOF: the server let go.
        match s.read(&mut buf) {
            Ok(_) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Err(_) => {}
        }
    }
    drop(slow);

    // Finding 3: logins with 5 MB user names.
    let huge = format!("username={}&password=x", "u".repeat(5 << 20));
    let mut huge_statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..HUGE_LOGINS {
        let status = client
            .post(app.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(huge.clone())
            .send()
            .map_or(0, |r| r.status().as_u16());
        *huge_statuses.entry(status).or_default() += 1;
    }

    eprintln!("load: RSS after the huge logins {:.1} MiB", rss_mib(pid));
    std::thread::sleep(Duration::from_secs(1));
    done.store(true, Ordering::SeqCst);
    sampler.join().expect("sampler");
    prober.join().expect("prober");
    let peak = peak_kib.load(Ordering::SeqCst) as f64 / 1024.0;
    let idle = rss_mib(pid);
    let (probe_count, probe_failures, worst) = *probes.lock().expect("lock");
    let statuses = statuses.lock().expect("lock").clone();
    let log_bytes: usize = app.server_log().iter().map(|l| l.len() + 1).sum();
    eprintln!(
        "load: {LOGIN_FLOOD} parallel wrong logins in {flood_took:?}: {statuses:?}\n\
         load: {} of {SLOW_SOCKETS} slow connections opened, {closed} closed by the server\n\
         load: {HUGE_LOGINS} logins with 5 MB user names: {huge_statuses:?}\n\
         load: peak RSS {peak:.1} MiB, after {idle:.1} MiB; /healthz {probe_count} probes, \
         {probe_failures} failed, slowest {worst:?}; log {log_bytes} bytes; total {:?}",
        opened.load(Ordering::SeqCst),
        started.elapsed()
    );
    assert!(peak < RSS_LIMIT_MIB, "peak RSS {peak:.1} MiB");
    assert_eq!(probe_failures, 0, "/healthz failed {probe_failures} times");
    assert!(probe_count >= 10, "{probe_count} probes");
    assert!(
        statuses.keys().all(|s| *s == 401 || *s == 503),
        "{statuses:?}"
    );
    assert!(statuses.get(&503).copied().unwrap_or(0) > 0, "{statuses:?}");
    // 413, or the connection closed while the client was still sending the rest.
    assert!(
        huge_statuses.keys().all(|s| *s == 413 || *s == 0) && huge_statuses.contains_key(&413),
        "{huge_statuses:?}"
    );
    assert!(closed * 10 >= SLOW_SOCKETS * 9, "{closed} closed");
    assert!(
        log_bytes < 1 << 20,
        "the log stayed small: {log_bytes} bytes"
    );
    assert!(started.elapsed() < Duration::from_secs(150));
}
