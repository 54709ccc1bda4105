#!/usr/bin/env bash
# `hostprocess run` against `runc run` of the same trivial bundle, with the bare spawn of the
# same command as the floor, side by side in one hyperfine run. Needs root, runc, hyperfine,
# busybox-static. Usage: bench/cli.sh [RUNS]   (writes bench/results/cli.md and .json)
# Env: HOSTPROCESS_BIN=PATH measures that build of hostprocess instead of building one.
#      BASELINE_BIN=PATH also times that other build in the same run (an A/B: before and
#      after a change, the commands interleaved by hyperfine's order, one run).
#      TMPFS=1 puts both runtimes' state roots on a tmpfs, as `/run` is on most nodes (the
#      default keeps them in a directory under the system's temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
for tool in runc hyperfine busybox; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install runc hyperfine busybox-static)" >&2; exit 1; }
done
# HOSTPROCESS_BIN measures another build (e.g. a static musl one) instead.
if [[ -n ${HOSTPROCESS_BIN:-} ]]; then
  hp=$HOSTPROCESS_BIN
else
  cargo build --release -p hostprocess >/dev/null
  hp=$PWD/target/release/hostprocess
fi

work=$(mktemp -d)
trap 'umount "$work/state" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/state"
if [[ ${TMPFS:-0} == 1 ]]; then
  mount -t tmpfs -o size=64m,mode=0700 hostprocess-bench "$work/state"
fi
bundle=$work/bundle
mkdir -p "$bundle/rootfs/bin"
cp "$(command -v busybox)" "$bundle/rootfs/bin/busybox"
ln -s busybox "$bundle/rootfs/bin/true"
# One bundle for both runtimes: runc's default spec, running /bin/true. The HostProcess
# runtime skips the namespaces and kernel filesystems runc would set up; it runs the host's
# /bin/true (a host process), so the floor is a bare spawn of that same binary.
(cd "$bundle" && runc spec)
python3 - "$bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["process"]["args"] = ["/bin/true"]
spec["process"]["terminal"] = False
json.dump(spec, open(path, "w"), indent=1)
PY
# runc's spec has a read-only root, which the HostProcess runtime mounts as the image itself;
# the same bundle with a writable root measures the overlay with its scratch layer too.
writable=$work/bundle-writable
mkdir -p "$writable"
python3 - "$bundle/config.json" "$writable/config.json" "$bundle/rootfs" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["root"] = {"path": sys.argv[3], "readonly": False}
json.dump(spec, open(sys.argv[2], "w"), indent=1)
PY

mkdir -p bench/results
hyperfine -N --warmup 20 --runs "$runs" \
  --export-markdown bench/results/cli.md --export-json bench/results/cli.json \
  -n "hostprocess run" "$hp --root $work/state/hp run -b $bundle hp-bench" \
  -n "hostprocess run (writable root)" "$hp --root $work/state/hp run -b $writable hp-bench-rw" \
  -n "runc run" "runc --root $work/state/runc run -b $bundle runc-bench" \
  -n "bare spawn (floor)" "/bin/true" \
  ${BASELINE_BIN:+-n "hostprocess run (baseline build)" "$BASELINE_BIN --root $work/state/base run -b $bundle base-bench"}

python3 - bench/results/cli.json <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
hp, rw = r["hostprocess run"], r["hostprocess run (writable root)"]
runc, floor = r["runc run"], r["bare spawn (floor)"]
print(f"hostprocess run {hp*1e3:.2f} ms (writable root {rw*1e3:.2f} ms), runc run {runc*1e3:.2f} ms, bare spawn {floor*1e3:.2f} ms")
print(f"runc / hostprocess = {runc/hp:.1f}x (writable root {runc/rw:.1f}x)   hostprocess / floor = {hp/floor:.1f}x ({rw/floor:.1f}x)")
if "hostprocess run (baseline build)" in r:
    base = r["hostprocess run (baseline build)"]
    print(f"baseline build {base*1e3:.2f} ms: this build / baseline = {hp/base:.3f}")
PY
