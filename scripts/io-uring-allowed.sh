#!/bin/sh
# Exits 0 when this kernel (and any seccomp filter around this process)
# lets it make an io_uring ring, as the daemon does at its first reply
# (crates/hopward-sys/src/ring.rs); 1 when refused. It calls io_uring_setup
# (system call 425 on x86-64 and arm64) with an empty parameter block: a
# descriptor back means rings can be had here. Used by test.sh and
# check-deb-session.sh, which must agree on the answer.
exec python3 -c 'import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.syscall(425, 4, ctypes.create_string_buffer(120))
if fd < 0:
    sys.exit(1)
os.close(fd)'
