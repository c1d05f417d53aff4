#!/usr/bin/env bash
# The issue-16 runs on the lent one-GPU machine (device tool), each stage one call of <= 10 minutes:
#   pipeline       search, front and baselines retrained (--parallel processes), report -> $OUT/w.tgz
#   pipeline-tune  the same with the front as Tune trials (needs .devpack from pack.sh)
#   quality        ranking picks, nas report, found_vs_baselines (from the pipeline's w.tgz in .w/)
#   finish         predictor fit + the 5 x 2 efficiency searches (+ TRAIN_LEFT trainings beside the fit)
#   train-left     TRAIN_LEFT trainings, then found_vs_baselines with ORT and CUDA
# Carry .devpack (bash benchmarks/device/pack.sh here: packages with Ray, data as xz) or the .whl and
# .devdata of BENCHMARKS.md "How the figures are made" (no Ray: then no Tune). The later stages
# start from WARCHIVE, by default the committed benchmarks/results/issue16_h200_study.tgz.
set -u
if [ -f .devpack/site312.tar.xz ]; then   # benchmarks/device/pack.sh: Ray (Tune) too, data as xz
    source benchmarks/device/unpack.sh
else                                     # the wheels and .devdata of BENCHMARKS.md
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
fi
export NAS_BENCH_COMMIT=${NAS_BENCH_COMMIT:-unknown}
D="dataset=fashion_mnist dataset.root=$PWD/.devdata device=cuda seed=0"
RECIPE="retrain.batch_size=512 retrain.lr=0.003"   # 30 epochs (the default), 106 steps an epoch
BASELINES="mobilenetv3_small_050 resnet10t deit_tiny_patch16_224 efficientformerv2_s0 mobilevitv2_050"
W=/tmp/w
case "$1" in
pipeline)
    timeout 540 python -m benchmarks.search_pipeline --dir $W --parallel 10 --baselines $BASELINES \
        --search "+space=vit supernet=gpu n_trials=500 executor.n_workers=8" --train "$RECIPE" \
        --out $OUT/pipeline.json -- $D
    echo "pipeline exit $?"
    (cd $W && tar czf $OUT/w.tgz nas.db report *.csv *.png *.log train-logs .nas_cache/supernets \
        $(find .nas_cache/retrain -name result.json))
    ;;
pipeline-tune)
    timeout 560 python -m benchmarks.search_pipeline --dir $W --tune --baselines $BASELINES \
        --search "+space=vit supernet=gpu n_trials=500 executor.n_workers=8" \
        --train "$RECIPE trainer=tune trainer.gpus_per_trial=0.08 trainer.max_concurrent=12 trainer.cpus_per_trial=1 trainer.scheduler=fifo" \
        --out $OUT/pipeline.json -- $D
    echo "pipeline exit $?"
    (cd $W && tar czf $OUT/w.tgz nas.db report *.csv *.png *.log train-logs .nas_cache/supernets \
        $(find .nas_cache/retrain -name result.json))
    ;;
quality)
    # The first call's folder; baselines it had no time for (BASELINES_LEFT) train here beside the ranking.
    mkdir -p $W && tar xzf ${WARCHIVE:-.w/w.tgz} -C $W
    S=${STUDY:-$(python -c "import json; print(json.load(open('.w/pipeline.json'))['study'])")}
    (cd $W && timeout 90 python -m nas latency fit +space=vit $D n_samples=200 progress=false) | tail -3
    E=/tmp/e; mkdir -p $E/.nas_cache && cp -r $W/.nas_cache/supernets $W/.nas_cache/predictors $E/.nas_cache/
    for B in ${BASELINES_LEFT:-}; do
        (cd $W && timeout 300 python -m nas train $D $RECIPE study_name=$S timm=$B progress=false \
            > train-logs/baseline-$B.log 2>&1) &
    done
    L=/tmp/logs; mkdir -p $L
    timeout 300 python -m benchmarks.search_ranking --dir $W --study $S --n 24 --parallel ${RANK_PARALLEL:-7} \
        --out $OUT/ranking.json --plot $OUT/ranking.png -- $D $RECIPE progress=false > $L/ranking.log 2>&1 &
    timeout 320 python -m benchmarks.search_efficiency --dir $E --samplers random tpe --seeds 0 1 2 3 4 \
        --trials 500 --parallel ${EFF_PARALLEL:-9} --measure "profiler=onnxruntime" --out $OUT/efficiency.json \
        --plot $OUT/efficiency.png -- +space=vit $D supernet=gpu executor=inprocess profiler=predictor \
        profiler.measure_fraction=0 > $L/efficiency.log 2>&1
    wait
    tail -3 $L/ranking.log $L/efficiency.log
    T=$SECONDS; (cd $W && timeout 40 python -m nas report $D study_name=$S progress=false) 2>&1 | tail -2
    echo "nas report: $((SECONDS - T)) s"
    timeout 50 python -m benchmarks.found_vs_baselines --dir $W --study $S --measure "profiler=onnxruntime" \
        --out $OUT/fvb_onnxruntime.json --plot $L/fvb_onnxruntime.png -- $D
    timeout 50 python -m benchmarks.found_vs_baselines --dir $W --study $S \
        --measure "profiler=torch profiler.device=cuda" --out $OUT/fvb_cuda.json --plot $L/fvb_cuda.png -- $D
    cp $E/*.log $L/ 2>/dev/null; (cd $W && tar czf $L/w2.tgz nas.db train-logs report $(find .nas_cache/retrain -name result.json)); tar czf $OUT/logs.tgz -C $L .
    ;;
finish)
    # The efficiency runs in a call of their own (~9 min): the predictor fit (270 blocks and 100
    # samples measured, ~2-4 min) and 10 predictor-driven searches of 500 trials. Trainings named in
    # TRAIN_LEFT run beside the fit (which then ignores their CPU load).
    mkdir -p $W && tar xzf ${WARCHIVE:-benchmarks/results/issue16_h200_study.tgz} -C $W
    S=$STUDY; L=/tmp/logs; mkdir -p $L $W/train-logs
    for J in ${TRAIN_LEFT:-}; do   # trial numbers and timm names
        case $J in [0-9]*) WHAT="trial=$J" ;; *) WHAT="timm=$J" ;; train-left)
    # When device time is short: only the trainings left, then found_vs_baselines with both profilers.
    mkdir -p $W && tar xzf ${WARCHIVE:-benchmarks/results/issue16_h200_study.tgz} -C $W
    S=$STUDY; L=/tmp/logs; mkdir -p $L $W/train-logs
    for J in ${TRAIN_LEFT:-}; do
        case $J in [0-9]*) WHAT="trial=$J" ;; *) WHAT="timm=$J" ;; esac
        (cd $W && timeout ${TRAIN_TIMEOUT:-200} python -m nas train $D $RECIPE study_name=$S $WHAT progress=false \
            > train-logs/left-$J.log 2>&1) &
    done
    # issue 18 on one GPU: the torchrun path (NCCL, one process) runs and writes the supernet
    NAS_TORCHRUN=1 timeout 150 python -m benchmarks.supernet_training --config-dir benchmarks/conf \
        +space=vit_nov23 $D progress=false supernet=gpu supernet.epochs=2 --trials 0 \
        --out $OUT/torchrun_1gpu_2ep.json > $L/torchrun.log 2>&1 &
    wait
    tail -5 $L/torchrun.log
    echo "trainings done at $SECONDS s"
    (cd $W && tar czf $OUT/w3.tgz nas.db train-logs $(find .nas_cache/retrain -name result.json))
    timeout 40 python -m benchmarks.found_vs_baselines --dir $W --study $S --measure "profiler=onnxruntime" \
        --out $OUT/fvb3_onnxruntime.json --plot $OUT/fvb3_onnxruntime.png -- $D
    timeout 40 python -m benchmarks.found_vs_baselines --dir $W --study $S \
        --measure "profiler=torch profiler.device=cuda" --out $OUT/fvb3_cuda.json --plot $OUT/fvb3_cuda.png -- $D
    ;;
esac
        (cd $W && timeout 250 python -m nas train $D $RECIPE study_name=$S $WHAT progress=false \
            > train-logs/left-$J.log 2>&1) &
    done
    (cd $W && timeout ${FIT_TIMEOUT:-240} python -m nas latency fit +space=vit $D n_samples=100 progress=false profiler.runs=50 profiler.rounds=3 \
        profiler.max_background_load=1.0) 2>&1 | tail -4
    echo "fit done at $SECONDS s"
    E=/tmp/e; mkdir -p $E/.nas_cache && cp -r $W/.nas_cache/supernets $W/.nas_cache/predictors $E/.nas_cache/
    timeout ${EFF_TIMEOUT:-300} python -m benchmarks.search_efficiency --dir $E --samplers random tpe --seeds 0 1 2 3 4 \
        --trials 500 --parallel 9 --measure "profiler=onnxruntime" --out $OUT/efficiency.json \
        --plot $OUT/efficiency.png -- +space=vit $D supernet=gpu executor=inprocess profiler=predictor \
        profiler.measure_fraction=0 > $L/efficiency.log 2>&1
    echo "efficiency exit $? at $SECONDS s"; tail -4 $L/efficiency.log
    wait
    (cd $W && tar czf $OUT/w3.tgz nas.db train-logs $(find .nas_cache/retrain -name result.json))
    for P in onnxruntime torch; do
        [ $SECONDS -lt ${FVB_BEFORE:-480} ] || break
        X=""; [ $P = torch ] && X="profiler.device=cuda"
        timeout 35 python -m benchmarks.found_vs_baselines --dir $W --study $S --measure "profiler=$P $X" \
            --out $OUT/fvb3_$P.json --plot $L/fvb3_$P.png -- $D
    done
    cp $E/*.log $L/ 2>/dev/null; tar czf $OUT/logs3.tgz -C $L .
    ;;
train-left)
    # When device time is short: only the trainings left, then found_vs_baselines with both profilers.
    mkdir -p $W && tar xzf ${WARCHIVE:-benchmarks/results/issue16_h200_study.tgz} -C $W
    S=$STUDY; L=/tmp/logs; mkdir -p $L $W/train-logs
    for J in ${TRAIN_LEFT:-}; do
        case $J in [0-9]*) WHAT="trial=$J" ;; *) WHAT="timm=$J" ;; esac
        (cd $W && timeout ${TRAIN_TIMEOUT:-200} python -m nas train $D $RECIPE study_name=$S $WHAT progress=false \
            > train-logs/left-$J.log 2>&1) &
    done
    # issue 18 on one GPU: the torchrun path (NCCL, one process) runs and writes the supernet
    NAS_TORCHRUN=1 timeout 150 python -m benchmarks.supernet_training --config-dir benchmarks/conf \
        +space=vit_nov23 $D progress=false supernet=gpu supernet.epochs=2 --trials 0 \
        --out $OUT/torchrun_1gpu_2ep.json > $L/torchrun.log 2>&1 &
    wait
    tail -5 $L/torchrun.log
    echo "trainings done at $SECONDS s"
    (cd $W && tar czf $OUT/w3.tgz nas.db train-logs $(find .nas_cache/retrain -name result.json))
    timeout 40 python -m benchmarks.found_vs_baselines --dir $W --study $S --measure "profiler=onnxruntime" \
        --out $OUT/fvb3_onnxruntime.json --plot $OUT/fvb3_onnxruntime.png -- $D
    timeout 40 python -m benchmarks.found_vs_baselines --dir $W --study $S \
        --measure "profiler=torch profiler.device=cuda" --out $OUT/fvb3_cuda.json --plot $OUT/fvb3_cuda.png -- $D
    ;;
esac
