//! `parlor bench`: a bounded load generator built on `parlor-client`.
//!
//! - `args`: the command line (scenarios and their knobs).
//! - `plan`: the shared setup (accounts, rooms, start time) that every worker process reads.
//! - `scenarios`: connect, fanout, notes, churn, and redis-fanout for the Redis baseline.
//! - `bots`: trivia, cards and match: bots that play whole games.
//! - `measure`: counters, HDR latency histograms, the timeline and /proc readings.
//! - `report`: the progress line, the final table, the JSON file and the SVG plots.
//!
//! Every run is bounded: a duration and a connection cap, after which it stops by itself.
//! With `--procs N` the parent prepares the plan, starts N copies of itself as workers, each
//! driving a slice of the clients, and merges their results.

mod args;
mod bots;
mod measure;
mod plan;
mod report;
mod scenarios;

pub use args::BenchArgs;

/// Runs a benchmark as the command line describes; returns when it is done.
pub fn main(args: BenchArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        if let Some(plan_file) = &args.worker_plan {
            return scenarios::run_worker_process(&args, plan_file).await;
        }
        scenarios::run(args).await
    })
}
