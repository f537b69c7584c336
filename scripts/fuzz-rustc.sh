#!/bin/sh
# RUSTC_WRAPPER of scripts/fuzz.sh: adds the sanitizer-coverage instrumentation (the flags
# cargo-fuzz passes) to Nagare's own crates and kafka-protocol only. Instrumenting the other
# third-party crates (tokio, rustls, the codecs...) costs build time and feeds the fuzzer
# coverage noise from code the targets do not test; build scripts and proc macros must not be
# instrumented at all (their crate names never match).
rustc="$1"
shift
case " $* " in
*" --crate-name nagare_"* | *" --crate-name kafka_protocol "*)
  exec "$rustc" "$@" \
    -Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing
  ;;
esac
exec "$rustc" "$@"
