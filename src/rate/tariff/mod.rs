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
            // Only its own deck's tries: `ArchivedTable::plan_deck` relies on it.
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

impl ArchivedTable {
    /// The plan's own deck (an index into `decks`): the deck of the rows its tries reach.
    /// [`build`] makes one trie per deck and service and gives a plan the roots of its
    /// deck's, so every row reachable from `plans[plan].roots` is a row of that deck
    /// (a fallback plan's rows are reached only through the fallback, never through the
    /// roots). This names the deck by the plan, not by a path: an archive keeps the
    /// paths its decks had when it was compiled, which a copied or moved deployment no
    /// longer has. `None` for an unknown plan or one whose tries hold no row.
    pub fn plan_deck(&self, plan: u32) -> Option<u32> {
        let p = self.plans.get(plan as usize)?;
        let mut stack: Vec<u32> = p.roots.iter().map(|r| r.to_native()).collect();
        // A trie is a tree: no walk visits more nodes than there are.
        let mut visits = self.nodes.len();
        while let Some(n) = stack.pop() {
            visits = visits.checked_sub(1)?;
            let node = self.nodes.get(n as usize)?;
            if node.rows_start != node.rows_end {
                return self
                    .rows
                    .get(node.rows_start.to_native() as usize)
                    .map(|r| r.deck.to_native());
            }
            stack.extend(node.child.iter().map(|c| c.to_native()).filter(|&c| c != 0));
        }
        None
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
    /// Per plan of the table (same index): its allowances. Known only when loaded from the sources ([`Tariff::load`]); an archive
    /// opened alone ([`Tariff::open`], the snapshots re-rating uses) has none. Allowances
    /// are applied at the close with the tariff in service, like the monthly fees.
    pub allowances: Vec<PlanAllowances>,
    /// Per deck of the table (same index): its path as the sources name it now. Known
    /// only when loaded from the sources: an archive keeps the paths its decks had when
    /// it was compiled, which a copied or moved deployment no longer has (the version
    /// hashes the paths as written in plans.toml, not where they lead).
    decks: Vec<PathBuf>,
}

/// A plan's allowances. The rows that may draw on them are those of the plan's own deck
/// ([`ArchivedTable::plan_deck`]), in whichever table priced the record.
#[derive(Debug, Clone, Default)]
pub struct PlanAllowances {
    pub list: Vec<Allowance>,
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
            .map(|p| PlanAllowances {
                list: p.allowances.clone(),
            })
            .collect();
        t.decks = src.decks.iter().map(|d| d.path.clone()).collect();
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
            decks: Vec::new(),
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

    /// The path of each deck (same index as `table().decks`): where the sources name it
    /// when loaded from them ([`Tariff::load`]), else where it was when the archive was
    /// compiled.
    pub fn deck_paths(&self) -> Vec<PathBuf> {
        if self.decks.len() == self.table().decks.len() {
            return self.decks.clone();
        }
        self.table()
            .decks
            .iter()
            .map(|d| PathBuf::from(d.as_str()))
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    const DECK: &str =
        "prefix,destination,service,band,connect_fee,rate,per,first_increment,next_increment,valid_from
31,Netherlands,voice,any,0.10,0.60,60,60,60,
316,Netherlands Mobile,voice,any,0,0.30,60,1,1,
,SMS,sms,any,0,0.10,1,1,1,
";

    /// Three plans on two decks (`a` and `c` share one, `b` is `a`'s fallback), the
    /// decks in a folder beside the plans file's; compiled and opened like a snapshot.
    fn compiled(dir: &Path) -> Tariff {
        std::fs::create_dir_all(dir.join("tariffs")).unwrap();
        std::fs::create_dir_all(dir.join("decks")).unwrap();
        std::fs::write(dir.join("decks/retail.csv"), DECK).unwrap();
        std::fs::write(
            dir.join("decks/wholesale.csv"),
            DECK.replace("0.60", "0.40").replace(
                "\n,SMS,sms,any,0,0.10,1,1,1,",
                "\n1,United States,voice,any,0,0.50,60,1,1,",
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("tariffs/plans.toml"),
            r#"timezone = "Europe/Amsterdam"
national_prefix = "31"
currency = "EUR"

[[plan]]
id = "wholesale-first"
monthly_fee = "0"
deck = "../decks/wholesale.csv"

[[plan]]
id = "a"
monthly_fee = "1.00"
deck = "../decks/retail.csv"
fallback = "wholesale-first"

[[plan]]
id = "c"
monthly_fee = "2.00"
deck = "../decks/retail.csv"
"#,
        )
        .unwrap();
        let src = Source::load(&dir.join("tariffs/plans.toml")).unwrap();
        Tariff::open(&compile(&src, &dir.join("data")).unwrap()).unwrap()
    }

    /// Every row a plan's tries reach, by a full walk.
    fn reachable_decks(t: &ArchivedTable, plan: usize) -> Vec<u32> {
        let mut stack: Vec<u32> = t.plans[plan].roots.iter().map(|r| r.to_native()).collect();
        let mut decks = Vec::new();
        while let Some(n) = stack.pop() {
            let node = &t.nodes[n as usize];
            for i in node.rows_start.to_native()..node.rows_end.to_native() {
                decks.push(t.rows[i as usize].deck.to_native());
            }
            stack.extend(node.child.iter().map(|c| c.to_native()).filter(|&c| c != 0));
        }
        decks
    }

    #[test]
    fn a_plans_own_deck_is_the_deck_its_tries_reach() {
        let tmp = tempfile::tempdir().unwrap();
        let t = compiled(tmp.path());
        let table = t.table();
        // Decks in the order plans first name them; `a` and `c` share `retail`.
        let names: Vec<&str> = table.decks.iter().map(|d| d.as_str()).collect();
        assert_eq!(names.len(), 2);
        assert!(names[0].ends_with("decks/wholesale.csv"), "{names:?}");
        assert!(names[1].ends_with("decks/retail.csv"), "{names:?}");
        assert_eq!(table.plan_deck(0), Some(0));
        assert_eq!(table.plan_deck(1), Some(1));
        assert_eq!(table.plan_deck(2), Some(1));
        assert_eq!(table.plan_deck(3), None);
        // The invariant it relies on: every row a plan's tries reach is of that deck
        // (3 retail rows; 3 wholesale rows), never its fallback's.
        for (plan, rows) in [(0, 3), (1, 3), (2, 3)] {
            let decks = reachable_decks(table, plan);
            assert_eq!(decks.len(), rows, "plan {plan}");
            assert!(
                decks
                    .iter()
                    .all(|&d| Some(d) == table.plan_deck(plan as u32)),
                "plan {plan}: {decks:?}"
            );
        }
    }

    /// The archive keeps the paths its decks had when compiled; a plan's own deck does
    /// not depend on them (the same archive opened after the deployment moved).
    #[test]
    fn a_plans_own_deck_survives_moving_the_archive() {
        let tmp = tempfile::tempdir().unwrap();
        let (from, to) = (tmp.path().join("from"), tmp.path().join("to"));
        let old = compiled(&from);
        let version = old.version().to_owned();
        drop(old);
        std::fs::rename(&from, &to).unwrap();
        let t = Tariff::open(&archive_path(&to.join("data"), &version)).unwrap();
        assert!(t.table().decks[1]
            .as_str()
            .starts_with(from.to_str().unwrap()));
        assert_eq!(
            (0..3).map(|p| t.table().plan_deck(p)).collect::<Vec<_>>(),
            [Some(0), Some(1), Some(1)]
        );
    }
}
