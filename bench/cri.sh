#!/usr/bin/env bash
# Kubelet-style pods through containerd's CRI: the `hostprocess` runtime handler against runc's,
# driven the same way through a private containerd by a small CRI client
# (crates/cri-tests/examples/cri-bench.rs):
#   1. pods:    RunPodSandbox (host network) → CreateContainer (`/bin/true`, the same busybox
#               image for both) → StartContainer → the container exits → StopPodSandbox →
#               RemovePodSandbox, one pod per handler per round, the order rotating from round
#               to round, pooled medians; the start part (RunPodSandbox until StartContainer
#               returns) reported apart. Floor: the same pods on a handler whose shim runs
#               nothing (crates/shim/examples/null-shim.rs): what containerd's CRI costs
#               whatever the shim; floor 2 (handler `nullspawn`): that shim also running the
#               container's process (what running `/bin/true` on the host adds); floor 3
#               (handler `nullwork`): also the work any runtime does for a container (its
#               rootfs mounted, a cgroup per hierarchy, the four task events containerd's own
#               shims publish).
#   2. density: DENSITY pods running `sleep` started all at once, per handler: the time until
#               every StartContainer returned, containerd's CPU time (utime + stime from
#               /proc/PID/stat) meanwhile, then total PSS and RSS of the serving shims; then
#               all removed at once (time and containerd CPU too).
# Needs root, containerd (with containerd-shim-runc-v2), runc, busybox-static and python3;
# installs nothing (prints what is missing). Writes bench/results/cri.md (+ cri-pods.jsonl,
# cri-density.jsonl) and appends a line to bench/results/cri-history.md.
#
# Usage: bench/cri.sh [ROUNDS]    (pods per handler for part 1, default 100)
# Env:   WARMUP=5 (rounds not counted), GAP_MS=200 (idle time before each pod: what containerd
#        and the shims do after a pod's last call — snapshot removal, a shim's exit — would
#        otherwise land in the next pod, whichever handler's it is), DENSITY=100 (pods per
#        handler for part 2; 0 skips it), DENSITY_HANDLERS="hostprocess runc" (also `base`,
#        repeated for an A/B), LOG_LEVEL=info (containerd's), TMPFS=1 puts containerd's state,
#        the engine's and runc's state roots on tmpfs (as /run is on nodes), JOURNAL=1 puts
#        containerd's root (its snapshots: the images' layers and the containers' writable
#        layers) on a journaled ext4 in a file of its own, as a node's /var/lib is, KEEP=1
#        keeps the temporary directory (containerd's log), SHIM_BIN=PATH / NULL_SHIM_BIN=PATH /
#        CLIENT_BIN=PATH measure those builds instead of building them (release, glibc).
#        A/B: BASE_SHIM_BIN=PATH registers another build of our shim as the handler `base`
#        and HANDLERS="hostprocess base" runs part 1 with those two alone, interleaved
#        (default HANDLERS="hostprocess runc null nullspawn nullwork").
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
rounds=${1:-100}
warmup=${WARMUP:-5}
density=${DENSITY:-100}
density_handlers=${DENSITY_HANDLERS:-hostprocess runc}
gap_ms=${GAP_MS:-200}
read -r -a handlers <<<"${HANDLERS:-hostprocess runc null nullspawn nullwork}"
log_level=${LOG_LEVEL:-info}

HP_SHIM=containerd-shim-hostprocess-v1
NULL_SHIM=containerd-shim-null-v1
RUNC_SHIM=containerd-shim-runc-v2
IMAGE=docker.io/library/hpc-bench-busybox:latest
PAUSE_IMAGE=registry.k8s.io/pause:3.6
BUSYBOX=/bin/busybox
NS=k8s.io                                        # the CRI's namespace

# ---------------------------------------------------------------- prerequisites (no installs)
missing=()
[[ $(id -u) == 0 ]] || { echo "bench: run as root (containerd, mounts, cgroups)" >&2; exit 1; }
for tool in containerd ctr "$RUNC_SHIM"; do
  command -v "$tool" >/dev/null || { missing+=(containerd); break; }
done
command -v runc >/dev/null || missing+=(runc)
command -v python3 >/dev/null || missing+=(python3)
if [[ ! -x $BUSYBOX ]] || head -c 8192 "$BUSYBOX" | grep -ac 'ld-linux' >/dev/null; then
  missing+=(busybox-static)
fi
if ((${#missing[@]})); then
  echo "bench: missing: ${missing[*]}" >&2
  echo "bench: install them with: apt-get install ${missing[*]}" >&2
fi
command -v cargo >/dev/null || echo "bench: missing: cargo (the Rust toolchain, rustup)" >&2
((${#missing[@]} == 0)) && command -v cargo >/dev/null || exit 1

build() {  # build NAME CARGO-ARGS...: a release build, unless it was given
  echo "bench: building $1 (release)" >&2
  shift
  cargo build --release --locked "$@" >&2
}
shim_bin=${SHIM_BIN:-$repo/target/release/$HP_SHIM}
[[ -n ${SHIM_BIN:-} ]] || build "the shim" -p "$HP_SHIM"
null_shim_bin=${NULL_SHIM_BIN:-$repo/target/release/examples/null-shim}
[[ -n ${NULL_SHIM_BIN:-} ]] || build "the floor's shim" -p "$HP_SHIM" --example null-shim
client_bin=${CLIENT_BIN:-$repo/target/release/examples/cri-bench}
[[ -n ${CLIENT_BIN:-} ]] || build "the CRI client" -p cri-tests --example cri-bench
for bin in "$shim_bin" "$null_shim_bin" "$client_bin"; do
  [[ -x $bin ]] || { echo "bench: $bin was not built" >&2; exit 1; }
done

# ---------------------------------------------------------------- private containerd + cleanup
work=$(mktemp -d /tmp/hpc-cri-bench.XXXXXX)   # short: the socket path must fit sun_path
sock=$work/containerd.sock
cgroup_parent=/hpc-cri-bench-$$               # the kubelet's /kubepods (cgroupfs driver)
ctrd_pid=
results=$repo/bench/results
mkdir -p "$results" "$work"/{root,state,opt,cni/net.d,hostprocess,bin,runc,logs}
# Private copies first on containerd's PATH: a cargo build elsewhere cannot swap them.
cp "$shim_bin" "$work/bin/$HP_SHIM"
cp "$null_shim_bin" "$work/bin/$NULL_SHIM"
cp "$null_shim_bin" "$work/bin/containerd-shim-nullspawn-v1"
cp "$null_shim_bin" "$work/bin/containerd-shim-nullwork-v1"
cp "$client_bin" "$work/bin/cri-bench"
BASE_SHIM=containerd-shim-hostprocessbase-v1
[[ -z ${BASE_SHIM_BIN:-} ]] || cp "$BASE_SHIM_BIN" "$work/bin/$BASE_SHIM"

ctr_t() { timeout 30 ctr --address "$sock" --namespace "$NS" "$@"; }

# Every process of shim binary $1 started for this containerd, with its socket path if any (the address file in its bundle).
shim_pids() {
  python3 - "$1" "$sock" <<'PY'
import os, sys
name, sock = sys.argv[1:3]
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        continue
    args = [a.decode(errors="replace") for a in args if a]
    if not args or os.path.basename(args[0]) != name or sock not in args:
        continue
    # A serving shim runs in its bundle, where its start action wrote the socket's address.
    try:
        socket = open(f"/proc/{pid}/cwd/address").read().strip()
    except OSError:
        socket = ""
    print(pid, socket.removeprefix("unix://"))
PY
}

cleanup() {
  local rc=$? pid socket id ids mp
  set +e
  trap - EXIT INT TERM
  if [[ -n $ctrd_pid ]] && kill -0 "$ctrd_pid" 2>/dev/null; then
    ids=$(ctr_t containers ls -q 2>/dev/null)
    for id in $ids; do ctr_t tasks kill -s SIGKILL "$id" >/dev/null 2>&1; done
    for id in $ids; do ctr_t tasks rm -f "$id" >/dev/null 2>&1; done
    for id in $ids; do ctr_t containers rm "$id" >/dev/null 2>&1; done
    kill -TERM "$ctrd_pid"
    for _ in $(seq 100); do kill -0 "$ctrd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$ctrd_pid" 2>/dev/null
    wait "$ctrd_pid" 2>/dev/null
  fi
  # Shims outlive containerd: let ours tear down what its engine still records, then kill
  # every shim process of this containerd and remove its socket.
  if [[ -d $work/hostprocess/$NS ]]; then
    for id in $(ls "$work/hostprocess/$NS"); do
      (cd "$work" && HOSTPROCESS_SHIM_ROOT=$work/hostprocess TTRPC_ADDRESS=$sock.ttrpc \
        timeout 60 "$work/bin/$HP_SHIM" -namespace "$NS" -address "$sock" -id "$id" \
        -bundle "$work/state/io.containerd.runtime.v2.task/$NS/$id" delete >/dev/null 2>&1)
    done
  fi
  while read -r pid socket; do
    kill -KILL "$pid" 2>/dev/null
    [[ -S $socket ]] && rm -f "$socket"
  done < <(shim_pids "$HP_SHIM"; shim_pids "$RUNC_SHIM"; shim_pids "$NULL_SHIM"; shim_pids containerd-shim-nullspawn-v1
    shim_pids containerd-shim-nullwork-v1; shim_pids "$BASE_SHIM")
  # Whatever still runs in our pods' cgroups is ours: kill it, then remove the cgroups,
  # deepest first.
  for dir in /sys/fs/cgroup/*"$cgroup_parent" /sys/fs/cgroup/*/*"$cgroup_parent"; do
    [[ -d $dir ]] || continue
    find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r pid; do
      kill -KILL "$pid" 2>/dev/null
    done
  done
  sleep 0.2
  for dir in /sys/fs/cgroup/*"$cgroup_parent" /sys/fs/cgroup/*/*"$cgroup_parent"; do
    [[ -d $dir ]] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  # Unmount everything under the directory, deepest first.
  while read -r mp; do umount -l "$mp" 2>/dev/null; done < <(
    awk -v d="$work" '$5 == d || index($5, d "/") == 1 { print length($5), $5 }' /proc/self/mountinfo |
      sort -rn | cut -d' ' -f2-)
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
  for dir in "$work/state" "$work/hostprocess" "$work/runc"; do
    mount -t tmpfs -o size=256m,mode=0711 hpc-bench-state "$dir"
  done
fi
# JOURNAL=1: containerd's root on a journaled ext4 (a sparse file on a loop device, freed with
# its mount at cleanup). This machine's own root filesystem has no journal, and ext4 without one
# looks for recently deleted inodes at every inode it allocates: after the benchmark's churn an
# overlay mount (its work directory's checks) takes ~0.6 ms there against ~0.15 ms on a
# journaled ext4. A node's /var/lib/containerd is on a journaled filesystem.
if [[ ${JOURNAL:-0} == 1 ]]; then
  truncate -s 8G "$work/root.img"
  mkfs.ext4 -q -F "$work/root.img"
  mount -o loop "$work/root.img" "$work/root"
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
    sandbox_image = "$PAUSE_IMAGE"
    restrict_oom_score_adj = true
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$work/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          Root = "$work/runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hostprocess]
        runtime_type = "io.containerd.hostprocess.v1"
        pod_annotations = ["microsoft.com/*", "hostprocess.io/*", "io.microsoft.*"]
        container_annotations = ["microsoft.com/*", "hostprocess.io/*", "io.microsoft.*"]
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.null]
        runtime_type = "io.containerd.null.v1"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nullspawn]
        runtime_type = "io.containerd.nullspawn.v1"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nullwork]
        runtime_type = "io.containerd.nullwork.v1"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.base]
        runtime_type = "io.containerd.hostprocessbase.v1"
        pod_annotations = ["microsoft.com/*", "hostprocess.io/*", "io.microsoft.*"]
        container_annotations = ["microsoft.com/*", "hostprocess.io/*", "io.microsoft.*"]
EOF

echo "bench: starting a private containerd in $work" >&2
PATH=$work/bin:$PATH HOSTPROCESS_SHIM_ROOT=$work/hostprocess \
  containerd --config "$work/containerd.toml" </dev/null >"$work/containerd.log" 2>&1 &
ctrd_pid=$!
for i in $(seq 300); do
  kill -0 "$ctrd_pid" 2>/dev/null || { tail -n 40 "$work/containerd.log" >&2; echo "bench: containerd exited" >&2; exit 1; }
  [[ -S $sock ]] && ctr --address "$sock" version >/dev/null 2>&1 && break
  ((i < 300)) || { tail -n 40 "$work/containerd.log" >&2; echo "bench: containerd does not answer" >&2; exit 1; }
  sleep 0.1
done

# ---------------------------------------------------------------- the images (OCI layout tars)
# One uncompressed layer: static busybox, the few applets the pods run, passwd/group. The pause
# image is the same layer with a pause loop of sh as its command.
img=$work/image
mkdir -p "$img/rootfs"/{bin,dev,etc,proc,sys,tmp}
cp "$BUSYBOX" "$img/rootfs/bin/busybox"
for applet in sh true sleep; do ln -s busybox "$img/rootfs/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$img/rootfs/etc/passwd"
printf 'root:x:0:\n' >"$img/rootfs/etc/group"
tar --create --file "$img/layer.tar" --directory "$img/rootfs" --sort=name \
  --numeric-owner --owner=0 --group=0 --mtime=@0 bin dev etc proc sys tmp
case $(uname -m) in
  x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;;
esac
# import_image NAME CMD-JSON: an image of the layer with that command, imported into the CRI's
# namespace.
import_image() {
  local layout=$img/layout-${1//[^a-z0-9]/-} layer_digest layer_size config_digest config_size
  local manifest_digest manifest_size
  mkdir -p "$layout/blobs/sha256"
  put_blob() {  # FILE -> "DIGEST SIZE", stored under blobs/sha256/DIGEST
    local digest
    digest=$(sha256sum "$1" | cut -d' ' -f1)
    cp "$1" "$layout/blobs/sha256/$digest"
    printf '%s %s\n' "$digest" "$(stat -c %s "$1")"
  }
  read -r layer_digest layer_size < <(put_blob "$img/layer.tar")
  printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":%s,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"bench/cri.sh"}]}' \
    "$arch" "$2" "$layer_digest" >"$layout.config.json"
  read -r config_digest config_size < <(put_blob "$layout.config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$layout.manifest.json"
  read -r manifest_digest manifest_size < <(put_blob "$layout.manifest.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_digest" "$manifest_size" "$arch" "$1" "${1##*:}" >"$layout/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  tar --create --file "$layout.tar" --directory "$layout" --sort=name \
    --numeric-owner --owner=0 --group=0 --mtime=@0 oci-layout index.json blobs
  ctr_t images import "$layout.tar" >&2
}
import_image "$IMAGE" '["/bin/sh"]'
import_image "$PAUSE_IMAGE" \
  '["/bin/sh","-c","trap '"'"'exit 0'"'"' TERM INT; while :; do sleep 3600 & wait $!; done"]'
# The CRI picks imported images up from containerd's events: wait until it knows both.
for _ in $(seq 100); do
  [[ $(ctr_t images ls -q | grep -cE "^($IMAGE|$PAUSE_IMAGE)\$") == 2 ]] && break
  sleep 0.1
done
sleep 1

client() { "$work/bin/cri-bench" "$1" "$sock" "$IMAGE" "$cgroup_parent" "$work/logs" "${@:2}"; }

# ---------------------------------------------------------------- 1. pods
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench: $rounds rounds of one pod per handler (load $load_before)" >&2
client pods "$rounds" "$warmup" "$gap_ms" "${handlers[@]}" >"$results/cri-pods.jsonl"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- 2. density
: >"$results/cri-density.jsonl"
density_load=
if ((density > 0)); then
  for handler in $density_handlers; do
    case $handler in
      hostprocess) shim=$HP_SHIM ;; runc) shim=$RUNC_SHIM ;; null) shim=$NULL_SHIM ;;
      base) shim=$BASE_SHIM ;;
      *) echo "bench: unknown handler $handler" >&2; exit 1 ;;
    esac
    # The pods of part 1 (or the last handler's) are gone; so must their shims be.
    for _ in $(seq 100); do
      [[ -z $(shim_pids "$HP_SHIM"; shim_pids "$RUNC_SHIM"; shim_pids "$NULL_SHIM"; shim_pids "$BASE_SHIM") ]] && break
      sleep 0.1
    done
    density_load+="$handler: $(cut -d' ' -f1-3 /proc/loadavg); "
    echo "bench: $density $handler pods at once" >&2
    client density "$handler" "$density" "$ctrd_pid" "$shim" >>"$results/cri-density.jsonl"
    sleep 2
  done
fi

# ---------------------------------------------------------------- summary
disk="this machine's disk"
storage="state on $([[ ${TMPFS:-0} == 1 ]] && echo tmpfs || echo "$disk"), containerd's root on $([[ ${JOURNAL:-0} == 1 ]] && echo "a journaled ext4" || echo "$disk")"
python3 - "$results" "$rounds" "$load_before" "$load_after" "$density_load" "$storage" <<'PY'
import json, statistics, sys, time
res, rounds, load_before, load_after, density_load, storage = sys.argv[1:7]
pods = [json.loads(l) for l in open(f"{res}/cri-pods.jsonl") if l.strip()]
med = {}
for h in ("hostprocess", "runc", "null", "nullspawn", "nullwork"):
    rows = [p for p in pods if p["handler"] == h]
    if not rows:
        med[h] = {"n": 0}
        continue
    med[h] = {k: statistics.median(p[k] for p in rows) for k in ("start_ms", "exited_ms", "total_ms")}
    med[h]["n"] = len(rows)
if not med["runc"]["n"]:  # A/B: two builds of our shim
    base = {h: {k: statistics.median(p[k] for p in pods if p["handler"] == h)
                for k in ("start_ms", "exited_ms", "total_ms")} for h in ("hostprocess", "base")}
    out = [f"A/B, {med['hostprocess']['n']} pods each, interleaved, {storage}, load {load_before} / {load_after}:"]
    for k in ("start_ms", "exited_ms", "total_ms"):
        out.append(f"{k}: base {base['base'][k]:.2f} ms, this build {base['hostprocess'][k]:.2f} ms "
                   f"({base['hostprocess'][k] - base['base'][k]:+.2f} ms)")
    if all("steps_ms" in p for p in pods):
        for i in range(6):
            m = {h: statistics.median(p["steps_ms"][i] for p in pods if p["handler"] == h)
                 for h in ("hostprocess", "base")}
            out.append(f"step {i}: base {m['base']:.2f} ms, this build {m['hostprocess']:.2f} ms")
    open(f"{res}/cri-ab.md", "w").write("\n".join(out) + "\n")
    print("\n".join(out))
    sys.exit(0)
hp, runc = med["hostprocess"], med["runc"]
# The floors that ran (any of them may be left out with HANDLERS).
floors = [(h, label) for h, label in (("null", "floor (null shim)"),
                                      ("nullspawn", "floor 2 (runs the process)"),
                                      ("nullwork", "floor 3 (a runtime's work)")) if med[h]["n"]]
short = {"null": "floor", "nullspawn": "floor 2", "nullwork": "floor 3"}
out = [f"# CRI pods ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
       f"{hp['n']} pods per handler, interleaved; {storage}; load {load_before} before, {load_after} after.", "",
       "| medians | hostprocess | runc | " + "".join(f"{label} | " for _, label in floors)
       + "runc / ours | " + ("runc / floor | " if med["null"]["n"] else "")
       + "".join(f"ours − {short[h]} | " for h, _ in floors),
       "| --- | ---: | ---: | " + "---: | " * (len(floors) * 2 + 1 + bool(med["null"]["n"]))]
for key, label in (("start_ms", "start (RunPodSandbox → StartContainer returned)"),
                   ("exited_ms", "until the container exited"),
                   ("total_ms", "whole pod (… → RemovePodSandbox)")):
    out.append(f"| {label} | {hp[key]:.1f} ms | {runc[key]:.1f} ms | "
               + "".join(f"{med[h][key]:.1f} ms | " for h, _ in floors)
               + f"{runc[key] / hp[key]:.2f}× | "
               + (f"{runc[key] / med['null'][key]:.2f}× | " if med["null"]["n"] else "")
               + "".join(f"{hp[key] - med[h][key]:.1f} ms | " for h, _ in floors))
steps = ("RunPodSandbox", "CreateContainer", "StartContainer", "exit seen (ContainerStatus)",
         "StopPodSandbox", "RemovePodSandbox")
if all("steps_ms" in p and len(p["steps_ms"]) == len(steps) for p in pods):
    out += ["", "Each call's median (the client's view; ms):", "",
            "| call | hostprocess | runc | " + "".join(f"{short[h]} | " for h, _ in floors)
            + "".join(f"ours − {short[h]} | " for h, _ in floors),
            "| --- | ---: | ---: | " + "---: | " * (len(floors) * 2)]
    for i, name in enumerate(steps):
        m = {h: statistics.median(p["steps_ms"][i] for p in pods if p["handler"] == h)
             for h in med if med[h]["n"]}
        out.append(f"| {name} | {m['hostprocess']:.1f} | {m['runc']:.1f} | "
                   + "".join(f"{m[h]:.1f} | " for h, _ in floors)
                   + "".join(f"{m['hostprocess'] - m[h]:.1f} | " for h, _ in floors))
null_total = f"/{med['null']['total_ms']:.1f}" if med["null"]["n"] else ""
null_start = f"/{med['null']['start_ms']:.1f}" if med["null"]["n"] else ""
summary = (f"pods: whole {hp['total_ms']:.1f}/{runc['total_ms']:.1f}{null_total} ms "
           f"({runc['total_ms'] / hp['total_ms']:.2f}×), start {hp['start_ms']:.1f}/{runc['start_ms']:.1f}"
           f"{null_start} ms ({runc['start_ms'] / hp['start_ms']:.2f}×)")
if med["nullwork"]["n"]:
    summary += f", floor 3 whole {med['nullwork']['total_ms']:.1f} ms"
dens = [json.loads(l) for l in open(f"{res}/cri-density.jsonl") if l.strip()]
if dens:
    out += ["", f"Density (load before each: {density_load.strip()}):", "",
            "| handler | pods | start all | containerd CPU (start) | shims | shims' PSS | shims' RSS | remove all | containerd CPU (remove) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for d in dens:
        out.append(f"| {d['handler']} | {d['pods']} | {d['start_all_ms'] / 1e3:.2f} s | "
                   f"{d['containerd_cpu_start_ms'] / 1e3:.2f} s | {d['shims']} | "
                   f"{d['shims_pss_kib'] / 1024:.1f} MiB | {d['shims_rss_kib'] / 1024:.1f} MiB | "
                   f"{d['remove_all_ms'] / 1e3:.2f} s | {d['containerd_cpu_remove_ms'] / 1e3:.2f} s |")
    by = {d["handler"]: d for d in dens}
    if "hostprocess" in by and "runc" in by:
        h, r = by["hostprocess"], by["runc"]
        ratio = (f"runc / ours: start all {r['start_all_ms'] / h['start_all_ms']:.2f}×, "
                 f"PSS {r['shims_pss_kib'] / h['shims_pss_kib']:.2f}× "
                 f"(ours {h['shims_pss_kib'] / r['shims_pss_kib']:.3f} of runc's), containerd CPU "
                 f"{r['containerd_cpu_start_ms'] / max(h['containerd_cpu_start_ms'], 1):.2f}×")
        out += ["", ratio]
        summary += f"; density {h['pods']}: {ratio}"
out = [line.rstrip() for line in out]
open(f"{res}/cri.md", "w").write("\n".join(out) + "\n")
with open(f"{res}/cri-history.md", "a") as f:
    f.write(f"- {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} load {load_before}, {storage}: {summary}\n")
print("\n".join(out))
PY
