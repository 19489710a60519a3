//! Which unit a run's state row stands for. The run state in the target (and a dump's
//! manifest, for a resumed dump) records each unit by identity and typed values only:
//! the source relation's OID, the unit's kind, its range of pages, sizes. Whatever becomes
//! SQL — names, columns, a configuration table's condition — is rebuilt from the source's
//! catalog (or, for a restore, from the dump's manifest, whose names tsxfer quotes), so
//! whoever can write to the target cannot make tsxfer run SQL of theirs on the source.

use std::collections::{BTreeMap, HashMap};

use crate::plan::{CopyUnit, MAX_PARTS, Pages, UnitKind};

/// A unit as the run state records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedUnit {
    pub id: i32,
    pub oid: u32,
    pub kind: UnitKind,
    pub pages: Option<Pages>,
    pub into_hypertable: bool,
    pub estimated_bytes: i64,
}

impl RecordedUnit {
    /// What the state records of `unit`, numbered `id`.
    pub fn of(id: i32, unit: &CopyUnit) -> RecordedUnit {
        RecordedUnit {
            id,
            oid: unit.oid,
            kind: unit.kind,
            pages: unit.pages,
            into_hypertable: unit.into_hypertable,
            estimated_bytes: unit.estimated_bytes,
        }
    }
}

/// The run's units by their id in the run state.
#[derive(Debug, Clone, Default)]
pub struct UnitBook {
    units: BTreeMap<i32, CopyUnit>,
}

impl UnitBook {
    /// A new run's units, numbered from 1 in the order given (the state's ids).
    pub fn numbered(units: &[CopyUnit]) -> UnitBook {
        UnitBook {
            units: (1..).zip(units.iter().cloned()).collect(),
        }
    }

    /// The units `recorded` names, each rebuilt from `known` (the source's catalog as read
    /// now, or a dump's manifest): the unit of the same relation and kind, with the
    /// recorded range of pages and sizes. Fails, naming the first problem, when a
    /// recorded unit has no such relation or its values do not hold together.
    pub fn rebuild(recorded: &[RecordedUnit], known: &[CopyUnit]) -> Result<UnitBook, String> {
        let mut by_identity: HashMap<(u32, UnitKind), &CopyUnit> = HashMap::new();
        for u in known {
            by_identity.entry((u.oid, u.kind)).or_insert(u);
        }
        check_parts(recorded)?;
        let mut units = BTreeMap::new();
        for r in recorded {
            let Some(base) = by_identity.get(&(r.oid, r.kind)) else {
                return Err(format!(
                    "unit {} names a {} with OID {} that the source does not have (any more)",
                    r.id,
                    r.kind.label(),
                    r.oid
                ));
            };
            let mut unit = (*base).clone();
            if r.pages.is_some() && !unit.can_be_split() {
                return Err(format!(
                    "unit {} gives a range of pages to {}, which is not copied in parts",
                    r.id,
                    unit.relation()
                ));
            }
            if r.into_hypertable && !matches!(r.kind, UnitKind::Table | UnitKind::Partition) {
                return Err(format!(
                    "unit {} makes the {} {} a hypertable",
                    r.id,
                    r.kind.label(),
                    unit.relation()
                ));
            }
            if r.estimated_bytes < 0 {
                return Err(format!("unit {} has a negative size", r.id));
            }
            unit.pages = r.pages;
            unit.into_hypertable = r.into_hypertable;
            unit.estimated_bytes = r.estimated_bytes;
            if units.insert(r.id, unit).is_some() {
                return Err(format!("unit {} is recorded twice", r.id));
            }
        }
        Ok(UnitBook { units })
    }

    pub fn get(&self, id: i32) -> Option<&CopyUnit> {
        self.units.get(&id)
    }

    /// Every unit, in id order.
    pub fn units(&self) -> impl Iterator<Item = &CopyUnit> {
        self.units.values()
    }
}

/// The parts of each table copied in parts cover its pages exactly once: parts 1 to N,
/// each starting where the one before ends, the first from page 0 and the last with no
/// end (so a tampered range can neither copy a page twice nor leave one out).
fn check_parts(recorded: &[RecordedUnit]) -> Result<(), String> {
    let mut tables: HashMap<(u32, UnitKind), Vec<Pages>> = HashMap::new();
    for r in recorded {
        if let Some(p) = r.pages {
            tables.entry((r.oid, r.kind)).or_default().push(p);
        }
    }
    for ((oid, _), mut parts) in tables {
        parts.sort_by_key(|p| p.part);
        let n = parts[0].parts;
        let bad = |why: &str| Err(format!("the parts of the table with OID {oid} {why}"));
        if !(2..=MAX_PARTS).contains(&n) || parts.len() != n as usize {
            return bad("are not a whole set");
        }
        let mut next_from = 0;
        for (i, p) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            if p.parts != n || p.part != i as u32 + 1 || p.from != next_from {
                return bad("do not follow each other");
            }
            match p.to {
                Some(to) if !last && to > p.from => next_from = to,
                None if last => {}
                _ => return bad("do not follow each other"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(oid: u32, name: &str) -> CopyUnit {
        let mut u = CopyUnit::table(oid, "s".into(), name.into(), UnitKind::Table);
        u.columns = vec!["a".into()];
        u.estimated_bytes = 1000;
        u
    }

    fn recorded(id: i32, oid: u32, pages: Option<Pages>) -> RecordedUnit {
        RecordedUnit {
            id,
            oid,
            kind: UnitKind::Table,
            pages,
            into_hypertable: false,
            estimated_bytes: 10,
        }
    }

    fn part(part: u32, parts: u32, from: u32, to: Option<u32>) -> Option<Pages> {
        Some(Pages {
            part,
            parts,
            from,
            to,
        })
    }

    #[test]
    fn a_new_run_numbers_its_units_from_one() {
        let book = UnitBook::numbered(&[table(5, "a"), table(6, "b")]);
        assert_eq!(book.get(1).map(|u| u.oid), Some(5));
        assert_eq!(book.get(2).map(|u| u.oid), Some(6));
        assert!(book.get(3).is_none());
    }

    #[test]
    fn recorded_units_are_rebuilt_from_what_the_catalog_says_not_from_the_state() {
        let mut config = CopyUnit::table(9, "ext".into(), "conf".into(), UnitKind::ExtensionConfig);
        config.filter = Some("WHERE NOT builtin".into());
        let known = vec![table(5, "a"), config];
        let book = UnitBook::rebuild(
            &[
                recorded(1, 5, part(1, 2, 0, Some(40))),
                recorded(2, 5, part(2, 2, 40, None)),
                RecordedUnit {
                    kind: UnitKind::ExtensionConfig,
                    ..recorded(3, 9, None)
                },
            ],
            &known,
        )
        .expect("rebuilds");
        let first = book.get(1).expect("unit 1");
        assert_eq!(first.name, "a");
        assert_eq!(first.pages.map(|p| p.to), Some(Some(40)));
        assert_eq!(first.estimated_bytes, 10);
        assert_eq!(
            book.get(3).and_then(|u| u.filter.clone()).as_deref(),
            Some("WHERE NOT builtin")
        );
    }

    #[test]
    fn a_relation_the_source_does_not_have_or_of_another_kind_is_refused() {
        let known = vec![table(5, "a")];
        assert!(UnitBook::rebuild(&[recorded(1, 6, None)], &known).is_err());
        let chunk = RecordedUnit {
            kind: UnitKind::Chunk,
            ..recorded(1, 5, None)
        };
        assert!(UnitBook::rebuild(&[chunk], &known).is_err());
    }

    #[test]
    fn parts_must_cover_their_table_once() {
        let known = vec![table(5, "a")];
        let rebuild = |parts: &[Option<Pages>]| {
            let rec: Vec<RecordedUnit> = parts
                .iter()
                .enumerate()
                .map(|(i, p)| recorded(i as i32 + 1, 5, *p))
                .collect();
            UnitBook::rebuild(&rec, &known)
        };
        assert!(rebuild(&[part(1, 2, 0, Some(9)), part(2, 2, 9, None)]).is_ok());
        // overlapping, with a gap, missing a part, an end on the last part, a start on
        // the first, an empty range, a part alone
        assert!(rebuild(&[part(1, 2, 0, Some(9)), part(2, 2, 5, None)]).is_err());
        assert!(rebuild(&[part(1, 2, 0, Some(9)), part(2, 2, 12, None)]).is_err());
        assert!(rebuild(&[part(1, 3, 0, Some(9)), part(2, 3, 9, None)]).is_err());
        assert!(rebuild(&[part(1, 2, 0, Some(9)), part(2, 2, 9, Some(20))]).is_err());
        assert!(rebuild(&[part(1, 2, 3, Some(9)), part(2, 2, 9, None)]).is_err());
        assert!(rebuild(&[part(1, 2, 0, Some(0)), part(2, 2, 0, None)]).is_err());
        assert!(rebuild(&[part(1, 1, 0, None)]).is_err());
    }

    #[test]
    fn pages_on_a_table_with_a_condition_or_a_hypertable_flag_on_a_chunk_are_refused() {
        let mut config = table(5, "conf");
        config.kind = UnitKind::ExtensionConfig;
        config.filter = Some("WHERE true".into());
        let rec = |pages| RecordedUnit {
            kind: UnitKind::ExtensionConfig,
            ..recorded(1, 5, pages)
        };
        assert!(UnitBook::rebuild(&[rec(part(1, 2, 0, Some(3)))], &[config.clone()]).is_err());
        let mut chunk = table(7, "_hyper_1_1_chunk");
        chunk.kind = UnitKind::Chunk;
        let flagged = RecordedUnit {
            kind: UnitKind::Chunk,
            into_hypertable: true,
            ..recorded(1, 7, None)
        };
        assert!(UnitBook::rebuild(&[flagged], &[chunk]).is_err());
    }
}
