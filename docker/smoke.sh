#!/usr/bin/env bash
# Smoke test of the CPU image: a two-model batch (tiny procedural assets) in a
# container, with the data folder mounted; checks the summary and the exit code.
#
#   docker/smoke.sh [IMAGE]            # ENGINE=docker (default), podman or buildah
#
# ENGINE=buildah runs the image without a container runtime daemon (buildah's
# chroot isolation): for hosts, such as unprivileged CI containers, where
# `docker run` / `podman run` cannot start a container.
set -euo pipefail
image=${1:-difflod:cpu}
engine=${ENGINE:-docker}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
cat >"$data/cfg.json" <<'JSON'
{"iter": 3, "train_res": 32, "batch": 1, "texture_res": [32, 32], "eval_views": 2,
 "eval_res": 32, "save_interval": 100, "log_interval": 100}
JSON
cat >"$data/manifest.csv" <<'CSV'
model,triangles
asset:sphere?triangles=400&texture_res=32,25%
asset:spiky?triangles=400&texture_res=32,150
CSV
args=(batch manifest.csv -o out --config cfg.json --quiet)
case $engine in
    buildah)
        ctr=$(buildah from --pull=never "$image")
        trap 'buildah rm "$ctr" >/dev/null; rm -rf "$data"' EXIT
        buildah run --isolation=chroot -v "$data:/data" --workingdir /data "$ctr" -- \
            difflod "${args[@]}" ;;
    *)
        "$engine" run --rm -v "$data:/data" "$image" "${args[@]}" ;;
esac
test -f "$data/out/summary.csv" || { echo "smoke: no out/summary.csv" >&2; exit 1; }
ok=$(grep -c ',ok,' "$data/out/summary.csv" || true)
test "$ok" = 2 || { echo "smoke: expected 2 completed models, got $ok" >&2;
                    cat "$data/out/summary.csv" >&2; exit 1; }
cut -d, -f1,3,5,8,9,10 "$data/out/summary.csv"
echo "smoke: $image ran difflod batch: 2 models completed"
