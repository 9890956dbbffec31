//! Watching the server process (with `--server-pid`) and the bench itself while a scenario
//! runs: CPU and RSS over a measured window, and once a second for the time series.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::procstat::{machine_busy_s, tcp_ext_counter, Delta, Pid, Usage};
use crate::recorder::Recorder;
use crate::report::Section;

/// CPU and RSS of the server and of the bench over one measured window.
pub struct Window {
    server_pid: Option<u32>,
    server: Option<Usage>,
    bench: Usage,
    listen_overflows: Option<u64>,
    machine_busy_s: Option<f64>,
}

/// What a window measured.
pub struct Measured {
    pub server: Option<Delta>,
    pub bench: Delta,
}

fn read_server(pid: Option<u32>) -> Option<Usage> {
    let pid = pid?;
    match Usage::read(Pid::Of(pid)) {
        Ok(u) => Some(u),
        Err(e) => {
            eprintln!("  cannot read server process {pid}: {e:#}");
            None
        }
    }
}

impl Window {
    pub fn start(server_pid: Option<u32>) -> Self {
        Self {
            server_pid,
            server: read_server(server_pid),
            bench: Usage::read(Pid::Current).expect("/proc/self is readable"),
            listen_overflows: tcp_ext_counter("ListenOverflows"),
            machine_busy_s: machine_busy_s(),
        }
    }

    /// Ends the window and adds CPU and memory rows for both processes to `section`.
    pub fn finish(self, section: &mut Section) -> Measured {
        let server = self.server.zip(read_server(self.server_pid)).map(|(a, b)| a.delta(&b));
        let bench = self.bench.delta(&Usage::read(Pid::Current).expect("/proc/self is readable"));
        section.row("window", bench.wall_s, "s");
        if let Some(s) = &server {
            section.row("server cpu", s.cpu_s, "s");
            section.row("server cores busy", s.cores(), "cores");
            section.row("server rss before", s.rss_before_kib as f64 / 1024.0, "MiB");
            section.row("server rss after", s.rss_after_kib as f64 / 1024.0, "MiB");
        }
        section.row("bench cpu", bench.cpu_s, "s");
        section.row("bench cores busy", bench.cores(), "cores");
        section.row("bench rss", bench.rss_after_kib as f64 / 1024.0, "MiB");
        if let Some((a, b)) = self.machine_busy_s.zip(machine_busy_s()) {
            // Everything else running on the machine meanwhile (builds, other tests): a large
            // value means the window's numbers were measured on a shared CPU.
            let ours = bench.cpu_s + server.map_or(0.0, |s| s.cpu_s);
            section.row("other processes cores busy", ((b - a - ours) / bench.wall_s.max(1e-9)).max(0.0), "cores");
        }
        if let Some((a, b)) = self.listen_overflows.zip(tcp_ext_counter("ListenOverflows")) {
            // Machine-wide, but on a bench machine the server's listener is the one that fills.
            section.row("listen queue overflows", b.saturating_sub(a) as f64, "SYNs");
        }
        Measured { server, bench }
    }
}

impl Measured {
    /// Server CPU for each of `count` things, in `unit_s` (1e-6 for µs).
    pub fn server_cpu_per(&self, count: u64, unit_s: f64) -> f64 {
        match &self.server {
            Some(s) if count > 0 => s.cpu_s / count as f64 / unit_s,
            _ => f64::NAN,
        }
    }
}

/// Waits until processes other than the bench and the server leave the machine nearly idle
/// (below `max_cores` busy over a second), for at most `patience`. Returns the last reading.
pub async fn wait_quiet(server_pid: Option<u32>, max_cores: f64, patience: Duration) -> f64 {
    let started = Instant::now();
    loop {
        let w = Window::start(server_pid);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut scratch = Section::new("");
        w.finish(&mut scratch);
        let others = scratch.get("other processes cores busy").unwrap_or(0.0);
        if others <= max_cores || started.elapsed() >= patience {
            if others > max_cores {
                eprintln!("  machine still busy ({others:.2} cores used by other processes); measuring anyway");
            }
            return others;
        }
        eprintln!("  waiting for a quiet machine ({others:.2} cores used by other processes)");
    }
}

/// One sample of the time series.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub t_s: f64,
    pub label: String,
    pub server_rss_kib: Option<u64>,
    pub server_cpu_s: Option<f64>,
    pub bench_rss_kib: u64,
    pub bench_cpu_s: f64,
    /// TCP socket buffers of the whole machine (both ends of every loopback connection).
    pub tcp_buffers_kib: Option<u64>,
    pub delivered: u64,
}

/// Samples both processes once a second until stopped.
pub struct Sampler {
    points: Arc<Mutex<Vec<Point>>>,
    task: JoinHandle<()>,
}

impl Sampler {
    pub fn start(server_pid: Option<u32>, label: String, recorder: Option<Arc<Recorder>>) -> Self {
        let points = Arc::new(Mutex::new(Vec::new()));
        let out = points.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let server = server_pid.and_then(|p| Usage::read(Pid::Of(p)).ok());
                let Ok(bench) = Usage::read(Pid::Current) else { continue };
                out.lock().expect("sampler lock").push(Point {
                    t_s: started.elapsed().as_secs_f64(),
                    label: label.clone(),
                    server_rss_kib: server.map(|u| u.rss_kib),
                    server_cpu_s: server.map(|u| u.cpu_s),
                    bench_rss_kib: bench.rss_kib,
                    bench_cpu_s: bench.cpu_s,
                    tcp_buffers_kib: crate::procstat::tcp_buffers_kib(),
                    delivered: recorder.as_ref().map_or(0, |r| r.delivered()),
                });
            }
        });
        Self { points, task }
    }

    pub fn stop(self) -> Vec<Point> {
        self.task.abort();
        std::mem::take(&mut *self.points.lock().expect("sampler lock"))
    }
}
