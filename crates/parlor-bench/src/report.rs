//! Server readings during the run, and the final table, JSON file and plots.

use std::time::Duration;

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{
    args::Scenario,
    measure::{self, now_ns, ProcSample},
    plan::Plan,
    scenarios::WorkerResult,
};

/// What /proc said about the server processes: the pods (`--server-pid`) then Redis
/// (`--redis-pid`), one sample each.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ServerReadings {
    /// Before any client connected.
    pub(crate) baseline: Option<Vec<ProcSample>>,
    /// When measuring began and ended.
    pub(crate) measure_start: Option<Vec<ProcSample>>,
    pub(crate) measure_end: Option<Vec<ProcSample>>,
    /// Each process's open descriptors at the baseline and when measuring began: listed
    /// only then, as listing 17,000 sockets costs the load generator CPU.
    pub(crate) fds_base: Vec<u64>,
    pub(crate) fds_start: Vec<u64>,
    /// (open pod fds above baseline, pod RSS) when each checkpoint was reached (connect).
    pub(crate) checkpoints: Vec<(usize, u64)>,
}

/// RSS of the first `pods` samples (the pods), together.
fn pods_rss(pods: usize, s: &[ProcSample]) -> u64 {
    s[..pods].iter().map(|p| p.rss_bytes).sum()
}

/// Reads the servers' CPU and RSS at the edges of the measuring window, and the pods' RSS
/// when their open sockets pass each checkpoint.
pub(crate) async fn sample_server(plan: Plan) -> ServerReadings {
    let pods = plan.args.server_pid.len();
    let pids: Vec<u32> = plan
        .args
        .server_pid
        .iter()
        .chain(&plan.args.redis_pid)
        .copied()
        .collect();
    if pids.is_empty() {
        return ServerReadings::default();
    }
    // The baseline is read just before clients connect, once setup's HTTP connections
    // have gone.
    let now = now_ns();
    if plan.ramp_from_ns > now + 100_000_000 {
        tokio::time::sleep(Duration::from_nanos(plan.ramp_from_ns - now - 100_000_000)).await;
    }
    let fds =
        |pids: &[u32]| -> Vec<u64> { pids.iter().map(|p| measure::open_fds(&[*p])).collect() };
    let mut out = ServerReadings {
        baseline: measure::sample(&pids),
        fds_base: fds(&pids),
        ..Default::default()
    };
    let base_fds: u64 = out.fds_base[..pods].iter().sum();
    let mut checkpoints: Vec<usize> = plan.args.checkpoints.clone();
    checkpoints.sort_unstable();
    let mut next = 0;
    // Only the pods' descriptors are counted, and only while a checkpoint is left: listing
    // /proc/PID/fd of 17,000 sockets costs the load generator CPU.
    let pod_pids = &pids[..pods];
    while now_ns() < plan.measure_from_ns() {
        let due = next < checkpoints.len()
            && measure::open_fds(pod_pids).saturating_sub(base_fds) >= checkpoints[next] as u64;
        if due {
            // Let the last handshakes settle before reading RSS.
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Some(s) = measure::sample(&pids) {
                out.checkpoints
                    .push((checkpoints[next], pods_rss(pods, &s)));
            }
            next += 1;
            continue;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    out.measure_start = measure::sample(&pids);
    out.fds_start = fds(&pids);
    let end = plan.end_ns();
    let now = now_ns();
    if end > now {
        tokio::time::sleep(Duration::from_nanos(end - now)).await;
    }
    out.measure_end = measure::sample(&pids);
    out
}

/// One process's share of the window: what the table and JSON say about it.
#[derive(Debug, Clone, Serialize)]
struct ProcReport {
    pid: u32,
    role: &'static str,
    cpu_secs: f64,
    /// Open descriptors above the baseline when measuring began: sessions, for a pod.
    fds_added: i64,
    rss_bytes: u64,
    rss_added_bytes: i64,
}

fn per_process(plan: &Plan, server: &ServerReadings) -> Vec<ProcReport> {
    let (Some(base), Some(a), Some(b)) = (
        server.baseline.as_deref(),
        server.measure_start.as_deref(),
        server.measure_end.as_deref(),
    ) else {
        return Vec::new();
    };
    let pods = plan.args.server_pid.len();
    let pids = plan.args.server_pid.iter().chain(&plan.args.redis_pid);
    pids.enumerate()
        .map(|(i, &pid)| ProcReport {
            pid,
            role: if i < pods { "pod" } else { "redis" },
            cpu_secs: b[i].cpu_secs - a[i].cpu_secs,
            fds_added: server.fds_start.get(i).copied().unwrap_or(0) as i64
                - server.fds_base.get(i).copied().unwrap_or(0) as i64,
            rss_bytes: a[i].rss_bytes,
            rss_added_bytes: a[i].rss_bytes as i64 - base[i].rss_bytes as i64,
        })
        .collect()
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Merges worker results, prints the table and writes the JSON and plots.
pub(crate) fn finish(
    plan: &Plan,
    results: &[WorkerResult],
    server: &ServerReadings,
) -> anyhow::Result<()> {
    let mut lat: Histogram<u64> = measure::new_histogram();
    let mut total = WorkerResult::default();
    let mut timeline: Vec<(u64, u64, u64)> = Vec::new();
    for r in results {
        lat.add(measure::decode_histogram(&r.latency)?)?;
        total.connected += r.connected;
        total.sent += r.sent;
        total.delivered += r.delivered;
        total.cycles += r.cycles;
        total.errors += r.errors;
        total.in_order += r.in_order;
        total.out_of_order_close += r.out_of_order_close;
        total.out_of_order += r.out_of_order;
        if total.first_error.is_none() {
            total.first_error = r.first_error.clone();
        }
        for &(t, d, s) in &r.timeline {
            match timeline.iter_mut().find(|e| e.0 == t) {
                Some(e) => {
                    e.1 += d;
                    e.2 += s;
                }
                None => timeline.push((t, d, s)),
            }
        }
    }
    timeline.sort_unstable();
    let secs = plan.args.duration.max(1) as f64;
    let procs = per_process(plan, server);
    let cpu_of = |role: &str| -> Option<f64> {
        let mut it = procs.iter().filter(|p| p.role == role).peekable();
        it.peek()?;
        Some(it.map(|p| p.cpu_secs).sum())
    };
    let (pod_cpu, redis_cpu) = (cpu_of("pod"), cpu_of("redis"));
    let cpu = (!procs.is_empty()).then(|| procs.iter().map(|p| p.cpu_secs).sum::<f64>());
    let per = |c: Option<f64>, n: u64| c.filter(|_| n > 0).map(|c| c * 1e6 / n as f64);
    let per_copy_us = per(cpu, total.delivered);
    let per_cycle_us = per(cpu, total.cycles);
    let pods_rss_added: i64 = procs
        .iter()
        .filter(|p| p.role == "pod")
        .map(|p| p.rss_added_bytes)
        .sum();
    let rss_per_session = (!procs.is_empty() && total.connected > 0)
        .then(|| pods_rss_added as f64 / total.connected as f64);
    let last_connect = results.iter().map(|r| r.last_connect_ns).max().unwrap_or(0);
    // Connects after load started overlap the measurement, so its figures are not clean.
    // Churn connects all through its run: neither figure means anything there.
    let ramped = plan.args.scenario != Scenario::Churn;
    let late_connects = ramped && last_connect > plan.start_at_ns;
    let ramp_secs = (ramped && last_connect > plan.ramp_from_ns)
        .then(|| (last_connect - plan.ramp_from_ns) as f64 / 1e9);
    let wanted = plan.connections();
    let json = serde_json::json!({
        "scenario": plan.args.scenario,
        "args": plan.args,
        "clients_wanted": wanted,
        "connections_held": total.connected,
        "secs_to_connect_all": ramp_secs,
        "connecting_after_load_start": late_connects,
        "sent_per_sec": total.sent as f64 / secs,
        "delivered_per_sec": total.delivered as f64 / secs,
        "cycles_per_sec": total.cycles as f64 / secs,
        "latency_ms": {
            "count": lat.len(),
            "p50": ms(lat.value_at_quantile(0.50)),
            "p90": ms(lat.value_at_quantile(0.90)),
            "p99": ms(lat.value_at_quantile(0.99)),
            "p999": ms(lat.value_at_quantile(0.999)),
            "max": ms(lat.max()),
        },
        "errors": total.errors,
        "first_error": total.first_error,
        "buzz_pairs": {
            "in_order": total.in_order,
            "out_of_order_under_1ms": total.out_of_order_close,
            "out_of_order_1ms_or_more": total.out_of_order,
        },
        "server": {
            "cpu_secs_in_window": cpu,
            "cpu_us_per_delivered_copy": per_copy_us,
            "cpu_us_per_cycle": per_cycle_us,
            "pods_cpu_us_per_delivered_copy": per(pod_cpu, total.delivered),
            "redis_cpu_us_per_delivered_copy": per(redis_cpu, total.delivered),
            "pods_cpu_us_per_sent_event": per(pod_cpu, total.sent),
            "redis_cpu_us_per_sent_event": per(redis_cpu, total.sent),
            "rss_bytes_per_session": rss_per_session,
            "processes": procs,
            "rss_at_checkpoints": server.checkpoints,
        },
        "timeline": timeline,
        "client_fd_limit": measure::fd_limit(),
    });

    println!(
        "parlor bench {:?} ({} s measured after {} s warm-up)",
        plan.args.scenario, plan.args.duration, plan.args.warmup
    );
    println!("  connections held     {} of {}", total.connected, wanted);
    if (total.connected as usize) < wanted {
        let why = total
            .first_error
            .as_deref()
            .and_then(measure::limit_hint)
            .unwrap_or("see first error");
        println!("  short of the count:  {why}");
    }
    match plan.args.scenario {
        Scenario::Churn => println!("  cycles/s             {:.0}", total.cycles as f64 / secs),
        Scenario::Connect => {}
        Scenario::Trivia | Scenario::Cards | Scenario::Match => {
            let what = match plan.args.scenario {
                Scenario::Trivia => "games",
                Scenario::Cards => "rounds",
                _ => "matches",
            };
            println!(
                "  {what:<20} {} ({:.1} a minute)",
                total.cycles,
                total.cycles as f64 / secs * 60.0
            );
            println!("  timed actions/s      {:.1}", total.sent as f64 / secs);
            println!(
                "  latency ms           p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  (n={})",
                ms(lat.value_at_quantile(0.5)),
                ms(lat.value_at_quantile(0.9)),
                ms(lat.value_at_quantile(0.99)),
                ms(lat.max()),
                lat.len()
            );
            let pairs = total.in_order + total.out_of_order_close + total.out_of_order;
            if pairs > 0 {
                println!(
                    "  buzz pairs in order  {} of {} ({:.2}%); out of order: {} sent <1 ms apart, {} further",
                    total.in_order,
                    pairs,
                    total.in_order as f64 * 100.0 / pairs as f64,
                    total.out_of_order_close,
                    total.out_of_order
                );
            }
        }
        _ => {
            println!("  sent frames/s        {:.0}", total.sent as f64 / secs);
            println!(
                "  delivered frames/s   {:.0}",
                total.delivered as f64 / secs
            );
            println!(
                "  latency ms           p50 {:.3}  p90 {:.3}  p99 {:.3}  p999 {:.3}  max {:.3}  (n={})",
                ms(lat.value_at_quantile(0.5)),
                ms(lat.value_at_quantile(0.9)),
                ms(lat.value_at_quantile(0.99)),
                ms(lat.value_at_quantile(0.999)),
                ms(lat.max()),
                lat.len()
            );
        }
    }
    println!(
        "  errors               {}{}",
        total.errors,
        total
            .first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    if let Some(c) = cpu {
        println!(
            "  server CPU           {:.2} s in window ({:.0}% of one core)",
            c,
            c / secs * 100.0
        );
    }
    if let Some(us) = per_copy_us {
        println!("  server CPU per copy  {us:.3} µs");
    }
    if let (Some(p), Some(r)) = (
        per(pod_cpu, total.delivered),
        per(redis_cpu, total.delivered),
    ) {
        println!("    pods / Redis       {p:.3} / {r:.3} µs per copy");
    }
    if let (Some(p), Some(r)) = (per(pod_cpu, total.sent), per(redis_cpu, total.sent)) {
        println!("    pods / Redis       {p:.1} / {r:.1} µs per sent event");
    }

    if let Some(us) = per_cycle_us {
        println!("  server CPU per cycle {us:.1} µs");
    }
    if let Some(r) = rss_per_session {
        println!("  pods' RSS/session    {:.0} bytes", r);
    }
    if let Some(t) = ramp_secs {
        println!(
            "  all connected after  {t:.1} s (ramp at {}/s)",
            plan.args.connect_rate
        );
    }
    if late_connects {
        println!("  warning: clients were still connecting when load started (raise --settle)");
    }
    for p in &procs {
        let per_fd = if p.role == "pod" && p.fds_added > 0 {
            let b = p.rss_added_bytes as f64 / p.fds_added as f64;
            format!(", {b:.0} B RSS per added fd")
        } else {
            String::new()
        };
        println!(
            "  {:<5} {:>7}  cpu {:>6.2} s  fds +{:<6} rss {:>7.1} MiB{per_fd}",
            p.role,
            p.pid,
            p.cpu_secs,
            p.fds_added,
            p.rss_bytes as f64 / 1048576.0,
        );
    }
    let pods = plan.args.server_pid.len();
    let base = server.baseline.as_deref().map_or(0, |b| pods_rss(pods, b));
    for (n, rss) in &server.checkpoints {
        println!(
            "  RSS at {n:>6} conns   {:.1} MiB ({:.0} B/session over baseline)",
            *rss as f64 / 1048576.0,
            (*rss as f64 - base as f64) / *n as f64
        );
    }
    if let Some(path) = &plan.args.out {
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)?;
    }
    if let Some(dir) = &plan.args.plot {
        std::fs::create_dir_all(dir)?;
        plot_latency(&dir.join("latency.svg"), &lat)?;
        plot_timeline(&dir.join("throughput.svg"), &timeline)?;
    }
    Ok(())
}

fn plot_latency(path: &std::path::Path, h: &Histogram<u64>) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    // Percentile curve: x = percentile on a log-like scale of "nines", y = latency in ms.
    let points: Vec<(f64, f64)> = [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99]
        .iter()
        .map(|p| (*p, ms(h.value_at_percentile(*p))))
        .collect();
    let ymax = points.iter().map(|p| p.1).fold(0.001, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("latency by percentile (ms)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0usize..points.len() - 1, 0.0..ymax)?;
    let labels: Vec<String> = points.iter().map(|p| format!("p{}", p.0)).collect();
    chart
        .configure_mesh()
        .x_labels(points.len())
        .x_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
        .y_desc("ms")
        .draw()?;
    chart.draw_series(LineSeries::new(
        points.iter().enumerate().map(|(i, p)| (i, p.1)),
        &BLUE,
    ))?;
    root.present()?;
    Ok(())
}

fn plot_timeline(path: &std::path::Path, t: &[(u64, u64, u64)]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let xmax = t.last().map_or(1, |e| e.0 + 1);
    let ymax = t.iter().map(|e| e.1.max(e.2)).max().unwrap_or(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("frames per second", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0u64..xmax, 0.0..ymax.max(1.0))?;
    chart.configure_mesh().x_desc("second").draw()?;
    chart
        .draw_series(LineSeries::new(t.iter().map(|e| (e.0, e.1 as f64)), &BLUE))?
        .label("delivered")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(t.iter().map(|e| (e.0, e.2 as f64)), &RED))?
        .label("sent")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart.configure_series_labels().border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
