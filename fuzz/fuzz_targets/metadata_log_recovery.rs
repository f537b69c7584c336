//! `cargo fuzz run metadata_log_recovery`: the `metadata_log_recovery` target of `nagare_fuzz::targets` (see there), under
//! the server's guard allocator. `scripts/fuzz.sh` builds all targets as one binary instead.
#![no_main]

#[global_allocator]
static ALLOC: nagare_fuzz::GuardedAlloc = nagare_fuzz::GuardedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| nagare_fuzz::targets::metadata_log_recovery::run(data));
