//! `tollgate-gen`: deterministic synthetic data for tollgate.
//!
//! ```text
//! tollgate-gen workspace DIR [--accounts N] [--prefixes N] [--seed S] [--rate-changes N]
//! tollgate-gen cdrs --out FILE --records N --month YYYY-MM
//!                   [--accounts N] [--prefixes N] [--bad-ppm N] [--seed S] [--tag T]
//!                   [--shape tidy|backlog] [--months N]
//! ```
//!
//! `--shape tidy` (the default): one month, start times in order, every number form,
//! bad rows only with `--bad-ppm`. `--shape backlog`: start times in random order over
//! `--months` months (default 3) from `--month`, mixed offsets, every bad-row kind
//! including `no_rate` (default `--bad-ppm 17000`, 1.7 %).
//!
//! Use the same `--seed/--accounts/--prefixes` for a workspace and its CDR
//! files so the CDRs reference existing accounts and tariff prefixes.
//! `cdrs` prints `{"lines":N,"bad":{...}}` (stdout, or stderr with `--out -`).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use tollgate::demo::synth::{self, CdrBatch, Shape, Spec, WorkspaceOptions};

#[derive(Parser)]
#[command(
    name = "tollgate-gen",
    about = "Deterministic synthetic workspace and CDR generator"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args)]
struct Common {
    /// Number of accounts.
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// Number of international voice prefixes in the standard deck.
    #[arg(long, default_value_t = 3000)]
    prefixes: usize,
    /// Master seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write tariffs, accounts.csv and tollgate.toml into DIR.
    Workspace {
        /// Target directory (created if missing).
        dir: PathBuf,
        /// Dated rate changes added to the standard deck (0: none).
        #[arg(long, default_value_t = 0)]
        rate_changes: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Write one native CDR file.
    Cdrs {
        /// Output file (`-` for stdout).
        #[arg(long)]
        out: PathBuf,
        /// Number of data lines (bad rows included).
        #[arg(long)]
        records: u64,
        /// Month of the start times, YYYY-MM.
        #[arg(long)]
        month: String,
        /// Bad rows in parts per million (10000 = 1 %); default 0 (tidy), 17000 (backlog).
        #[arg(long)]
        bad_ppm: Option<u32>,
        /// `tidy` (one month, in time order) or `backlog` (random order over `--months`).
        #[arg(long, default_value = "tidy", value_parser = ["tidy", "backlog"])]
        shape: String,
        /// Months a backlog file spans, from `--month`.
        #[arg(long, default_value_t = 3)]
        months: u32,
        /// Record id prefix; use a distinct tag per file (default: YYYYMM).
        #[arg(long)]
        tag: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

fn parse_month(s: &str) -> Result<(i32, u32)> {
    let (y, m) = s
        .split_once('-')
        .with_context(|| format!("--month {s:?}: expected YYYY-MM"))?;
    let year: i32 = y
        .parse()
        .with_context(|| format!("--month {s:?}: bad year"))?;
    let month: u32 = m
        .parse()
        .with_context(|| format!("--month {s:?}: bad month"))?;
    if y.len() != 4 || m.len() != 2 || !(1..=12).contains(&month) {
        bail!("--month {s:?}: expected YYYY-MM");
    }
    Ok((year, month))
}

fn spec(common: &Common, bad_ratio_ppm: u32) -> Spec {
    Spec {
        seed: common.seed,
        accounts: common.accounts,
        prefixes: common.prefixes,
        bad_ratio_ppm,
    }
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Workspace {
            dir,
            rate_changes,
            common,
        } => {
            let ws = synth::write_workspace_with(
                &dir,
                &spec(&common, 0),
                &WorkspaceOptions { rate_changes },
            )
            .with_context(|| format!("writing workspace {}", dir.display()))?;
            println!(
                "{}",
                serde_json::json!({
                    "root": ws.root,
                    "config": ws.config,
                    "plans": ws.plans,
                    "accounts": ws.accounts,
                })
            );
        }
        Cmd::Cdrs {
            out,
            records,
            month,
            bad_ppm,
            shape,
            months,
            tag,
            common,
        } => {
            let shape = match shape.as_str() {
                "backlog" => Shape::Backlog { months },
                _ => Shape::Tidy,
            };
            let bad_ppm = bad_ppm.unwrap_or(if shape == Shape::Tidy { 0 } else { 17_000 });
            let (year, month) = parse_month(&month)?;
            let batch = CdrBatch {
                year,
                month,
                records,
                file_tag: tag.unwrap_or_else(|| format!("{year:04}{month:02}")),
            };
            let spec = spec(&common, bad_ppm);
            if out.as_os_str() == "-" {
                // Stats go to stderr so stdout stays a clean CDR file.
                let stats =
                    synth::write_cdrs_shaped(&mut io::stdout().lock(), &spec, &batch, shape)?;
                eprintln!("{}", stats.to_json());
            } else {
                let f =
                    File::create(&out).with_context(|| format!("creating {}", out.display()))?;
                let mut w = BufWriter::with_capacity(1 << 20, f);
                let stats = synth::write_cdrs_shaped(&mut w, &spec, &batch, shape)
                    .with_context(|| format!("writing {}", out.display()))?;
                w.flush()?;
                println!("{}", stats.to_json());
            }
        }
    }
    Ok(())
}
