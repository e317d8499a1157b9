use super::*;
use proptest::prelude::*;

fn prot() -> impl Strategy<Value = Prot> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(write, user, accessed, dirty)| Prot {
        write,
        user,
        accessed,
        dirty,
    })
}

/// An entry this layer may write at `level`, with its pfn drawn from `pfn`.
fn valid_entry(level: Level) -> BoxedStrategy<Entry> {
    let pfn = 0..=MAX_ENTRY_PFN;
    let huge_pfn = (0..=MAX_ENTRY_PFN / HUGE_FRAMES).prop_map(|n| Pfn(n * HUGE_FRAMES));
    let none = Just(Entry::None).boxed();
    match level {
        Level::Pgd | Level::Pud => prop_oneof![none, pfn.prop_map(|p| Entry::Table(Pfn(p)))].boxed(),
        Level::Pmd => prop_oneof![
            none,
            pfn.prop_map(|p| Entry::Table(Pfn(p))),
            (huge_pfn.clone(), prot()).prop_map(|(pfn, prot)| Entry::Page { pfn, prot, huge: true }),
            (huge_pfn, any::<bool>(), any::<bool>()).prop_map(|(pfn, write, dirty)| Entry::Migration {
                pfn,
                write,
                dirty,
                huge: true
            }),
        ]
        .boxed(),
        Level::Pte => prop_oneof![
            none,
            (pfn.clone(), prot()).prop_map(|(p, prot)| Entry::Page { pfn: Pfn(p), prot, huge: false }),
            (pfn, any::<bool>(), any::<bool>()).prop_map(|(p, write, dirty)| Entry::Migration {
                pfn: Pfn(p),
                write,
                dirty,
                huge: false
            }),
        ]
        .boxed(),
    }
}

fn level() -> impl Strategy<Value = Level> {
    prop_oneof![Just(Level::Pgd), Just(Level::Pud), Just(Level::Pmd), Just(Level::Pte)]
}

proptest! {
    /// Every entry this layer writes at a level decodes back to itself.
    #[test]
    fn entries_round_trip((level, entry) in level().prop_flat_map(|l| (Just(l), valid_entry(l)))) {
        let word = entry.encode().unwrap();
        prop_assert_eq!(Entry::decode(word, level), entry);
    }

    /// Decoding is total and canonical: any word decodes to one entry, and
    /// a word that is not Unknown re-encodes to a word that decodes the same.
    #[test]
    fn decoding_is_total(word in any::<u64>(), level in level()) {
        let entry = Entry::decode(word, level);
        if let Entry::Unknown(w) = entry {
            prop_assert_eq!(w, word);
        } else {
            let again = entry.encode().unwrap();
            prop_assert_eq!(Entry::decode(again, level), entry);
        }
    }
}

#[test]
fn present_and_non_present_never_mix() {
    let page = Entry::Page { pfn: Pfn(0x1234), prot: Prot::READ_WRITE, huge: false };
    let migration = Entry::Migration { pfn: Pfn(0x1234), write: true, dirty: true, huge: false };
    assert!(page.is_present());
    assert!(!migration.is_present());
    assert_eq!(page.encode().unwrap() & PRESENT, PRESENT);
    assert_eq!(migration.encode().unwrap() & PRESENT, 0);
    assert_eq!(Entry::None.encode(), Ok(0));
    assert_eq!(Entry::decode(0, Level::Pmd), Entry::None);
}

#[test]
fn a_table_and_a_huge_leaf_are_told_apart_at_the_pmd() {
    let table = Entry::Table(Pfn(0x400)).encode().unwrap();
    let huge = Entry::Page { pfn: Pfn(0x400), prot: Prot::READ, huge: true }.encode().unwrap();
    assert_eq!(Entry::decode(table, Level::Pmd), Entry::Table(Pfn(0x400)));
    assert!(matches!(Entry::decode(huge, Level::Pmd), Entry::Page { huge: true, .. }));
    // Words this layer never writes at a level are kept, not guessed at.
    assert_eq!(Entry::decode(huge, Level::Pte), Entry::Unknown(huge));
    assert_eq!(Entry::decode(huge, Level::Pud), Entry::Unknown(huge));
    assert_eq!(Entry::decode(0b1000, Level::Pte), Entry::Unknown(0b1000));
}

#[test]
fn bad_pfns_are_refused() {
    let too_big = Pfn(MAX_ENTRY_PFN + 1);
    assert_eq!(Entry::Table(too_big).encode(), Err(EntryError::PfnTooLarge(too_big)));
    let misaligned = Pfn(HUGE_FRAMES + 1);
    assert_eq!(
        Entry::Page { pfn: misaligned, prot: Prot::READ, huge: true }.encode(),
        Err(EntryError::MisalignedHuge(misaligned))
    );
    assert_eq!(
        Entry::Migration { pfn: misaligned, write: false, dirty: false, huge: true }.encode(),
        Err(EntryError::MisalignedHuge(misaligned))
    );
}

#[test]
fn levels_index_a_virtual_address() {
    let vaddr: u64 = (3 << 39) | (5 << 30) | (7 << 21) | (9 << 12) | 0x123;
    let indices: [usize; 4] = Level::ALL.map(|l| l.index(vaddr));
    assert_eq!(indices, [3, 5, 7, 9]);
    assert_eq!(Level::Pgd.next(), Some(Level::Pud));
    assert_eq!(Level::Pte.next(), None);
}
