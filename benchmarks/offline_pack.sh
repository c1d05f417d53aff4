#!/usr/bin/env bash
# Pack what a GPU machine without internet needs to run nas and its benchmarks. Run it from the
# repository root on a machine where pip reaches the package index:
#
#   bash benchmarks/offline_pack.sh DIR [PYTHON_VERSION] [GLIBC]
#   bash benchmarks/offline_pack.sh /media/usb/nas-pack 3.12 2.28
#
# DIR/wheels  nas's dependencies (with the extras in $EXTRAS, default "bench") as wheels for the
#             target's Python (default: this one's) and glibc (default 2.28; `ldd --version` there
#             says; $ARCH, default x86_64), plus nas's own wheel and setuptools
# DIR/data    Fashion-MNIST in torchvision's layout (FashionMNIST/raw/*.gz): copied from
#             $DATA_FROM (default ../shared/data) where it is there, else downloaded by torchvision
#
# Copy DIR and the checkout to the GPU machine; there, in the checkout:
#   python3 -m venv .venv && . .venv/bin/activate
#   pip install --no-index --find-links DIR/wheels -e '.[bench]'
#   python -m benchmarks.<name> ... dataset=fashion_mnist dataset.root=DIR/data device=cuda
# torch's CUDA wheels make up most of DIR (a few GB).
set -euo pipefail
DIR=${1:?usage: bash benchmarks/offline_pack.sh DIR [PYTHON_VERSION] [GLIBC]}
PY=${2:-$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')}
GLIBC=${3:-2.28} ARCH=${ARCH:-x86_64}
PLATFORMS=(--platform manylinux2014_$ARCH)   # pip takes each manylinux tag by name: list them all
for minor in $(seq 17 "${GLIBC#2.}"); do PLATFORMS+=(--platform "manylinux_2_${minor}_$ARCH"); done
mkdir -p "$DIR/wheels" "$DIR/data"

# nas itself and hydra's runtime (antlr4-python3-runtime 4.9.3 is published as a source archive
# only): pure-Python wheels, built here.
python3 -m pip wheel --no-deps -w "$DIR/wheels" . antlr4-python3-runtime==4.9.3
NAS_WHEEL=$(ls "$DIR"/wheels/nas_efficient_transformers-*.whl | tail -1)
VERSION=$(basename "$NAS_WHEEL" | cut -d- -f2)
# Everything else as binary wheels for the target; setuptools for the editable install there.
python3 -m pip download -d "$DIR/wheels" --find-links "$DIR/wheels" --only-binary=:all: \
    --python-version "$PY" "${PLATFORMS[@]}" \
    "nas-efficient-transformers[${EXTRAS:-bench}]==$VERSION" "setuptools>=77" wheel

python3 - "$DIR/data" "${DATA_FROM:-../shared/data}" <<'PY'
import pathlib
import shutil
import sys

out, source = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]) / "FashionMNIST" / "raw"
files = sorted(source.glob("*-ubyte.gz")) if source.is_dir() else []
if files:
    (out / "FashionMNIST" / "raw").mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, out / "FashionMNIST" / "raw" / f.name)
else:
    from torchvision.datasets import FashionMNIST

    for train in (True, False):
        FashionMNIST(str(out), train=train, download=True)
PY
du -sh "$DIR/wheels" "$DIR/data"
