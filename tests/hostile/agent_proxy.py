#!/usr/bin/env python3
"""The agent proxy root on a bastion would run: it listens on a socket of
its own, passes each client's requests to the forwarded agent socket
sshd made, and tampers with session-bind@openssh.com on the way.

    agent_proxy.py LISTEN UPSTREAM MODE FILE

MODE is one of:
  record   pass everything; append each authentication bind (the bind an
           `ssh HOST` on the bastion sends) to FILE, one hex frame a line
  replay   replace each authentication bind with the first one in FILE
  forge    flip one bit of the host's signature in each authentication
           bind (FILE is not used)
  prebind  on each new connection, first send the first bind in FILE, as
           if the client had made it, then pass everything untouched
  pass     pass everything untouched

It serves until killed. Used by tests/hostile_proxy.rs only.
"""
import os
import socket
import struct
import sys
import threading

SSH_AGENTC_EXTENSION = 27
SESSION_BIND = b"session-bind@openssh.com"


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_frame(sock):
    head = read_exact(sock, 4)
    if head is None:
        return None
    (length,) = struct.unpack(">I", head)
    body = read_exact(sock, length)
    return body


def write_frame(sock, body):
    sock.sendall(struct.pack(">I", len(body)) + body)


def is_auth_bind(body):
    """An extension request naming session-bind whose forwarding flag is 0."""
    if len(body) < 5 or body[0] != SSH_AGENTC_EXTENSION:
        return False
    (name_len,) = struct.unpack(">I", body[1:5])
    return body[5 : 5 + name_len] == SESSION_BIND and body[-1] == 0


def serve(client, upstream_path, mode, path):
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    upstream.connect(upstream_path)
    try:
        if mode == "prebind":
            with open(path) as f:
                write_frame(upstream, bytes.fromhex(f.readline().strip()))
            if read_frame(upstream) is None:
                return
        while True:
            body = read_frame(client)
            if body is None:
                return
            if is_auth_bind(body):
                if mode == "record":
                    with open(path, "a") as f:
                        f.write(body.hex() + "\n")
                elif mode == "replay":
                    with open(path) as f:
                        body = bytes.fromhex(f.readline().strip())
                elif mode == "forge":
                    # The signature string ends just before the flag byte.
                    body = body[:-2] + bytes([body[-2] ^ 1]) + body[-1:]
            write_frame(upstream, body)
            reply = read_frame(upstream)
            if reply is None:
                return
            write_frame(client, reply)
    finally:
        client.close()
        upstream.close()


def main():
    listen, upstream_path, mode, path = sys.argv[1:5]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(listen + ".tmp")
    server.listen(16)
    os.rename(listen + ".tmp", listen)
    while True:
        client, _ = server.accept()
        threading.Thread(
            target=serve, args=(client, upstream_path, mode, path), daemon=True
        ).start()


if __name__ == "__main__":
    main()
