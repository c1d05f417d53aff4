"""Does keeping the classifier head float make int8 models agree with their float models?

    python -m benchmarks.int8_head --dir RUN --members 20 --out benchmarks/results/int8_head.json

For members of the study's space drawn at random (seeded), with their weights inherited from the
study's trained supernet: the float ONNX model and two int8 models (latency_models.quantize's
scheme, and the same with the classifier head quantized too), calibrated on 256 images of the
training split; the share of the validation split's top-1 predictions each int8 model keeps,
and its top-1 against the float model's.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path

from benchmarks._harness import argument_parser, write_result


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--dir", required=True, help="folder of the study (nas.db, its cache_dir)")
    parser.add_argument("--study", default=None)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from latency_models.onnx_io import to_onnx
    from latency_models.quantize import predict, quantize_int8
    from nas.checkpoint import load_checkpoint
    from nas.data import Embedded
    from nas.export import stored_space
    from nas.quantized import as_float, calibration_images
    from nas.records import STUDY_ATTR
    from nas.study import load_existing_study, reading_storage

    with reading_storage(f"sqlite:///{Path(args.dir).resolve() / 'nas.db'}") as storage:
        study = load_existing_study(storage, args.study)
        info = study.user_attrs[STUDY_ATTR]
    data = Embedded().load()
    if info.get("data_fingerprint") != data.fingerprint():
        raise SystemExit(
            "--dir: this benchmark reads the embedded data; the study was searched on other data"
        )
    train_idx, val_idx = data.split(**info["split"])
    space = stored_space(
        info,
        study.study_name,
        image_size=data.image_size,
        in_channels=data.in_channels,
        num_classes=data.num_classes,
    )
    supernet = space.make_supernet()
    supernet.load_state_dict(load_checkpoint(Path(info["supernet_path"]), "cpu", keys=("model",))["model"])
    calibration = calibration_images(data, train_idx, 256, info["split"]["seed"])
    images, labels = as_float(data.images[val_idx]), data.labels[val_idx].numpy()
    rows = []
    for i in range(args.members):
        arch = space.sample(random.Random(i))
        float_onnx = to_onnx(supernet.extract(arch), arch.input_shape)
        reference = predict(float_onnx, images)
        row = {
            "arch": arch.summary(),
            "float_top1": round(100 * float((reference.argmax(1) == labels).mean()), 3),
        }
        for name, float_head in (("float_head", True), ("int8_head", False)):
            got = predict(quantize_int8(float_onnx, calibration, float_head=float_head).onnx, images)
            row[f"{name}_agreement"] = round(float((got.argmax(1) == reference.argmax(1)).mean()), 5)
            row[f"{name}_top1"] = round(100 * float((got.argmax(1) == labels).mean()), 3)
        rows.append(row)
        print(row, flush=True)
    summary = {
        f"{name}_agreement_{stat.__name__}": round(stat(r[f"{name}_agreement"] for r in rows), 5)
        for name in ("float_head", "int8_head")
        for stat in (min, statistics.median)
    }
    print(summary)
    write_result(
        args.out,
        {"study": study.study_name, "validation_images": len(labels), "rows": rows, "summary": summary},
    )


if __name__ == "__main__":
    main()
