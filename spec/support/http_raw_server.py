#!/usr/bin/python3
"""A misbehaving HTTP server for the HTTP client's specs.

Usage: http_raw_server.py PORT_FILE
Listens on 127.0.0.1 (a free port, written to PORT_FILE once listening)
and answers each request by its path, one thread per connection:

  /ok             200, Content-Length, keep-alive
  /lines          a chunked response of newline-delimited records whose
                  lines are cut across chunks (and one chunk per byte for
                  a while), with short pauses, ending in an unterminated
                  record
  /until-close    HTTP/1.0 style: no length, the body ends with the close
  /close-mid-body Content-Length 100, 10 bytes, then the close
  /close-at-once  the connection closes without any answer
  /silent         no answer; the connection stays open
  /big-headers    a header section of about 40 KB
  /big-body       a 100000-byte body
  /garbage        bytes that are not HTTP
  /stale          200 keep-alive, then the server closes the connection
                  (a pooled connection the client believes open)
  /count          200 with the number of requests this connection has
                  served, keep-alive

Requests are read up to the end of their headers plus Content-Length.
"""
import socket
import sys
import threading
import time


def read_request(conn, buf):
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None, b""
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(rest) < length:
        data = conn.recv(65536)
        if not data:
            return None, b""
        rest += data
    return (method, path, rest[:length]), rest[length:]


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


def serve(conn):
    buf = b""
    served = 0
    try:
        while True:
            req, buf = read_request(conn, buf)
            if req is None:
                return
            method, path, body = req
            served += 1
            if path == "/ok":
                out = b"ok " + method.encode() + b" " + body
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                             b"X-Twice: a\r\nX-Twice: b\r\n\r\n%s"
                             % (len(out), out))
            elif path == "/count":
                out = b"%d" % served
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(out), out))
            elif path == "/lines":
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                             b"Content-Type: application/json\r\n\r\n")
                text = b'{"n":1}\n{"n":2,"pad":"xxxxxxxx"}\n{"n":3}\n\n{"n":4}'
                # Byte by byte for the first 20 bytes, then in chunks of 7.
                pieces = [text[i:i + 1] for i in range(20)]
                pieces += [text[i:i + 7] for i in range(20, len(text), 7)]
                for p in pieces:
                    conn.sendall(chunk(p))
                    time.sleep(0.002)
                conn.sendall(b"0\r\n\r\n")
            elif path == "/until-close":
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                conn.sendall(b"first part, ")
                time.sleep(0.05)
                conn.sendall(b"second part")
                return
            elif path == "/close-mid-body":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
                             b"0123456789")
                time.sleep(0.05)
                return
            elif path == "/close-at-once":
                return
            elif path == "/silent":
                time.sleep(30)
                return
            elif path == "/big-headers":
                conn.sendall(b"HTTP/1.1 200 OK\r\n" +
                             b"X-Big: " + b"h" * 40000 + b"\r\n"
                             b"Content-Length: 0\r\n\r\n")
            elif path == "/big-body":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
                             + b"b" * 100000)
            elif path == "/garbage":
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
                time.sleep(0.05)
                return
            elif path == "/stale":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")
                time.sleep(0.05)
                return
            else:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    except OSError:
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(srv.getsockname()[1]))
    import os
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
