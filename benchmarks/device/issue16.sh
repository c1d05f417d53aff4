#!/usr/bin/env bash
# The issue-16 runs on the lent one-GPU machine (device tool), each stage one call of <= 10 minutes:
#   pipeline       search, front and baselines retrained (--parallel processes), report -> $OUT/w.tgz
#   pipeline-tune  the same with the front as Tune trials (needs .devpack from pack.sh)
#   quality        ranking picks and the baselines in BASELINES_LEFT, nas report, found_vs_baselines
#   finish         predictor fit, then the 5 x 2 efficiency searches (+ TRAIN_LEFT trainings beside them)
#   train-left     TRAIN_LEFT trainings (trial numbers, timm names), then found_vs_baselines
#   bg STAGE       STAGE detached (it runs on past this call while the machine stays warm), waits
#                  until DEADLINE (epoch seconds) or the stage's end, returns its files so far
#   collect STAGE  in a later call: waits for that bg stage and returns its files
#   speed          benchmarks.baseline_speed: each baseline's step alone (eager, channels-last,
#                  torch.compile for SPEED_COMPILE models) and its top CUDA kernels
#   smallest15     issue 15: the vit_nov23 supernet at batch 512 with the member pool
# Environment: MPS=1 starts NVIDIA MPS first (trainings sharing the GPU then overlap their kernels);
# RECIPE_EXTRA adds retrain overrides (e.g. retrain.channels_last=true; not part of the result key);
# EARLY=1: pipeline-tune starts the baselines with the search (search_pipeline --early-baselines).
# Carry .devpack (bash benchmarks/device/pack.sh here: packages with Ray, data as xz) or the .whl and
# .devdata of BENCHMARKS.md "How the figures are made" (no Ray: then no Tune). The stages after
# pipeline start from WARCHIVE, by default the committed benchmarks/results/issue16_h200_study.tgz.
set -u
if [ -f .devpack/site312.tar.xz ]; then   # benchmarks/device/pack.sh: Ray (Tune) too, data as xz
    source benchmarks/device/unpack.sh
else                                     # the wheels and .devdata of BENCHMARKS.md
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
fi
export NAS_BENCH_COMMIT=${NAS_BENCH_COMMIT:-unknown}
D="dataset=fashion_mnist dataset.root=$PWD/.devdata device=cuda seed=0"
RECIPE="retrain.batch_size=512 retrain.lr=0.003 ${RECIPE_EXTRA:-}"   # 30 epochs (the default), 105 steps an epoch
if [ "${MPS:-0}" = 1 ] && [ ! -f /tmp/mps-on ]; then  # NVIDIA MPS (default pipe folder: every
    # process, Ray's workers too, finds it): kernels of the trainings sharing the GPU overlap. A
    # CUDA call checks it; if that fails, MPS is stopped again and the stage runs without it.
    if nvidia-cuda-mps-control -d && python3 -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
        touch /tmp/mps-on; echo "MPS daemon started"
    else
        echo quit | nvidia-cuda-mps-control; echo "MPS did not start; running without it"
    fi
fi
BASELINES=${BASELINES:-"mobilenetv3_small_050 resnet10t deit_tiny_patch16_224 efficientformerv2_s0 mobilevitv2_050"}
SEARCH="+space=vit supernet=gpu n_trials=500 executor.n_workers=8"
W=${WDIR:-/tmp/w} E=/tmp/e L=/tmp/logs S=${STUDY:-vit-fashion_mnist}
# Trainings keep off the last two cores, where ONNX Runtime times its calls (pin_cpu=auto).
AWAY="taskset -c 0-$(( $(nproc) - 3 ))"
mkdir -p $L

pipeline() {  # $@: search_pipeline options; a fresh folder (a finished study there would just resume)
    W=${WDIR:-/tmp/wp}
    if [ -f $W/nas.db ]; then echo "pipeline: $W already holds a study; give another WDIR" >&2; exit 2; fi
    timeout ${PIPE_TIMEOUT:-560} python -m benchmarks.search_pipeline --dir $W --baselines $BASELINES --search "$SEARCH" \
        --out $OUT/pipeline.json "$@" -- $D
    echo "pipeline exit $?"
    (cd $W && tar czf $OUT/w.tgz nas.db report *.csv *.png *.log train-logs .nas_cache/supernets \
        $(find .nas_cache/retrain -name result.json))
}

study() {  # the study folder an earlier stage returned
    mkdir -p $W/train-logs && tar xzf ${WARCHIVE:-benchmarks/results/issue16_h200_study.tgz} -C $W
}

train() {  # $1: timeout; then trial numbers and timm names, each a nas train in the background
    local limit=$1 job what; shift
    for job in "$@"; do
        case $job in [0-9]*) what="trial=$job" ;; *) what="timm=$job" ;; esac
        (cd $W && timeout $limit $AWAY python -m nas train $D $RECIPE study_name=$S $what progress=false \
            > train-logs/left-$job.log 2>&1) &
    done
}

found_vs_baselines() {  # $1: what to prefix the files with; $2: the folder for the plots
    timeout 40 python -m benchmarks.found_vs_baselines --dir $W --study $S --measure "profiler=onnxruntime" \
        --out $OUT/$1_onnxruntime.json --plot $2/$1_onnxruntime.png -- $D
    timeout 40 python -m benchmarks.found_vs_baselines --dir $W --study $S \
        --measure "profiler=torch profiler.device=cuda" --out $OUT/$1_cuda.json --plot $2/$1_cuda.png -- $D
}

returned_study() {  # $1: the archive to write
    (cd $W && tar czf $1 nas.db train-logs $(find .nas_cache/retrain -name result.json))
}

waited() {  # $1: a bg stage; until it is done or DEADLINE; then its files so far into $OUT
    local B=/tmp/bg-$1 until=${DEADLINE:-$(( $(date +%s) + 570 ))}
    while [ ! -f $B/done ] && [ $(date +%s) -lt $until ]; do sleep 5; done
    [ -f $B/done ] && echo "bg $1 done" || echo "bg $1 still running"
    tail -25 $B/stage-$1.log; cp $B/*.* $OUT/ 2>/dev/null
    [ -f $B/done ]
}

case "$1" in
pipeline)
    pipeline --parallel 10 --train "$RECIPE"
    ;;
pipeline-tune)
    pipeline ${EARLY:+--early-baselines} --tune --train "$RECIPE trainer=tune trainer.gpus_per_trial=0.08 trainer.max_concurrent=12 trainer.cpus_per_trial=1 trainer.scheduler=fifo"
    ;;
quality)
    study
    train 300 ${BASELINES_LEFT:-}
    timeout 300 python -m benchmarks.search_ranking --dir $W --study $S --n 24 --parallel ${RANK_PARALLEL:-7} \
        --out $OUT/ranking.json --plot $OUT/ranking.png -- $D $RECIPE progress=false > $L/ranking.log 2>&1
    wait
    T=$SECONDS; (cd $W && timeout 40 python -m nas report $D study_name=$S progress=false) 2>&1 | tail -2
    echo "nas report: $((SECONDS - T)) s"
    found_vs_baselines fvb $L
    (cd $W && tar czf $L/w2.tgz report); returned_study $L/study.tgz; tar czf $OUT/logs.tgz -C $L .
    ;;
finish)
    # The efficiency runs (run it as `bg finish`: ~6-12 min): the predictor fit (270 blocks and 100
    # samples measured) on a quiet machine, then 10 predictor-driven searches of 500 trials, all at
    # once on the study's supernet, with the trainings named in TRAIN_LEFT beside them. (On
    # 2026-12-02 three trainings ran beside the fit: every measurement saw ~3 busy cores, over its
    # max_background_load, and was repeated; the fit took 373 s against 28 s on the dev VM.)
    study
    (cd $W && timeout ${FIT_TIMEOUT:-400} python -m nas latency fit +space=vit $D n_samples=100 progress=false \
        profiler.runs=50 profiler.rounds=3) 2>&1 | tail -4
    echo "fit done at $SECONDS s"
    train ${TRAIN_TIMEOUT:-400} ${TRAIN_LEFT:-}
    mkdir -p $E/.nas_cache && cp -r $W/.nas_cache/supernets $W/.nas_cache/predictors $E/.nas_cache/
    timeout ${EFF_TIMEOUT:-900} python -m benchmarks.search_efficiency --dir $E --samplers random tpe \
        --seeds 0 1 2 3 4 --trials 500 --parallel 10 --measure "profiler=onnxruntime" --out $OUT/efficiency.json \
        --plot $OUT/efficiency.png -- +space=vit $D supernet=gpu executor=inprocess profiler=predictor \
        profiler.measure_fraction=0 > $L/efficiency.log 2>&1
    echo "efficiency exit $? at $SECONDS s"; tail -4 $L/efficiency.log
    wait
    echo "trainings done at $SECONDS s"
    returned_study $OUT/w3.tgz
    found_vs_baselines fvb3 $L
    cp $E/*.log $L/ 2>/dev/null; tar czf $OUT/logs3.tgz -C $L .
    ;;
train-left)
    # When device time is short: only the trainings left, then found_vs_baselines with both profilers.
    study
    train ${TRAIN_TIMEOUT:-200} ${TRAIN_LEFT:-}
    # issue 18 on one GPU: the torchrun path (NCCL, one process) runs and writes the supernet
    NAS_TORCHRUN=1 timeout 150 python -m benchmarks.supernet_training --config-dir benchmarks/conf \
        +space=vit_nov23 $D progress=false supernet=gpu supernet.epochs=2 --trials 0 \
        --out $OUT/torchrun_1gpu_2ep.json > $L/torchrun.log 2>&1 &
    wait
    tail -5 $L/torchrun.log
    echo "trainings done at $SECONDS s"
    returned_study $OUT/w3.tgz
    found_vs_baselines fvb3 $OUT
    ;;
bg)
    # A stage that may outlast one call (10 min): started in a session of its own (it survives the
    # call while the machine stays warm), its $OUT in /tmp/bg-STAGE; this call waits for it until
    # DEADLINE (seconds since the epoch; default 570 s from now).
    B=/tmp/bg-$2; mkdir -p $B; rm -f $B/done
    OUT=$B setsid nohup bash -c 'bash benchmarks/device/issue16.sh "$0" > $OUT/stage-$0.log 2>&1; touch $OUT/done' "$2" &
    waited $2
    ;;
collect)
    # A later call (made within the 30 s the machine stays warm): wait for the bg stage, return its files.
    waited $2
    ;;
speed)
    timeout ${SPEED_TIMEOUT:-200} python -m benchmarks.baseline_speed --models $BASELINES --steps 30 \
        --out $OUT/baseline_speed_h200.json 2>&1 | grep -v Warning
    [ -z "${SPEED_COMPILE:-}" ] || timeout 150 python -m benchmarks.baseline_speed --models $SPEED_COMPILE \
        --steps 30 --compile --out $OUT/baseline_speed_h200_compiled.json 2>&1 | tail -3
    ;;
smallest15)
    # Issue 15: the H100 run's space (vit_nov23), batch 512 with the member pool.
    timeout 150 python -m benchmarks.supernet_training --config-dir benchmarks/conf +space=vit_nov23 $D \
        progress=false supernet=gpu supernet.batch_size=512 supernet.lr=0.0028 --trials 0 \
        --out $OUT/supernet_gpu_vit_nov23_bs512.json 2>&1 | tail -4
    ;;
*)
    echo "issue16.sh: stage must be one of pipeline, pipeline-tune, quality, finish, train-left, bg STAGE, collect STAGE, speed, smallest15" >&2
    exit 2
    ;;
esac
