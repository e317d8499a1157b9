use super::*;
use clap::Parser;

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
}

#[test]
fn sizes_reject_nonsense() {
    for bad in ["", "G", "4X", "-1G", "1.2.3M", "0", "0M", "99999999999T"] {
        assert!(parse_size(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn durations_accept_units_and_bare_seconds() {
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
}

#[test]
fn durations_reject_nonsense() {
    for bad in ["", "s", "10x", "0s", "-1s", "1..2s"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn no_arguments_means_run_with_defaults() {
    let cli = Cli::try_parse_from(["memdesc"]).unwrap();
    assert!(cli.command.is_none());
    assert_eq!(cli.run.mem, 4 << 30);
    assert_eq!(cli.run.duration, Duration::from_secs(10));
    assert_eq!((cli.run.cpus, cli.run.seed, cli.run.json), (None, None, false));
}

#[test]
fn run_takes_every_option() {
    let line = "memdesc run --mem 512M --cpus 4 --duration 500ms --seed 7 --json";
    let cli = Cli::try_parse_from(line.split(' ')).unwrap();
    let Some(Command::Run(args)) = cli.command else { panic!("not run") };
    assert_eq!(args.mem, 512 << 20);
    assert_eq!(args.cpus, Some(4));
    assert_eq!(args.duration, Duration::from_millis(500));
    assert_eq!(args.seed, Some(7));
    assert!(args.json);
}

#[test]
fn options_without_subcommand_mean_run() {
    let cli = Cli::try_parse_from(["memdesc", "--json", "--cpus", "2"]).unwrap();
    assert!(cli.command.is_none());
    assert!(cli.run.json);
    assert_eq!(cli.run.cpus, Some(2));
}
