//! Allowances (bundles): rules 1–3 of drawing a period's records from a plan's included
//! units, exact and order-defined. Pure: records in, per-allowance use and value out.
//!
//! 1. The records of one account dated in one period, ordered by start instant, then by
//!    record id (bytewise); a record id repeated in another file (not a duplicate within
//!    one file, which is rejected) goes by file commit sequence, then line.
//! 2. A record with billed units `b > 0` draws from the allowances it matches (a bit
//!    mask, in plan order), taking from each what it has left, until `b` is covered or
//!    none is left; `covered` = what it took in total.
//! 3. Its new charge is 0 when `covered == b`, else `round_half_up_6(rate × (b −
//!    covered) / per)`: the connect fee is waived whenever `covered > 0`. Its value (the
//!    discount) is its original charge minus the new one. A record drawn from several
//!    allowances splits its value in proportion to the units each gave, each share
//!    `round_half_up_6`, the first allowance taking what rounding leaves.
//!
//! Rule 4 (invoice lines, cents) is the billing side's ([`crate::rate::money`] rounds).

use crate::rate::money::div_round_half_up;
use crate::rate::rating::charge_micros;

/// A record id, ordered bytewise; short ids (the usual) are kept inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordId {
    Inline(u8, [u8; 22]),
    Heap(Box<[u8]>),
}

impl RecordId {
    pub fn new(b: &[u8]) -> RecordId {
        if b.len() <= 22 {
            let mut a = [0u8; 22];
            a[..b.len()].copy_from_slice(b);
            RecordId::Inline(b.len() as u8, a)
        } else {
            RecordId::Heap(b.into())
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            RecordId::Inline(n, a) => &a[..*n as usize],
            RecordId::Heap(b) => b,
        }
    }
}

impl Ord for RecordId {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.bytes().cmp(o.bytes())
    }
}

impl PartialOrd for RecordId {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// A rated record that matches at least one allowance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    /// Start instant (Unix seconds).
    pub start: i64,
    pub id: RecordId,
    /// Billed units after increments.
    pub billed: u64,
    /// The rated charge (6 decimals, connect fee included).
    pub charge_micros: i64,
    /// The pricing row's rate (9 decimals) per `per` units.
    pub rate_nanos: i64,
    pub per: u64,
    /// Bit `i`: the record matches allowance `i` of the plan.
    pub mask: u64,
    /// The caller's group of the record (its invoice line), carried to [`Drawn::value`].
    pub group: u32,
    /// Where the record came from (the caller's tag, e.g. file sequence and line).
    pub tag: (u64, u64),
}

/// What a period's records drew.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drawn {
    /// Units each allowance gave (plan order).
    pub used: Vec<u64>,
    /// Value (6 decimals) each allowance gave, per group: `(allowance, group, micros)`,
    /// sorted, one entry per pair.
    pub value: Vec<(usize, u32, i64)>,
    /// Per covered record: its tag, what it took from which allowance and its new
    /// charge.
    pub covered: Vec<Covered>,
}

/// What one record took from the allowances (the itemised annex marks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covered {
    /// The caller's tag of the record.
    pub tag: (u64, u64),
    /// Units covered in total.
    pub units: u64,
    /// The record's charge after the allowances (6 decimals, rule 3).
    pub charge_micros: i64,
    /// Its value: original charge − new charge (6 decimals).
    pub value_micros: i64,
    /// The (first) allowance it drew from, in plan order.
    pub first: u8,
    /// Only when it drew from more than one: every `(allowance, units, share of the
    /// value)`, plan order (the shares of rule 3).
    pub split: Option<Box<[(u8, u64, i64)]>>,
}

impl Covered {
    /// `(allowance, units, share of the value)` for each allowance the record drew
    /// from, in plan order.
    pub fn took(&self) -> Vec<(usize, u64, i64)> {
        match &self.split {
            Some(s) => s.iter().map(|&(i, u, v)| (i as usize, u, v)).collect(),
            None => vec![(self.first as usize, self.units, self.value_micros)],
        }
    }
}

/// Draws `records` (one account, one period, any order) from allowances of `units`
/// each (plan order, at most 64). Sorts `records` by rule 1.
pub fn draw(units: &[u64], records: &mut [Draw]) -> Drawn {
    // Equal (start, id) pairs (the same record id in two files) keep file order.
    records.sort_unstable_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then_with(|| a.id.cmp(&b.id))
            .then(a.tag.cmp(&b.tag))
    });
    let mut left: Vec<u64> = units.to_vec();
    let mut used = vec![0u64; units.len()];
    let mut value: std::collections::BTreeMap<(usize, u32), i64> = Default::default();
    let mut covered_out = Vec::new();
    let mut took: Vec<(usize, u64)> = Vec::with_capacity(4);
    for r in records.iter() {
        if r.billed == 0 {
            continue;
        }
        took.clear();
        let mut need = r.billed;
        let mut m = r.mask;
        while m != 0 && need > 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            let Some(l) = left.get_mut(i) else { break };
            let t = (*l).min(need);
            if t > 0 {
                *l -= t;
                need -= t;
                took.push((i, t));
            }
        }
        let covered = r.billed - need;
        if covered == 0 {
            continue;
        }
        let new = if need == 0 {
            0
        } else {
            charge_micros(0, r.rate_nanos, r.per, need).unwrap_or(r.charge_micros)
        };
        let v = r.charge_micros - new;
        // Shares in proportion to the units taken; the first allowance takes the rest.
        let mut rest = v;
        let mut split = None;
        if took.len() > 1 {
            let mut parts: Vec<(u8, u64, i64)> = Vec::with_capacity(took.len());
            parts.push((took[0].0 as u8, took[0].1, 0));
            for &(i, t) in took.iter().skip(1) {
                let share = div_round_half_up(v as i128 * t as i128, covered as i128) as i64;
                rest -= share;
                *value.entry((i, r.group)).or_default() += share;
                parts.push((i as u8, t, share));
            }
            parts[0].2 = rest;
            split = Some(parts.into_boxed_slice());
        }
        *value.entry((took[0].0, r.group)).or_default() += rest;
        for &(i, t) in &took {
            used[i] += t;
        }
        covered_out.push(Covered {
            tag: r.tag,
            units: covered,
            charge_micros: new,
            value_micros: v,
            first: took[0].0 as u8,
            split,
        });
    }
    Drawn {
        used,
        value: value.into_iter().map(|((i, g), v)| (i, g, v)).collect(),
        covered: covered_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(start: i64, id: &str, billed: u64, mask: u64) -> Draw {
        // 0.10 connect + 0.60 per 60 s
        Draw {
            start,
            id: RecordId::new(id.as_bytes()),
            billed,
            charge_micros: charge_micros(100_000_000, 600_000_000, 60, billed).unwrap(),
            rate_nanos: 600_000_000,
            per: 60,
            mask,
            group: 0,
            tag: (0, start as u64),
        }
    }

    #[test]
    fn straddling_record_pays_the_rest_without_connect_fee() {
        let mut r = vec![rec(2, "b", 120, 1), rec(1, "a", 60, 1)];
        let d = draw(&[100], &mut r);
        assert_eq!(d.used, vec![100]);
        // a: 60 s covered: value 0.70; b: 40 of 120 covered, 80 s at 0.01/s = 0.80,
        // value 1.30 - 0.80 = 0.50
        assert_eq!(d.value, vec![(0, 0, 1_200_000)]);
        let c: Vec<_> = d
            .covered
            .iter()
            .map(|c| (c.tag, c.units, c.charge_micros, c.took()))
            .collect();
        assert_eq!(
            c,
            vec![
                ((0, 1), 60, 0, vec![(0, 60, 700_000)]),
                ((0, 2), 40, 800_000, vec![(0, 40, 500_000)])
            ]
        );
    }

    #[test]
    fn two_allowances_split_in_proportion_first_takes_the_remainder() {
        // 0.60/60 s, 7 s covered 1 + 2 by two allowances: value 0.17 (0.10 + 0.07)
        let mut r = vec![rec(1, "a", 7, 0b11)];
        let d = draw(&[1, 100], &mut r);
        assert_eq!(d.used, vec![1, 6]);
        // 170000 * 6/7 = 145714.28 -> 145714; first: 24286
        assert_eq!(d.value, vec![(0, 0, 24_286), (1, 0, 145_714)]);
        assert_eq!(d.covered[0].took(), vec![(0, 1, 24_286), (1, 6, 145_714)]);
        assert_eq!(d.covered[0].charge_micros, 0);
    }

    #[test]
    fn ties_on_start_go_by_record_id_bytes() {
        let mut r = vec![rec(5, "b", 60, 1), rec(5, "B", 60, 1)];
        let d = draw(&[60], &mut r);
        assert_eq!(d.covered.len(), 1);
        assert_eq!((d.covered[0].tag, d.covered[0].units), ((0, 5), 60));
        assert_eq!(r[0].id.bytes(), b"B");
        assert_eq!(RecordId::new(&[b'x'; 40]).bytes().len(), 40);
    }
}
