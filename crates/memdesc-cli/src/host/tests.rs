use super::*;

#[test]
fn meminfo_gives_available_bytes() {
    let text = "MemTotal:       24567896 kB\nMemFree:         1234 kB\nMemAvailable:   20000000 kB\n";
    assert_eq!(parse_meminfo(text), Some(20_000_000 * 1024));
    assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    assert_eq!(parse_meminfo("MemAvailable: lots\n"), None);
}

#[test]
fn warns_only_above_what_the_host_has() {
    assert_eq!(warning(4 << 30, 8 << 30), None);
    assert_eq!(warning(8 << 30, 8 << 30), None);
    let w = warning(64 << 30, 20 << 30).expect("64 GiB on a 20 GiB host warns");
    assert!(w.contains("64.0 GiB") && w.contains("the 20.0 GiB this host has available"), "{w}");
}
