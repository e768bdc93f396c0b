//! Tariffs: sources → compiled rkyv archive → memory-mapped, validated table → lookup.
//!
//! The archive is written once by [`compile`] (atomically: temp file, fsync, rename)
//! under `data_dir/tariffs/<version>.rkyv`, where the version is the SHA-256 of the
//! sources. [`Tariff::open`] maps it and validates it with bytecheck once; from then on
//! the hot path reads the archived structures in place. Archives are never rewritten,
//! so a file's checkpoint can name the version that rated it.

pub mod source;

use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rkyv::rancor;

pub use source::{Allowance, Source, SourceError};

use crate::rate::service::Service;

/// Bumped whenever the archived layout changes.
pub const FORMAT: u32 = 1;
/// `band` value of a row that applies in any band.
pub const ANY_BAND: u8 = u8::MAX;
/// `valid_from` of a row without a start date.
pub const ALWAYS: i32 = i32::MIN;
/// No fallback plan.
pub const NO_PLAN: u32 = u32::MAX;

/// A band as stored in the archive.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BandDef {
    pub name: String,
    /// `(year or 0, month, day)` conditions; empty = any date.
    pub dates: Vec<(i32, u8, u8)>,
    /// Weekday mask, Monday = bit 0.
    pub days: u8,
    /// `from`, `to` in local minutes; `has_window` false = all day.
    pub has_window: bool,
    pub from_min: u16,
    pub to_min: u16,
}

/// A plan as stored in the archive.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PlanDef {
    pub id: String,
    pub monthly_fee_cents: i64,
    pub fallback: u32,
    /// Trie root node per service (voice, sms, data).
    pub roots: [u32; 3],
}

/// A node of a plan's prefix trie: one child per next digit, and the rows whose
/// prefix ends here, sorted by band priority (`any` last), then latest `valid_from`.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Node {
    pub child: [u32; 10],
    pub rows_start: u32,
    pub rows_end: u32,
}

/// A deck row as stored in the archive.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RowDef {
    pub band: u8,
    pub valid_from: i32,
    pub connect_fee_nanos: i64,
    pub rate_nanos: i64,
    pub per: u64,
    pub first_increment: u64,
    pub next_increment: u64,
    pub destination: u32,
    pub deck: u32,
    pub line: u32,
    pub prefix: String,
}

/// The compiled tariff table.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Table {
    pub format: u32,
    pub version: String,
    pub timezone: String,
    pub national_prefix: String,
    pub currency: String,
    pub bands: Vec<BandDef>,
    pub plans: Vec<PlanDef>,
    pub nodes: Vec<Node>,
    pub rows: Vec<RowDef>,
    pub destinations: Vec<String>,
    pub decks: Vec<String>,
}

/// Errors opening or compiling a tariff.
#[derive(Debug, thiserror::Error)]
pub enum TariffError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("tariff archive {path}: {message}")]
    Archive { path: PathBuf, message: String },
    #[error("tariff archive {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Builds the table for validated sources.
pub fn build(src: &Source) -> Table {
    let mut destinations: Vec<String> = Vec::new();
    let mut dest_ids = std::collections::HashMap::new();
    let mut nodes: Vec<Node> = vec![Node {
        child: [0; 10],
        rows_start: 0,
        rows_end: 0,
    }]; // node 0 is a sentinel: child index 0 means "none"
    let mut rows: Vec<RowDef> = Vec::new();
    let mut plans = Vec::new();
    // One trie per (deck, service); plans sharing a deck share its tries.
    let mut deck_roots: Vec<[u32; 3]> = Vec::new();
    for (deck_no, deck) in src.decks.iter().enumerate() {
        let mut roots = [0u32; 3];
        for service in Service::ALL {
            // Build the trie with row lists, then flatten rows in node order.
            let root = nodes.len() as u32;
            nodes.push(Node {
                child: [0; 10],
                rows_start: 0,
                rows_end: 0,
            });
            let mut at_node: Vec<(u32, usize)> = Vec::new();
            for (ri, r) in deck.rows.iter().enumerate() {
                if r.service != service {
                    continue;
                }
                let mut n = root;
                for d in r.prefix.bytes() {
                    let d = (d - b'0') as usize;
                    let c = nodes[n as usize].child[d];
                    n = if c == 0 {
                        nodes.push(Node {
                            child: [0; 10],
                            rows_start: 0,
                            rows_end: 0,
                        });
                        let id = nodes.len() as u32 - 1;
                        nodes[n as usize].child[d] = id;
                        id
                    } else {
                        c
                    };
                }
                at_node.push((n, ri));
            }
            let band_rank = |b: Option<usize>| b.unwrap_or(usize::MAX);
            at_node.sort_by(|a, b| {
                let (ra, rb) = (&deck.rows[a.1], &deck.rows[b.1]);
                a.0.cmp(&b.0)
                    .then(band_rank(ra.band).cmp(&band_rank(rb.band)))
                    .then(
                        rb.valid_from
                            .unwrap_or(ALWAYS)
                            .cmp(&ra.valid_from.unwrap_or(ALWAYS)),
                    )
            });
            let mut i = 0;
            while i < at_node.len() {
                let n = at_node[i].0;
                let start = rows.len() as u32;
                while i < at_node.len() && at_node[i].0 == n {
                    let r = &deck.rows[at_node[i].1];
                    let dest = *dest_ids.entry(r.destination.clone()).or_insert_with(|| {
                        destinations.push(r.destination.clone());
                        destinations.len() as u32 - 1
                    });
                    rows.push(RowDef {
                        band: r.band.map_or(ANY_BAND, |b| b as u8),
                        valid_from: r.valid_from.unwrap_or(ALWAYS),
                        connect_fee_nanos: r.connect_fee_nanos,
                        rate_nanos: r.rate_nanos,
                        per: r.per,
                        first_increment: r.first_increment,
                        next_increment: r.next_increment,
                        destination: dest,
                        deck: deck_no as u32,
                        line: r.line as u32,
                        prefix: r.prefix.clone(),
                    });
                    i += 1;
                }
                nodes[n as usize].rows_start = start;
                nodes[n as usize].rows_end = rows.len() as u32;
            }
            roots[service as usize] = root;
        }
        deck_roots.push(roots);
    }
    for p in &src.plans {
        plans.push(PlanDef {
            id: p.id.clone(),
            monthly_fee_cents: p.monthly_fee_cents,
            fallback: p.fallback.map_or(NO_PLAN, |f| f as u32),
            roots: deck_roots[p.deck],
        });
    }
    Table {
        format: FORMAT,
        version: src.version.clone(),
        timezone: src.timezone.name().to_owned(),
        national_prefix: src.national_prefix.clone(),
        currency: src.currency.clone(),
        bands: src
            .bands
            .iter()
            .map(|b| BandDef {
                name: b.name.clone(),
                dates: b
                    .dates
                    .iter()
                    .map(|d| (d.year.unwrap_or(0), d.month as u8, d.day as u8))
                    .collect(),
                days: b.days,
                has_window: b.window.is_some(),
                from_min: b.window.map_or(0, |w| w.0),
                to_min: b.window.map_or(0, |w| w.1),
            })
            .collect(),
        plans,
        nodes,
        rows,
        destinations,
        decks: src
            .decks
            .iter()
            .map(|d| d.path.display().to_string())
            .collect(),
    }
}

/// Where the archive of `version` lives.
pub fn archive_path(data_dir: &Path, version: &str) -> PathBuf {
    data_dir.join("tariffs").join(format!("{version}.rkyv"))
}

/// Compiles validated sources into `data_dir/tariffs/<version>.rkyv` (kept if it exists).
pub fn compile(src: &Source, data_dir: &Path) -> Result<PathBuf, TariffError> {
    let path = archive_path(data_dir, &src.version);
    if path.exists() {
        return Ok(path);
    }
    let io = |source| TariffError::Io {
        path: path.clone(),
        source,
    };
    let table = build(src);
    let bytes = rkyv::to_bytes::<rancor::Error>(&table).map_err(|e| TariffError::Archive {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let dir = path.parent().expect("archive path has a parent");
    std::fs::create_dir_all(dir).map_err(io)?;
    crate::fsutil::write_atomic(&path, &bytes).map_err(io)?;
    Ok(path)
}

/// A memory-mapped, validated tariff table.
pub struct Tariff {
    map: Mmap,
    path: PathBuf,
    pub tz: chrono_tz::Tz,
    /// Per plan of the table (same index): its own deck (as in `table().decks`) and its
    /// allowances. Known only when loaded from the sources ([`Tariff::load`]); an archive
    /// opened alone ([`Tariff::open`], the snapshots re-rating uses) has none. Allowances
    /// are applied at the close with the tariff in service, like the monthly fees.
    pub allowances: Vec<PlanAllowances>,
}

/// A plan's allowances and the deck whose rows may draw on them.
#[derive(Debug, Clone, Default)]
pub struct PlanAllowances {
    pub deck: String,
    /// The deck's path relative to `plans.toml` (part of the tariff version): an
    /// archive compiled from a copy of the sources elsewhere names it under another
    /// directory (see [`PlanAllowances::is_deck`]).
    pub rel: String,
    pub list: Vec<Allowance>,
}

impl PlanAllowances {
    /// Whether an archive's deck name (`table().decks`, an absolute path when compiled)
    /// is this plan's deck: the same path, or the same path relative to its plans file
    /// (a snapshot compiled before the deployment was copied or moved).
    pub fn is_deck(&self, name: &str) -> bool {
        name == self.deck
            || (!self.rel.is_empty()
                && name
                    .strip_suffix(self.rel.as_str())
                    .is_some_and(|b| b.ends_with('/')))
    }
}

impl std::fmt::Debug for Tariff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tariff")
            .field("path", &self.path)
            .field("version", &self.table().version.as_str())
            .finish()
    }
}

impl Tariff {
    /// Loads the sources, compiles them if their archive is missing, and opens it.
    pub fn load(plans: &Path, data_dir: &Path) -> Result<Tariff, TariffError> {
        let src = Source::load(plans)?;
        let path = compile(&src, data_dir)?;
        let mut t = Tariff::open(&path)?;
        t.allowances = src
            .plans
            .iter()
            .map(|p| {
                let path = &src.decks[p.deck].path;
                PlanAllowances {
                    deck: path.display().to_string(),
                    rel: plans
                        .parent()
                        .and_then(|b| path.strip_prefix(b).ok())
                        .map(|r| r.display().to_string())
                        .unwrap_or_default(),
                    list: p.allowances.clone(),
                }
            })
            .collect();
        Ok(t)
    }

    /// Maps an archive and validates it once.
    pub fn open(path: &Path) -> Result<Tariff, TariffError> {
        let file = std::fs::File::open(path).map_err(|source| TariffError::Io {
            path: path.to_owned(),
            source,
        })?;
        // SAFETY: archives are written once to a temp file and renamed into place,
        // never modified afterwards; the mapping is read-only.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| TariffError::Io {
            path: path.to_owned(),
            source,
        })?;
        let table = rkyv::access::<ArchivedTable, rancor::Error>(&map).map_err(|e| {
            TariffError::Archive {
                path: path.to_owned(),
                message: format!("invalid archive: {e}"),
            }
        })?;
        let bad = |message: String| TariffError::Archive {
            path: path.to_owned(),
            message,
        };
        if table.format.to_native() != FORMAT {
            return Err(bad(format!(
                "format {} is not {FORMAT}; recompile",
                table.format.to_native()
            )));
        }
        // Structural checks bytecheck cannot know: indices stay in range.
        let n_nodes = table.nodes.len() as u32;
        let n_rows = table.rows.len() as u32;
        for n in table.nodes.iter() {
            if n.child.iter().any(|c| c.to_native() >= n_nodes)
                || n.rows_start.to_native() > n.rows_end.to_native()
                || n.rows_end.to_native() > n_rows
            {
                return Err(bad("node index out of range".into()));
            }
        }
        for r in table.rows.iter() {
            if r.destination.to_native() as usize >= table.destinations.len()
                || (r.band != ANY_BAND && r.band as usize >= table.bands.len())
                || r.per.to_native() == 0
                || r.next_increment.to_native() == 0
            {
                return Err(bad("row out of range".into()));
            }
        }
        for p in table.plans.iter() {
            if p.roots.iter().any(|c| c.to_native() >= n_nodes)
                || (p.fallback.to_native() != NO_PLAN
                    && p.fallback.to_native() as usize >= table.plans.len())
            {
                return Err(bad("plan index out of range".into()));
            }
        }
        let tz: chrono_tz::Tz = table
            .timezone
            .as_str()
            .parse()
            .map_err(|_| bad(format!("unknown time zone {}", table.timezone)))?;
        Ok(Tariff {
            map,
            path: path.to_owned(),
            tz,
            allowances: Vec::new(),
        })
    }

    /// The archived table.
    #[inline]
    /// The tariff's currency (ISO 4217).
    pub fn currency(&self) -> &str {
        self.table().currency.as_str()
    }

    pub fn table(&self) -> &ArchivedTable {
        // SAFETY: validated with bytecheck in `open`, and the mapping is immutable.
        unsafe { rkyv::access_unchecked::<ArchivedTable>(&self.map) }
    }

    /// The tariff version (SHA-256 of the sources).
    pub fn version(&self) -> &str {
        self.table().version.as_str()
    }

    /// Path of the archive.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The allowances of plan `plan` (index), empty when it has none.
    pub fn plan_allowances(&self, plan: u32) -> Option<&PlanAllowances> {
        self.allowances
            .get(plan as usize)
            .filter(|a| !a.list.is_empty())
    }

    /// Index of a plan by id.
    pub fn plan_index(&self, id: &str) -> Option<u32> {
        self.table()
            .plans
            .iter()
            .position(|p| p.id.as_str() == id)
            .map(|i| i as u32)
    }

    /// Finds the row that prices a record (rating rule 3): longest prefix, then highest
    /// band priority, then latest `valid_from`, then the fallback plans.
    #[inline]
    pub fn lookup(
        &self,
        plan: u32,
        service: Service,
        digits: &crate::rate::cdr::number::Digits<'_>,
        active_bands: u64,
        local_day: i32,
    ) -> Option<(u32, &ArchivedRowDef)> {
        let t = self.table();
        let mut plan = plan;
        for _ in 0..=source::MAX_FALLBACK_DEPTH {
            let p = &t.plans[plan as usize];
            // Nodes on the number's path that hold rows, shallowest first: the walk loads
            // every node anyway, and most hold none, so the way back visits only these.
            let mut with_rows = [0u32; crate::rate::cdr::number::MAX_DIGITS + 1];
            let mut found = 0;
            let mut n = p.roots[service as usize].to_native();
            let mut node = &t.nodes[n as usize];
            if node.rows_start != node.rows_end {
                with_rows[found] = n;
                found += 1;
            }
            let (head, body) = digits.parts();
            'walk: for part in [head, body] {
                for &d in part {
                    let c = node.child[(d - b'0') as usize].to_native();
                    if c == 0 {
                        break 'walk;
                    }
                    n = c;
                    node = &t.nodes[n as usize];
                    if node.rows_start != node.rows_end {
                        with_rows[found] = n;
                        found += 1;
                    }
                }
            }
            for &n in with_rows[..found].iter().rev() {
                let node = &t.nodes[n as usize];
                for i in node.rows_start.to_native()..node.rows_end.to_native() {
                    let r = &t.rows[i as usize];
                    let band_ok = r.band == ANY_BAND || active_bands & (1u64 << r.band) != 0;
                    if band_ok && r.valid_from.to_native() <= local_day {
                        return Some((i, r));
                    }
                }
            }
            plan = p.fallback.to_native();
            if plan == NO_PLAN {
                return None;
            }
        }
        None
    }
}
