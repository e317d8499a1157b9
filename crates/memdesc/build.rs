//! Turns `MEMDESC_MUTANT=<name>` into `--cfg memdesc_mutant="<name>"` for this
//! crate only, so `cargo xtask mutants` rebuilds the core and not its
//! dependencies (RUSTFLAGS would rebuild loom for every mutant).
//!
//! The seed-004 variants (the historical "movable from the mapping word"
//! design, with or without barriers) also get `--cfg memdesc_historical`,
//! which compiles `migrate::historical` and the isolate step's historical
//! check for them.

/// Mutants that run the historical design of seed 004.
const HISTORICAL: &[&str] = &[
    "slab_counted_movable_word",
    "first_barrier_patch",
    "first_patch_rmb_before_pagemovable",
    "corrected_barrier_order",
];

fn main() {
    println!("cargo:rerun-if-env-changed=MEMDESC_MUTANT");
    if let Ok(name) = std::env::var("MEMDESC_MUTANT") {
        if !name.is_empty() {
            println!("cargo:rustc-cfg=memdesc_mutant=\"{name}\"");
        }
        if HISTORICAL.contains(&name.as_str()) {
            println!("cargo:rustc-cfg=memdesc_historical");
        }
    }
}
