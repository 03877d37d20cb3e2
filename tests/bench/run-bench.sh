#!/usr/bin/env bash
# make bench: sluiced next to its peers through the shared harness
# (../shared/bench/run.sh), same injector, sink, counters and CPU accounting.
#   SYSTEMS   what to run (default: loopback, sluiced unsigned and DKIM, postfix, postfix-dkim, haraka, haraka-dkim)
#   N SIZE    messages and body size (default 20000 8192)
#   N_BIG SIZE_BIG   the large-message row (default 5000 102400, DKIM-signed)
#   SCALE=0   skip the big-queue rows (tests/bench/scale-bench.sh);
#   SCALE_1M=0 skip only the 1,000,000 x 1 row (the longest: ~10 min, 1M spool files)
#   SUPPRESS  0 skips the suppression-list scenario (suppress-bench.sh), run last
#   CAMPAIGN  0 skips the campaign scenario (campaign-bench.sh: 1M recipients), run last
# Results: one line per system on stdout, TSV and logs under /tmp/peerbench/results.
# First, the bandit simulation (tests/bench/bandit-sim.c; BANDIT_SIM_ARGS passes options),
# then the DKIM signing cost (tests/bench/dkim-bench.c).
set -euo pipefail
srcdir=${srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${builddir:-$srcdir/build}
harness=${BENCH_HARNESS:-$srcdir/../shared/bench/run.sh}

# Variant choice (Thompson sampling): a simulation, no daemon, no root.
#   BENCH=bandit runs only this part.
if [ "${BENCH:-}" != dkim ]; then
	"$builddir/tests/bench/bandit-sim" ${BANDIT_SIM_ARGS:-}
	[ "${BENCH:-}" = bandit ] && exit 0
	echo
fi

# DKIM signing alone (tests/bench/dkim-bench.c): us per RSA-2048 signature of
# an 8 KB message next to the bare RSA operation (medians of per-call CPU
# time; overhead_us is all that signing adds to RSA). BENCH=dkim runs only this.
"$builddir/tests/bench/dkim-bench" 3000 8192 1 rsa
[ "${BENCH:-}" = dkim ] && exit 0
echo

[ -x "$harness" ] || { echo "bench: harness not found at $harness (set BENCH_HARNESS)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench: run as root (the harness uses cgroups)" >&2; exit 1; }
N=${N:-20000}
SIZE=${SIZE:-8192}
export SLUICED=$builddir/sluiced
start="$srcdir/tests/bench/sluiced-bench.sh"
peers=${SYSTEMS:-"loopback postfix postfix-dkim haraka haraka-dkim"}

N_BIG=${N_BIG:-5000}
SIZE_BIG=${SIZE_BIG:-102400}
export SLUICECTL=$builddir/sluicectl

run_custom() {  # run_custom NAME DKIM [VERP [N SIZE]]
	CUSTOM_NAME=$1 CUSTOM_DKIM=$2 BENCH_DKIM=$2 BENCH_VERP=${3:-0} SYSTEMS=custom \
	    CUSTOM_START="$start" "$harness" "${4:-$N}" "${5:-$SIZE}"
}
echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cores; N=$N SIZE=$SIZE"
run_custom sluiced 0
run_custom sluiced-dkim 1
run_custom sluiced-dkim-100k 1 0 "$N_BIG" "$SIZE_BIG"
run_custom sluiced-verp 0 1
SLUICED=$builddir/sluiced "$srcdir/tests/bench/sites-bench.sh" "$N" 1000 5 "$SIZE"   # scheduler cost: MX routing to 5 provider sites
if [ "${SCALE:-1}" = 1 ]; then
	# 1,000,000 queued recipients, delivery held: RSS, `sluicectl queue`, restart
	"$srcdir/tests/bench/scale-bench.sh" 10000 100 8192
	if [ "${SCALE_1M:-1}" = 1 ]; then
		"$srcdir/tests/bench/scale-bench.sh" 1000000 1 1024
	fi
fi
[ -n "$peers" ] && SYSTEMS="$peers" "$harness" "$N" "$SIZE"
if [ "${SUPPRESS:-1}" != 0 ]; then
	N=${SUPPRESS_N:-1000000} srcdir="$srcdir" builddir="$builddir" "$srcdir/tests/bench/suppress-bench.sh"
fi
if [ "${CAMPAIGN:-1}" != 0 ]; then
	N=${CAMPAIGN_N:-1000000} srcdir="$srcdir" builddir="$builddir" "$srcdir/tests/bench/campaign-bench.sh"
fi
