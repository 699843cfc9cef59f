#!/usr/bin/env bash
# Runs the core benchmarks (root package) and the peer comparison (this
# module), summarises both with benchstat and prints one table: median
# ns/op with its 95% interval, B/op, allocs/op, the per-unit metric if the
# benchmark reports one, and, for the peer comparison, deferred's time as a
# multiple of each implementation's (below 1: deferred is faster).
#
# Usage: bench/run.sh [-count N] [-benchtime T] [-bench REGEXP] [-out DIR] [-reuse]
# Defaults: -count 6 (benchstat needs 6 for its intervals), -benchtime
# 500ms, -bench . ; the raw outputs go to DIR (default: a new temp dir).
# COUNT, BENCHTIME, BENCH and OUT in the environment set the same. -reuse
# tabulates the raw outputs already in DIR instead of running again.
# About 3.5 minutes on a 2-core machine.
set -euo pipefail

count=${COUNT:-6}
benchtime=${BENCHTIME:-500ms}
filter=${BENCH:-.}
out=${OUT:-}
reuse=
while [ $# -gt 0 ]; do
	case $1 in
	-count) count=$2; shift 2 ;;
	-benchtime) benchtime=$2; shift 2 ;;
	-bench) filter=$2; shift 2 ;;
	-out) out=$2; shift 2 ;;
	-reuse) reuse=1; shift ;;
	*) echo "usage: $0 [-count N] [-benchtime T] [-bench REGEXP] [-out DIR] [-reuse]" >&2; exit 2 ;;
	esac
done

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
[ -n "$out" ] || out=$(mktemp -d "${TMPDIR:-/tmp}/deferred-bench.XXXXXX")
mkdir -p "$out"

# The version listed for golang.org/x/perf in the project's package notes;
# go run fetches it once into the module cache.
benchstat="go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"

echo "== machine"
echo "cpus:       $(nproc)"
echo "cpu model:  $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "go:         $(go version)"
echo "load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min; other work on the machine skews results)"
echo "settings:   -count $count -benchtime $benchtime -bench '$filter'; raw output in $out"
echo

if [ -z "$reuse" ]; then
	start=$SECONDS
	echo "== running core benchmarks (root package)" >&2
	(cd "$root" && go test -run '^$' -bench "$filter" -benchmem -count "$count" -benchtime "$benchtime" .) >"$out/core.txt"
	echo "== running peer benchmarks (bench module)" >&2
	(cd "$here" && go test -run '^$' -bench "$filter" -benchmem -count "$count" -benchtime "$benchtime" .) >"$out/peers.txt"
	echo "== benchmarks took $((SECONDS - start))s" >&2
elif [ -n "$reuse" ] && [ ! -s "$out/core.txt" ]; then
	echo "-reuse: no core.txt in $out" >&2
	exit 2
fi

# benchstat runs inside this module so that the root go.mod gains nothing.
cd "$here"
$benchstat -format csv "$out/core.txt" >"$out/core.csv" 2>/dev/null
$benchstat -format csv "$out/peers.txt" >"$out/peers.csv" 2>/dev/null
$benchstat "$out/core.txt" >"$out/core.benchstat.txt" 2>&1 || true
$benchstat -col /impl "$out/peers.txt" >"$out/peers.benchstat.txt" 2>&1 || true

# table reads benchstat's CSV (one block per unit: a header ",UNIT,CI" and
# rows "NAME,MEDIAN,CI") and prints one line per benchmark.
table() {
	awk -F, -v title="$1" '
	function num(x) { # a count: whole numbers without exponent
		if (x == "") return ""
		if (x == int(x)) return sprintf("%d", x)
		return sprintf("%.1f", x)
	}
	function ns(sec) { # seconds as a short ns figure
		sec *= 1e9
		if (sec >= 100) return sprintf("%.0f", sec)
		return sprintf("%.3g", sec)
	}
	$1 == "" && NF >= 3 && $3 == "CI" { unit = $2; next }
	NF < 2 || $1 == "" || $1 == "geomean" || $1 ~ /^(goos|goarch|pkg|cpu):/ { next }
	{
		name = $1
		sub(/-[0-9]+$/, "", name) # the GOMAXPROCS suffix
		if (!(name in seen)) { seen[name] = 1; order[++n] = name }
		val[name, unit] = $2; ci[name, unit] = $3
		if (unit ~ /sec\// && unit != "sec/op") per[name] = per[name] " " unit
	}
	END {
		# deferred time per benchmark, for the ratios
		for (i = 1; i <= n; i++) {
			split(order[i], p, "/impl=")
			if (p[2] == "deferred") ours[p[1]] = val[order[i], "sec/op"]
		}
		printf "\n== %s\n", title
		printf "%-26s %-10s %11s %5s %9s %9s %13s  %s\n",
			"benchmark", "impl", "ns/op", "±", "B/op", "allocs/op", "deferred/impl", "per unit"
		last = ""
		for (i = 1; i <= n; i++) {
			name = order[i]
			k = split(name, p, "/impl=")
			bench = p[1]; im = (k > 1) ? p[2] : ""
			if (k > 1 && bench != last && last != "") print ""
			last = bench
			unitcol = ""
			m = split(per[name], us, " ")
			for (j = 1; j <= m; j++) {
				u = us[j]; sub(/sec\//, "ns/", u)
				unitcol = unitcol (j > 1 ? ", " : "") ns(val[name, us[j]]) " " u
			}
			ratio = ""
			if (k > 1 && im != "deferred" && (bench in ours) && val[name, "sec/op"] > 0)
				ratio = sprintf("%.3gx", ours[bench] / val[name, "sec/op"])
			printf "%-26s %-10s %11s %5s %9s %9s %13s  %s\n",
				bench, im, ns(val[name, "sec/op"]), ci[name, "sec/op"],
				num(val[name, "B/op"]), num(val[name, "allocs/op"]), ratio, unitcol
		}
	}' "$2"
}

# targets checks the performance targets of issue 5 against the medians.
targets() {
	awk -F, '
	FNR == 1 { src = (FILENAME ~ /peers/) ? "peers:" : "" }
	$1 == "" && NF >= 3 && $3 == "CI" { unit = $2; next }
	NF < 2 || $1 == "" || $1 == "geomean" { next }
	{ name = $1; sub(/-[0-9]+$/, "", name); v[src name, unit] = $2 }
	function has(k, u) { return ((k, u) in v) }
	function info(what) { printf "    %s\n", what }
	function check(what, got, limit, fmtg) {
		printf "  %-58s %-16s %s\n", what, sprintf(fmtg, got) " <= " sprintf(fmtg, limit), (got <= limit) ? "met" : "NOT met"
	}
	END {
		print "\n== targets (issue 5), from the medians above"
		if (has("Chain3", "allocs/op")) check("Chain3 allocs/op", v["Chain3", "allocs/op"], 2, "%g")
		if (has("peers:Chain3/impl=deferred", "sec/op") && has("peers:Chain3/impl=gochan", "sec/op"))
			check("Chain3 time / goroutine+channel time (peers)", v["peers:Chain3/impl=deferred", "sec/op"] / v["peers:Chain3/impl=gochan", "sec/op"], 0.2, "%.2f")
		if (has("Chain3", "sec/op") && has("GoroutineChannel3", "sec/op"))
			check("Chain3 / GoroutineChannel3 time (core)", v["Chain3", "sec/op"] / v["GoroutineChannel3", "sec/op"], 0.2, "%.2f")
		if (has("Nested3", "allocs/op")) check("Nested3 allocs/op", v["Nested3", "allocs/op"], 6, "%g")
		if (has("FailurePath", "sec/op") && has("Chain3", "sec/op"))
			check("FailurePath time / Chain3 time", v["FailurePath", "sec/op"] / v["Chain3", "sec/op"], 3, "%.2f")
		# Gather over 1,000 pending inputs: 60 ns an input on the machine
		# where the issue measured goroutine+channel at 450 ns. The issue
		# sets its targets as ratios in one run, so the check is that ratio
		# to GoroutineChannel3 here; the absolute figure follows, for the
		# record (it moves with the load of this shared machine).
		if (has("Gather1000Pending", "sec/input") && has("GoroutineChannel3", "sec/op"))
			check("Gather1000Pending ns/input / GoroutineChannel3 ns (60/450)", v["Gather1000Pending", "sec/input"] / v["GoroutineChannel3", "sec/op"], 60 / 450, "%.3f")
		if (has("Gather1000Pending", "sec/input"))
			info(sprintf("(absolute: %.0f ns/input, Gather + the inputs firing; 60 beside 450 in the issue)", v["Gather1000Pending", "sec/input"] * 1e9))
		if (has("Gather1000", "sec/input") && has("GoroutineChannel3", "sec/op"))
			check("  with the inputs made in the loop too (Gather1000)", v["Gather1000", "sec/input"] / v["GoroutineChannel3", "sec/op"], 60 / 450, "%.3f")
		if (has("Gather1000", "sec/input"))
			info(sprintf("(absolute: %.0f ns/input)", v["Gather1000", "sec/input"] * 1e9))
		if (has("Gather1000", "allocs/op"))
			check("Gather1000 allocs/input", v["Gather1000", "allocs/op"] / 1000, 3, "%.3g")
		if (has("NestedDeep/levels=1e6", "sec/level") && has("NestedDeep/levels=1e4", "sec/level"))
			check("NestedDeep ns/level, 1e6 / 1e4", v["NestedDeep/levels=1e6", "sec/level"] / v["NestedDeep/levels=1e4", "sec/level"], 1.5, "%.2f")
		if (has("NestedDeep/levels=1e6", "unwind-sec/level") && has("NestedDeep/levels=1e4", "unwind-sec/level"))
			check("  (unwinding alone, 1e6 / 1e4)", v["NestedDeep/levels=1e6", "unwind-sec/level"] / v["NestedDeep/levels=1e4", "unwind-sec/level"], 1.5, "%.2f")
		if (has("Contended/adders=8", "sec/stage") && has("Contended/uncontended", "sec/stage"))
			check("Contended ns/stage, 8 adders / uncontended", v["Contended/adders=8", "sec/stage"] / v["Contended/uncontended", "sec/stage"], 3, "%.2f")
	}' "$@"
}

# floor checks issue 12's targets: deferred against bench/floor, the minimal
# goroutine-safe deferred, shape by shape, as ratios of medians in this run.
floor() {
	awk -F, '
	$1 == "" && NF >= 3 && $3 == "CI" { unit = $2; next }
	NF < 2 || $1 == "" || $1 == "geomean" { next }
	{ name = $1; sub(/-[0-9]+$/, "", name); v[name, unit] = $2 }
	function check(what, bench, limit) {
		ours = v[bench "/impl=deferred", "sec/op"]; fl = v[bench "/impl=floor", "sec/op"]
		if (ours == "" || fl == "" || fl == 0) return
		if (limit == 0) { # a shape the issue sets no target for
			printf "  %-40s %9s %9s  %5.2fx (no target)\n", what, sprintf("%.0f", ours * 1e9), sprintf("%.0f", fl * 1e9), ours / fl
			return
		}
		printf "  %-40s %9s %9s  %5.2fx <= %.2fx %s\n", what, sprintf("%.0f", ours * 1e9), sprintf("%.0f", fl * 1e9),
			ours / fl, limit, (ours / fl <= limit) ? "met" : "NOT met"
	}
	END {
		print "\n== floor (issue 12): deferred ns / floor ns, medians of this run"
		printf "  %-40s %9s %9s  %s\n", "shape", "deferred", "floor", "ratio"
		split("3 4 5 8 16 64", shapes, " ")
		for (n = 1; n <= 6; n++) {
			s = shapes[n]
			# 5 is not among the shapes of issue 12: the first to outgrow the block
			check("chain of " s " stages, then fire", "FloorChain/stages=" s, (s == 5) ? 0 : 1.10)
		}
		check("8 stages added to a fired Deferred", "FloorAddToFired", 1.10)
		check("8 goroutines adding while one fires", "FloorContended", 1.20)
		if ((("FloorChain/stages=4/impl=deferred", "allocs/op") in v))
			printf "  %-40s %9s %9s  %s\n", "allocs of a 4-stage chain", v["FloorChain/stages=4/impl=deferred", "allocs/op"], "",
				(v["FloorChain/stages=4/impl=deferred", "allocs/op"] <= 2) ? "<= 2 met" : "<= 2 NOT met"
	}' "$1"
}

table "core (root package: github.com/deferred-go/deferred)" "$out/core.csv"
table "peers (bench module; deferred/impl below 1x: deferred is faster)" "$out/peers.csv"
targets "$out/core.csv" "$out/peers.csv"
floor "$out/peers.csv"
# The same shapes, alternating deferred and the floor round by round in one
# process (bench/alternate): a load that comes and goes then weighs on both
# sides alike. About 30 s; ALTERNATE=0 skips it.
if [ -z "$reuse" ] && [ "${ALTERNATE:-1}" != 0 ] && { [ "$filter" = . ] || [[ "$filter" == *Floor* ]]; }; then
	echo
	echo "== floor, alternating (go run ./alternate in bench/)"
	go run ./alternate | tee "$out/alternate.txt"
fi
echo
echo "medians of $count runs; ± is benchstat's 95% interval. benchstat's own tables: $out/*.benchstat.txt"
