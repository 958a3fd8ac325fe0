# Workload (a), the pyinfra performance workload, in pyinfra's idiom.
import os

from pyinfra.operations import files, server

FILES = os.environ["BENCH_FILES"]

server.user(name="user benchuser", user="benchuser", home="/home/benchuser", shell="/bin/bash", create_home=True)
files.file(name="log file", path="/var/log/benchuser.log", user="benchuser", group="benchuser", mode="640")
files.put(name="file in the home", src=f"{FILES}/motd.txt", dest="/home/benchuser/motd.txt", user="benchuser", group="benchuser", mode="644")
server.shell(name="shell command", commands=["echo hello from $(hostname)"])
