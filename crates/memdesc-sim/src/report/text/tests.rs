use super::*;

#[test]
fn counts_get_thousands_separators() {
    assert_eq!(Count(0).to_string(), "0");
    assert_eq!(Count(999).to_string(), "999");
    assert_eq!(Count(1000).to_string(), "1,000");
    assert_eq!(Count(1_234_567).to_string(), "1,234,567");
}

#[test]
fn sizes_use_binary_units() {
    assert_eq!(Bytes(512).to_string(), "512 B");
    assert_eq!(Bytes(4 << 30).to_string(), "4.00 GiB");
    assert_eq!(Bytes(65 << 20).to_string(), "65.00 MiB");
}
