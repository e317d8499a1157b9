//! Configuration: validation and the echo in the report.

use crate::run;
use memdesc_sim::{SimConfig, SimError};
use std::time::Duration;

#[test]
fn same_seed_echoes_the_same_config() {
    let config = SimConfig::new(64 << 20, 1, Duration::from_millis(200), 42);
    let (a, b) = (run(config.clone()), run(config.clone()));
    assert_eq!(a.config, config);
    assert_eq!(a.config, b.config);
    assert_eq!(serde_json::to_value(&a.config).ok(), serde_json::to_value(&b.config).ok());
}

#[test]
fn invalid_configs_are_refused() {
    let ok = SimConfig::new(64 << 20, 1, Duration::from_millis(100), 0);
    assert!(ok.validate().is_ok());
    let no_cpus = SimConfig { cpus: 0, ..ok.clone() };
    assert!(matches!(memdesc_sim::run(&no_cpus, |_| {}), Err(SimError::NoCpus)));
    let too_many = SimConfig { cpus: 64, ..ok.clone() };
    let max = memdesc_sim::MAX_WORKLOAD_CPUS;
    assert!(matches!(too_many.validate(), Err(SimError::TooManyCpus { cpus: 64, max: m }) if m == max));
    assert!(SimConfig { cpus: max, ..ok.clone() }.validate().is_ok());
    assert!(SimConfig { cpus: max + 1, ..ok.clone() }.validate().is_err());
    let tiny = SimConfig { ram_bytes: 1 << 20, ..ok };
    assert!(matches!(tiny.validate(), Err(SimError::TooLittleMemory { .. })));
}
