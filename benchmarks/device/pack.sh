#!/usr/bin/env bash
# Here (dev VM, pip reaching PyPI): pack what a GPU call needs that the device image lacks, small
# enough to travel (<= 64 MiB with the checkout): the Python packages for Python 3.12 (optuna,
# hydra, sqlalchemy, ... and Ray without its Java jars, RLlib, Serve and LLM parts: 79 MB as a
# wheel, ~32 MB for all of it as one xz tarball) and Fashion-MNIST as xz (27 MB against 30 MB gz).
#   bash benchmarks/device/pack.sh            -> .devpack/site312.tar.xz, .devpack/fashion_mnist/*.xz
# A call then names .devpack in carry and starts with: source benchmarks/device/unpack.sh
set -euo pipefail
OUT=.devpack; mkdir -p $OUT/fashion_mnist; TMP=$(mktemp -d)
PY=(--python-version 3.12 --implementation cp --only-binary=:all: --platform manylinux2014_x86_64
    --platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64)
pip download -q --no-deps -d $TMP/whl "${PY[@]}" ray==2.60.0 optuna==5.0.0 hydra-core==1.3.8 omegaconf==2.3.1 \
    sqlalchemy==2.1.9 alembic==1.20.1 mako colorlog pydantic==2.14.4 pydantic-core==2.50.5 annotated-types \
    typing-inspection typing-extensions greenlet jsonschema jsonschema-specifications referencing rpds-py
pip wheel -q --no-deps -w $TMP/whl antlr4-python3-runtime==4.9.3
python3 - $TMP/whl <<'PY'
import pathlib, sys, zipfile
folder = pathlib.Path(sys.argv[1])
(src,) = folder.glob("ray-*.whl")
DROP = ("ray/jars/", "ray/rllib/", "ray/serve/", "ray/llm/")
slim = src.with_name(src.name.replace(".whl", ".slim"))
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as zout:
    for info in zin.infolist():
        if info.filename.startswith(DROP) or info.filename.endswith(".js.map"):
            continue
        data = zin.read(info.filename)
        if info.filename.endswith(".dist-info/RECORD"):
            data = b"\n".join(l for l in data.split(b"\n") if not l.startswith(tuple(d.encode() for d in DROP)))
        zout.writestr(info, data)
slim.replace(src)
PY
pip install -q --no-deps --no-compile --target $TMP/site "${PY[@]}" $TMP/whl/*.whl
find $TMP/site -name __pycache__ -prune -exec rm -rf {} +
# Ray's raylet, GCS server and _raylet.so carry their symbols: stripped, the pack is ~5 MB smaller
# (the checkout + pack must stay under 64 MiB).
strip --strip-unneeded $TMP/site/ray/_raylet.so $TMP/site/ray/core/src/ray/raylet/raylet \
    $TMP/site/ray/core/src/ray/gcs/gcs_server
tar -cf - -C $TMP/site . | xz -9 -T0 > $OUT/site312.tar.xz
for f in ../shared/data/FashionMNIST/raw/*-ubyte.gz; do
    gunzip -c "$f" | xz -9 -T0 > $OUT/fashion_mnist/$(basename "${f%.gz}").xz
done
rm -rf $TMP; du -sh $OUT/*
