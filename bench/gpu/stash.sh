#!/bin/bash
# Device side, one call per carried part: move the bundle part(s) out of the work tree into
# /root/gs, which survives between calls while the machine stays warm (30 s idle).
mkdir -p /root/gs
mv .whl/gs/part* /root/gs/ 2>/dev/null
echo "parts on the machine: $(cd /root/gs && ls | tr '\n' ' ')($(du -sm /root/gs | cut -f1) MiB)"
