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

#[test]
fn repeat_command_names_a_profile_other_than_the_default() {
    let config = SimConfig::new(96 << 20, 2, Duration::from_secs(1), 5).with_workload(Workload::Gup);
    assert_eq!(config.repeat_command(), "memdesc run --profile gup --mem 96M --cpus 2 --duration 1s --seed 5");
    assert_eq!(Workload::from_name("gup"), Some(Workload::Gup));
    assert_eq!(Workload::from_name("mixed"), Some(Workload::Mixed));
    assert_eq!(Workload::from_name("slab"), Some(Workload::Slab));
    assert_eq!(Workload::from_name("bogus"), None);
}

#[test]
fn layouts_give_every_role_a_cpu_of_its_own_within_the_node() {
    let mixed = SimConfig::new(96 << 20, 2, Duration::from_secs(1), 5).layout();
    assert_eq!((mixed.allocators, mixed.scanner, mixed.processes, mixed.pinners, mixed.splitters), (2, 2, 2, 2, 1));
    assert_eq!((mixed.first_process(), mixed.first_pinner(), mixed.first_splitter()), (3, 5, 7));
    assert_eq!((mixed.first_slab_cpu(), mixed.first_slab_reader(), mixed.nr_cpus()), (8, 10, 11));
    let slab = SimConfig::new(96 << 20, 3, Duration::from_secs(1), 5).with_workload(Workload::Slab).layout();
    assert_eq!((slab.allocators, slab.scanner, slab.processes, slab.pinners, slab.splitters), (0, 0, 0, 0, 0));
    assert_eq!((slab.first_slab_cpu(), slab.slab_cpus, slab.first_slab_reader(), slab.nr_cpus()), (1, 3, 4, 6));
    let gup = SimConfig::new(96 << 20, 2, Duration::from_secs(1), 5).with_workload(Workload::Gup).layout();
    assert_eq!((gup.allocators, gup.scanner, gup.first_process(), gup.nr_cpus()), (0, 0, 1, 6));
    assert_eq!((gup.slab_cpus, gup.slab_readers), (0, 0));
    for workload in Workload::ALL {
        let largest = SimConfig::new(96 << 20, MAX_WORKLOAD_CPUS, Duration::from_secs(1), 5).with_workload(workload);
        assert!(largest.validate().is_ok());
        assert!(largest.layout().nr_cpus() as usize <= memdesc::buddy::MAX_CPUS, "{:?}", largest.layout());
    }
    let too_many = SimConfig::new(96 << 20, MAX_WORKLOAD_CPUS + 1, Duration::from_secs(1), 5);
    assert!(too_many.validate().is_err());
}
