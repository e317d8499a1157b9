//! Turns `MEMDESC_MUTANT=<name>` into `--cfg memdesc_mutant="<name>"` for this
//! crate only, so `cargo xtask mutants` rebuilds the core and not its
//! dependencies (RUSTFLAGS would rebuild loom for every mutant).
fn main() {
    println!("cargo:rerun-if-env-changed=MEMDESC_MUTANT");
    if let Ok(name) = std::env::var("MEMDESC_MUTANT") {
        if !name.is_empty() {
            println!("cargo:rustc-cfg=memdesc_mutant=\"{name}\"");
        }
    }
}
