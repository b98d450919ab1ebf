#!/usr/bin/env bash
# Prepare a lent GPU session's tuning run (benchmarks/gpu_grid.sh), here, before the machine starts:
#   bash benchmarks/gpu_grid_prepare.sh [DATA_ROOT]
# - .whl/: the wheels the GPU image lacks (optuna and its database stack; torch, numpy, scipy, yaml are there);
# - .data/: copies of the datasets the grid reads (the ../shared beside the checkout does not travel);
# - .studies.tgz: the study folders so far (runs/ is ignored and would not travel otherwise).
# All three are git-ignored through .git/info/exclude; name them in the run's carry (about 40 MB together).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="${1:-${DDRM_DATA:-../shared/data}}"
mkdir -p .git/info && touch .git/info/exclude
for p in /.whl/ /.data/ /.studies.tgz; do grep -qxF "$p" .git/info/exclude || echo "$p" >> .git/info/exclude; done
rm -rf .whl && python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  optuna==5.1.0 alembic==1.20.1 sqlalchemy==2.1.9 colorlog==6.12.0 mako==1.4.3
rm -rf .data && mkdir .data && for d in ml-1m_noisy yelp amazon-book; do cp -r "$ROOT/$d" .data/; done
tar czf .studies.tgz runs/tune 2>/dev/null || tar czf .studies.tgz --files-from /dev/null
du -sh .whl .data .studies.tgz
