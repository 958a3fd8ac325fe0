# Workload (c): 10 templates rendered and written per host (after their directory), in pyinfra's idiom.
import os

from pyinfra import host
from pyinfra.operations import files

TEMPLATES = os.environ["BENCH_TEMPLATES"]
VARS = {k: host.data.get(k) for k in ("node_name", "listen_address", "base_port", "cluster_name", "workers")}

files.directory(name="directory", path="/var/tmp/bench-c", mode="755")
for i in range(1, 11):
    files.template(name=f"template {i:02d}", src=f"{TEMPLATES}/t{i:02d}.conf.j2", dest=f"/var/tmp/bench-c/t{i:02d}.conf", mode="644", **VARS)
