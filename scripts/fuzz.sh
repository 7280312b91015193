#!/usr/bin/env bash
# Fuzzes MCR's parsers of untrusted input with cargo-fuzz (libFuzzer, on the
# nightly toolchain): every target in fuzz/fuzz_targets, one after another,
# starting from the corpus kept in fuzz/corpus/<target>. Fails on the first
# crash, printing the reproducer and the command that replays it.
#
#   scripts/fuzz.sh                    every target for FUZZ_SECONDS (30) each (CI)
#   scripts/fuzz.sh --long             every target for FUZZ_RUNS (10,000,000)
#                                      executions each, with a table of figures
#   scripts/fuzz.sh [--long] TARGET... only these targets
#
# Builds, cargo-fuzz and the inputs found beyond the kept corpus live under
# $HOME/.cache/mcr (fuzz-target, tools, fuzz-corpus, fuzz-artifacts); the
# clone is never written. See docs/FUZZING.md.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[fuzz] %s\n' "$*"; }
fail() { printf '[fuzz] FAIL: %s\n' "$*" >&2; exit 1; }

CACHE="$HOME/.cache/mcr"
export PATH="$CACHE/tools/bin:$PATH"
SECONDS_EACH="${FUZZ_SECONDS:-30}"
RUNS="${FUZZ_RUNS:-10000000}"

long=false
targets=()
for arg in "$@"; do
  case "$arg" in
    --long) long=true ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) fail "unknown option $arg (see --help)" ;;
    *) targets+=("$arg") ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

# libFuzzer needs the nightly compiler's sanitizer-coverage flags; a machine
# without nightly cannot fuzz at all, so say so instead of failing the run.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  log "SKIPPED: no nightly Rust toolchain (rustup toolchain install nightly), which cargo-fuzz needs"
  exit 0
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  log "installing cargo-fuzz into $CACHE/tools"
  cargo install cargo-fuzz --locked --root "$CACHE/tools" --quiet
fi

# No sanitizer: the code under test is safe Rust, so what fuzzing finds is
# panics, failed assertions and arithmetic overflow (overflow checks and
# debug assertions stay on); without ASan each target runs about twice as
# many inputs per second.
BUILD=(cargo +nightly fuzz build --sanitizer none --target-dir "$CACHE/fuzz-target")
log "building the fuzz targets"
nice -n 10 "${BUILD[@]}"
BIN_DIR="$CACHE/fuzz-target/x86_64-unknown-linux-gnu/release"

summary=()
for t in "${targets[@]}"; do
  [ -f "fuzz/fuzz_targets/$t.rs" ] || fail "no fuzz target $t (fuzz/fuzz_targets/$t.rs)"
  found="$CACHE/fuzz-corpus/$t"
  artifacts="$CACHE/fuzz-artifacts/$t"
  mkdir -p "$found" "$artifacts" fuzz/corpus/"$t"
  if $long; then
    budget=(-runs="$RUNS")
    log "$t: $RUNS executions"
  else
    budget=(-max_total_time="$SECONDS_EACH")
    log "$t: ${SECONDS_EACH}s"
  fi
  out="$artifacts/last-run.log"
  # New inputs go to the first corpus directory only: the cache, so the
  # kept corpus stays as committed. -timeout makes a slow input a failure.
  set +e
  nice -n 10 "$BIN_DIR/$t" "${budget[@]}" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$found" "fuzz/corpus/$t" >"$out" 2>&1
  status=$?
  set -e
  if [ $status -ne 0 ]; then
    tail -n 40 "$out" >&2
    reproducer=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out" | tail -n 1)
    fail "$t crashed (exit $status); reproducer: ${reproducer:-none written, see $out}
  replay: ${BUILD[*]} && $BIN_DIR/$t ${reproducer:-<input>}"
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -n 1)
  summary+=("$(printf '%-12s %12s executions %8s exec/s' "$t" "${execs:-?}" "${rate:-?}")")
  log "$t: ${execs:-?} executions, ${rate:-?} exec/s, no crash"
done

log "every target ran without a crash:"
printf '  %s\n' "${summary[@]}"
