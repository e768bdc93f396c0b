//! Conformance checks against real sample files from public projects, read from
//! `../shared/samples` (see its SOURCES.md). Each test skips with a visible message when
//! the folder is absent (fails under `TOLLGATE_REQUIRE_TOOLS=1`); the files are never
//! copied into this repository.

use tollgate::rate::cdr::Splitter;

use crate::common::tools::samples;

/// Our zero-copy splitter agrees with the `csv` crate on every line of Asterisk's
/// `cdr_csv` test files (quoted fields with doubled quotes), and refuses exactly the
/// line with an unterminated quote.
#[test]
fn asterisk_master_csv_lines_split_like_the_csv_crate() {
    let Some(dir) = samples() else { return };
    for (file, good_lines, bad_lines) in [
        ("asterisk/testsuite_cdrlib_good.csv", 5, 0usize),
        ("asterisk/testsuite_self_test_Master.csv", 2, 0),
        (
            "asterisk/testsuite_cdrlib_buggy_unterminated_quote.csv",
            0,
            1,
        ),
    ] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let mut sp = Splitter::new();
        let mut refused = 0;
        let mut checked = 0;
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match sp.split(line) {
                Ok(n) => {
                    let mut rdr = csv::ReaderBuilder::new()
                        .has_headers(false)
                        .from_reader(line);
                    let rec = rdr.byte_records().next().unwrap().unwrap();
                    assert_eq!(n, rec.len(), "{file}: {}", String::from_utf8_lossy(line));
                    for (i, want) in rec.iter().enumerate() {
                        assert_eq!(sp.field(line, i), want, "{file} field {i}");
                    }
                    checked += 1;
                }
                Err(_) => refused += 1,
            }
        }
        assert_eq!((checked, refused), (good_lines, bad_lines), "{file}");
    }
}

/// IvozProvider's sample price list (about 4700 prefixes, real data-quality noise),
/// converted to a tollgate deck, compiles; its duplicated prefixes are refused with the
/// deck line of both rows.
#[test]
fn ivozprovider_price_list_compiles_as_a_deck() {
    let Some(dir) = samples() else { return };
    let mut rdr =
        csv::Reader::from_path(dir.join("ratedecks/ivozprovider_pricesSample.csv")).unwrap();
    let mut deck = String::from(
        "prefix,destination,service,band,connect_fee,rate,per,first_increment,next_increment,valid_from\n",
    );
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = 0;
    let mut rows = 0;
    for rec in rdr.records() {
        let rec = rec.unwrap();
        let prefix = rec[1].trim_start_matches('+');
        let period: u64 = rec[4].parse().unwrap();
        if !seen.insert(prefix.to_owned()) {
            duplicates += 1;
            continue;
        }
        deck.push_str(&format!(
            "{prefix},\"{}\",voice,any,{},{},60,{period},{period},\n",
            rec[0].replace('"', "\"\""),
            &rec[3],
            &rec[2]
        ));
        rows += 1;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("decks")).unwrap();
    std::fs::write(tmp.path().join("decks/ivoz.csv"), &deck).unwrap();
    std::fs::write(
        tmp.path().join("plans.toml"),
        "timezone = \"Europe/Madrid\"\nnational_prefix = \"34\"\ncurrency = \"EUR\"\n[[plan]]\nid = \"ivoz\"\nmonthly_fee = \"0\"\ndeck = \"decks/ivoz.csv\"\n",
    )
    .unwrap();
    let tariff = tollgate::rate::tariff::Tariff::load(
        &tmp.path().join("plans.toml"),
        &tmp.path().join("data"),
    )
    .unwrap();
    assert_eq!(tariff.table().rows.len(), rows);
    assert!(rows > 4000, "{rows}");
    eprintln!("ivozprovider deck: {rows} rows compiled, {duplicates} duplicate prefixes dropped");
    // The same deck with a duplicated row is refused, naming both lines.
    let first = deck.lines().nth(1).unwrap().to_owned();
    std::fs::write(
        tmp.path().join("decks/ivoz.csv"),
        format!("{deck}{first}\n"),
    )
    .unwrap();
    let e = tollgate::rate::tariff::Source::load(&tmp.path().join("plans.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with(&format!(
            "decks/ivoz.csv:{}: same prefix, service, band and valid_from as line 2",
            rows + 2
        )),
        "{e}"
    );
}
