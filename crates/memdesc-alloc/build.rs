//! Turns `MEMDESC_ALLOC_MUTANT=<name>` into `--cfg memdesc_mutant="<name>"`
//! for this crate only, as the core's build script does with
//! `MEMDESC_MUTANT`: `cargo xtask mutants` rebuilds just this crate for one
//! of its mutants (a separate variable, so the core is not rebuilt too).

fn main() {
    println!("cargo:rerun-if-env-changed=MEMDESC_ALLOC_MUTANT");
    if let Ok(name) = std::env::var("MEMDESC_ALLOC_MUTANT") {
        if !name.is_empty() {
            println!("cargo:rustc-cfg=memdesc_mutant=\"{name}\"");
        }
    }
}
