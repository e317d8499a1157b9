use super::*;

#[test]
fn sizes_print_in_the_largest_exact_unit() {
    assert_eq!(size_arg(4 << 30), "4G");
    assert_eq!(size_arg(512 << 20), "512M");
    assert_eq!(size_arg(2 << 40), "2T");
    assert_eq!(size_arg((64 << 20) + (1 << 10)), "65537K");
    assert_eq!(size_arg(12345), "12345");
    assert_eq!(size_arg(0), "0");
}

#[test]
fn durations_print_in_the_largest_exact_unit() {
    assert_eq!(duration_arg(Duration::from_secs(10)), "10s");
    assert_eq!(duration_arg(Duration::from_secs(120)), "2m");
    assert_eq!(duration_arg(Duration::from_secs(7200)), "2h");
    assert_eq!(duration_arg(Duration::from_millis(1500)), "1500ms");
    assert_eq!(duration_arg(Duration::from_micros(2)), "2us");
    // Regression: 0.0000001s was printed as "0ms", which the CLI refuses.
    assert_eq!(duration_arg(Duration::from_nanos(100)), "100ns");
    assert_eq!(duration_arg(Duration::from_nanos(u64::MAX)), "18446744073709551615ns");
}

#[test]
fn repeat_command_names_every_option() {
    let config = SimConfig::new(96 << 20, 3, Duration::from_millis(250), 77);
    assert_eq!(config.repeat_command(), "memdesc run --mem 96M --cpus 3 --duration 250ms --seed 77");
}
