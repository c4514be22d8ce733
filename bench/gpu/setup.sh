#!/bin/bash
# Device side: join the bundle parts, verify, install vLLM 0.26 + Ray 2.60 + the wheels the
# image lacks into /tmp/site, build the dummy model dir. Re-runnable (skips what is done).
set -u
cd "$(dirname "$0")/../.."
SHA=$(cat bench/gpu/bundle.sha256)
NPARTS=$(cat bench/gpu/bundle.nparts)
if [ ! -f /tmp/site/.giantserve-installed ]; then
  have=$(ls /root/gs 2>/dev/null | wc -l)
  [ "$have" = "$NPARTS" ] || { echo "SETUP: $have of $NPARTS parts on the machine (a cold machine loses them)"; exit 2; }
  t=$SECONDS
  cat $(ls /root/gs/part* | sort -V) > /root/bundle.tar && rm -rf /root/gs
  echo "$SHA  /root/bundle.tar" | sha256sum -c - || exit 3
  rm -rf /root/wheels && tar xf /root/bundle.tar -C /root && rm /root/bundle.tar
  PIP="python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site"
  $PIP /root/wheels/small/*.whl /root/wheels/vllm-*.whl /root/wheels/ray-*.whl || exit 4
  # Ray's dependencies: only those the image lacks, plus the ones whose generated code
  # must match the runtime (protobuf, grpcio) and msgpack.
  need=$(python3 - /root/wheels/deps <<'PY'
import importlib.metadata as md, os, re, sys
force = {"protobuf", "grpcio", "msgpack", "aiohttp", "yarl", "multidict", "propcache", "frozenlist", "aiosignal", "aiohappyeyeballs"}
for f in sorted(os.listdir(sys.argv[1])):
    name = re.sub(r"[-_.]+", "-", f.split("-")[0]).lower()
    try:
        md.version(name); present = True
    except md.PackageNotFoundError:
        present = False
    if name in force or not present:
        print(os.path.join(sys.argv[1], f))
PY
)
  echo "deps installed: $(echo $need | wc -w) of $(ls /root/wheels/deps | wc -l)"
  $PIP $need || exit 5
  touch /tmp/site/.giantserve-installed
  echo "SETUP: install took $((SECONDS - t)) s"
fi
[ -f /root/qwen3-8b-dummy/config.json ] || PYTHONPATH=/tmp/site python3 bench/gpu/make_model_dir.py /root/qwen3-8b-dummy
echo "SETUP OK"
