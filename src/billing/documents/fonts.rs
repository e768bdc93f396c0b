//! The typeface of the invoice PDF: Liberation Sans 2.1.5, regular and bold (SIL Open
//! Font License 1.1, `assets/fonts/`), compiled into the binary, never looked up on the
//! system. It has the metrics of Helvetica, which the layout was drawn for, and covers
//! the Latin, Greek and Cyrillic scripts of every EU language. The PDF embeds the subset
//! of the glyphs a document uses.
//!
//! Text is set without shaping: one glyph per character at its advance width, as the
//! old Helvetica text was (no kerning, no ligatures). That is all the scripts above
//! need, and it keeps rendering thousands of invoices per close cheap.

use std::sync::LazyLock;

use krilla::text::{Font, GlyphId, KrillaGlyph};
use rustc_hash::FxHashMap;
use skrifa::instance::{LocationRef, Size};
use skrifa::MetadataProvider;

const REGULAR: &[u8] = include_bytes!("../../../assets/fonts/LiberationSans-Regular.ttf");
const BOLD: &[u8] = include_bytes!("../../../assets/fonts/LiberationSans-Bold.ttf");

/// One face: the font handed to krilla and its character map with advances (in ems).
pub struct Face {
    pub font: Font,
    glyphs: FxHashMap<char, (u32, f32)>,
    /// What a character the face has no glyph for prints as.
    missing: (u32, f32),
}

fn load(data: &'static [u8]) -> Face {
    let font = Font::new(data.into(), 0).expect("the bundled font parses");
    let face = skrifa::FontRef::new(data).expect("the bundled font parses");
    let upem = f32::from(
        face.metrics(Size::unscaled(), LocationRef::default())
            .units_per_em,
    );
    let metrics = face.glyph_metrics(Size::unscaled(), LocationRef::default());
    let glyphs: FxHashMap<char, (u32, f32)> = face
        .charmap()
        .mappings()
        .filter_map(|(c, g)| {
            let c = char::from_u32(c)?;
            let adv = metrics.advance_width(g)? / upem;
            (g.to_u32() != 0 && printable(c)).then_some((c, (g.to_u32(), adv)))
        })
        .collect();
    let missing = glyphs[&'?'];
    Face {
        font,
        glyphs,
        missing,
    }
}

/// Characters that may be drawn: not control characters, not the byte order mark or
/// non-characters, not the private use area (PDF/A wants each glyph to map to text a
/// reader can name).
fn printable(c: char) -> bool {
    !c.is_control()
        && !matches!(
            c,
            '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}' | '\u{E000}'..='\u{F8FF}'
        )
}

static FACES: LazyLock<[Face; 2]> = LazyLock::new(|| [load(REGULAR), load(BOLD)]);

/// The regular (`bold == false`) or bold face.
pub fn face(bold: bool) -> &'static Face {
    &FACES[usize::from(bold)]
}

impl Face {
    /// The advance width of `s` as `layout` sets it, in ems (times the font size: points).
    pub fn width(&self, s: &str) -> f32 {
        s.chars()
            .map(|c| {
                let c = if c.is_control() { ' ' } else { c };
                self.glyphs.get(&c).unwrap_or(&self.missing).1
            })
            .sum()
    }

    /// The glyphs of `s` and the text they stand for: a control character becomes a
    /// space, a character the font lacks a `?` (never the `.notdef` glyph, which PDF/A
    /// forbids), so that copying the text gives what the page shows.
    pub fn layout(&self, s: &str) -> (String, Vec<KrillaGlyph>) {
        let mut text = String::with_capacity(s.len());
        let mut glyphs = Vec::with_capacity(s.len());
        for c in s.chars() {
            let c = if c.is_control() { ' ' } else { c };
            let (c, (gid, adv)) = match self.glyphs.get(&c) {
                Some(g) => (c, *g),
                None => ('?', self.missing),
            };
            let start = text.len();
            text.push(c);
            glyphs.push(KrillaGlyph {
                glyph_id: GlyphId::new(gid),
                text_range: start..text.len(),
                x_advance: adv,
                x_offset: 0.0,
                y_offset: 0.0,
                y_advance: 0.0,
                location: None,
            });
        }
        (text, glyphs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eu_names_have_glyphs_and_others_print_as_question_marks() {
        let f = face(false);
        let (t, g) = f.layout("Zoë Dvořák-Łukasiewicz, ul. Świętokrzyska 14 € Ελλάδα България");
        assert_eq!(
            t,
            "Zoë Dvořák-Łukasiewicz, ul. Świętokrzyska 14 € Ελλάδα България"
        );
        assert!(g.iter().all(|g| g.glyph_id.to_u32() != 0));
        let (t, _) = face(true).layout("日本\tx\u{E001}");
        assert_eq!(t, "?? x?");
    }

    #[test]
    fn helvetica_metrics() {
        // Liberation Sans has Helvetica's (Arial's) advance widths: "a" 556/1000 em.
        let (_, g) = face(false).layout("a ");
        assert!((g[0].x_advance - 0.556).abs() < 0.001, "{}", g[0].x_advance);
        assert!((g[1].x_advance - 0.278).abs() < 0.001, "{}", g[1].x_advance);
        let w = face(false).width("a \u{1}日");
        // "a", two spaces (the control character too) and the "?" (556/1000 em)
        assert!((w - (0.556 + 2.0 * 0.278 + 0.556)).abs() < 0.001, "{w}");
    }
}
