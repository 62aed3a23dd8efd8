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

/// What /proc said about the server processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ServerReadings {
    /// Before any client connected.
    pub(crate) baseline: Option<ProcSample>,
    /// When measuring began and ended.
    pub(crate) measure_start: Option<ProcSample>,
    pub(crate) measure_end: Option<ProcSample>,
    /// (open server fds above baseline, RSS) when each checkpoint was reached (connect).
    pub(crate) checkpoints: Vec<(usize, u64)>,
}

fn open_fds(pids: &[u32]) -> usize {
    pids.iter()
        .map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).map_or(0, |d| d.count()))
        .sum()
}

/// Reads the servers' CPU and RSS at the edges of the measuring window, and their RSS when
/// their open sockets pass each checkpoint.
pub(crate) async fn sample_server(plan: Plan) -> ServerReadings {
    let pids = plan.args.server_pid.clone();
    if pids.is_empty() {
        return ServerReadings::default();
    }
    // The baseline is read just before clients connect, once setup's HTTP connections
    // have gone.
    let now = now_ns();
    if plan.ramp_from_ns > now + 100_000_000 {
        tokio::time::sleep(Duration::from_nanos(plan.ramp_from_ns - now - 100_000_000)).await;
    }
    let mut out = ServerReadings {
        baseline: measure::sample(&pids),
        ..Default::default()
    };
    let base_fds = open_fds(&pids);
    let mut checkpoints: Vec<usize> = plan.args.checkpoints.clone();
    checkpoints.sort_unstable();
    let mut next = 0;
    while now_ns() < plan.measure_from_ns() {
        if next < checkpoints.len() && open_fds(&pids).saturating_sub(base_fds) >= checkpoints[next]
        {
            // Let the last handshakes settle before reading RSS.
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Some(s) = measure::sample(&pids) {
                out.checkpoints.push((checkpoints[next], s.rss_bytes));
            }
            next += 1;
            continue;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    out.measure_start = measure::sample(&pids);
    let end = plan.end_ns();
    let now = now_ns();
    if end > now {
        tokio::time::sleep(Duration::from_nanos(end - now)).await;
    }
    out.measure_end = measure::sample(&pids);
    out
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
    let cpu = match (server.measure_start, server.measure_end) {
        (Some(a), Some(b)) => Some(b.cpu_secs - a.cpu_secs),
        _ => None,
    };
    let per_copy_us = cpu
        .filter(|_| total.delivered > 0)
        .map(|c| c * 1e6 / total.delivered as f64);
    let per_cycle_us = cpu
        .filter(|_| total.cycles > 0)
        .map(|c| c * 1e6 / total.cycles as f64);
    let rss_per_session = match (server.baseline, server.measure_start) {
        (Some(a), Some(b)) if total.connected > 0 => {
            Some((b.rss_bytes as f64 - a.rss_bytes as f64) / total.connected as f64)
        }
        _ => None,
    };
    let wanted = plan.clients();
    let json = serde_json::json!({
        "scenario": plan.args.scenario,
        "args": plan.args,
        "clients_wanted": wanted,
        "connections_held": total.connected,
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
        "server": {
            "cpu_secs_in_window": cpu,
            "cpu_us_per_delivered_copy": per_copy_us,
            "cpu_us_per_cycle": per_cycle_us,
            "rss_bytes_baseline": server.baseline.map(|s| s.rss_bytes),
            "rss_bytes_loaded": server.measure_start.map(|s| s.rss_bytes),
            "rss_bytes_per_session": rss_per_session,
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
    if let Some(us) = per_cycle_us {
        println!("  server CPU per cycle {us:.1} µs");
    }
    if let Some(r) = rss_per_session {
        println!("  server RSS/session   {:.0} bytes", r);
    }
    for (n, rss) in &server.checkpoints {
        let base = server.baseline.map_or(0, |b| b.rss_bytes);
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
