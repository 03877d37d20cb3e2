#!/bin/sh
# Run by `make check`: every cmocka unit binary, then the pytest integration
# suite, and one final line "N passed, M failed[, K skipped]" over both.
# Exits non-zero when anything failed, crashed, or pytest itself errored
# (collection errors, internal errors, interruption). pytest's "no tests
# collected" (exit code 5) is not a failure.
#
# Environment (set by Makefile.am): srcdir, builddir (absolute), UNIT_TESTS
# (paths relative to builddir). Optional: PYTEST_ARGS (extra pytest
# arguments, word-split), PYTHON (default /usr/bin/python3),
# UNIT_TIMEOUT (s per unit binary, default 300), INTEGRATION_TIMEOUT (s for
# the whole pytest run, default 3600).
set -u

: "${srcdir:?srcdir is not set}"
: "${builddir:?builddir is not set}"
UNIT_TESTS=${UNIT_TESTS-}
PYTEST_ARGS=${PYTEST_ARGS-}
PYTHON=${PYTHON:-/usr/bin/python3}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-300}
INTEGRATION_TIMEOUT=${INTEGRATION_TIMEOUT:-3600}

passed=0
failed=0
skipped=0
work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-check.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# run_limited SECONDS CMD...: run with a time limit when timeout(1) exists.
run_limited() {
	t=$1
	shift
	if command -v timeout >/dev/null 2>&1; then
		timeout -k 10 "$t" "$@"
	else
		"$@"
	fi
}

# ---- unit tests (cmocka) ----------------------------------------------------
cd "$builddir" || exit 2
for t in $UNIT_TESTS; do
	name=$(basename "$t")
	if [ ! -x "$t" ]; then
		echo "FAIL: $t: not built"
		failed=$((failed + 1))
		continue
	fi
	# cmocka writes its summary to stdout unless told otherwise
	run_limited "$UNIT_TIMEOUT" env -u CMOCKA_MESSAGE_OUTPUT "./$t" >"$work/unit.out" 2>&1
	rc=$?
	cat "$work/unit.out"
	p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test(s)\..*/\1/p' "$work/unit.out" |
		awk '{ s += $1 } END { print s + 0 }')
	f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test(s).*/\1/p' "$work/unit.out" |
		awk '{ s += $1 } END { print s + 0 }')
	if ! grep -q '^\[  PASSED  \]' "$work/unit.out"; then
		# no summary (it crashed): count the tests that finished OK
		p=$(grep -c '^\[       OK \]' "$work/unit.out")
	fi
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		# crashed, aborted (sanitizer), timed out, or failed without a summary
		echo "FAIL: $name exited with status $rc"
		f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	echo "$name: $p passed, $f failed"
done

# ---- integration tests (pytest) ------------------------------------------------
if [ -d "$srcdir/tests/integration" ]; then
	SLUICED=${SLUICED:-$builddir/sluiced}
	SLUICECTL=${SLUICECTL:-$builddir/sluicectl}
	export SLUICED SLUICECTL
	# no bytecode or cache files in the (possibly read-only) source tree
	PYTHONDONTWRITEBYTECODE=1
	export PYTHONDONTWRITEBYTECODE
	# shellcheck disable=SC2086
	{
		run_limited "$INTEGRATION_TIMEOUT" "$PYTHON" -m pytest -q -p no:cacheprovider \
			$PYTEST_ARGS "$srcdir/tests/integration" 2>&1
		echo $? >"$work/pytest.rc"
	} | tee "$work/pytest.out"
	rc=$(cat "$work/pytest.rc")
	# The summary is the last line naming counts, e.g.
	# "12 passed, 1 failed, 2 skipped, 1 error in 3.21s" (maybe in "=" rules).
	summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|errors?|deselected|xfailed|xpassed|warnings?)' \
		"$work/pytest.out" | tail -n 1)
	count() {
		n=$(echo "$summary" | tr ',' '\n' |
			sed -n "s/^[ =]*\([0-9][0-9]*\) $1\( .*\)*$/\1/p" | head -n 1)
		echo "${n:-0}"
	}
	int_pass=$(($(count passed) + $(count xpassed)))
	int_fail=$(($(count failed) + $(count errors) + $(count error)))
	int_skip=$(($(count skipped) + $(count xfailed)))
	case "$rc" in
	0 | 5) ;;
	1) [ "$int_fail" -gt 0 ] || int_fail=1 ;;
	*)
		echo "FAIL: pytest exited with status $rc"
		[ "$int_fail" -gt 0 ] || int_fail=1
		;;
	esac
	passed=$((passed + int_pass))
	failed=$((failed + int_fail))
	skipped=$((skipped + int_skip))
fi

if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
