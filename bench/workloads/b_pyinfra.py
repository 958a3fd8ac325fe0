# Workload (b): 20 small steps (a directory, then 19 small files), in pyinfra's idiom.
from io import StringIO

from pyinfra.operations import files

files.directory(name="directory", path="/var/tmp/bench-b", mode="755")
for i in range(1, 20):
    files.put(name=f"file {i:02d}", src=StringIO(f"small file {i:02d}\n"), dest=f"/var/tmp/bench-b/f{i:02d}", mode="644")
