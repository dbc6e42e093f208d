"""The fork server of a SOCK zygote sandbox (standard library only).

The helper runs it as ``python3 -S -u /packages/ol-zygote/ol_fork_server.py`` in zygote mode:
uid 0 with only CAP_SYS_ADMIN, CAP_SYS_CHROOT, CAP_SETUID, CAP_SETGID and CAP_SETPCAP,
no_new_privs, and the guest seccomp filter minus setns. It pre-imports its modules
(``OL_ZYGOTE_IMPORTS``, from the dirs in ``OL_PACKAGES``), pre-compiles the scripts it may run
in-process (``OL_ZYGOTE_SCRIPTS``), then serves:

- ``/host/fork.sock`` (root only): one fork request per connection from ``ol-sock-helper run
  --fork-from``; see ``ask_zygote`` in ol-sock-helper.c for the message. This process reads
  only its fixed header and fds; the forked copy reads the payload (argv and the tenant's
  environment), so no tenant's data is ever in the memory that later children are forked from;
- ``/host/ol.sock``: HTTP/1.1 ``GET /ping`` (the backend waits for it like for any guest).

Per request: fork; the copy enters the new sandbox's ipc, uts, net, pid and mount namespaces
(setns into a mount namespace also moves root and cwd to it), joins its cgroups (memory
charged before the fork stays with the zygote), and forks the guest into the pid namespace.
The guest takes the sandbox's log pipe as stdout and stderr, closes everything else, drops
every privilege (no_new_privs, bounding set, setgroups, setresgid, setresuid, capabilities)
and installs the guest seccomp program, and only then runs anything of the lambda: in-process
(``runpy``, keeping everything imported here) when argv is ``python3 [-S] [-u] SCRIPT.py``,
else it execs argv. The copy answers ``ok HOSTPID NSPID`` and exits; the helper (a child
subreaper) reaps the guest when it ends.
"""

import ctypes
import errno
import importlib
import os
import select
import signal
import socket
import struct
import sys
import traceback

CONTROL = "/host/fork.sock"
HTTP = "/host/ol.sock"

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SYS_CAPSET = 126

libc = ctypes.CDLL(None, use_errno=True)
libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
libc.syscall.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def prctl(op, a=0, b=0, c=0, d=0):
    return libc.prctl(op, a, b, c, d)


# --- preparing ------------------------------------------------------------------------------

SCRIPTS = {}


def prepare():
    sys.dont_write_bytecode = True
    import site

    for d in os.environ.get("OL_PACKAGES", "").split(":"):
        if d and d not in sys.path:
            site.addsitedir(d)
    for name in os.environ.get("OL_ZYGOTE_IMPORTS", "").split(","):
        name = name.strip()
        if not name:
            continue
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - a missing module only costs its children time
            sys.stderr.write("ol_fork_server: import %s failed: %s\n" % (name, e))
    for path in os.environ.get("OL_ZYGOTE_SCRIPTS", "").split(":"):
        if not path:
            continue
        try:
            with open(path, "rb") as fh:
                source = fh.read()
            SCRIPTS[path] = (source, compile(source, path, "exec"))
        except Exception as e:  # noqa: BLE001
            sys.stderr.write("ol_fork_server: compiling %s failed: %s\n" % (path, e))


# --- in the forked copy -----------------------------------------------------------------------


def enter(fds, ncgroups):
    """Moves this (forked, single-threaded) process into the child sandbox."""
    ipc, uts, net, pidns, mnt = fds[1:6]
    for fd, flag, name in (
        (ipc, CLONE_NEWIPC, "ipc"),
        (uts, CLONE_NEWUTS, "uts"),
        (net, CLONE_NEWNET, "net"),
        (pidns, CLONE_NEWPID, "pid"),
        (mnt, CLONE_NEWNS, "mnt"),
    ):
        check(libc.setns(fd, flag), "setns " + name)
        os.close(fd)
    for fd in fds[6 : 6 + ncgroups]:
        os.write(fd, b"0")
        os.close(fd)


def drop_privileges(uid, gid):
    check(prctl(PR_SET_NO_NEW_PRIVS, 1), "PR_SET_NO_NEW_PRIVS")
    for cap in range(64):
        if prctl(PR_CAPBSET_DROP, cap) != 0 and ctypes.get_errno() != errno.EINVAL:
            check(1, "PR_CAPBSET_DROP")
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    check(libc.syscall(SYS_CAPSET, ctypes.addressof(header), ctypes.addressof(data)), "capset")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise RuntimeError("still able to become root after dropping privileges")


def install_seccomp(program_hex):
    raw = bytes.fromhex(program_hex)
    buf = ctypes.create_string_buffer(raw, len(raw))
    prog = SockFprog(len(raw) // 8, ctypes.addressof(buf))
    check(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog)), "install seccomp")


def in_process_script(argv):
    """SCRIPT when argv is `python3 [-S] [-u] [-B] SCRIPT.py`, else None."""
    if not argv or not os.path.basename(argv[0]).startswith("python"):
        return None
    rest = argv[1:]
    while rest and rest[0] in ("-S", "-u", "-B", "-Su", "-uS"):
        rest = rest[1:]
    if len(rest) != 1 or not rest[0].endswith(".py") or not rest[0].startswith("/"):
        return None
    return rest[0]


def guest(report_fd, out_fd, uid, gid, argv, env, program_hex):
    """The guest, pid N of the child's pid namespace. Never returns."""
    try:
        os.write(report_fd, str(os.getpid()).encode())
        os.close(report_fd)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.closerange(3, 65536)
        drop_privileges(uid, gid)
        if program_hex:
            install_seccomp(program_hex)
        for sig in (signal.SIGPIPE, signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.environ.clear()
        os.environ.update(env)
        try:
            os.chdir("/handler")
        except OSError:
            os.chdir("/")
        script = in_process_script(argv)
        if script is None:
            os.execvpe(argv[0], argv, env)
        with open(script, "rb") as fh:
            source = fh.read()
        cached = SCRIPTS.get(script)
        code = cached[1] if cached and cached[0] == source else compile(source, script, "exec")
        sys.argv = [script]
        scope = {"__name__": "__main__", "__file__": script, "__builtins__": __builtins__}
        exec(code, scope)
        os._exit(0)
    except SystemExit as e:
        os._exit(e.code if isinstance(e.code, int) else 1)
    except BaseException:  # noqa: BLE001
        try:
            os.write(2, ("ol_fork_server: guest setup failed:\n" + traceback.format_exc()).encode())
        finally:
            os._exit(127)


def read_payload(conn, length):
    """In the forked copy only: the request's argv and environment are one tenant's data."""
    data = b""
    while len(data) < length:
        more = conn.recv(length - len(data))
        if not more:
            raise ValueError("truncated fork request")
        data += more
    return data.split(b"\0")


def forked(conn, fds, payload_len):
    """The forked copy of the server. Never returns."""
    try:
        fields = read_payload(conn, payload_len)
        uid, gid, ncgroups, argc = (int(x) for x in fields[0:4])
        argv = [f.decode() for f in fields[4 : 4 + argc]]
        envc = int(fields[4 + argc])
        env = {}
        for raw in fields[5 + argc : 5 + argc + envc]:
            k, _, v = raw.decode().partition("=")
            env[k] = v
        program_hex = fields[5 + argc + envc].decode()
        if uid <= 0 or gid <= 0:
            raise ValueError("refusing a guest uid or gid of 0")
        if len(fds) != 6 + ncgroups:
            raise ValueError("fork request carries %d fds, expected %d" % (len(fds), 6 + ncgroups))
        enter(fds, ncgroups)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            guest(w, fds[0], uid, gid, argv, env, program_hex)
        os.close(w)
        ns_pid = int(os.read(r, 32) or b"0")
        conn.sendall(b"ok %d %d\n" % (pid, ns_pid))
        os._exit(0)
    except BaseException as e:  # noqa: BLE001
        try:
            conn.sendall(("error %s\n" % str(e).replace("\n", " ")).encode())
        finally:
            os._exit(1)


# --- the server -------------------------------------------------------------------------------


def listen(path, mode):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    os.chmod(path, mode)
    s.listen(64)
    return s


HEADER = struct.Struct("=8sII")
MAX_PAYLOAD = 1 << 24


def read_header(conn):
    """The fixed header and its fds, and not one byte more: the payload is the child's to read."""
    conn.settimeout(5)
    msg, fds, _flags, _addr = socket.recv_fds(conn, HEADER.size, 64)
    while msg and len(msg) < HEADER.size:
        more = conn.recv(HEADER.size - len(msg))
        if not more:
            break
        msg += more
    if len(msg) != HEADER.size:
        raise ValueError("short fork request")
    magic, payload_len, nfds = HEADER.unpack(msg)
    if magic != b"olfork02" or len(fds) < 6 or nfds != len(fds) or payload_len > MAX_PAYLOAD:
        for fd in fds:
            os.close(fd)
        raise ValueError("not a fork request")
    return fds, payload_len


def handle_fork(conn, listeners):
    fds = []
    try:
        cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", cred)
        if uid != 0:
            raise PermissionError("only root may ask for a fork")
        fds, payload_len = read_header(conn)
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            for s in listeners:
                s.close()
            forked(conn, fds, payload_len)
    except Exception as e:  # noqa: BLE001
        try:
            conn.sendall(("error %s\n" % e).encode())
        except OSError:
            pass
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()


def handle_http(conn):
    """A keep-alive connection: answers each request with pong; False once it is closed."""
    try:
        data = conn.recv(65536)
    except OSError:
        data = b""
    if not data:
        conn.close()
        return False
    body = b"pong"
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    return True


def main():
    prepare()
    control = listen(CONTROL, 0o600)
    http = listen(HTTP, 0o666)
    clients = []
    while True:
        ready, _, _ = select.select([control, http] + clients, [], [], 1.0)
        for s in ready:
            if s is control:
                conn, _ = control.accept()
                handle_fork(conn, [control, http] + clients)
            elif s is http:
                conn, _ = http.accept()
                clients.append(conn)
            elif not handle_http(s):
                clients.remove(s)
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass


if __name__ == "__main__":
    main()
