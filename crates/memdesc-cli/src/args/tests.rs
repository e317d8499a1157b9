use super::*;
use clap::Parser;
use memdesc_sim::{SimConfig, Workload};
use proptest::prelude::*;

/// Parses `line` as the process would (with the help notes attached).
fn parse_line(line: &str) -> Result<Cli, clap::Error> {
    let matches = command().try_get_matches_from(line.split_whitespace())?;
    Cli::from_arg_matches(&matches)
}

/// The error message clap prints for `line`.
fn error_of(line: &str) -> String {
    match parse_line(line) {
        Ok(cli) => panic!("{line:?} accepted: {cli:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn sizes_accept_bytes_and_binary_suffixes() {
    assert_eq!(parse_size("1048576"), Ok(1 << 20));
    assert_eq!(parse_size("512M"), Ok(512 << 20));
    assert_eq!(parse_size("4G"), Ok(4 << 30));
    assert_eq!(parse_size("4GiB"), Ok(4 << 30));
    assert_eq!(parse_size("4gb"), Ok(4 << 30));
    assert_eq!(parse_size("64k"), Ok(64 << 10));
    assert_eq!(parse_size("1.5G"), Ok(3 << 29));
    assert_eq!(parse_size("2T"), Ok(2 << 40));
    assert_eq!(parse_size("0000064M"), Ok(64 << 20));
}

#[test]
fn sizes_reject_nonsense() {
    for bad in ["", "G", "4X", "-1G", "1.2.3M", "99999999999T", "."] {
        assert!(parse_size(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn size_errors_say_what_is_wrong() {
    assert_eq!(parse_size("-1G"), Err("negative sizes are not allowed: -1G".to_owned()));
    assert_eq!(parse_size(""), Err("empty size (examples: 512M, 4G, 4GiB, 1048576)".to_owned()));
    assert!(parse_size("4X").unwrap_err().starts_with("unknown size unit \"X\" in \"4X\""));
    assert!(parse_size("G").unwrap_err().starts_with("\"G\" does not start with a number"));
    assert!(parse_size("1.2.3M").unwrap_err().starts_with("\"1.2.3M\" is not a size"));
    assert!(parse_size("99999999999T").unwrap_err().contains("is too large"));
    assert!(parse_size("123456789012345678901234567890").unwrap_err().contains("is too large"));
}

#[test]
fn mem_below_the_minimum_is_refused_with_the_minimum() {
    assert_eq!(parse_mem("64M"), Ok(MIN_RAM_BYTES));
    let expected = format!("is less than the minimum of {} MiB of simulated RAM", MIN_RAM_BYTES >> 20);
    for small in ["0", "1M", "63.9M", "65535K"] {
        let e = parse_mem(small).unwrap_err();
        assert!(e.contains(&expected), "{small}: {e}");
    }
    assert!(error_of("memdesc --mem 16M").contains("less than the minimum of 64 MiB"));
    assert!(error_of("memdesc --mem -1G").contains("negative sizes are not allowed: -1G"));
}

#[test]
fn durations_accept_units_and_bare_seconds() {
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
    assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
    assert_eq!(parse_duration("100ns"), Ok(Duration::from_nanos(100)));
    assert_eq!(parse_duration("0.0000001s"), Ok(Duration::from_nanos(100)));
    assert_eq!(parse_duration("18446744073709551615ns"), Ok(Duration::from_nanos(u64::MAX)));
}

#[test]
fn durations_reject_nonsense() {
    for bad in ["", "s", "10x", "0s", "-1s", "1..2s", "0.0000000001s", "5124096h"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn duration_errors_say_what_is_wrong() {
    // Issue §4: "--duration=-1" said "unknown duration unit".
    assert_eq!(parse_duration("-1"), Err("negative durations are not allowed: -1".to_owned()));
    assert_eq!(parse_duration("-0.5s"), Err("negative durations are not allowed: -0.5s".to_owned()));
    assert_eq!(parse_duration("0s"), Err("the duration must be more than zero".to_owned()));
    assert_eq!(parse_duration("0.000"), Err("the duration must be more than zero".to_owned()));
    assert_eq!(
        parse_duration("0.0000000001s"),
        Err("\"0.0000000001s\" is shorter than 1 ns, the finest duration there is".to_owned())
    );
    assert!(parse_duration("10x").unwrap_err().starts_with("unknown duration unit \"x\" in \"10x\""));
    assert!(parse_duration("1..2s").unwrap_err().starts_with("\"1..2s\" is not a duration"));
    assert!(parse_duration("5124096h").unwrap_err().contains("is too long"));
    assert!(parse_duration("").unwrap_err().starts_with("empty duration"));
    assert!(error_of("memdesc --duration=-1").contains("negative durations are not allowed: -1"));
    assert!(error_of("memdesc run --duration -1s").contains("negative durations are not allowed: -1s"));
}

#[test]
fn cpu_counts_say_what_is_wrong() {
    let max = MAX_WORKLOAD_CPUS;
    assert!(SimConfig::new(64 << 20, max, Duration::from_secs(1), 0).validate().is_ok());
    assert!(SimConfig::new(64 << 20, max + 1, Duration::from_secs(1), 0).validate().is_err());
    assert_eq!(parse_cpus("1"), Ok(1));
    assert_eq!(parse_cpus(&max.to_string()), Ok(max));
    assert_eq!(parse_cpus("0"), Err("at least one CPU is needed".to_owned()));
    assert_eq!(parse_cpus("-2"), Err("negative CPU counts are not allowed: -2".to_owned()));
    let too_many = format!(
        "{} CPUs requested; at most {max} (the others run the scanner, processes, pinners and splitter)",
        max + 1
    );
    assert_eq!(parse_cpus(&(max + 1).to_string()), Err(too_many));
    assert!(parse_cpus("99999999999").unwrap_err().contains("at most"));
    assert!(parse_cpus("two").unwrap_err().starts_with("\"two\" is not a CPU count"));
    assert!(parse_cpus("1.5").unwrap_err().contains("whole number"));
    assert!(error_of("memdesc --cpus -1").contains("negative CPU counts are not allowed"));
}

#[test]
fn seeds_say_what_is_wrong() {
    assert_eq!(parse_seed("0"), Ok(0));
    assert_eq!(parse_seed("18446744073709551615"), Ok(u64::MAX));
    assert!(parse_seed("-1").unwrap_err().starts_with("negative seeds are not allowed: -1"));
    assert!(parse_seed("18446744073709551616").unwrap_err().starts_with("seed 18446744073709551616 is too large"));
    assert!(parse_seed("0x10").unwrap_err().starts_with("\"0x10\" is not a seed"));
    assert!(error_of("memdesc --seed -7").contains("negative seeds are not allowed"));
}

#[test]
fn help_states_minimum_memory_rounding_and_exit_codes() {
    let help = command().render_long_help().to_string();
    let run_help = command().find_subcommand_mut("run").expect("run exists").render_long_help().to_string();
    for text in [&help, &run_help] {
        let min = format!("the least accepted is {} MiB", MIN_RAM_BYTES >> 20);
        let rounding = format!("rounded down to a multiple of {} MiB", RAM_GRANULE >> 20);
        assert!(text.contains(&min) && text.contains(&rounding), "{text}");
        // The option's own line states them too, in words that must agree.
        let arg =
            format!("At least {} MiB; rounded down to a multiple of {} MiB", MIN_RAM_BYTES >> 20, RAM_GRANULE >> 20);
        assert!(text.contains(&arg), "{text}");
        let cpus = format!("1 to {MAX_WORKLOAD_CPUS}");
        assert!(text.contains(&cpus), "{text}");
        // Every profile is listed, and the default named.
        for workload in Workload::ALL {
            assert!(text.contains(workload.name()), "profile {} not listed: {text}", workload.name());
        }
        assert!(text.contains("[default: mixed]"), "{text}");
        for (code, meaning) in [(0, "passed"), (1, "failed"), (2, "usage error"), (130, "interrupted by Ctrl-C")] {
            assert!(text.contains(&format!("\n  {code:<4} {meaning}")), "exit {code} not explained: {text}");
        }
    }
}

#[test]
fn no_arguments_means_run_with_defaults() {
    let cli = Cli::try_parse_from(["memdesc"]).unwrap();
    assert!(cli.command.is_none());
    assert_eq!(cli.run.mem, 4 << 30);
    assert_eq!(cli.run.duration, Duration::from_secs(10));
    assert_eq!((cli.run.cpus, cli.run.seed, cli.run.json), (None, None, false));
    assert_eq!(cli.run.profile, Workload::Mixed);
}

#[test]
fn profiles_are_parsed_by_name_and_others_refused_with_the_list() {
    assert_eq!(
        parse_line("memdesc run --profile gup").unwrap().command.and_then(|c| match c {
            Command::Run(a) => Some(a.profile),
            Command::Race(_) => None,
        }),
        Some(Workload::Gup)
    );
    assert_eq!(parse_line("memdesc --profile mixed --json").unwrap().run.profile, Workload::Mixed);
    let e = error_of("memdesc run --profile nope");
    assert!(e.contains("nope") && e.contains("mixed") && e.contains("gup"), "{e}");
}

#[test]
fn run_takes_every_option() {
    let cli = parse_line("memdesc run --mem 512M --cpus 4 --duration 500ms --seed 7 --json --profile gup").unwrap();
    let Some(Command::Run(args)) = cli.command else { panic!("not run") };
    assert_eq!(args.profile, Workload::Gup);
    assert_eq!(args.mem, 512 << 20);
    assert_eq!(args.cpus, Some(4));
    assert_eq!(args.duration, Duration::from_millis(500));
    assert_eq!(args.seed, Some(7));
    assert!(args.json);
}

#[test]
fn options_without_subcommand_mean_run() {
    let cli = parse_line("memdesc --json --cpus 2").unwrap();
    assert!(cli.command.is_none());
    assert!(cli.run.json);
    assert_eq!(cli.run.cpus, Some(2));
}

/// The configuration `line` (a `memdesc run …` command) asks for.
fn config_of(line: &str) -> SimConfig {
    let cli = parse_line(line).unwrap_or_else(|e| panic!("{line:?} refused: {e}"));
    let Some(Command::Run(args)) = cli.command else { panic!("{line:?} is not run") };
    let (cpus, seed) = (args.cpus.expect("the line names --cpus"), args.seed.expect("the line names --seed"));
    SimConfig::new(args.mem, cpus, args.duration, seed).with_workload(args.profile).with_hot_add(args.hot_add)
}

#[test]
fn repeat_line_of_a_sub_millisecond_run_parses_back() {
    // Issue §4: 0.0000001s printed as "--duration 0ms", which was refused.
    let config = config_of("memdesc run --mem 64M --cpus 1 --duration 0.0000001s --seed 3");
    assert_eq!(config.duration, Duration::from_nanos(100));
    assert_eq!(config_of(&config.repeat_command()), config);
}

proptest! {
    #[test]
    fn every_repeat_line_parses_back_to_its_config(
        mem in prop_oneof![MIN_RAM_BYTES..=u64::MAX, (64u64..=1 << 20).prop_map(|m| m << 20)],
        cpus in 1..=MAX_WORKLOAD_CPUS,
        nanos in prop_oneof![1..=u64::MAX, (1u64..=1_000_000).prop_map(|s| s * 1_000_000_000)],
        seed: u64,
        workload in prop::sample::select(Workload::ALL.to_vec()),
    ) {
        let config = SimConfig::new(mem, cpus, Duration::from_nanos(nanos), seed).with_workload(workload);
        let line = config.repeat_command();
        prop_assert_eq!(config_of(&line), config, "{}", line);
    }

    #[test]
    fn every_duration_in_any_unit_parses_to_its_nanoseconds(nanos in 1..=u64::MAX) {
        let exact = Duration::from_nanos(nanos);
        prop_assert_eq!(parse_duration(&format!("{nanos}ns")), Ok(exact));
        let secs = format!("{}.{:09}s", nanos / 1_000_000_000, nanos % 1_000_000_000);
        prop_assert_eq!(parse_duration(&secs), Ok(exact));
    }
}

#[test]
fn default_cpus_stay_within_what_cpus_accepts() {
    let cpus = default_cpus();
    assert_eq!(parse_cpus(&cpus.to_string()), Ok(cpus));
}

#[test]
fn race_takes_a_name_a_variant_and_json() {
    let cli = parse_line("memdesc race gup-fast-vs-split --variant historical --json").unwrap();
    let Some(Command::Race(args)) = cli.command else { panic!("not race") };
    assert_eq!(args.name, "gup-fast-vs-split");
    assert_eq!(args.variant, Some(VariantArg::Historical));
    assert!(args.json);
    let cli = parse_line("memdesc race list").unwrap();
    let Some(Command::Race(args)) = cli.command else { panic!("not race") };
    assert_eq!((args.name.as_str(), args.variant, args.json), ("list", None, false));
}

#[test]
fn race_refuses_unknown_names_and_variants_naming_the_valid_ones() {
    let error = error_of("memdesc race gup-fast-vs-nothing");
    assert!(error.contains("gup-fast-vs-split") && error.contains("gup-fast-vs-free-realloc"), "{error}");
    assert!(error.contains("list"), "{error}");
    let error = error_of("memdesc race gup-fast-vs-split --variant mutant");
    assert!(error.contains("historical") && error.contains("fixed"), "{error}");
    assert!(parse_line("memdesc race").is_err(), "a name is required");
}

#[test]
fn race_help_names_every_race_and_its_exit_codes() {
    let help = command().find_subcommand_mut("race").expect("race exists").render_long_help().to_string();
    for scenario in memdesc_sim::race::scenarios() {
        assert!(help.contains(scenario.name) && help.contains(scenario.summary), "{help}");
    }
    for (code, meaning) in
        [(0, "every variant replayed behaved as expected"), (1, "a variant did not"), (2, "usage error")]
    {
        assert!(help.contains(&format!("\n  {code:<4} {meaning}")), "exit {code} not explained: {help}");
    }
    let top = command().render_long_help().to_string();
    assert!(top.contains("race") && top.contains("Replay one of the seeds' races"), "{top}");
}
