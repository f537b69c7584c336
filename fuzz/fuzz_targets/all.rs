//! Every fuzz target in one binary (what `scripts/fuzz.sh` builds): `NAGARE_FUZZ_TARGET`
//! names the target this run fuzzes (`request`, `record_batch`, ...).
#![no_main]

use std::sync::OnceLock;

#[global_allocator]
static ALLOC: nagare_fuzz::GuardedAlloc = nagare_fuzz::GuardedAlloc;

fn target() -> fn(&[u8]) {
    static TARGET: OnceLock<fn(&[u8])> = OnceLock::new();
    *TARGET.get_or_init(|| {
        let name = std::env::var("NAGARE_FUZZ_TARGET").unwrap_or_default();
        match nagare_fuzz::targets::by_name(&name) {
            Some(f) => f,
            None => {
                let names: Vec<&str> = nagare_fuzz::targets::ALL.iter().map(|(n, _)| *n).collect();
                eprintln!("NAGARE_FUZZ_TARGET={name:?}: not one of {names:?}");
                std::process::exit(2)
            }
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| target()(data));
