#!/usr/bin/env bash
# The tuning grid on a lent GPU, one prepared command (after benchmarks/gpu_grid_prepare.sh here):
#   run(command="bash benchmarks/gpu_grid.sh", carry=[".whl", ".data", ".studies.tgz"], timeout_s=590)
# Installs the carried wheels, unpacks the studies, runs benchmarks/tune_grid.py on cuda until MINUTES (default 7)
# with WORKERS processes per study and PARALLEL at once, and leaves the studies in $OUT/studies.tgz; unpack it here
# over runs/tune (tar xzf .../studies.tgz) and the next run on any machine resumes them. The studies' trial records
# (benchmarks/studies, committed) come back in $OUT/records: copy them over benchmarks/studies and commit.
# Stop local workers of the same studies before unpacking: the unpacked folders replace theirs.
# ONLY picks studies (default: the open studies of ml-1m_noisy, then the trained models of yelp and amazon-book,
# which a 2-core CPU cannot tune in reasonable time; installed studies are skipped). DEVICE=cpu OUT=/tmp/x: dry run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to a folder for the results}"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" DDRM_DATA="${DDRM_DATA:-$PWD/.data}" PYTHONUNBUFFERED=1
[ -f .studies.tgz ] && tar xzf .studies.tgz
ONLY="${ONLY:-ml-1m_noisy/sgl- ml-1m_noisy/ddrm yelp amazon-book}"
python3 -c "import torch; print('device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
python3 benchmarks/tune_grid.py --grid "${GRID:-configs/grids/tuned.yaml}" --device "${DEVICE:-cuda}" \
  --workers "${WORKERS:-3}" --parallel "${PARALLEL:-12}" --minutes "${MINUTES:-7}" --grace "${GRACE:-0.5}" \
  --only $ONLY | tee "$OUT/grid.json"
tar czf "$OUT/studies.tgz" runs/tune
if [ -d benchmarks/studies ]; then cp -r benchmarks/studies "$OUT/records"; fi
