//! The EPC QR code of an invoice: its payload (EPC069-12), its modules (the `qrcode`
//! crate's code, the mask chosen on bit sets), the runs the PDF draws and the SVG file
//! written beside the PDF.

use std::fmt::Write as _;

use crate::rate::money::format_cents;

/// The EPC QR payload (EPC069-12, version 002, UTF-8) for a credit transfer: fields on
/// separate lines: `BCD`, `002`, `1`, `SCT`, BIC, name (≤ 70), IBAN, `EUR<amount>`,
/// purpose (empty), structured reference (empty), unstructured remittance (≤ 140).
///
/// The Dutch payment reference is not an ISO 11649 creditor reference, so it travels in
/// the unstructured remittance field, where Dutch banking apps pass it on unchanged.
pub fn epc_qr_payload(
    bic: &str,
    name: &str,
    iban: &str,
    amount_cents: i64,
    remittance: &str,
) -> String {
    let name: String = name.chars().take(70).collect();
    let rem: String = remittance.chars().take(140).collect();
    format!(
        "BCD\n002\n1\nSCT\n{bic}\n{name}\n{iban}\nEUR{}\n\n\n{rem}",
        format_cents(amount_cents)
    )
}

/// The QR code of a payload (error correction level M, as EPC069-12 asks): its width in
/// modules and the modules row by row from the top, `true` = dark. Without the quiet zone.
///
/// The same code as `qrcode::QrCode::with_error_correction_level` (tested), but the mask
/// is chosen by a penalty computed on bit sets: the crate's own scoring spends about 1 ms
/// per code, which every rendering of an invoice PDF (also the re-check of a closed
/// period's files) would pay.
///
/// Writing an invoice encodes its payload twice (the PDF's code, then the `.qr.svg`), on
/// the same thread: the last code each thread made is kept and given again for the same
/// payload.
pub fn qr_modules(payload: &str) -> Result<(usize, Vec<bool>), String> {
    use std::cell::RefCell;
    type Code = (usize, Vec<bool>);
    thread_local! {
        static LAST: RefCell<Option<(String, Code)>> = const { RefCell::new(None) };
    }
    if let Some(code) = LAST.with_borrow(|last| {
        last.as_ref()
            .filter(|(p, _)| p == payload)
            .map(|(_, c)| c.clone())
    }) {
        return Ok(code);
    }
    let code = encode(payload)?;
    LAST.set(Some((payload.to_owned(), code.clone())));
    Ok(code)
}

/// `qr_modules` without the memo.
fn encode(payload: &str) -> Result<(usize, Vec<bool>), String> {
    use qrcode::canvas::{Canvas, MaskPattern};
    let err = |e: qrcode::types::QrError| format!("cannot encode QR code: {e}");
    let ec_level = qrcode::EcLevel::M;
    let bits = qrcode::bits::encode_auto(payload.as_bytes(), ec_level).map_err(err)?;
    let version = bits.version();
    let (data, ec) =
        qrcode::ec::construct_codewords(&bits.into_bytes(), version, ec_level).map_err(err)?;
    let mut canvas = Canvas::new(version, ec_level);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&data, &ec);
    let w = version.width() as usize;
    // The crate's order: the first of equal scores wins.
    let mut best: Option<(i64, Vec<bool>)> = None;
    for pattern in [
        MaskPattern::Checkerboard,
        MaskPattern::HorizontalLines,
        MaskPattern::VerticalLines,
        MaskPattern::DiagonalLines,
        MaskPattern::LargeCheckerboard,
        MaskPattern::Fields,
        MaskPattern::Diamonds,
        MaskPattern::Meadow,
    ] {
        let mut c = canvas.clone();
        c.apply_mask(pattern);
        let dark: Vec<bool> = c
            .into_colors()
            .into_iter()
            .map(|c| c == qrcode::Color::Dark)
            .collect();
        let score = penalty(w, &dark);
        if best.as_ref().is_none_or(|b| score < b.0) {
            best = Some((score, dark));
        }
    }
    Ok((w, best.expect("eight masks").1))
}

/// The mask penalty of a masked QR code (rows from the top), computed as the `qrcode`
/// crate does (ISO/IEC 18004 § 7.8.3, with its simplifications): runs of 5 + N equal
/// modules in a row or column, 3 + N each; 3 per 2 × 2 block of one colour; 40 per
/// finder-like `#.###.#` with no dark module in the 4 modules on one side, less the 360
/// the three finder patterns score; the distance of the dark share from 50 %.
///
/// Rows and columns are bit sets (bit k = module k, up to 128 modules: version 28; an
/// EPC payload needs at most version 13), so each rule is a few shifts and counts per
/// line instead of a branch per module.
fn penalty(w: usize, dark: &[bool]) -> i64 {
    assert!(w <= 128, "QR code wider than 128 modules");
    let all: u128 = if w == 128 { !0 } else { (1u128 << w) - 1 };
    let mut rows = vec![0u128; w];
    let mut cols = vec![0u128; w];
    for y in 0..w {
        for x in 0..w {
            let d = dark[y * w + x] as u128;
            rows[y] |= d << x;
            cols[x] |= d << y;
        }
    }
    let ones = |v: u128| i64::from(v.count_ones());
    let mut score = 0i64;
    for lines in [&rows, &cols] {
        for &r in lines.iter() {
            // Runs: bit k of `same` = module k equals module k - 1; `five` = modules
            // k - 4 ..= k equal. A run of L >= 5 sets L - 4 bits of `five` and scores
            // L - 2 = its bits + 2.
            let same = !(r ^ (r << 1)) & all & !1;
            let five = same & (same << 1) & (same << 2) & (same << 3);
            score += ones(five) + 2 * ones(five & !(five << 1));
            // Finder-like patterns starting at j (bit j).
            let l = !r & all;
            let mut m = r & (l >> 1) & (r >> 2) & (r >> 3) & (r >> 4) & (l >> 5) & (r >> 6);
            m &= if w >= 7 { (1u128 << (w - 6)) - 1 } else { 0 };
            while m != 0 {
                let j = m.trailing_zeros() as usize;
                m &= m - 1;
                let before = j.min(4);
                let dark_before = (r >> (j - before)) & ((1u128 << before) - 1) != 0;
                let dark_after = (r >> (j + 7).min(127)) & 0xf != 0 && j + 7 < w;
                if !dark_before || !dark_after {
                    score += 40;
                }
            }
        }
        score -= 360;
    }
    for y in 0..w - 1 {
        let (a, b) = (rows[y], rows[y + 1]);
        let h = |r: u128| !(r ^ (r >> 1));
        score += 3 * ones(h(a) & h(b) & !(a ^ b) & (all >> 1));
    }
    let dark_count: u32 = rows.iter().map(|r| r.count_ones()).sum();
    let ratio = (dark_count as usize * 200 / dark.len()) as i64;
    score + (ratio - 100).abs()
}

/// The horizontal runs of dark modules of a QR code: `(row, first column, length)`.
pub fn qr_runs(w: usize, dark: &[bool]) -> Vec<(usize, usize, usize)> {
    let mut runs = Vec::new();
    for y in 0..w {
        let row = &dark[y * w..(y + 1) * w];
        let mut x = 0;
        while x < w {
            if row[x] {
                let start = x;
                while x < w && row[x] {
                    x += 1;
                }
                runs.push((y, start, x - start));
            } else {
                x += 1;
            }
        }
    }
    runs
}

/// Renders a payload as an SVG QR code ([`qr_modules`]): one path with a horizontal run
/// per row of dark modules, a 4-module quiet zone, 5 px per module.
pub fn qr_svg(payload: &str) -> Result<String, String> {
    let (w, dark) = qr_modules(payload)?;
    let size = (w + 8) * 5;
    let mut d = String::with_capacity(w * w);
    for (y, x, n) in qr_runs(w, &dark) {
        let _ = write!(
            d,
            "M{} {}h{}v5h-{}z",
            (x + 4) * 5,
            (y + 4) * 5,
            n * 5,
            n * 5
        );
    }
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\"><rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/><path fill=\"#000\" d=\"{d}\"/></svg>\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epc_payload() {
        let p = epc_qr_payload(
            "ABNANL2A",
            "Tollgate Telecom B.V.",
            "NL91ABNA0417164300",
            1661,
            "3000002026000001",
        );
        assert_eq!(
            p,
            "BCD\n002\n1\nSCT\nABNANL2A\nTollgate Telecom B.V.\nNL91ABNA0417164300\nEUR16.61\n\n\n3000002026000001"
        );
        let svg = qr_svg(&p).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{svg}");
    }

    /// The fast mask choice gives exactly the code of the `qrcode` crate, for payloads
    /// from QR version 3 to 13 (names and remittances of every length).
    #[test]
    fn qr_modules_equal_the_crate() {
        for n in 0..=70 {
            for rem in [0, 16, 35, 140] {
                let p = epc_qr_payload(
                    "ABNANL2A",
                    &"Tollgate Télécom B.V. "
                        .repeat(4)
                        .chars()
                        .take(n)
                        .collect::<String>(),
                    "NL91ABNA0417164300",
                    1661 + n as i64 * 997,
                    &"3000002026000001 ".repeat(9)[..rem],
                );
                let code =
                    qrcode::QrCode::with_error_correction_level(p.as_bytes(), qrcode::EcLevel::M)
                        .unwrap();
                let want: Vec<bool> = code
                    .to_colors()
                    .into_iter()
                    .map(|c| c == qrcode::Color::Dark)
                    .collect();
                assert_eq!(qr_modules(&p).unwrap(), (code.width(), want), "{p:?}");
                // the second time from the thread's memo, the same code
                assert_eq!(qr_modules(&p).unwrap(), encode(&p).unwrap(), "{p:?}");
            }
        }
    }
}
