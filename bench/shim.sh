#!/usr/bin/env bash
# containerd-shim-hostprocess-v1 against containerd-shim-runc-v2, driven the same way through a
# private containerd:
#   1. time:   `ctr run --rm --runtime R IMAGE ID /bin/true`, both runtimes side by side in
#              ROUNDS short hyperfine runs, pooled, with a floor: the same command with a shim
#              that runs nothing and answers every call at once
#              (crates/shim/examples/null-shim.rs), what containerd and ctr cost whatever the
#              shim; and a second floor: the same shim installed as
#              containerd-shim-nullspawn-v1, which also runs the container's process and waits
#              for it (what running `/bin/true` on the host costs whatever else a shim does);
#              and a third: installed as containerd-shim-nullwork-v1, the same shim also doing
#              the work any runtime does (the rootfs mounted, a cgroup per hierarchy, the four
#              task events containerd's own shims publish);
#   2. phases: TRACE_RUNS more runs of each, split by containerd's event timestamps and two
#              containerd log lines (shim start, create, start, exit, delete, teardown);
#   3. memory: K long-running containers per runtime (`ctr run -d ... sleep 300`), RSS and PSS of
#              the serving shim processes, per shim (ctr containers are separate pods, so both
#              runtimes run one shim per container).
# Needs root, containerd (ctr, containerd-shim-runc-v2), runc, hyperfine, busybox-static and
# python3; installs nothing (prints what is missing). Writes bench/results/shim.md (+
# shim-hyperfine.{md,json}, shim-phases.txt, shim-memory.txt) and appends a line to
# bench/results/shim-history.md (one per run, to compare runs).
#
# Usage: bench/shim.sh [RUNS]    (RUNS timed runs per runtime, default 100)
# Env:   ROUNDS=10 (hyperfine runs the timed runs are split into), K=10 (containers per
#        runtime for memory), WARMUP=5 (first round; 1 in the others), TRACE_RUNS=10 (traced runs per
#        runtime for the phase split), LOG_LEVEL=info (containerd's; the test harness uses
#        debug), TMPFS=1 puts containerd's state, the engine's and runc's state roots on
#        tmpfs (as /run is on nodes), KEEP=1 keeps the temporary directory (containerd's log) for a look,
#        SHIM_BIN=PATH measures that build of the shim instead of building one, NULL_SHIM_BIN=PATH
#        that build of the floor's shim, BASELINE_BIN=PATH also times that other build of our
#        shim in the same rounds and traced runs (runtime io.containerd.hostprocessbase.v1): a
#        change measured A/B with the builds alternating, STRACE=N only counts system calls (see
#        0. below).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
runs=${1:-100}
rounds=${ROUNDS:-10}
k=${K:-10}
warmup=${WARMUP:-5}
trace_runs=${TRACE_RUNS:-10}
log_level=${LOG_LEVEL:-info}

HP_RUNTIME=io.containerd.hostprocess.v1
RUNC_RUNTIME=io.containerd.runc.v2
HP_SHIM=containerd-shim-hostprocess-v1
NULL_RUNTIME=io.containerd.null.v1
NULL_SHIM=containerd-shim-null-v1
SPAWN_RUNTIME=io.containerd.nullspawn.v1
SPAWN_SHIM=containerd-shim-nullspawn-v1
WORK_RUNTIME=io.containerd.nullwork.v1
WORK_SHIM=containerd-shim-nullwork-v1
BASE_RUNTIME=io.containerd.hostprocessbase.v1
BASE_SHIM=containerd-shim-hostprocessbase-v1
RUNC_SHIM=containerd-shim-runc-v2
IMAGE=docker.io/library/hpc-bench-busybox:latest
BUSYBOX=/bin/busybox

# ---------------------------------------------------------------- prerequisites (no installs)
missing=()
[[ $(id -u) == 0 ]] || { echo "bench: run as root (containerd, mounts, cgroups)" >&2; exit 1; }
for tool in containerd ctr "$RUNC_SHIM"; do
  command -v "$tool" >/dev/null || { missing+=(containerd); break; }
done
command -v runc >/dev/null || missing+=(runc)
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v python3 >/dev/null || missing+=(python3)
# Debian's `busybox` package installs a dynamically linked /bin/busybox; an image needs the
# static one (no ELF interpreter to find inside the rootfs).
# (grep -c reads all its input: no SIGPIPE for head under pipefail)
if [[ ! -x $BUSYBOX ]] || head -c 8192 "$BUSYBOX" | grep -ac 'ld-linux' >/dev/null; then
  missing+=(busybox-static)
fi
if ((${#missing[@]})); then
  echo "bench: missing: ${missing[*]}" >&2
  echo "bench: install them with: apt-get install ${missing[*]}" >&2
fi
command -v cargo >/dev/null || echo "bench: missing: cargo (the Rust toolchain, rustup)" >&2
((${#missing[@]} == 0)) && command -v cargo >/dev/null || exit 1

# SHIM_BIN measures another build of the shim (e.g. a static musl one) instead.
if [[ -n ${SHIM_BIN:-} ]]; then
  shim_bin=$SHIM_BIN
else
  echo "bench: building the shim (release)" >&2
  cargo build --release -p containerd-shim-hostprocess-v1 >&2
  shim_bin=$repo/target/release/$HP_SHIM
fi
[[ -x $shim_bin ]] || { echo "bench: $shim_bin was not built" >&2; exit 1; }
if [[ -n ${NULL_SHIM_BIN:-} ]]; then
  null_shim_bin=$NULL_SHIM_BIN
else
  echo "bench: building the floor's shim (release)" >&2
  cargo build --release -p "$HP_SHIM" --example null-shim >&2
  null_shim_bin=$repo/target/release/examples/null-shim
fi
[[ -x $null_shim_bin ]] || { echo "bench: $null_shim_bin was not built" >&2; exit 1; }

# ---------------------------------------------------------------- private containerd + cleanup
work=$(mktemp -d /tmp/hpc-shim-bench.XXXXXX)   # short: the socket path must fit sun_path
sock=$work/containerd.sock
ns=hpc-bench-$$                                 # our own namespace (and runc state dir)
idp=hpb$$                                       # prefix of every container id
ctrd_pid=
results=$repo/bench/results
mkdir -p "$results" "$work"/{root,state,opt,cni/net.d,hostprocess,bin}
# A private copy of the release shim, first on containerd's PATH: a cargo build running
# elsewhere cannot swap the binary under the benchmark.
cp "$shim_bin" "$work/bin/$HP_SHIM"
cp "$null_shim_bin" "$work/bin/$NULL_SHIM"
cp "$null_shim_bin" "$work/bin/$SPAWN_SHIM"
cp "$null_shim_bin" "$work/bin/$WORK_SHIM"
if [[ -n ${BASELINE_BIN:-} ]]; then
  [[ -x $BASELINE_BIN ]] || { echo "bench: $BASELINE_BIN is not an executable" >&2; exit 1; }
  cp "$BASELINE_BIN" "$work/bin/$BASE_SHIM"
fi

ctr_() { ctr --address "$sock" --namespace "$ns" "$@"; }
ctr_t() { timeout 30 ctr --address "$sock" --namespace "$ns" "$@"; }   # for cleanup paths

# Pids of the serving shims (not `start`/`delete` runs) named $1 of this containerd; with a
# second argument `any`, every process of that shim binary for this containerd, each followed
# by its socket path when it has one (from the address file in its working directory, the bundle).
shim_pids() {
  python3 - "$1" "$sock" "${2:-serving}" <<'PY'
import os, sys
name, sock, which = sys.argv[1:4]
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        continue
    args = [a.decode(errors="replace") for a in args if a]
    if not args or os.path.basename(args[0]) != name or sock not in args:
        continue
    if which == "any":
        # A serving shim runs in its bundle, where its start action wrote the socket's address.
        try:
            socket = open(f"/proc/{pid}/cwd/address").read().strip()
        except OSError:
            socket = ""
        print(pid, socket.removeprefix("unix://"))
    elif "start" not in args and "delete" not in args:
        print(pid)
PY
}

remove_all() {  # every task and container of our namespace
  local ids id
  ids=$(ctr_t containers ls -q 2>/dev/null || true)
  for id in $ids; do ctr_t tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
  for id in $ids; do ctr_t tasks rm -f "$id" >/dev/null 2>&1 || true; done
  for id in $ids; do ctr_t containers rm "$id" >/dev/null 2>&1 || true; done
}

cleanup() {
  local rc=$? pid id mp
  set +e
  trap - EXIT INT TERM
  [[ -n ${events_pid:-} ]] && kill "$events_pid" 2>/dev/null
  [[ -n ${strace_pid:-} ]] && kill -INT "$strace_pid" 2>/dev/null
  if [[ -n $ctrd_pid ]] && kill -0 "$ctrd_pid" 2>/dev/null; then
    remove_all
    ctr_t images rm "$IMAGE" >/dev/null 2>&1
    timeout 30 ctr --address "$sock" namespaces rm "$ns" >/dev/null 2>&1
    kill -TERM "$ctrd_pid"
    for _ in $(seq 100); do kill -0 "$ctrd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$ctrd_pid" 2>/dev/null
    wait "$ctrd_pid" 2>/dev/null
  fi
  # Shims outlive containerd: let ours tear down whatever its engine still records, then kill
  # every shim process of this containerd and remove its socket.
  if [[ -d $work/hostprocess/$ns ]]; then
    for id in $(ls "$work/hostprocess/$ns"); do
      (cd "$work" && HOSTPROCESS_SHIM_ROOT=$work/hostprocess TTRPC_ADDRESS=$sock.ttrpc \
        timeout 60 "$work/bin/$HP_SHIM" -namespace "$ns" -address "$sock" -id "$id" \
        -bundle "$work/state/io.containerd.runtime.v2.task/$ns/$id" delete >/dev/null 2>&1)
    done
  fi
  while read -r pid socket; do
    kill -KILL "$pid" 2>/dev/null
    [[ -S $socket ]] && rm -f "$socket"
  done < <(shim_pids "$HP_SHIM" any; shim_pids "$RUNC_SHIM" any; shim_pids "$NULL_SHIM" any
    shim_pids "$SPAWN_SHIM" any; shim_pids "$WORK_SHIM" any
    shim_pids "$BASE_SHIM" any)
  # Whatever still runs in our namespace's cgroups (containers whose shim was killed) is ours:
  # kill it, then remove the cgroups, deepest first (runc and the engine leave the namespace's).
  for procs in /sys/fs/cgroup/*/"$ns"/*/cgroup.procs /sys/fs/cgroup/"$ns"/*/cgroup.procs; do
    [[ -f $procs ]] || continue
    while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$procs"
  done
  sleep 0.2
  for dir in /sys/fs/cgroup/*/"$ns" /sys/fs/cgroup/"$ns"; do
    [[ -d $dir ]] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  # The third floor's cgroups (named after our ids), then their parent if nothing else uses it.
  for dir in /sys/fs/cgroup/*/nullwork /sys/fs/cgroup/nullwork; do
    [[ -d $dir ]] || continue
    for cg in "$dir/$idp"-*; do [[ -d $cg ]] && rmdir "$cg" 2>/dev/null; done
    rmdir "$dir" 2>/dev/null
  done
  [[ -n ${cpu_cg:-} ]] && rmdir "$cpu_cg" 2>/dev/null
  # Unmount everything under the directory, deepest first.
  while read -r mp; do umount -l "$mp" 2>/dev/null; done < <(
    awk -v d="$work" '$5 == d || index($5, d "/") == 1 { print length($5), $5 }' /proc/self/mountinfo |
      sort -rn | cut -d' ' -f2-)
  # runc's state of our namespace; the FIFO dirs `ctr run -d` leaves behind (named after the ids).
  umount -l "/run/containerd/runc/$ns" 2>/dev/null
  rm -rf "/run/containerd/runc/$ns"
  for f in /run/containerd/fifo/*/"$idp"-*; do [[ -e $f ]] && rm -rf "${f%/*}"; done
  if [[ -n ${KEEP:-} ]]; then
    echo "bench: kept $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
# TMPFS=1: what a node keeps under /run on tmpfs — containerd's state (the bundles), the
# engine's state root and runc's — on a tmpfs here too (this machine's /run is on its disk, where
# every file created pays ext4's inode allocation).
if [[ ${TMPFS:-0} == 1 ]]; then
  mkdir -p "/run/containerd/runc/$ns"
  for dir in "$work/state" "$work/hostprocess" "/run/containerd/runc/$ns"; do
    mount -t tmpfs -o size=256m,mode=0711 hpc-bench-state "$dir"
  done
fi
trap 'exit 130' INT TERM

cat >"$work/containerd.toml" <<EOF
version = 2
root = "$work/root"
state = "$work/state"

[grpc]
  address = "$sock"

[ttrpc]
  address = ""

[debug]
  level = "$log_level"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$work/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"
    restrict_oom_score_adj = true
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$work/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "$RUNC_RUNTIME"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hostprocess]
        runtime_type = "$HP_RUNTIME"
        pod_annotations = ["microsoft.com/*", "hostprocess.io/*", "io.microsoft.*"]
        container_annotations = ["microsoft.com/*", "hostprocess.io/*", "io.microsoft.*"]
EOF

echo "bench: starting a private containerd in $work" >&2
PATH=$work/bin:$PATH HOSTPROCESS_SHIM_ROOT=$work/hostprocess \
  containerd --config "$work/containerd.toml" </dev/null >"$work/containerd.log" 2>&1 &
ctrd_pid=$!
# containerd and everything it starts (the shims; not the containers, which the engine and runc
# move to cgroups of their own) in a CPU accounting cgroup of their own: the traced runs report
# the CPU each run cost them, a figure the machine's load disturbs far less than time.
cpu_cg=
for dir in /sys/fs/cgroup/cpuacct /sys/fs/cgroup; do
  if [[ -f $dir/cpuacct.usage || -f $dir/cgroup.controllers ]] && mkdir "$dir/$ns-cpu" 2>/dev/null; then
    cpu_cg=$dir/$ns-cpu
    echo "$ctrd_pid" >"$cpu_cg/cgroup.procs" 2>/dev/null || { rmdir "$cpu_cg"; cpu_cg=; }
    break
  fi
done
# CPU nanoseconds used so far in that cgroup (0 without one).
cpu_ns() {
  if [[ -z $cpu_cg ]]; then echo 0
  elif [[ -f $cpu_cg/cpuacct.usage ]]; then cat "$cpu_cg/cpuacct.usage"
  else awk '$1 == "usage_usec" { print $2 * 1000 }' "$cpu_cg/cpu.stat"
  fi
}
for i in $(seq 300); do
  kill -0 "$ctrd_pid" 2>/dev/null || { tail -n 40 "$work/containerd.log" >&2; echo "bench: containerd exited" >&2; exit 1; }
  [[ -S $sock ]] && ctr --address "$sock" version >/dev/null 2>&1 && break
  ((i < 300)) || { tail -n 40 "$work/containerd.log" >&2; echo "bench: containerd does not answer" >&2; exit 1; }
  sleep 0.1
done

# ---------------------------------------------------------------- the image (OCI layout tar)
# One uncompressed layer: static busybox, the few applets the benchmark runs, passwd/group.
img=$work/image
mkdir -p "$img/rootfs"/{bin,dev,etc,proc,sys,tmp} "$img/layout/blobs/sha256"
cp "$BUSYBOX" "$img/rootfs/bin/busybox"
for applet in sh true sleep echo cat; do ln -s busybox "$img/rootfs/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$img/rootfs/etc/passwd"
printf 'root:x:0:\n' >"$img/rootfs/etc/group"
tar --create --file "$img/layer.tar" --directory "$img/rootfs" --sort=name \
  --numeric-owner --owner=0 --group=0 --mtime=@0 bin dev etc proc sys tmp

# put_blob FILE -> prints "DIGEST SIZE" and stores FILE under blobs/sha256/DIGEST
put_blob() {
  local digest
  digest=$(sha256sum "$1" | cut -d' ' -f1)
  cp "$1" "$img/layout/blobs/sha256/$digest"
  printf '%s %s\n' "$digest" "$(stat -c %s "$1")"
}
case $(uname -m) in
  x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;;
esac
read -r layer_digest layer_size < <(put_blob "$img/layer.tar")
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"bench/shim.sh"}]}' \
  "$arch" "$layer_digest" >"$img/config.json"
read -r config_digest config_size < <(put_blob "$img/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
  "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$img/manifest.json"
read -r manifest_digest manifest_size < <(put_blob "$img/manifest.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest_digest" "$manifest_size" "$arch" "$IMAGE" "${IMAGE##*:}" >"$img/layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$img/layout/oci-layout"
tar --create --file "$img/image.tar" --directory "$img/layout" --sort=name \
  --numeric-owner --owner=0 --group=0 --mtime=@0 oci-layout index.json blobs
ctr_ images import "$img/image.tar" >&2

# ---------------------------------------------------------------- 0. system calls (STRACE=N)
# STRACE=N: only N runs of each shim (ours and the floor's) with strace attached to containerd
# and everything it starts, then per shim and per role of its processes (the `start` action, the
# serving shim, the `delete` action): system calls per run by count, and the time the calls
# that wait spent blocked. ptrace slows every call, so this counts; the times are elsewhere.
# Writes bench/results/shim-strace.txt (and keeps the traces with KEEP=1).
if [[ -n ${STRACE:-} ]]; then
  command -v strace >/dev/null || { echo "bench: missing: strace" >&2; exit 1; }
  mkdir -p "$work/strace"
  strace -f -ff -tt -T -s 256 -o "$work/strace/t" -p "$ctrd_pid" 2>"$work/strace.log" &
  strace_pid=$!
  sleep 1
  for r in $(seq "$STRACE"); do
    for pair in "hostprocess:$HP_RUNTIME" "null:$NULL_RUNTIME"; do
      id=$idp-strace-${pair%%:*}-$r
      ctr_ run --rm --runtime "${pair#*:}" "$IMAGE" "$id" /bin/true >/dev/null 2>&1 ||
        { note strace "${pair%%:*}" "ctr run failed"; reset_id "$id"; }
    done
  done
  sleep 1
  kill -INT "$strace_pid"; wait "$strace_pid" 2>/dev/null || true
  strace_pid=
  python3 - "$work/strace" "$STRACE" "$HP_SHIM" "$NULL_SHIM" >"$results/shim-strace.txt" <<'PY'
import collections, os, re, sys
tdir, runs, ours, floor = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
line_re = re.compile(r"^(\d+):(\d+):([\d.]+) (?:<\.\.\. )?(\w+)(.*?)(?:<([\d.]+)>)?$")
traces = {}  # tid -> lines
for name in os.listdir(tdir):
    tid = int(name.rsplit(".", 1)[1])
    traces[tid] = open(os.path.join(tdir, name), errors="replace").read().splitlines()
# Who started whom: a clone's result is the new task; CLONE_THREAD keeps the process.
parent, thread = {}, {}
for tid, lines in traces.items():
    for l in lines:
        m = re.search(r"\b(clone3?|fork|vfork)\((.*)\)\s+=\s+(\d+)", l)
        if m:
            child = int(m.group(3))
            parent[child] = tid
            thread[child] = "CLONE_THREAD" in m.group(2)
# A task's role: the binary and action its process last executed.
def own_role(tid):
    for l in traces.get(tid, []):
        m = re.search(r'execve\("([^"]*)", \[(.*?)\]', l)
        if m and " = 0" in l:
            args = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2))
            binary = os.path.basename(m.group(1))
            action = "start" if "start" in args else "delete" if "delete" in args else "serving"
            return binary, action
    return None
def role(tid, seen=0):
    r = own_role(tid)
    if r:
        return r
    if tid in parent and seen < 50:
        binary, action = role(parent[tid], seen + 1)
        # A process forked by a `start` action (no exec) is the serving shim.
        if action == "start" and not thread.get(tid):
            action = "serving (forked)"
        return binary, action
    return "containerd", ""
calls = collections.defaultdict(collections.Counter)
blocked = collections.defaultdict(float)
tasks = collections.Counter()
waits = {"futex", "epoll_wait", "epoll_pwait", "poll", "ppoll", "wait4", "waitid", "read",
         "accept4", "accept", "nanosleep", "clock_nanosleep", "recvmsg", "select", "pselect6"}
for tid, lines in traces.items():
    binary, action = role(tid)
    if binary not in (ours, floor):
        continue
    key = (binary, action)
    tasks[key] += 1
    for l in lines:
        m = re.match(r"^\d\d:\d\d:[\d.]+ (?:<\.\.\. )?(\w+)", l)
        if not m or "resumed>" in l and not l.split("resumed>")[1].strip():
            continue
        if "unfinished" in l:
            continue
        name = m.group(1)
        calls[key][name] += 1
        t = re.search(r"<([\d.]+)>\s*$", l)
        if t and name in waits:
            blocked[key, name] += float(t.group(1))
print(f"system calls per `ctr run --rm` ({runs} traced runs per shim; strace attached)\n")
for key in sorted(calls):
    total = sum(calls[key].values())
    print(f"## {key[0]} {key[1]}: {tasks[key] / runs:.1f} tasks (threads), {total / runs:.0f} calls per run")
    top = ", ".join(f"{n} {c / runs:.1f}" for n, c in calls[key].most_common(25))
    print(f"calls: {top}")
    waited = sorted(((v, n) for (k, n), v in blocked.items() if k == key), reverse=True)
    print("blocked ms per run: " + ", ".join(f"{n} {v * 1e3 / runs:.2f}" for v, n in waited[:8]))
    print()
PY
  cat "$results/shim-strace.txt"
  exit 0
fi

# ---------------------------------------------------------------- 1. time
hp_cmd="ctr --address $sock --namespace $ns run --rm --runtime $HP_RUNTIME $IMAGE $idp-hp /bin/true"
runc_cmd="ctr --address $sock --namespace $ns run --rm --runtime $RUNC_RUNTIME $IMAGE $idp-runc /bin/true"
null_cmd="ctr --address $sock --namespace $ns run --rm --runtime $NULL_RUNTIME $IMAGE $idp-null /bin/true"
spawn_cmd="ctr --address $sock --namespace $ns run --rm --runtime $SPAWN_RUNTIME $IMAGE $idp-spawn /bin/true"
work_cmd="ctr --address $sock --namespace $ns run --rm --runtime $WORK_RUNTIME $IMAGE $idp-work /bin/true"
base_cmd="ctr --address $sock --namespace $ns run --rm --runtime $BASE_RUNTIME $IMAGE $idp-base /bin/true"
# With a baseline build: its command in every check and round, after ours.
base_pair=() base_named=() base_trace=()
if [[ -n ${BASELINE_BIN:-} ]]; then
  base_pair=("baseline:$base_cmd:$idp-base")
  base_named=(-n "hostprocess shim (baseline)" "$base_cmd")
  base_trace=("base:$BASE_RUNTIME")
fi
failures=$results/shim-failures.txt
: >"$failures"

# A failed `ctr run --rm` leaves its snapshot (sometimes its container) behind, and every later
# run with the same id then fails on "snapshot already exists": remove what is left.
reset_id() {
  ctr_t tasks rm -f "$1" >/dev/null 2>&1 || true
  ctr_t containers rm "$1" >/dev/null 2>&1 || true
  ctr_t snapshots rm "$1" >/dev/null 2>&1 || true
}
# What containerd and the shims logged as warnings/errors since line $1 of its log (minus the
# routine "cleaning up after shim disconnected" and the CRI plugin's CNI complaint).
log_lines() { wc -l <"$work/containerd.log"; }
new_errors() {
  tail -n +"$(($1 + 1))" "$work/containerd.log" | grep -E 'level=(warn|warning|error|fatal)' |
    grep -vE 'cleaning up after shim disconnected|cleanup warnings|cni' | cut -c1-300 || true
}
# note PHASE RUNTIME MESSAGE: one line of bench/results/shim-failures.txt
note() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$failures"; echo "bench: $1 $2 failed: $3" >&2; }

# hyperfine reuses one id per command: check that a fixed id works back to back (--rm removed
# the container and the shim is gone before the next run needs the same id and shim socket).
for pair in "hostprocess:$hp_cmd:$idp-hp" "${base_pair[@]}" "runc:$runc_cmd:$idp-runc" "floor:$null_cmd:$idp-null" \
  "floor2:$spawn_cmd:$idp-spawn" "floor3:$work_cmd:$idp-work"; do
  label=${pair%%:*} rest=${pair#*:}
  cmd=${rest%:*} id=${rest##*:}
  ok=0
  for _ in 1 2 3 4 5; do
    if err=$($cmd 2>&1); then ok=$((ok + 1)); else note back-to-back "$label" "$err"; reset_id "$id"; fi
  done
  ((ok >= 4)) || { echo "bench: '$cmd' does not work back to back ($ok/5)" >&2; exit 1; }
done
[[ -z $(ctr_ containers ls -q) ]] || { echo "bench: ctr run --rm left containers" >&2; exit 1; }

# ROUNDS hyperfine runs of RUNS/ROUNDS runs per command each, pooled: containerd's speed drifts
# over a benchmark, and short rounds in turn spread the drift over the three commands. One
# `ctr run` failing aborts a round (a failure is not a time): note why, clean up and run that
# round again, at most ATTEMPTS times in all.
per_round=$(((runs + rounds - 1) / rounds))
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench: load before the timed runs: $load_before" >&2
attempt=1
round=1
while ((round <= rounds)); do
  mark=$(log_lines)
  ((round == 1)) && round_warmup=$warmup || round_warmup=1
  if hyperfine -N --style basic --warmup "$round_warmup" --runs "$per_round" \
    --export-json "$work/hyperfine-$round.json" \
    -n "hostprocess shim" "$hp_cmd" \
    "${base_named[@]}" \
    -n "runc shim" "$runc_cmd" \
    -n "null shim (floor)" "$null_cmd" \
    -n "null shim running the process (floor 2)" "$spawn_cmd" \
    -n "null shim doing a runtime's work (floor 3)" "$work_cmd" >&2; then
    round=$((round + 1))
    continue
  fi
  note "timed-attempt-$attempt" "?" "$(new_errors "$mark" | tr '\n' ' ')"
  reset_id "$idp-hp"
  reset_id "$idp-base"
  reset_id "$idp-runc"
  reset_id "$idp-null"
  reset_id "$idp-spawn"
  reset_id "$idp-work"
  ((++attempt <= ${ATTEMPTS:-3})) || { echo "bench: hyperfine failed $((attempt - 1)) times" >&2; exit 1; }
  echo "bench: running round $round again (attempt $attempt)" >&2
done
# Pooled: every run's time, as hyperfine's JSON and markdown report them for one run.
python3 - "$results" "$work" "$rounds" <<'PY'
import json, statistics, sys
res, work, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
times = {}
for r in range(1, rounds + 1):
    for result in json.load(open(f"{work}/hyperfine-{r}.json"))["results"]:
        times.setdefault(result["command"], []).extend(result["times"])
results = [dict(command=c, times=t, mean=statistics.mean(t), stddev=statistics.stdev(t),
                median=statistics.median(t), min=min(t), max=max(t)) for c, t in times.items()]
json.dump({"results": results}, open(f"{res}/shim-hyperfine.json", "w"))
fastest = min(x["mean"] for x in results)
rows = ["| Command | Mean [ms] | Median [ms] | Min [ms] | Max [ms] | Relative |",
        "|:---|---:|---:|---:|---:|---:|"]
for x in results:
    rows.append(f"| `{x['command']}` | {x['mean']*1e3:.1f} ± {x['stddev']*1e3:.1f} | "
                f"{x['median']*1e3:.1f} | {x['min']*1e3:.1f} | {x['max']*1e3:.1f} | "
                f"{x['mean'] / fastest:.2f} |")
open(f"{res}/shim-hyperfine.md", "w").write("\n".join(rows) + "\n")
PY
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench: load after the timed runs: $load_after" >&2

# ---------------------------------------------------------------- 2. phases (timestamps)
# TRACE_RUNS more runs of each runtime, one at a time with distinct ids, while `ctr events`
# records containerd's events (task events are stamped by the shim when it publishes them).
# Two lines of containerd's log (info level, so also there at LOG_LEVEL=info) split further:
# the serving shim's first line (ours: "serving namespace", runc's: "starting signal loop") and
# containerd's "shim disconnected" (the ttrpc connection closed; containerd then runs
# `<shim> delete` for a dead shim and removes the bundle before Delete answers ctr).
ctr --address "$sock" events >"$work/events.log" 2>&1 &
events_pid=$!
sleep 0.5
: >"$work/client.log"
for r in $(seq "$trace_runs"); do
  for pair in "hostprocess:$HP_RUNTIME" "${base_trace[@]}" "runc:$RUNC_RUNTIME" "null:$NULL_RUNTIME" \
    "spawn:$SPAWN_RUNTIME" "work:$WORK_RUNTIME"; do
    id=$idp-trace-${pair%%:*}-$r
    c0=$(cpu_ns)
    t0=$(date +%s.%N)
    if err=$(ctr_ run --rm --runtime "${pair#*:}" "$IMAGE" "$id" /bin/true 2>&1); then
      t1=$(date +%s.%N)
      c1=$(cpu_ns)
      printf '%s %s %s %s\n' "$id" "$t0" "$t1" "$((c1 - c0))" >>"$work/client.log"
    else
      note traced "${pair%%:*}" "$err"
      reset_id "$id"
    fi
  done
done
sleep 0.5
kill "$events_pid" 2>/dev/null; wait "$events_pid" 2>/dev/null || true
events_pid=
python3 - "$work/events.log" "$work/client.log" "$work/containerd.log" \
  >"$results/shim-phases.txt" <<'PY'
import calendar, json, re, statistics, sys, time
from decimal import Decimal

def epoch(date, clock, offset="+0000"):  # "2024-05-01" "01:02:03.123456789" -> seconds
    whole, _, frac = clock.partition(".")
    t = calendar.timegm(time.strptime(f"{date} {whole}", "%Y-%m-%d %H:%M:%S"))
    sign = -1 if offset[0] == "-" else 1
    t -= sign * (int(offset[1:3]) * 3600 + int(offset[3:5]) * 60)
    return Decimal(t) + Decimal("0." + (frac or "0"))

# `ctr events`: "2024-05-01 01:02:03.123456789 +0000 UTC NAMESPACE /topic {json}"
events = {}  # container id -> {topic: t}
event_re = re.compile(r"^(\S+) (\S+) ([+-]\d{4}) \S+ (\S+) (/\S+) (.*)$")
for line in open(sys.argv[1]):
    m = event_re.match(line.strip())
    if not m:
        continue
    date, clock, offset, _ns, topic, body = m.groups()
    try:
        data = json.loads(body)
    except ValueError:
        continue
    cid = data.get("container_id") or data.get("id") or data.get("key")
    if cid:
        events.setdefault(cid, {}).setdefault(topic, epoch(date, clock, offset))

# containerd's log (logrus): time="2024-05-01T01:02:03.123456789Z" level=info msg="..."
log = []
log_re = re.compile(r'^time="(\d{4}-\d\d-\d\d)T([\d:.]+)Z" level=\w+ msg="(.*)$')
for line in open(sys.argv[3], errors="replace"):
    m = log_re.match(line)
    if m:
        log.append((epoch(m.group(1), m.group(2)), m.group(3)))

def first_log(t0, t1, *needles):
    for t, rest in log:
        if t0 <= t <= t1 and all(n in rest for n in needles):
            return t
    return None

# The floor's shim publishes no events (floor 3 publishes the task events, floors 1 and 2 none)
# and its serving shim logs nothing: for it, only the phases bounded by containerd's own events
# and log lines have figures, the first two rows summing the phases that follow them.
serving = {"hostprocess": ("serving namespace",), "base": ("serving namespace",),
           "runc": ("starting signal loop", "path=")}
phases = [
    ("shim start and task create", "/containers/create", "/tasks/create"),
    ("the whole task: shim start until it disconnected", "/containers/create", "disconnected"),
    ("ctr start, image, snapshot, container create", "client0", "/containers/create"),
    ("shim start (start action + serving shim up)", "/containers/create", "serving"),
    ("task create", "serving", "/tasks/create"),
    ("task start", "/tasks/create", "/tasks/start"),
    ("process runs, exits, exit published", "/tasks/start", "/tasks/exit"),
    ("ctr sees exit, task delete", "/tasks/exit", "/tasks/delete"),
    ("shim shutdown until disconnected", "/tasks/delete", "disconnected"),
    ("dead-shim `delete` exec, bundle, snapshot + container rm", "disconnected", "/containers/delete"),
    ("ctr exits", "/containers/delete", "client1"),
]
CPU = "CPU time of containerd and the shims per run"
rows = {}
for line in open(sys.argv[2]):
    cid, t0, t1, *cpu = line.split()
    runtime = cid.split("-")[2]
    ev = dict(events.get(cid, {}))
    ev["client0"], ev["client1"] = Decimal(t0), Decimal(t1)
    if runtime in serving:
        ev["serving"] = first_log(ev["client0"], ev["client1"], *serving[runtime])
    ev["disconnected"] = first_log(ev["client0"], ev["client1"], "shim disconnected", f"id={cid}")
    runtime_rows = rows.setdefault(runtime, {})
    for name, a, b in phases:
        if ev.get(a) is not None and ev.get(b) is not None:
            runtime_rows.setdefault(name, []).append(float(ev[b] - ev[a]) * 1e3)
    runtime_rows.setdefault("total (client)", []).append(float(ev["client1"] - ev["client0"]) * 1e3)
    if cpu and int(cpu[0]) > 0:
        runtime_rows.setdefault(CPU, []).append(int(cpu[0]) / 1e6)

names = [p[0] for p in phases] + ["total (client)", CPU]
n = max(len(v["total (client)"]) for v in rows.values())
print(f"median ms over {n} traced runs per runtime ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
print()
print("| phase | hostprocess shim | runc shim | floor (null shim) | floor 2 (runs the process) | floor 3 (a runtime's work) | runc - hostprocess | hostprocess - floor | hostprocess - floor 2 | hostprocess - floor 3 |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
med = lambda v: statistics.median(v) if v else None
for name in names:
    hp, rc, nl, sp, wk = (med(rows.get(r, {}).get(name)) for r in ("hostprocess", "runc", "null", "spawn", "work"))
    f = lambda v: "n/a" if v is None else f"{v:.1f}"
    d = lambda a, b: "n/a" if a is None or b is None else f"{a - b:.1f}"
    print(f"| {name} | {f(hp)} | {f(rc)} | {f(nl)} | {f(sp)} | {f(wk)} | {d(rc, hp)} | {d(hp, nl)} | {d(hp, sp)} | {d(hp, wk)} |")
if "base" in rows:  # BASELINE_BIN: the same phases for the other build of our shim
    print()
    print("| phase | hostprocess shim | baseline build | hostprocess - baseline | baseline - floor |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in names:
        hp, base, nl = (med(rows.get(r, {}).get(name)) for r in ("hostprocess", "base", "null"))
        print(f"| {name} | {f(hp)} | {f(base)} | {d(hp, base)} | {d(base, nl)} |")
PY
cat "$results/shim-phases.txt"

# ---------------------------------------------------------------- 3. memory per shim
# measure LABEL RUNTIME SHIM: K detached `sleep 300` containers, then RSS/PSS of the serving
# shims, measured alone (the other runtime's shims are gone), so PSS shares each shim binary's
# page cache among that runtime's K shims only.
mem_rows=()
measure() {
  local label=$1 runtime=$2 shim=$3 i pids n
  for i in $(seq "$k"); do
    ctr_ run -d --runtime "$runtime" "$IMAGE" "$idp-mem-$label-$i" sleep 300 >/dev/null
  done
  sleep 3   # let the shims settle (Go runtime start-up, the first OOM/metrics ticks)
  pids=$(shim_pids "$shim" | tr '\n' ' ')
  n=$(wc -w <<<"$pids")
  ((n == k)) || echo "bench: warning: $n $shim processes for $k containers" >&2
  mem_rows+=("$(python3 - "$label" "$k" $pids <<'PY'
import sys
label, k, pids = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rss = pss = uss = anon = threads = 0
for pid in pids:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            rss += int(line.split()[1])
        elif line.startswith("Threads:"):
            threads += int(line.split()[1])
    for line in open(f"/proc/{pid}/smaps_rollup"):
        f = line.split()
        if f[0] == "Pss:":
            pss += int(f[1])
        elif f[0] == "Anonymous:":
            anon += int(f[1])
        elif f[0] in ("Private_Clean:", "Private_Dirty:"):
            uss += int(f[1])
n = len(pids)
# label containers shims | totals kB: rss pss uss anon | per shim kB: rss pss uss anon | threads
print(label, k, n, rss, pss, uss, anon, rss / n, pss / n, uss / n, anon / n, threads / n)
PY
)")
  echo "bench: memory ${mem_rows[-1]}" >&2
  remove_all
  for _ in $(seq 50); do [[ -z $(shim_pids "$shim") ]] && break; sleep 0.1; done
}
measure hostprocess "$HP_RUNTIME" "$HP_SHIM"
measure runc "$RUNC_RUNTIME" "$RUNC_SHIM"
printf '%s\n' "${mem_rows[@]}" >"$results/shim-memory.txt"

# ---------------------------------------------------------------- report
python3 - "$results" "$runs" "$warmup" "$k" "$load_before" "$load_after" "$log_level" \
  "$(nproc)" "$rounds" "$per_round" <<'PY'
import json, os, sys, time
res, runs, warmup, k, load0, load1, level, cpus, rounds, per_round = sys.argv[1:11]
r = {x["command"]: x for x in json.load(open(f"{res}/shim-hyperfine.json"))["results"]}
hp, rc, fl = r["hostprocess shim"], r["runc shim"], r["null shim (floor)"]
fl2 = r["null shim running the process (floor 2)"]
fl3 = r["null shim doing a runtime's work (floor 3)"]
mem = {}
for line in open(f"{res}/shim-memory.txt"):
    f = line.split()
    mem[f[0]] = dict(shims=int(f[2]), rss=float(f[7]), pss=float(f[8]), uss=float(f[9]),
                     anon=float(f[10]), threads=float(f[11]))
h, c = mem["hostprocess"], mem["runc"]
speed = rc["mean"] / hp["mean"]
# σ of the ratio, first order (the two means are independent)
speed_sd = speed * ((hp["stddev"] / hp["mean"]) ** 2 + (rc["stddev"] / rc["mean"]) ** 2) ** 0.5
ratio_rss, ratio_pss = h["rss"] / c["rss"], h["pss"] / c["pss"]
# The floor: containerd and ctr with a shim that does nothing. runc / floor is the most any shim
# could reach on this machine; ours - floor is what our shim adds.
ceiling = rc["mean"] / fl["mean"]
above_floor = (hp["mean"] - fl["mean"]) * 1e3
ms = lambda x: f"{x['mean']*1e3:.1f} ± {x['stddev']*1e3:.1f} ms"
mib = lambda kb: f"{kb/1024:.2f} MiB"
stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

out = []
p = out.append
p("# containerd-shim-hostprocess-v1 vs containerd-shim-runc-v2\n")
p(f"`bench/shim.sh {runs}` on {stamp}: a private containerd ({level} log level), "
  f"`ctr run --rm --runtime R IMAGE ID /bin/true` with a static-busybox image, "
  f"hyperfine -N, {rounds} rounds of {per_round} runs per command (hostprocess, runc, then the "
  f"floor: a shim that runs nothing and answers every call at once, floor 2: that shim "
  f"running the container's process, and floor 3: that shim also mounting the rootfs, "
  f"making a cgroup per hierarchy and publishing the task events), pooled; {warmup} warm-up "
  f"runs in the first round, 1 in the others; "
  f"{cpus} CPUs, load average {load0} before and {load1} after the timed runs.\n")
p("## Time per `ctr run --rm ... /bin/true`\n")
p(open(f"{res}/shim-hyperfine.md").read().strip() + "\n")
p(f"## Resident memory per shim ({k} `sleep 300` containers per runtime, one shim each)\n")
p("RSS from /proc/PID/status, PSS, USS (Private_*) and Anonymous from /proc/PID/smaps_rollup, "
  "summed over the serving shim processes and divided by their number; file-backed = RSS - "
  "Anonymous (the shim binary, libc, ld.so pages mapped: shared, so PSS divides them).\n")
p("| runtime | shims | RSS / shim | PSS / shim | USS / shim | file-backed / shim | threads / shim |")
p("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for label, name in (("hostprocess", "io.containerd.hostprocess.v1"), ("runc", "io.containerd.runc.v2")):
    m = mem[label]
    p(f"| {name} | {m['shims']} | {mib(m['rss'])} | {mib(m['pss'])} | {mib(m['uss'])} | "
      f"{mib(m['rss'] - m['anon'])} | {m['threads']:.0f} |")
p("")
p("## Ratios\n")
p(f"- runc-shim time / our time: **{speed:.2f}x** ± {speed_sd:.2f} (target ≥ 3x: "
  f"{'met' if speed >= 3 else 'not met'}); {ms(hp)} vs {ms(rc)}; by medians "
  f"{rc['median'] / hp['median']:.2f}x")
p(f"- floor (a shim that runs nothing): {ms(fl)}; runc-shim time / floor: **{ceiling:.2f}x** "
  f"(by medians {rc['median'] / fl['median']:.2f}x), the most any shim could reach here; our "
  f"time - floor: **{above_floor:.1f} ms** (our time / floor {hp['mean'] / fl['mean']:.2f})")
p(f"- floor 2 (the null shim also running the process): {ms(fl2)}, {(fl2['mean'] - fl['mean'])*1e3:.1f} ms "
  f"above the floor; our time - floor 2: **{(hp['mean'] - fl2['mean'])*1e3:.1f} ms** (by medians "
  f"{(hp['median'] - fl2['median'])*1e3:.1f} ms)")
p(f"- floor 3 (floor 2 plus the rootfs mount, a cgroup per hierarchy and the four task events): "
  f"{ms(fl3)}, {(fl3['mean'] - fl['mean'])*1e3:.1f} ms above the floor; our time - floor 3: "
  f"**{(hp['mean'] - fl3['mean'])*1e3:.1f} ms** (by medians {(hp['median'] - fl3['median'])*1e3:.1f} ms)")
p(f"- our RSS / runc-shim RSS: **{ratio_rss:.3f}** (target ≤ 0.25: "
  f"{'met' if ratio_rss <= 0.25 else 'not met'}); PSS {ratio_pss:.3f}, "
  f"USS {h['uss'] / c['uss']:.3f}")
p("")
p("## Where the time goes\n")
p(open(f"{res}/shim-phases.txt").read().strip() + "\n")
fails = [l.rstrip("\n").split("\t", 2) for l in open(f"{res}/shim-failures.txt") if l.strip()]
p("## Failed runs\n")
if fails:
    p("A failed `ctr run` aborts its round; the script then removes what the run left and runs "
      "that round again (the table above pools the rounds that completed).\n")
    p("| where | runtime | error |")
    p("| --- | --- | --- |")
    for where, runtime, msg in fails:
        p(f"| {where} | {runtime} | {' '.join(msg.split()).replace('|', '/')} |")
else:
    p("none")
p("")
open(f"{res}/shim.md", "w").write("\n".join(out))

# One line per run, to see the variance between runs.
history = f"{res}/shim-history.md"
if not os.path.exists(history):
    open(history, "w").write(
        "| date | runs | load before / after | hostprocess | runc | runc / ours | RSS ours / runc | PSS ours / runc | failed | log level | floor | runc / floor |\n"
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |\n")
open(history, "a").write(
    f"| {stamp} | {runs} | {load0} / {load1} | {ms(hp)} | {ms(rc)} | {speed:.2f}x | "
    f"{ratio_rss:.3f} | {ratio_pss:.3f} | {len(fails)} | {level} | {ms(fl)} | {ceiling:.2f}x |\n")

print("\n==== summary (bench/results/shim.md) ====")
print(f"time:   hostprocess {ms(hp)}, runc {ms(rc)}  ->  runc / ours = {speed:.2f}x ± {speed_sd:.2f} (target >= 3)")
print(f"floor:  a shim that runs nothing {ms(fl)}  ->  runc / floor = {ceiling:.2f}x; ours - floor = {above_floor:.1f} ms")
print(f"floor 2: the null shim running the process {ms(fl2)}; ours - floor 2 = {(hp['mean'] - fl2['mean'])*1e3:.1f} ms "
      f"(medians {(hp['median'] - fl2['median'])*1e3:.1f} ms)")
print(f"floor 3: a runtime's work {ms(fl3)}, {(fl3['median'] - fl['median'])*1e3:.1f} ms above the floor by medians; "
      f"ours - floor 3 = {(hp['mean'] - fl3['mean'])*1e3:.1f} ms (medians {(hp['median'] - fl3['median'])*1e3:.1f} ms)")
print(f"memory: hostprocess RSS {mib(h['rss'])}, PSS {mib(h['pss'])} per shim ({h['shims']} shims); "
      f"runc RSS {mib(c['rss'])}, PSS {mib(c['pss'])} per shim ({c['shims']} shims)")
print(f"        ours / runc: RSS {ratio_rss:.3f} (target <= 0.25), PSS {ratio_pss:.3f}")
print(f"load:   {load0} before, {load1} after the timed runs")
if "hostprocess shim (baseline)" in r:
    b = r["hostprocess shim (baseline)"]
    print(f"A/B:    baseline build {ms(b)}, median {b['median']*1e3:.1f} ms; ours - baseline by "
          f"medians {(hp['median'] - b['median'])*1e3:.2f} ms; above the floor by medians: ours "
          f"{(hp['median'] - fl['median'])*1e3:.2f} ms, baseline {(b['median'] - fl['median'])*1e3:.2f} ms")
if fails:
    print(f"failed: {len(fails)} run(s) or attempt(s), see bench/results/shim-failures.txt")
PY
