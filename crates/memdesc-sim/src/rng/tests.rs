use super::*;

#[test]
fn same_seed_same_stream() {
    let (mut a, mut b) = (Rng::stream(42, 3), Rng::stream(42, 3));
    assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
}

#[test]
fn streams_differ() {
    let (mut a, mut b) = (Rng::stream(42, 0), Rng::stream(42, 1));
    assert!((0..100).any(|_| a.next_u64() != b.next_u64()));
}

#[test]
fn below_stays_in_range_and_covers_it() {
    let mut rng = Rng::new(7);
    let mut seen = [false; 10];
    for _ in 0..1000 {
        let x = rng.below(10);
        assert!(x < 10);
        seen[x as usize] = true;
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn weighted_never_picks_zero_weight() {
    let mut rng = Rng::new(9);
    for _ in 0..1000 {
        assert_ne!(rng.weighted(&[5, 0, 5]), 1);
    }
}

#[test]
fn in_range_is_inclusive() {
    let mut rng = Rng::new(11);
    let mut seen = [false; 3];
    for _ in 0..300 {
        seen[(rng.in_range(4..=6) - 4) as usize] = true;
    }
    assert!(seen.iter().all(|&s| s));
}
