//! The zero-copy CDR parser: bytes of one line in, field slices out. No I/O.
//!
//! A record is one line (LF or CRLF). Fields follow RFC 4180: they may be quoted,
//! with `""` for a quote inside a quoted field. A line without any `"` is split on
//! commas in place (the common case, no copying); a line with quotes is unquoted by
//! `csv-core` into a per-worker scratch buffer. A quoted field may not span lines:
//! one stray quote then costs one line, not the rest of the file.

pub mod number;
pub mod time;

/// Most fields a line may have; lines with more are `malformed`.
pub const MAX_FIELDS: usize = 64;

/// The columns of the native CDR format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    RecordId,
    AccountId,
    Service,
    CallingNumber,
    CalledNumber,
    StartTime,
    DurationS,
    VolumeBytes,
}

impl Column {
    /// All columns, in the canonical order.
    pub const ALL: [Column; 8] = [
        Column::RecordId,
        Column::AccountId,
        Column::Service,
        Column::CallingNumber,
        Column::CalledNumber,
        Column::StartTime,
        Column::DurationS,
        Column::VolumeBytes,
    ];

    /// The column's name in a header line.
    pub fn name(self) -> &'static str {
        match self {
            Column::RecordId => "record_id",
            Column::AccountId => "account_id",
            Column::Service => "service",
            Column::CallingNumber => "calling_number",
            Column::CalledNumber => "called_number",
            Column::StartTime => "start_time",
            Column::DurationS => "duration_s",
            Column::VolumeBytes => "volume_bytes",
        }
    }

    fn from_name(name: &[u8]) -> Option<Column> {
        Column::ALL
            .into_iter()
            .find(|c| c.name().as_bytes() == name)
    }
}

/// Builds a column order from configured names; `_` marks a column to skip (`None`).
pub fn columns_from_names<'a>(
    names: impl Iterator<Item = &'a str>,
) -> Result<Vec<Option<Column>>, String> {
    let mut out: Vec<Option<Column>> = Vec::new();
    for n in names {
        if n == "_" {
            out.push(None);
            continue;
        }
        let c = Column::from_name(n.as_bytes())
            .ok_or_else(|| format!("unknown column `{n}` (use `_` to skip a column)"))?;
        if out.contains(&Some(c)) {
            return Err(format!("column `{n}` named twice"));
        }
        out.push(Some(c));
    }
    if out.len() > MAX_FIELDS {
        return Err(format!("more than {MAX_FIELDS} columns"));
    }
    if let Some(missing) = Column::ALL.iter().find(|c| !out.contains(&Some(**c))) {
        return Err(format!("column `{}` is missing", missing.name()));
    }
    Ok(out)
}

/// Where each column sits in a line, and how many fields a line must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Field index of each column, indexed by `Column as usize`.
    pub pos: [u8; 8],
    /// Number of fields every line must have.
    pub n_fields: usize,
    /// Columns in file order (for display); ignored positions are skipped.
    pub order: Vec<Column>,
}

/// Why a header line is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header names column `{0}` twice")]
    Duplicate(String),
    #[error("header lacks column `{0}`")]
    Missing(&'static str),
    #[error("header has more than {MAX_FIELDS} columns")]
    TooMany,
    #[error("header line is not valid CSV")]
    Malformed,
}

impl Layout {
    /// The layout of a header line. Unknown extra columns are allowed and ignored.
    pub fn from_header(line: &[u8]) -> Result<Layout, HeaderError> {
        let mut sp = Splitter::new();
        let n = sp.split(line).map_err(|_| HeaderError::Malformed)?;
        let names: Vec<Vec<u8>> = (0..n)
            .map(|i| trim_ascii(sp.field(line, i)).to_ascii_lowercase())
            .collect();
        Layout::from_names(names.iter().map(|v| v.as_slice()))
    }

    fn from_names<'a>(names: impl Iterator<Item = &'a [u8]>) -> Result<Layout, HeaderError> {
        let mut pos = [u8::MAX; 8];
        let mut order = Vec::new();
        let mut n = 0usize;
        for (i, name) in names.enumerate() {
            n = i + 1;
            if n > MAX_FIELDS {
                return Err(HeaderError::TooMany);
            }
            if let Some(c) = Column::from_name(name) {
                if pos[c as usize] != u8::MAX {
                    return Err(HeaderError::Duplicate(c.name().into()));
                }
                pos[c as usize] = i as u8;
                order.push(c);
            }
        }
        for c in Column::ALL {
            if pos[c as usize] == u8::MAX {
                return Err(HeaderError::Missing(c.name()));
            }
        }
        Ok(Layout {
            pos,
            n_fields: n,
            order,
        })
    }

    /// The layout for configured columns (headerless files); `None` skips a column.
    pub fn from_columns(names: &[Option<Column>]) -> Layout {
        Layout::from_names(
            names
                .iter()
                .map(|c| c.map_or(&b"_"[..], |c| c.name().as_bytes())),
        )
        .expect("configured columns were validated")
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    &b[s..e]
}

/// Splits lines into fields, reusing its buffers across lines.
pub struct Splitter {
    ranges: [(u32, u32); MAX_FIELDS],
    n: usize,
    quoted: bool,
    /// The last line [`Splitter::scan`] took was malformed.
    bad: bool,
    scratch: Vec<u8>,
    ends: [usize; MAX_FIELDS + 1],
    reader: csv_core::Reader,
}

/// A line that is not valid CSV (or has too many fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl Default for Splitter {
    fn default() -> Self {
        Self::new()
    }
}

impl Splitter {
    pub fn new() -> Splitter {
        Splitter {
            ranges: [(0, 0); MAX_FIELDS],
            n: 0,
            quoted: false,
            bad: false,
            scratch: Vec::with_capacity(1024),
            ends: [0; MAX_FIELDS + 1],
            // Lines are cut on `\n` (and a final `\r` stripped) before splitting; a `\r`
            // inside a line is field data, as in the unquoted fast path.
            reader: csv_core::ReaderBuilder::new()
                .terminator(csv_core::Terminator::Any(b'\n'))
                .build(),
        }
    }

    /// Splits `line` (without its line terminator); returns the number of fields.
    #[inline]
    pub fn split(&mut self, line: &[u8]) -> Result<usize, Malformed> {
        self.split_within(line, 0, line.len())
    }

    /// Splits the line `buf[start..end]` (without its terminator); field ranges are
    /// relative to `start`, so [`Splitter::field`] takes `&buf[start..end]`. Blocks are
    /// read straight from `buf`, past the line's end where `buf` continues (those bytes
    /// are masked off): only a line ending within 64 bytes of the end of `buf` has its
    /// last block copied. A copied block costs a store-forwarding stall, which made the
    /// copy of every line's tail the most expensive instruction of rating.
    #[inline]
    pub fn split_within(
        &mut self,
        buf: &[u8],
        start: usize,
        end: usize,
    ) -> Result<usize, Malformed> {
        // 64 bytes at a time (most lines take one or two blocks): a bitmask of the commas
        // and one of the quotes, then one step per comma. The first quote sends the line
        // to the quoted path.
        self.quoted = false;
        let mut field_start = 0u32;
        let mut n = 0usize;
        let mut base = start;
        while base < end {
            let (mut commas, mut quotes) = if base + 64 <= buf.len() {
                masks64(buf[base..base + 64].try_into().expect("64 bytes"))
            } else {
                let mut b = [0u8; 64];
                b[..buf.len() - base].copy_from_slice(&buf[base..]);
                masks64(&b)
            };
            if base + 64 > end {
                let keep = (1u64 << (end - base)) - 1;
                commas &= keep;
                quotes &= keep;
            }
            if quotes != 0 {
                return self.split_quoted(&buf[start..end]);
            }
            while commas != 0 {
                let i = base - start + commas.trailing_zeros() as usize;
                commas &= commas - 1;
                if n + 1 >= MAX_FIELDS {
                    return Err(Malformed);
                }
                self.ranges[n] = (field_start, i as u32);
                n += 1;
                field_start = i as u32 + 1;
            }
            base += 64;
        }
        self.ranges[n] = (field_start, (end - start) as u32);
        self.n = n + 1;
        Ok(self.n)
    }

    #[cold]
    fn split_quoted(&mut self, line: &[u8]) -> Result<usize, Malformed> {
        self.quoted = true;
        // Quotes must balance and may only open a field and close it.
        if !memchr::memchr_iter(b'"', line).count().is_multiple_of(2) {
            return Err(Malformed);
        }
        let mut in_quotes = false;
        let mut field_start = true;
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            if in_quotes {
                if b == b'"' {
                    if line.get(i + 1) == Some(&b'"') {
                        i += 1;
                    } else {
                        in_quotes = false;
                        if !matches!(line.get(i + 1), None | Some(b',')) {
                            return Err(Malformed);
                        }
                    }
                }
            } else if b == b'"' {
                if !field_start {
                    return Err(Malformed);
                }
                in_quotes = true;
            } else if b == b',' {
                field_start = true;
                i += 1;
                continue;
            }
            field_start = false;
            i += 1;
        }
        let rdr = &mut self.reader;
        rdr.reset();
        self.scratch.clear();
        self.scratch.resize(line.len() + 1, 0);
        let mut input = line;
        let mut nout_total = 0;
        let mut nends_total = 0;
        loop {
            let (res, nin, nout, nends) = rdr.read_record(
                input,
                &mut self.scratch[nout_total..],
                &mut self.ends[nends_total..],
            );
            input = &input[nin..];
            nout_total += nout;
            nends_total += nends;
            match res {
                csv_core::ReadRecordResult::InputEmpty => continue,
                csv_core::ReadRecordResult::Record => break,
                csv_core::ReadRecordResult::OutputFull
                | csv_core::ReadRecordResult::OutputEndsFull => return Err(Malformed),
                csv_core::ReadRecordResult::End => break,
            }
        }
        if nends_total == 0 || nends_total > MAX_FIELDS {
            return Err(Malformed);
        }
        let mut start = 0;
        for (i, &end) in self.ends[..nends_total].iter().enumerate() {
            self.ranges[i] = (start as u32, end as u32);
            start = end;
        }
        self.n = nends_total;
        Ok(self.n)
    }

    /// Takes the next line of `sc` from `buf` and splits it, like
    /// [`Splitter::split_within`] on that line: returns the end of the line in `buf`
    /// (without its `\n` and a final `\r`), or `None` at the end of the scanner's range.
    /// The line starts at [`LineScanner::next_start`] as it was before the call; the
    /// field count is [`Splitter::scanned`]. Lines are physical lines, as with `memchr`
    /// for `\n`. (One scalar comes back, not a tuple: a tuple built on the stack and
    /// read back as one wide load defeated store forwarding on every line.)
    #[inline]
    pub fn scan(&mut self, sc: &mut LineScanner, buf: &[u8]) -> Option<usize> {
        if sc.pos >= sc.end {
            return None;
        }
        let start = sc.pos;
        let mut n = 0usize;
        let mut field_start = 0u32;
        let mut quoted = false;
        let mut too_many = false;
        let line_end;
        loop {
            // Bits of bytes before `start` are already clear: the newline ends the line.
            let limit = sc.nl.trailing_zeros();
            let below = if limit >= 64 {
                u64::MAX
            } else {
                (1u64 << limit) - 1
            };
            let mut c = sc.commas & below;
            quoted |= sc.quotes & below != 0;
            while c != 0 {
                let i = (sc.base + c.trailing_zeros() as usize - start) as u32;
                c &= c - 1;
                if n + 1 >= MAX_FIELDS {
                    too_many = true;
                } else {
                    self.ranges[n] = (field_start, i);
                    n += 1;
                    field_start = i + 1;
                }
            }
            if limit < 64 {
                line_end = sc.base + limit as usize;
                sc.pos = line_end + 1;
                // Keep only the bits after the newline, for the next line.
                let after = !below & !(1u64 << limit);
                sc.nl &= after;
                sc.commas &= after;
                sc.quotes &= after;
                break;
            }
            let next = sc.base + 64;
            if next >= sc.end {
                // The range ends without a newline.
                line_end = sc.end;
                sc.pos = sc.end;
                break;
            }
            sc.load(buf, next);
        }
        let mut end = line_end;
        if end > start && buf[end - 1] == b'\r' {
            end -= 1;
        }
        if quoted {
            self.bad = self.split_quoted(&buf[start..end]).is_err();
            return Some(end);
        }
        self.quoted = false;
        self.bad = too_many;
        if !too_many {
            self.ranges[n] = (field_start, (end - start) as u32);
            self.n = n + 1;
        }
        Some(end)
    }

    /// The field count of the last line [`Splitter::scan`] took.
    #[inline(always)]
    pub fn scanned(&self) -> Result<usize, Malformed> {
        if self.bad {
            Err(Malformed)
        } else {
            Ok(self.n)
        }
    }

    /// The bounds of field `i` of the last unquoted line split, relative to its start
    /// (`None` past the last field).
    #[inline(always)]
    pub fn range(&self, i: usize) -> Option<(usize, usize)> {
        (i < self.n).then(|| {
            let (s, e) = self.ranges[i];
            (s as usize, e as usize)
        })
    }

    /// Whether the last line split had quotes (its fields live in a scratch buffer).
    #[inline]
    pub fn is_quoted(&self) -> bool {
        self.quoted
    }

    /// Field `i` of the last split line (empty when the line had fewer fields); `line`
    /// must be the same slice given to `split`.
    #[inline(always)]
    pub fn field<'a>(&'a self, line: &'a [u8], i: usize) -> &'a [u8] {
        if i >= self.n {
            return &[];
        }
        let (s, e) = self.ranges[i];
        if self.quoted {
            &self.scratch[s as usize..e as usize]
        } else {
            &line[s as usize..e as usize]
        }
    }
}

/// Finds the lines of a range of a buffer in one pass over 64-byte blocks: each block is
/// compared once for `\n`, `,` and `"`, and [`Splitter::scan`] takes each line's end
/// and its commas from the same masks. (Finding the end with `memchr` and then splitting
/// read every line twice.) Blocks are read in place; bits past the range are masked off,
/// and only a block within 64 bytes of the end of the buffer is copied.
pub struct LineScanner {
    /// Offset of the current block in the buffer.
    base: usize,
    /// Newlines, commas and quotes of the current block; bits of bytes before `pos` or at
    /// or past `end` are clear.
    nl: u64,
    commas: u64,
    quotes: u64,
    /// Start of the next line.
    pos: usize,
    /// End of the range.
    end: usize,
    /// Whether the CPU has AVX2 (two 32-byte compares per character instead of four).
    avx2: bool,
}

impl LineScanner {
    /// Where the next line [`Splitter::scan`] takes starts.
    #[inline(always)]
    pub fn next_start(&self) -> usize {
        self.pos
    }

    /// A scanner over the lines of `buf[start..end]`.
    pub fn new(buf: &[u8], start: usize, end: usize) -> LineScanner {
        let mut sc = LineScanner {
            base: start,
            nl: 0,
            commas: 0,
            quotes: 0,
            pos: start,
            end: end.min(buf.len()),
            avx2: has_avx2(),
        };
        if sc.pos < sc.end {
            sc.load(buf, start);
        }
        sc
    }

    #[inline]
    fn load(&mut self, buf: &[u8], base: usize) {
        // Ask for the block PREFETCH_AHEAD bytes on: the hardware prefetchers stop at
        // every 4 KiB page boundary of the mapped file, and a first touch of a block
        // that is not cached was the most expensive load of rating.
        if let Some(ahead) = buf.get(base + PREFETCH_AHEAD) {
            crate::rate::hint::prefetch(ahead);
        }
        let keep = if self.end - base >= 64 {
            u64::MAX
        } else {
            (1u64 << (self.end - base)) - 1
        };
        self.base = base;
        if base + 64 <= buf.len() {
            self.set_masks(buf[base..base + 64].try_into().expect("64 bytes"), keep);
        } else {
            let mut b = [0u8; 64];
            b[..buf.len() - base].copy_from_slice(&buf[base..]);
            self.set_masks(&b, keep);
        }
    }

    /// Stores the block's masks (bits outside `keep` cleared) straight into the scanner.
    /// The AVX2 path is a separate function (it cannot be inlined into code compiled
    /// without AVX2); returning its three masks through memory and reading them back
    /// as one 16-byte load defeated store forwarding and stalled every block.
    #[inline(always)]
    fn set_masks(&mut self, block: &[u8; 64], keep: u64) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `avx2` is only true when the CPU was detected to support AVX2.
            unsafe { set_masks_avx2(self, block, keep) };
            return;
        }
        let (nl, commas, quotes) = masks64_3(block, false);
        self.nl = nl & keep;
        self.commas = commas & keep;
        self.quotes = quotes & keep;
    }
}

/// [`LineScanner::set_masks`] with AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn set_masks_avx2(sc: &mut LineScanner, block: &[u8; 64], keep: u64) {
    // SAFETY: this function's own contract.
    let (nl, commas, quotes) = unsafe { masks64_3_avx2(block) };
    sc.nl = nl & keep;
    sc.commas = commas & keep;
    sc.quotes = quotes & keep;
}

/// How far ahead of the block being scanned [`LineScanner`] prefetches the file.
const PREFETCH_AHEAD: usize = 1024;

/// Whether the CPU running this has AVX2 (detected once, then a cached flag).
#[inline]
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Bit `i` set where byte `i` of the block is a newline, a comma, a quote; with AVX2
/// when `avx2` says the CPU has it, else with the SSE2 every x86-64 CPU has.
#[inline(always)]
fn masks64_3(block: &[u8; 64], avx2: bool) -> (u64, u64, u64) {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2 {
            // SAFETY: `avx2` is only true when the CPU was detected to support AVX2.
            return unsafe { masks64_3_avx2(block) };
        }
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of the x86_64 baseline; each load reads 16 bytes inside
        // `block` (unaligned loads allowed).
        unsafe {
            let nl = _mm_set1_epi8(b'\n' as i8);
            let comma = _mm_set1_epi8(b',' as i8);
            let quote = _mm_set1_epi8(b'"' as i8);
            let (mut n, mut c, mut q) = (0u64, 0u64, 0u64);
            for k in 0..4 {
                let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast());
                n |= (_mm_movemask_epi8(_mm_cmpeq_epi8(v, nl)) as u32 as u64) << (16 * k);
                c |= (_mm_movemask_epi8(_mm_cmpeq_epi8(v, comma)) as u32 as u64) << (16 * k);
                q |= (_mm_movemask_epi8(_mm_cmpeq_epi8(v, quote)) as u32 as u64) << (16 * k);
            }
            (n, c, q)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = avx2;
        let (mut n, mut c, mut q) = (0u64, 0u64, 0u64);
        for (i, &b) in block.iter().enumerate() {
            n |= u64::from(b == b'\n') << i;
            c |= u64::from(b == b',') << i;
            q |= u64::from(b == b'"') << i;
        }
        (n, c, q)
    }
}

/// [`masks64_3`] in two 32-byte halves.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn masks64_3_avx2(block: &[u8; 64]) -> (u64, u64, u64) {
    use std::arch::x86_64::{
        _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
    };
    let nl = _mm256_set1_epi8(b'\n' as i8);
    let comma = _mm256_set1_epi8(b',' as i8);
    let quote = _mm256_set1_epi8(b'"' as i8);
    let (mut n, mut c, mut q) = (0u64, 0u64, 0u64);
    for k in 0..2 {
        // SAFETY: each load reads 32 bytes inside `block` (unaligned loads allowed).
        let v = unsafe { _mm256_loadu_si256(block.as_ptr().add(32 * k).cast()) };
        n |= (_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, nl)) as u32 as u64) << (32 * k);
        c |= (_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, comma)) as u32 as u64) << (32 * k);
        q |= (_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, quote)) as u32 as u64) << (32 * k);
    }
    (n, c, q)
}

/// Bit `i` set where byte `i` of the block is a comma, and where it is a quote (the
/// SSE2 masks of [`masks64_3`] without the newline one, which the optimizer drops).
#[inline(always)]
fn masks64(block: &[u8; 64]) -> (u64, u64) {
    let (_, commas, quotes) = masks64_3(block, false);
    (commas, quotes)
}

/// Parses a non-negative decimal integer (no sign, no spaces; leading zeros allowed) of
/// at most 18 significant digits.
#[inline]
pub fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    let b = if b.len() > 18 {
        let nz = b.iter().position(|&c| c != b'0').unwrap_or(b.len());
        if b.len() - nz > 18 {
            return None;
        }
        &b[nz..]
    } else {
        b
    };
    let mut v = 0u64;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + d as u64;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &[u8]) -> Result<Vec<Vec<u8>>, Malformed> {
        let mut sp = Splitter::new();
        let n = sp.split(line)?;
        Ok((0..n).map(|i| sp.field(line, i).to_vec()).collect())
    }

    #[test]
    fn plain_and_quoted_fields() {
        assert_eq!(
            fields(b"a,b,,c").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec(), vec![], b"c".to_vec()]
        );
        assert_eq!(
            fields(br#""a,1","he said ""hi""",x"#).unwrap(),
            vec![b"a,1".to_vec(), br#"he said "hi""#.to_vec(), b"x".to_vec()]
        );
        assert_eq!(fields(br#""""#).unwrap(), vec![Vec::<u8>::new()]);
        // A carriage return inside a line is data in both paths.
        assert_eq!(fields(b"a\rb,c").unwrap().len(), 2);
        assert_eq!(
            fields(b"\"x\",a\rb,c").unwrap(),
            vec![b"x".to_vec(), b"a\rb".to_vec(), b"c".to_vec()]
        );
        assert_eq!(fields(b"").unwrap(), vec![Vec::<u8>::new()]);
    }

    /// A line split inside a larger buffer reads whole blocks past its end: commas and
    /// quotes there (the next line) must not count, at every alignment, and the result
    /// must equal splitting the line on its own.
    #[test]
    fn split_within_ignores_bytes_after_the_line() {
        let lines: [&[u8]; 4] = [
            b"a,b,c",
            b"r1,ACC1,voice,+31612,0201,2026-10-01T02:00:00Z,60,",
            b"",
            b"x",
        ];
        for line in lines {
            for pad in 0..40 {
                for after in [&b",,,\",\"x,"[..], b"\n\"\"\"", b""] {
                    let mut buf = vec![b'z'; pad];
                    buf.extend_from_slice(line);
                    buf.extend_from_slice(after);
                    let mut sp = Splitter::new();
                    let n = sp.split_within(&buf, pad, pad + line.len()).unwrap();
                    let got: Vec<Vec<u8>> = (0..n)
                        .map(|i| sp.field(&buf[pad..pad + line.len()], i).to_vec())
                        .collect();
                    assert_eq!(Ok(got), fields(line), "pad {pad}, after {after:?}");
                }
            }
        }
        // A quote inside the line still takes the quoted path.
        let buf = b"zz\"a,1\",b\nnext,line";
        let mut sp = Splitter::new();
        assert_eq!(sp.split_within(buf, 2, 10), Ok(2));
        assert_eq!(sp.field(&buf[2..10], 0), b"a,1");
    }

    #[test]
    fn bad_quotes_are_malformed() {
        assert_eq!(fields(br#""abc,d"#), Err(Malformed));
        assert_eq!(fields(br#"ab"c",d"#), Err(Malformed));
        assert_eq!(fields(br#""ab"c,d"#), Err(Malformed));
        assert_eq!(fields(&[b','; MAX_FIELDS]), Err(Malformed));
        assert_eq!(fields(&[b','; MAX_FIELDS - 1]).unwrap().len(), MAX_FIELDS);
    }

    #[test]
    fn header_any_order_and_extras() {
        let l = Layout::from_header(
            b"start_time,called_number,extra,record_id,account_id,service,calling_number,duration_s,volume_bytes",
        )
        .unwrap();
        assert_eq!(l.n_fields, 9);
        assert_eq!(l.pos[Column::StartTime as usize], 0);
        assert_eq!(l.pos[Column::RecordId as usize], 3);
        assert_eq!(
            Layout::from_header(b"record_id,account_id"),
            Err(HeaderError::Missing("service"))
        );
        assert_eq!(
            Layout::from_header(b"record_id,record_id"),
            Err(HeaderError::Duplicate("record_id".into()))
        );
    }

    #[test]
    fn configured_columns() {
        let names = [
            "account_id",
            "_",
            "record_id",
            "service",
            "calling_number",
            "called_number",
            "start_time",
            "duration_s",
            "volume_bytes",
        ];
        let cols = columns_from_names(names.iter().copied()).unwrap();
        assert_eq!(cols.len(), 9);
        let l = Layout::from_columns(&cols);
        assert_eq!(l.pos[Column::AccountId as usize], 0);
        assert_eq!(l.pos[Column::RecordId as usize], 2);
        assert_eq!(l.n_fields, 9);
        assert!(columns_from_names(["account_id"].into_iter()).is_err());
        assert!(columns_from_names(["nope"].into_iter()).is_err());
    }

    #[test]
    fn block_split_agrees_with_a_plain_split() {
        let mut sp = Splitter::new();
        let lines: [&[u8]; 8] = [
            b"",
            b",",
            b"a",
            b"abcdefgh",
            b"abcdefg,",
            b",,,,,,,,,,,,,,,,",
            b"12345678,12345678,1",
            b"\x80\xff,\xac,\x2c\x2d,,",
        ];
        for line in lines {
            let n = sp.split(line).unwrap();
            let got: Vec<&[u8]> = (0..n).map(|i| sp.field(line, i)).collect();
            let want: Vec<&[u8]> = line.split(|&b| b == b',').collect();
            assert_eq!(got, want, "{line:?}");
        }
        let mut block = [b'x'; 64];
        block[..16].copy_from_slice(b"a,b,\"c,d,,,,,,,,");
        block[63] = b',';
        block[40] = b'"';
        assert_eq!(
            masks64(&block),
            (0b1111_1111_0100_1010 | 1 << 63, 0b1_0000 | 1 << 40)
        );
        assert!(sp.split(b"abcdefgh\"").is_err());
        assert_eq!(sp.split(b"abcdefghijklmnop,\"x\""), Ok(2));
    }

    /// Scanning a range line by line gives the lines `memchr` finds (a final `\r`
    /// stripped) and, for each, the fields of splitting it alone: over random bytes rich
    /// in newlines, commas, quotes and `\r`, long lines, every start offset and bytes
    /// after the range that must not count.
    #[test]
    fn scan_agrees_with_memchr_and_split() {
        let alphabet = b"\n\n,,,\"\rab7";
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 300) as usize;
            let mut buf: Vec<u8> = (0..len)
                .map(|i| {
                    let r = x.rotate_left((i % 64) as u32) ^ (i as u64).wrapping_mul(0x2545_f491);
                    if round % 7 == 0 && i % 90 < 85 {
                        b'a' + (r % 3) as u8 // long lines, few separators
                    } else {
                        alphabet[(r >> 7) as usize % alphabet.len()]
                    }
                })
                .collect();
            let start = (x >> 20) as usize % (len + 1);
            let end = start + (x >> 30) as usize % (len - start + 1);
            if round % 5 == 0 {
                buf.truncate(end); // the range ends the buffer
            }
            let mut want = Vec::new();
            let mut pos = start;
            while pos < end {
                let e = memchr::memchr(b'\n', &buf[pos..end]).map_or(end, |i| pos + i);
                let line = &buf[pos..e];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                want.push((pos, pos + line.len(), fields(line)));
                pos = e + 1;
            }
            let mut got = Vec::new();
            let mut sc = LineScanner::new(&buf, start, end);
            let mut sp = Splitter::new();
            loop {
                let s = sc.next_start();
                let Some(e) = sp.scan(&mut sc, &buf) else {
                    break;
                };
                let f = sp
                    .scanned()
                    .map(|n| (0..n).map(|i| sp.field(&buf[s..e], i).to_vec()).collect());
                got.push((s, e, f));
            }
            assert_eq!(got, want, "round {round}: {start}..{end} of {:?}", &buf);
        }
    }

    /// The AVX2 and SSE2 masks agree on random blocks (when this CPU has AVX2).
    #[test]
    fn masks_agree_across_instruction_sets() {
        if !has_avx2() {
            eprintln!("SKIPPED: this CPU has no AVX2; only the SSE2 masks are in use");
            return;
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut block = [0u8; 64];
            for b in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = [b'\n', b',', b'"', b'a', 0x8a, 0xac][(x % 6) as usize];
            }
            assert_eq!(masks64_3(&block, true), masks64_3(&block, false));
        }
    }

    #[test]
    fn integers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"123"), Some(123));
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"1.5"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b" 1"), None);
        assert_eq!(parse_u64(b"9999999999999999999"), None);
        assert_eq!(parse_u64(b"000000000000000000060"), Some(60));
        assert_eq!(parse_u64(b"00000000000000000000"), Some(0));
    }
}
