//! Timing signatures: client threads on their own connections, each
//! repeating a sign request for a fixed time, and the figures they give.

use std::io::Read as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) struct Figures {
    pub(crate) signs: usize,
    pub(crate) signs_per_sec: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
}

impl Figures {
    /// The figures of one window: each request's latency in ns, and the
    /// window's length in seconds.
    pub(crate) fn of_latencies(mut lat: Vec<u64>, elapsed: f64) -> Figures {
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
        Figures {
            signs: lat.len(),
            signs_per_sec: lat.len() as f64 / elapsed,
            p50_us: pct(0.50),
            p99_us: pct(0.99),
        }
    }

    /// Equal windows of the same agent as one: the means.
    pub(crate) fn mean(windows: &[Figures]) -> Figures {
        let n = windows.len() as f64;
        let sum = |f: fn(&Figures) -> f64| windows.iter().map(f).sum::<f64>() / n;
        Figures {
            signs: windows.iter().map(|w| w.signs).sum(),
            signs_per_sec: sum(|w| w.signs_per_sec),
            p50_us: sum(|w| w.p50_us),
            p99_us: sum(|w| w.p99_us),
        }
    }
}

pub(crate) fn measure(sock: &Path, frame: &[u8], conns: usize, seconds: f64) -> Figures {
    let frame = frame.to_vec();
    measure_with(sock, move |_| frame.clone(), conns, seconds)
}

/// Runs `conns` client threads; each calls `setup` on its fresh connection
/// (e.g. to send a session-bind) and then repeats the frame it returns.
pub(crate) fn measure_with(
    sock: &Path,
    setup: impl Fn(&mut UnixStream) -> Vec<u8> + Send + Sync + Clone + 'static,
    conns: usize,
    seconds: f64,
) -> Figures {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let sock = sock.to_path_buf();
            let setup = setup.clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&sock).expect("connect to agent");
                let frame = setup(&mut s);
                let mut lat = Vec::with_capacity(100_000);
                let mut buf = vec![0u8; 4096];
                while Instant::now() < deadline {
                    lat.push(timed_sign(&mut s, &frame, &mut buf));
                }
                lat
            })
        })
        .collect();
    let all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    Figures::of_latencies(all, started.elapsed().as_secs_f64())
}

/// Sends one sign request frame and reads the signature; nanoseconds taken.
pub(crate) fn timed_sign(s: &mut UnixStream, frame: &[u8], buf: &mut [u8]) -> u64 {
    let t = Instant::now();
    crate::wire::send(s, frame);
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let n = u32::from_be_bytes(len) as usize;
    s.read_exact(&mut buf[..n]).unwrap();
    assert_eq!(buf[0], 14, "agent refused to sign");
    t.elapsed().as_nanos() as u64
}
