#!/usr/bin/env bash
# What a lent GPU machine needs to run this package, brought in one call (issue 25, item 8).
#
# The device machine (docs: /work/.library/device) has Python 3.12 with a CUDA torch and the common
# scientific stack, no network, and receives the working tree plus carried paths, 64 MiB in all. It
# lacks nnU-Net, MONAI, SimpleITK and a few of their dependencies: ~24 MB of wheels plus SimpleITK's
# 53 MB wheel (262 MB unpacked), which alone would not fit; repacked with xz it is 28 MB.
#
#   benchmarks/device_bundle.sh build     here: .device/ (wheels for cp312 manylinux + simpleitk.tar.xz),
#                                          ignored by git through .git/info/exclude
#   benchmarks/device_bundle.sh size      here: what a device call would send (tracked + untracked-not-ignored
#                                          files + .device), against the 64 MiB limit
#   benchmarks/device_bundle.sh install   there: the bundle and this package (editable) into the image's
#                                          python3 environment (its CUDA torch stays)
#
#   benchmarks/device_bundle.sh hide-state   here, before the call: bench_state/ out of what travels
#   benchmarks/device_bundle.sh show-state   here, right after it: bench_state/ tracked again
#
# The tracked tree alone is ~35 MB while bench_state/ holds a saved benchmark (22 MB), which leaves
# too little room: for the device call only, hide-state takes it out of the index (staged as removed)
# and out of what git sees (.git/info/exclude); the files stay on disk. Commit nothing in between
# (a commit would delete the saved state from main); show-state undoes both.
#
# A device call then (one call, ~10 min of the 15; command under 2,000 characters):
#   bash benchmarks/device_bundle.sh install && PYTHONUNBUFFERED=1 python3 \
#       benchmarks/bench_fullsize_iteration.py --out /tmp/fullsize --gpus 0 --json $OUT/fullsize.json
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=.device
# Versions as in this project's environment (setup.py's pins resolved by `make install`); the image
# already has torch, numpy, scipy, scikit-image, scikit-learn, pandas, matplotlib, seaborn, tqdm,
# requests, tifffile, einops, threadpoolctl, msgpack, py-cpuinfo (device KINDS.md).
WHEELS="nnunetv2==2.8.1 dynamic-network-architectures==0.4.4 batchgenerators==0.25.5 batchgeneratorsv2==0.3.6
blosc2==4.15.0 ndindex==1.10.1 connected-components-3d==4.1.1 nibabel==5.4.2 monai==1.6.1 submitit==1.5.4
graphviz==0.21 yacs==0.1.8 future==1.0.0 unittest2==1.1.0 traceback2==1.4.0 linecache2==1.0.0
pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
importlib-resources==7.1.0"
SDISTS="acvl-utils==0.2.6"   # published as a source distribution only: built here into a wheel
SITK="simpleitk==2.5.7"
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any"
LIMIT=$((64 * 1024 * 1024))

die() { echo "device_bundle: $*" >&2; exit 1; }

case "${1:-}" in
    build)
        py=${PYTHON:-python3}
        grep -qx "/$BUNDLE/" .git/info/exclude 2>/dev/null || echo "/$BUNDLE/" >> .git/info/exclude
        rm -rf "$BUNDLE.tmp" && mkdir -p "$BUNDLE.tmp"
        # shellcheck disable=SC2086
        $py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            $PLATFORMS -d "$BUNDLE.tmp" $WHEELS
        $py -m pip wheel -q --no-deps -w "$BUNDLE.tmp" $SDISTS
        # shellcheck disable=SC2086
        $py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            $PLATFORMS -d "$BUNDLE.tmp/sitk_wheel" $SITK
        mkdir "$BUNDLE.tmp/sitk" && (cd "$BUNDLE.tmp/sitk" && unzip -q ../sitk_wheel/*.whl)
        tar -C "$BUNDLE.tmp/sitk" -cf - . | xz -9e -T2 > "$BUNDLE.tmp/simpleitk.tar.xz"
        rm -rf "$BUNDLE.tmp/sitk" "$BUNDLE.tmp/sitk_wheel"
        rm -rf "$BUNDLE" && mv "$BUNDLE.tmp" "$BUNDLE"
        du -sh "$BUNDLE"
        ;;
    size)
        [ -d "$BUNDLE" ] || die "no $BUNDLE/: run '$0 build' first"
        tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
        bundle=$(du -cb "$BUNDLE" | tail -1 | cut -f1)
        total=$((tree + bundle))
        printf 'tree %d MiB + %s %d MiB = %d MiB of %d MiB\n' $((tree >> 20)) "$BUNDLE" $((bundle >> 20)) $((total >> 20)) $((LIMIT >> 20))
        if [ "$total" -gt "$LIMIT" ]; then
            echo "over the limit: see this script's header (bench_state/ out of what travels for the call)" >&2
            exit 1
        fi
        ;;
    install)
        # Into the environment of the image's own python3 (a venv holding its CUDA torch: a venv made
        # from it would see the base interpreter's packages, not that venv's). The machine is thrown
        # away after the lease; nothing the image holds is replaced (--no-deps, no index).
        [ -d "$BUNDLE" ] || die "no $BUNDLE/ here: name \"$BUNDLE\" in the device call's carry"
        py=${PYTHON:-python3}
        site=$($py -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        $py -m pip install -q --no-index --no-deps --no-compile "$BUNDLE"/*.whl
        tar -C "$site" -xJf "$BUNDLE/simpleitk.tar.xz"
        $py -m pip install -q --no-index --no-deps --no-build-isolation -e .
        $py -c 'import torch, nnunetv2, SimpleITK, monai, atso_nnunet; print("device_bundle: torch", torch.__version__, "cuda", torch.cuda.is_available(), "| nnunetv2, SimpleITK", SimpleITK.Version_VersionString(), ", monai", monai.__version__, "ready")'
        ;;
    hide-state)
        git rm -r -q --cached bench_state
        grep -qx "/bench_state/" .git/info/exclude || echo "/bench_state/" >> .git/info/exclude
        echo "device_bundle: bench_state/ hidden from git for the device call; run '$0 show-state' right after it" >&2
        ;;
    show-state)
        sed -i '\|^/bench_state/$|d' .git/info/exclude
        git reset -q -- bench_state
        git status --short -- bench_state
        ;;
    *)
        echo "usage: $0 build | size | install | hide-state | show-state" >&2; exit 2 ;;
esac
