"""Plays systemd's part in socket activation for tests: holds a listening
socket on 127.0.0.1 and starts the daemon given as arguments on it (fd 3,
LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES), again and again: once at start and
once more for every SIGUSR1 after the previous one exited.

Usage: socket_holder.py PORT COMMAND... Prints `port N`, then `started PID` and `exited PID STATUS` per run."""
import os
import signal
import socket
import subprocess
import sys

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen(128)
print("port", sock.getsockname()[1], flush=True)


def as_systemd():
    """In the child: the socket at fd 3 and the variables naming it."""
    os.dup2(sock.fileno(), 3)
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_FDNAMES"] = "wssd"
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})


while True:
    child = subprocess.Popen(sys.argv[2:], preexec_fn=as_systemd, pass_fds=(3,))
    print("started", child.pid, flush=True)
    status = child.wait()
    print("exited", child.pid, status, flush=True)
    signal.sigwait({signal.SIGUSR1})
