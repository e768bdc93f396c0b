//! Criterion benches, one per hot stage: parse, lookup, rate, commit — plus a whole file
//! through the worker pool. Fixtures come from the synthetic generator (3000 deck
//! prefixes, 100k accounts), so figures match the throughput tool's workload.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use tollgate::demo::synth::{self, CdrBatch, Spec};
use tollgate::ingest::pipeline::{Pool, Settings};
use tollgate::rate::accounts::{AccountIndex, Accounts};
use tollgate::rate::cdr::{number::Digits, time::parse_rfc3339, Layout, Splitter};
use tollgate::rate::rating::Rater;
use tollgate::rate::service::Service;
use tollgate::rate::tariff::Tariff;
use tollgate::store::{Checkpoint, Ledger, LineSet, LineTotals};

struct Fixture {
    _dir: tempfile::TempDir,
    tariff: Arc<Tariff>,
    index: Arc<AccountIndex>,
    cdrs: Vec<u8>,
    layout: Layout,
}

fn fixture(records: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        seed: 7,
        accounts: 100_000,
        prefixes: 3000,
        bad_ratio_ppm: 0,
    };
    let ws = synth::write_workspace(dir.path(), &spec).unwrap();
    let tariff = Arc::new(Tariff::load(&ws.plans, &dir.path().join("data")).unwrap());
    let accounts = Accounts::load(&ws.accounts).unwrap();
    let index = Arc::new(AccountIndex::build(&accounts, &tariff).unwrap());
    let mut cdrs = Vec::new();
    synth::write_cdrs(
        &mut cdrs,
        &spec,
        &CdrBatch {
            year: 2026,
            month: 10,
            records,
            file_tag: "B".into(),
        },
    )
    .unwrap();
    let header_end = cdrs.iter().position(|&b| b == b'\n').unwrap();
    let layout = Layout::from_header(&cdrs[..header_end]).unwrap();
    Fixture {
        _dir: dir,
        tariff,
        index,
        cdrs,
        layout,
    }
}

fn body(f: &Fixture) -> &[u8] {
    let h = f.cdrs.iter().position(|&b| b == b'\n').unwrap();
    &f.cdrs[h + 1..]
}

fn benches(c: &mut Criterion) {
    const N: u64 = 100_000;
    let f = fixture(N);
    let now = chrono::Utc::now().timestamp();

    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Elements(N));
    g.bench_function("parse", |b| {
        let mut sp = Splitter::new();
        let pos = f.layout.pos[tollgate::rate::cdr::Column::StartTime as usize] as usize;
        b.iter(|| {
            let mut ok = 0u64;
            for line in body(&f).split(|&c| c == b'\n') {
                if sp.split(line).is_ok() && parse_rfc3339(sp.field(line, pos)).is_some() {
                    ok += 1;
                }
            }
            ok
        })
    });
    // Numbers and times taken from the fixture, looked up without parsing.
    let mut probes = Vec::new();
    {
        let mut r = Rater::new(&f.tariff, &f.index, f.layout.clone(), now);
        let mut sp = Splitter::new();
        for line in body(&f).split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            sp.split(line).unwrap();
            let g =
                |c: tollgate::rate::cdr::Column| sp.field(line, f.layout.pos[c as usize] as usize);
            let Some(service) = Service::from_bytes(g(tollgate::rate::cdr::Column::Service)) else {
                continue;
            };
            let Some(d) = r.normalize(g(tollgate::rate::cdr::Column::CalledNumber), service) else {
                continue;
            };
            let Some((_, plan)) = f.index.find(g(tollgate::rate::cdr::Column::AccountId)) else {
                continue;
            };
            let ts = parse_rfc3339(g(tollgate::rate::cdr::Column::StartTime)).unwrap();
            let (day, _, active) = r.clock.at(ts);
            probes.push((plan, service, d.to_vec(), day, active));
        }
    }
    g.throughput(Throughput::Elements(probes.len() as u64));
    g.bench_function("lookup", |b| {
        b.iter(|| {
            probes
                .iter()
                .filter(|(plan, s, d, day, active)| {
                    f.tariff
                        .lookup(*plan, *s, &Digits::plain(d), *active, *day)
                        .is_some()
                })
                .count()
        })
    });
    g.throughput(Throughput::Elements(N));
    g.bench_function("rate", |b| {
        let mut r = Rater::new(&f.tariff, &f.index, f.layout.clone(), now);
        b.iter(|| {
            let mut sum = 0i64;
            for line in body(&f).split(|&c| c == b'\n') {
                if let Ok((rated, _)) = r.rate_line(line) {
                    sum += rated.charge_micros;
                }
            }
            sum
        })
    });
    g.finish();

    // Commit: one synced WriteBatch with the totals of a file touching 10k accounts.
    let mut g = c.benchmark_group("commit");
    let usage: Vec<(Vec<u8>, Vec<u8>)> = (0..10_000)
        .map(|i| {
            let mut s = LineSet::default();
            for d in 0..5u8 {
                s.0.insert(
                    (d % 3, format!("Destination {d}"), "peak".into()),
                    LineTotals {
                        count: 3,
                        usage: 180,
                        billed: 180,
                        charge_micros: 12_345,
                    },
                );
            }
            (format!("ACC{i:07}\x002026-10").into_bytes(), s.encode())
        })
        .collect();
    g.throughput(Throughput::Elements(usage.len() as u64));
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    let mut n = 0u64;
    g.bench_function("file_10k_accounts", |b| {
        b.iter_batched(
            || {
                n += 1;
                Checkpoint {
                    format: 1,
                    name: format!("f{n}"),
                    size: 0,
                    content_hash: format!("h{n}"),
                    lines: 0,
                    rated: 0,
                    rejected: Default::default(),
                    charge: tollgate::rate::money::Micros::ZERO,
                    tariff_version: "v".into(),
                    accounts_hash: "a".into(),
                    rated_at: 0,
                    committed_at: String::new(),
                    seq: 0,
                    months: vec![],
                }
            },
            |cp| ledger.commit_file(cp, &usage, &[], true).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // A whole file through the pool (rate + duplicate check + totals), without commit.
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(N));
    g.sample_size(20);
    let pool = Pool::new(2);
    let data: tollgate::ingest::pipeline::Data = Arc::new(f.cdrs.clone());
    let settings = Settings {
        columns: None,
        chunk_bytes: 1 << 20,
        max_line_bytes: 65536,
        segment_bytes: tollgate::ingest::pipeline::SEGMENT_BYTES,
    };
    g.bench_function("rate_file_2_workers", |b| {
        b.iter(|| {
            pool.rate_file(
                data.clone(),
                f.tariff.clone(),
                f.index.clone(),
                &settings,
                now,
                Arc::new(AtomicBool::new(false)),
            )
            .unwrap()
            .rated
        })
    });
    g.finish();
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
