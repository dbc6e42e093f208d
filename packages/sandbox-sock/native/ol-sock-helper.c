/*
 * ol-sock-helper: the per-create work of a SOCK sandbox in one exec, where Node has no syscall.
 *
 *   ol-sock-helper run [options] -- COMMAND [ARG...]
 *   ol-sock-helper umount PATH...      lazy-unmounts each PATH (force cleanup)
 *   ol-sock-helper version
 *
 * Process layout of `run`:
 *   helper (root, outside the sandbox, Node's child)
 *     unshare(mount, pid, ipc, uts [, net]) then fork:
 *     init (pid 1 of the new pid namespace): joins the cgroups, builds the mount tree, pivots
 *       into it, brings up lo, drops every privilege, installs the seccomp filter, then forks:
 *       guest (pid 2): execs COMMAND with the helper's own environment (Node passes the spec's).
 *   The helper copies the guest's stdout/stderr into a bounded log file and exits with the
 *   init's status, so the worker sees the guest's death as its child's exit. init exits when the
 *   guest does, which makes the kernel kill everything else in the pid namespace and drop its
 *   mounts: nothing the sandbox mounted is ever visible on the host.
 *
 * Zygote mode (`--zygote 1`): the sandbox of a fork server (see native/ol_fork_server.py). No
 *   pid namespace (a child's pid namespace must be a descendant of the forker's, and children
 *   are created by the helper in the worker's), no /proc; the helper is a child subreaper that
 *   reaps forked guests orphaned by the fork server's children and exits only once the fork
 *   server is gone and no forked guest is left. The fork server keeps uid 0 with only
 *   CAP_SYS_ADMIN, CAP_SYS_CHROOT, CAP_SETUID, CAP_SETGID and CAP_SETPCAP, no_new_privs and the
 *   seccomp filter minus setns: it may enter a child's namespaces, it cannot mount anything.
 *
 * Fork mode (`--fork-from SOCKET`): the child of a zygote. init builds the sandbox as usual
 *   (cgroups, mounts, pivot, privileges, seccomp) but execs nothing: the helper sends the
 *   sandbox's namespace fds, its cgroup.procs fds, the log pipe, uid/gid, argv, environment and
 *   the guest seccomp program to the fork server listening on SOCKET (SCM_RIGHTS); a forked copy
 *   of the server enters the namespaces and cgroups and forks the guest into the pid namespace,
 *   which drops every privilege and installs the filter itself before running anything of the
 *   lambda. The server answers "ok HOSTPID"; init then watches that guest (a pidfd: it is not
 *   init's child) and exits when it does, like a normal sandbox.
 *
 * Options:
 *   --zygote 0|1    zygote mode                  --fork-from SOCKET  fork mode
 *   --root DIR      base root filesystem (bind-mounted read-only, nosuid, nodev)
 *   --code DIR      read-only at /handler        --scratch DIR   read-write at /host
 *   --tmp DIR       read-write at /tmp           --pkg NAME=DIR  read-only at /packages/NAME
 *   --log FILE      guest output                 --log-max N     bytes kept in FILE at most
 *   --cgroup FILE   a cgroup.procs file to join (repeatable)
 *   --net host|none|egress  --netns FILE (egress: the namespace to join, made ahead of time)
 *   --uid N --gid N --seccomp 0|1 --hostname NAME --ppid N
 *   --tag TAG       ignored; lets force cleanup find helpers of one worker in /proc
 *
 * `run --tag TAG --stdin-args` reads every other option, NUL-separated, from stdin: what the
 * guest can read of its pid 1 (/proc/1/cmdline) then names no host path.
 *
 * Exit status: the guest's (128+signal when killed); 125 when setup failed (the reason is on
 * stderr), 127 when COMMAND could not be executed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sys/un.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define HELPER_VERSION "1"
#define EXIT_SETUP 125
#define EXIT_EXEC 127
#define MAX_LIST 256

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

extern char **environ;

struct options {
  const char *root, *code, *scratch, *tmp, *log, *hostname;
  const char *pkg_names[MAX_LIST], *pkg_dirs[MAX_LIST];
  int npkgs;
  const char *cgroups[MAX_LIST];
  int ncgroups;
  long log_max;
  int net_none, net_egress, seccomp, zygote;
  /* --net egress: a network namespace made ahead of time (a file under /run/netns) to join. */
  const char *netns;
  const char *fork_from;
  uid_t uid;
  gid_t gid;
  pid_t ppid;
  char **argv;
};

static void die(const char *what, const char *path) {
  int e = errno;
  if (path)
    fprintf(stderr, "ol-sock-helper: %s %s: %s\n", what, path, strerror(e));
  else
    fprintf(stderr, "ol-sock-helper: %s: %s\n", what, strerror(e));
  _exit(EXIT_SETUP);
}

static void fail(const char *msg, const char *arg) {
  fprintf(stderr, "ol-sock-helper: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
  _exit(EXIT_SETUP);
}

static long number(const char *s, const char *name) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || end == s || v < 0) fail("bad number for", name);
  return v;
}

static void parse(int argc, char **argv, struct options *o) {
  memset(o, 0, sizeof *o);
  o->log_max = 1 << 20;
  o->uid = 65534;
  o->gid = 65534;
  o->seccomp = 1;
  o->hostname = "sandbox";
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      if (i + 1 >= argc) fail("missing command after --", NULL);
      o->argv = &argv[i + 1];
      break;
    }
    if (i + 1 >= argc) fail("missing value for", a);
    const char *v = argv[++i];
    if (strcmp(a, "--root") == 0) o->root = v;
    else if (strcmp(a, "--code") == 0) o->code = v;
    else if (strcmp(a, "--scratch") == 0) o->scratch = v;
    else if (strcmp(a, "--tmp") == 0) o->tmp = v;
    else if (strcmp(a, "--log") == 0) o->log = v;
    else if (strcmp(a, "--log-max") == 0) o->log_max = number(v, a);
    else if (strcmp(a, "--hostname") == 0) o->hostname = v;
    else if (strcmp(a, "--uid") == 0) o->uid = (uid_t)number(v, a);
    else if (strcmp(a, "--gid") == 0) o->gid = (gid_t)number(v, a);
    else if (strcmp(a, "--ppid") == 0) o->ppid = (pid_t)number(v, a);
    else if (strcmp(a, "--seccomp") == 0) o->seccomp = number(v, a) != 0;
    else if (strcmp(a, "--tag") == 0) continue;
    else if (strcmp(a, "--zygote") == 0) o->zygote = number(v, a) != 0;
    else if (strcmp(a, "--fork-from") == 0) o->fork_from = v;
    else if (strcmp(a, "--net") == 0) {
      if (strcmp(v, "none") == 0) o->net_none = 1;
      else if (strcmp(v, "egress") == 0) o->net_egress = 1;
      else if (strcmp(v, "host") != 0) fail("--net must be host, none or egress, got", v);
    } else if (strcmp(a, "--netns") == 0) {
      o->netns = v;
    } else if (strcmp(a, "--cgroup") == 0) {
      if (o->ncgroups >= MAX_LIST) fail("too many --cgroup", NULL);
      o->cgroups[o->ncgroups++] = v;
    } else if (strcmp(a, "--pkg") == 0) {
      const char *eq = strchr(v, '=');
      if (!eq || eq == v || o->npkgs >= MAX_LIST) fail("bad --pkg", v);
      char *name = strndup(v, (size_t)(eq - v));
      if (!name || strstr(name, "..") || name[0] == '/') fail("bad --pkg name", v);
      o->pkg_names[o->npkgs] = name;
      o->pkg_dirs[o->npkgs++] = eq + 1;
    } else fail("unknown option", a);
  }
  if (!o->root || !o->code || !o->scratch || !o->tmp || !o->log || !o->argv)
    fail("run needs --root, --code, --scratch, --tmp, --log and -- COMMAND", NULL);
  if (o->uid == 0 || o->gid == 0) fail("refusing to run a guest as uid or gid 0", NULL);
  if (o->zygote && o->fork_from) fail("--zygote and --fork-from exclude each other", NULL);
  if (!o->netns != !o->net_egress) fail("--net egress and --netns FILE go together", NULL);
}

/* ---- mounts ------------------------------------------------------------------------------ */

static char *under(const char *root, const char *rel) {
  char *p;
  if (asprintf(&p, "%s%s", root, rel) < 0) die("asprintf", NULL);
  return p;
}

/* A non-recursive bind (submounts of the source stay out), then a remount with `flags`. */
static void bind_mount(const char *src, const char *dst, unsigned long flags) {
  if (mount(src, dst, NULL, MS_BIND, NULL) < 0) die("bind-mount onto", dst);
  if (mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | flags, NULL) < 0) die("remount", dst);
}

static void mkdirs(char *path, mode_t mode) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(path, mode) < 0 && errno != EEXIST) die("mkdir", path);
    *p = '/';
  }
  if (mkdir(path, mode) < 0 && errno != EEXIST) die("mkdir", path);
}

static void setup_dev(const char *root) {
  static const char *nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
  char *dev = under(root, "/dev");
  if (mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k") < 0)
    die("mount tmpfs on", dev);
  for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
    char host[64], *target;
    snprintf(host, sizeof host, "/dev/%s", nodes[i]);
    if (access(host, F_OK) < 0) continue;
    if (asprintf(&target, "%s/%s", dev, nodes[i]) < 0) die("asprintf", NULL);
    int fd = open(target, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
    if (fd < 0) die("create", target);
    close(fd);
    /* Device nodes are the host's own, bound one by one: the guest gets exactly these. */
    bind_mount(host, target, MS_NOSUID | MS_NOEXEC);
    free(target);
  }
  static const char *links[][2] = {{"/proc/self/fd", "fd"},
                                   {"/proc/self/fd/0", "stdin"},
                                   {"/proc/self/fd/1", "stdout"},
                                   {"/proc/self/fd/2", "stderr"}};
  for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
    char *target;
    if (asprintf(&target, "%s/%s", dev, links[i][1]) < 0) die("asprintf", NULL);
    if (symlink(links[i][0], target) < 0) die("symlink", target);
    free(target);
  }
  char *shm = under(dev, "/shm");
  if (mkdir(shm, 01777) < 0) die("mkdir", shm);
  /* Pages in /dev/shm are charged to the sandbox's memory cgroup like any other memory. */
  if (mount("tmpfs", shm, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=64m") < 0)
    die("mount tmpfs on", shm);
  if (mount(NULL, dev, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, "mode=755,size=64k") < 0)
    die("remount read-only", dev);
  free(shm);
  free(dev);
}

static void setup_packages(const struct options *o) {
  if (o->npkgs == 0) return;
  char *pkgs = under(o->root, "/packages");
  if (mount("tmpfs", pkgs, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=64k") < 0)
    die("mount tmpfs on", pkgs);
  for (int i = 0; i < o->npkgs; i++) {
    char *target;
    if (asprintf(&target, "%s/%s", pkgs, o->pkg_names[i]) < 0) die("asprintf", NULL);
    mkdirs(target, 0755);
    bind_mount(o->pkg_dirs[i], target, MS_RDONLY | MS_NOSUID | MS_NODEV);
    free(target);
  }
  if (mount(NULL, pkgs, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=755,size=64k") < 0)
    die("remount read-only", pkgs);
  free(pkgs);
}

static void setup_mounts(const struct options *o) {
  const unsigned long ro = MS_RDONLY | MS_NOSUID | MS_NODEV;
  const unsigned long rw = MS_NOSUID | MS_NODEV;
  /* Nothing mounted from here on may propagate back to the host's mount namespace. */
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("make / private", NULL);
  bind_mount(o->root, o->root, ro);
  char *p;
  bind_mount(o->code, p = under(o->root, "/handler"), ro);
  free(p);
  bind_mount(o->scratch, p = under(o->root, "/host"), rw);
  free(p);
  bind_mount(o->tmp, p = under(o->root, "/tmp"), rw);
  free(p);
  setup_packages(o);
  setup_dev(o->root);
  /* A fresh /proc: this process is pid 1 of the new pid namespace, so it shows only the sandbox. */
  /* A zygote shares the worker's pid namespace: a /proc there would show the host's processes. */
  if (!o->zygote) {
    p = under(o->root, "/proc");
    if (mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
      die("mount proc on", p);
    free(p);
  }
  /* pivot_root(".", ".") stacks the old root under the new one; detaching it leaves no way back. */
  if (chdir(o->root) < 0) die("chdir", o->root);
  if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root", o->root);
  if (umount2(".", MNT_DETACH) < 0) die("detach old root", NULL);
  if (chdir("/") < 0) die("chdir /", NULL);
}

static void loopback_up(void) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket for lo", NULL);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) die("SIOCGIFFLAGS", "lo");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) die("SIOCSIFFLAGS", "lo");
  close(fd);
}

/* ---- privileges ------------------------------------------------------------------------------ */

static void drop_privileges(const struct options *o) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("PR_SET_NO_NEW_PRIVS", NULL);
  for (int cap = 0; cap <= 63; cap++) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) die("PR_CAPBSET_DROP", NULL);
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (setgroups(0, NULL) < 0) die("setgroups", NULL);
  if (setresgid(o->gid, o->gid, o->gid) < 0) die("setresgid", NULL);
  if (setresuid(o->uid, o->uid, o->uid) < 0) die("setresuid", NULL);
  /* Leaving uid 0 cleared the permitted and effective sets; clear the inheritable one too. */
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capset, &hdr, data) < 0) die("capset", NULL);
  if (setuid(0) == 0) fail("still able to become root after dropping privileges", NULL);
}

/* A zygote's fork server: uid 0 with only what entering a child's sandbox needs. */
static void zygote_privileges(void) {
  static const int keep[] = {CAP_SETGID, CAP_SETUID, CAP_SETPCAP, CAP_SYS_CHROOT, CAP_SYS_ADMIN};
  unsigned long long mask = 0;
  for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) mask |= 1ULL << keep[i];
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("PR_SET_NO_NEW_PRIVS", NULL);
  for (int cap = 0; cap <= 63; cap++) {
    if (mask & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) die("PR_CAPBSET_DROP", NULL);
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (setgroups(0, NULL) < 0) die("setgroups", NULL);
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  data[0].effective = data[0].permitted = (unsigned int)(mask & 0xffffffffu);
  data[1].effective = data[1].permitted = (unsigned int)(mask >> 32);
  if (syscall(SYS_capset, &hdr, data) < 0) die("capset", NULL);
}

#define ALLOW BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
#define REFUSE(nr)                                      \
  BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1),      \
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM)

/* The guest filter; a zygote's lets setns through (its forked children enter their sandboxes). */
static struct sock_fprog seccomp_program(int allow_setns) {
  const unsigned int ns_flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
                                CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP | 0x00000080;
  struct sock_filter filter[] = {
      /* Only x86-64 system calls: another ABI could reach the refused calls by other numbers. */
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      /* x32 numbers (bit 30) alias the same calls. */
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      REFUSE(SYS_mount), REFUSE(SYS_umount2), REFUSE(SYS_unshare),
      /* Patched to an impossible number in a zygote's filter. */
      REFUSE(SYS_setns),
      REFUSE(SYS_pivot_root), REFUSE(SYS_chroot), REFUSE(SYS_ptrace), REFUSE(SYS_bpf),
      REFUSE(SYS_keyctl), REFUSE(SYS_add_key), REFUSE(SYS_request_key), REFUSE(SYS_kexec_load),
      REFUSE(SYS_kexec_file_load), REFUSE(SYS_init_module), REFUSE(SYS_finit_module),
      REFUSE(SYS_delete_module), REFUSE(SYS_reboot), REFUSE(SYS_swapon), REFUSE(SYS_swapoff),
      REFUSE(SYS_acct), REFUSE(SYS_perf_event_open), REFUSE(SYS_process_vm_readv),
      REFUSE(SYS_process_vm_writev), REFUSE(SYS_open_by_handle_at), REFUSE(SYS_name_to_handle_at),
      /* io_uring_setup, io_uring_enter, io_uring_register: a large kernel surface that seccomp
       * cannot see into (its operations bypass this filter), blocked by Docker's default too. */
      REFUSE(425), REFUSE(426), REFUSE(427),
      /* The new mount API: open_tree, move_mount, fsopen, fsconfig, fsmount, fspick, mount_setattr. */
      REFUSE(428), REFUSE(429), REFUSE(430), REFUSE(431), REFUSE(432), REFUSE(433), REFUSE(442),
      /* clone3 hides its flags in memory a filter cannot read: ENOSYS makes libc fall back to clone. */
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 435, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
      /* clone with any namespace flag is refused; plain fork/thread clones pass. */
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, ns_flags, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      ALLOW,
  };
  static struct sock_filter out[sizeof filter / sizeof *filter];
  memcpy(out, filter, sizeof filter);
  if (allow_setns) {
    for (size_t i = 0; i < sizeof filter / sizeof *filter; i++) {
      if (out[i].code == (BPF_JMP | BPF_JEQ | BPF_K) && out[i].k == SYS_setns) out[i].k = 0xfffffffe;
    }
  }
  struct sock_fprog prog = {(unsigned short)(sizeof filter / sizeof *filter), out};
  return prog;
}

static void install_seccomp(int allow_setns) {
  struct sock_fprog prog = seccomp_program(allow_setns);
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0) die("install seccomp", NULL);
}

/* ---- processes ------------------------------------------------------------------------------ */

static void join_cgroups(const struct options *o) {
  for (int i = 0; i < o->ncgroups; i++) {
    int fd = open(o->cgroups[i], O_WRONLY | O_CLOEXEC);
    /* "0" means the writing process, whatever pid namespace it is in. */
    if (fd < 0 || write(fd, "0", 1) != 1) die("join cgroup", o->cgroups[i]);
    close(fd);
  }
}

static int status_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return EXIT_SETUP;
}

static volatile pid_t guest_pid = 0;

static void forward_to_guest(int sig) {
  if (guest_pid > 0) kill(guest_pid, sig);
}

/* pid 1 of the sandbox. Never returns. */
static void init_main(const struct options *o, int out_fd) {
  join_cgroups(o);
  setup_mounts(o);
  if (o->net_none) loopback_up();
  if (sethostname(o->hostname, strlen(o->hostname)) < 0) die("sethostname", NULL);
  drop_privileges(o);
  if (o->seccomp) install_seccomp(0);
  /* A copy of the helper's stderr that closes on exec: exec failures are reported there. */
  int err_fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
  pid_t pid = fork();
  if (pid < 0) die("fork guest", NULL);
  if (pid == 0) {
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
      _exit(EXIT_SETUP);
    if (null_fd > 2) close(null_fd);
    close(out_fd);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (chdir("/handler") < 0 && chdir("/") < 0) _exit(EXIT_SETUP);
    execvpe(o->argv[0], o->argv, environ);
    dprintf(err_fd, "ol-sock-helper: exec %s: %s\n", o->argv[0], strerror(errno));
    _exit(EXIT_EXEC);
  }
  guest_pid = pid;
  close(out_fd);
  close(err_fd);
  signal(SIGTERM, forward_to_guest);
  signal(SIGINT, forward_to_guest);
  /* Reap everything (orphans are re-parented to pid 1); leave when the guest itself is gone. */
  for (;;) {
    int status;
    pid_t done = wait(&status);
    if (done == pid) _exit(status_code(status));
    if (done < 0 && errno == ECHILD) _exit(EXIT_SETUP);
  }
}

/* Zygote mode: the fork server itself, the helper's child. Never returns. */
static void zygote_main(const struct options *o, int out_fd) {
  join_cgroups(o);
  setup_mounts(o);
  if (o->net_none) loopback_up();
  if (sethostname(o->hostname, strlen(o->hostname)) < 0) die("sethostname", NULL);
  zygote_privileges();
  if (o->seccomp) install_seccomp(1);
  int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0) die("redirect output", NULL);
  int err_fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
  if (dup2(out_fd, 2) < 0) _exit(EXIT_SETUP);
  if (null_fd > 2) close(null_fd);
  close(out_fd);
  if (chdir("/handler") < 0 && chdir("/") < 0) _exit(EXIT_SETUP);
  execvpe(o->argv[0], o->argv, environ);
  dprintf(err_fd, "ol-sock-helper: exec %s: %s\n", o->argv[0], strerror(errno));
  _exit(EXIT_EXEC);
}

/*
 * Fork mode: pid 1 of a sandbox whose guest a zygote forks into it. Builds the sandbox, says
 * so on `ready_fd`, learns the guest's pid (in this namespace) on `pid_fd`, and lives as long
 * as that guest does. Never returns.
 */
static void adopt_main(const struct options *o, int ready_fd, int pid_fd) {
  join_cgroups(o);
  setup_mounts(o);
  if (o->net_none) loopback_up();
  if (sethostname(o->hostname, strlen(o->hostname)) < 0) die("sethostname", NULL);
  drop_privileges(o);
  if (o->seccomp) install_seccomp(0);
  if (write(ready_fd, "r", 1) != 1) die("report ready", NULL);
  close(ready_fd);
  int pid = 0;
  ssize_t n;
  do n = read(pid_fd, &pid, sizeof pid);
  while (n < 0 && errno == EINTR);
  if (n != (ssize_t)sizeof pid) _exit(EXIT_SETUP); /* the helper said why on stderr */
  close(pid_fd);
  if (pid <= 0) _exit(0);
  guest_pid = pid;
  signal(SIGTERM, forward_to_guest);
  signal(SIGINT, forward_to_guest);
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) _exit(0); /* already gone */
  /* The guest is not init's child (its parent is the zygote's): watch it through a pidfd, and
   * reap whatever else is re-parented here meanwhile. */
  for (;;) {
    struct pollfd p = {pidfd, POLLIN, 0};
    int r = poll(&p, 1, 1000);
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    if (r > 0) _exit(0);
  }
}

static volatile pid_t init_pid = 0;

static void kill_sandbox(int sig) {
  /* The worker went away (PR_SET_PDEATHSIG) or asked us to stop: the sandbox goes with it. */
  if (init_pid > 0) kill(init_pid, SIGKILL);
  _exit(128 + sig);
}

/* ---- fork mode: the hand-over to the zygote ------------------------------------------------ */

struct buf {
  char *data;
  size_t len, cap;
};

static void put(struct buf *b, const void *data, size_t len) {
  if (b->len + len > b->cap) {
    b->cap = (b->len + len) * 2 + 256;
    b->data = realloc(b->data, b->cap);
    if (!b->data) die("realloc", NULL);
  }
  memcpy(b->data + b->len, data, len);
  b->len += len;
}

static void put_field(struct buf *b, const char *s) { put(b, s, strlen(s) + 1); }

static void put_number(struct buf *b, long v) {
  char n[32];
  snprintf(n, sizeof n, "%ld", v);
  put_field(b, n);
}

/*
 * Asks the fork server on o->fork_from to fork this sandbox's guest. First a 16-byte header,
 * "olfork02", the payload's length and the number of fds (4 bytes each, native order), carrying
 * with SCM_RIGHTS the log pipe, the ipc, uts, net, pid and mnt namespaces of `init`, then the
 * cgroup.procs files; then the payload, NUL-terminated fields: uid, gid, the number of cgroup
 * fds, argc, argv..., envc, env..., the guest seccomp program in hex ("" without one).
 * Returns the guest's pid in the sandbox's pid namespace, or exits with the reason.
 */
/*
 * What the helper opens before it unshares: init's pivot_root moves the helper's root too (they
 * share the new mount namespace), so the host's /proc, the cgroup files and the zygote's socket
 * are reached through these afterwards. init closes them first thing.
 */
struct handover {
  int proc, zygote_dir;
  const char *socket_name;
  int cgroups[MAX_LIST];
};

static void open_handover(const struct options *o, struct handover *h) {
  if ((h->proc = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) die("open", "/proc");
  char *dir = strdup(o->fork_from);
  char *slash = dir ? strrchr(dir, '/') : NULL;
  if (!slash || !slash[1]) fail("--fork-from must be an absolute socket path, got", o->fork_from);
  h->socket_name = o->fork_from + (slash - dir) + 1;
  *slash = 0;
  if ((h->zygote_dir = open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
    die("open the zygote's dir", dir);
  free(dir);
  for (int i = 0; i < o->ncgroups; i++) {
    if ((h->cgroups[i] = open(o->cgroups[i], O_WRONLY | O_CLOEXEC)) < 0)
      die("open", o->cgroups[i]);
  }
}

static void close_handover(const struct options *o, struct handover *h) {
  close(h->proc);
  close(h->zygote_dir);
  for (int i = 0; i < o->ncgroups; i++) close(h->cgroups[i]);
}

static int ask_zygote(const struct options *o, const struct handover *h, pid_t init, int out_fd) {
  static const char *ns[] = {"ipc", "uts", "net", "pid", "mnt"};
  int fds[6 + MAX_LIST], nfds = 0;
  fds[nfds++] = out_fd;
  for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) {
    char path[64];
    snprintf(path, sizeof path, "%d/ns/%s", (int)init, ns[i]);
    if ((fds[nfds++] = openat(h->proc, path, O_RDONLY | O_CLOEXEC)) < 0) die("open /proc/", path);
  }
  for (int i = 0; i < o->ncgroups; i++) fds[nfds++] = h->cgroups[i];
  struct buf b = {0};
  put_number(&b, (long)o->uid);
  put_number(&b, (long)o->gid);
  put_number(&b, o->ncgroups);
  int argc = 0;
  while (o->argv[argc]) argc++;
  put_number(&b, argc);
  for (int i = 0; i < argc; i++) put_field(&b, o->argv[i]);
  int envc = 0;
  while (environ[envc]) envc++;
  put_number(&b, envc);
  for (int i = 0; i < envc; i++) put_field(&b, environ[i]);
  if (o->seccomp) {
    struct sock_fprog prog = seccomp_program(0);
    const unsigned char *raw = (const unsigned char *)prog.filter;
    size_t n = prog.len * sizeof *prog.filter;
    char *hex = malloc(n * 2 + 1);
    if (!hex) die("malloc", NULL);
    for (size_t i = 0; i < n; i++) sprintf(hex + 2 * i, "%02x", raw[i]);
    put_field(&b, hex);
    free(hex);
  } else put_field(&b, "");
  /* The header alone carries the fds: the fork server's long-lived parent reads just these 16
   * bytes, forks, and only its child reads the payload (argv, the tenant's environment), so no
   * tenant's data ever sits in the memory later children are forked from. */
  struct {
    char magic[8];
    unsigned int payload_len, nfds;
  } header;
  memcpy(header.magic, "olfork02", 8);
  header.payload_len = (unsigned int)b.len;
  header.nfds = (unsigned int)nfds;

  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) die("socket", NULL);
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  /* Relative to the zygote's dir: no sun_path length limit on the worker's paths either. */
  if (strlen(h->socket_name) >= sizeof addr.sun_path) fail("fork: socket name too long:", o->fork_from);
  strcpy(addr.sun_path, h->socket_name);
  if (fchdir(h->zygote_dir) < 0) die("fork: enter the zygote's dir", o->fork_from);
  if (connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0)
    die("fork: connect to the zygote at", o->fork_from);
  char control[CMSG_SPACE(sizeof fds)];
  memset(control, 0, sizeof control);
  struct iovec iov = {&header, sizeof header};
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
  memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
  ssize_t n;
  do n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n != (ssize_t)sizeof header) die("fork: send the header to the zygote", NULL);
  size_t sent = 0;
  while (sent < b.len) {
    n = send(sock, b.data + sent, b.len - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("fork: send to the zygote", NULL);
    sent += (size_t)n;
  }
  for (int i = 1; i < 6; i++) close(fds[i]);
  free(b.data);
  char reply[1024];
  size_t got = 0;
  while (got < sizeof reply - 1) {
    n = read(sock, reply + got, sizeof reply - 1 - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
    if (memchr(reply, '\n', got)) break;
  }
  close(sock);
  reply[got] = 0;
  char *nl = strchr(reply, '\n');
  if (nl) *nl = 0;
  long host_pid = 0, ns_pid = 0;
  if (sscanf(reply, "ok %ld %ld", &host_pid, &ns_pid) != 2 || ns_pid <= 0)
    fail("fork: the zygote refused:", got ? reply : "(no answer)");
  return (int)ns_pid;
}

/* Copies guest output into the log, starting over when it would pass `max` bytes. */
static void pump(int in_fd, int log_fd, long max) {
  static const char marker[] = "[ol: log truncated]\n";
  char buf[65536];
  long written = 0;
  for (;;) {
    ssize_t n = read(in_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    if (written + n > max) {
      if (ftruncate(log_fd, 0) == 0 && lseek(log_fd, 0, SEEK_SET) == 0) {
        written = write(log_fd, marker, sizeof marker - 1);
        if (written < 0) written = 0;
      }
      if (n > max) n = max;
    }
    ssize_t w = write(log_fd, buf, (size_t)n);
    if (w > 0) written += w;
  }
}

static volatile int server_status = -1;

/* Zygote mode: reaps forked guests orphaned to the helper (it is their subreaper). */
static void reap_children(int sig) {
  (void)sig;
  int saved = errno, status;
  pid_t p;
  while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
    if (p == init_pid) server_status = status;
  }
  errno = saved;
}

/*
 * `run --tag TAG --stdin-args`: the options come NUL-separated on stdin instead of argv. A
 * sandbox's pid 1 is a fork of this process, and its /proc/1/cmdline is readable by the guest:
 * argv must not show host paths (worker dir, cgroups, sockets). Returns the full argv.
 */
static char **args_from_stdin(char *argv0, int *argc_out) {
  size_t len = 0, cap = 4096;
  char *data = malloc(cap);
  if (!data) die("malloc", NULL);
  for (;;) {
    if (len == cap) {
      if (cap > (1u << 24)) fail("options on stdin too long", NULL);
      cap *= 2;
      if (!(data = realloc(data, cap))) die("realloc", NULL);
    }
    ssize_t n = read(0, data + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("read options from stdin", NULL);
    if (n == 0) break;
    len += (size_t)n;
  }
  if (len == 0 || data[len - 1] != 0) fail("options on stdin must end with a NUL", NULL);
  int count = 0;
  for (size_t i = 0; i < len; i++) count += data[i] == 0;
  char **argv = calloc((size_t)count + 3, sizeof *argv);
  if (!argv) die("calloc", NULL);
  argv[0] = argv0;
  argv[1] = "run";
  int k = 2;
  for (size_t i = 0; i < len; i += strlen(data + i) + 1) argv[k++] = data + i;
  argv[k] = NULL;
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0 || dup2(null_fd, 0) < 0) die("reopen stdin", NULL);
  close(null_fd);
  *argc_out = k;
  return argv;
}

static int run(int argc, char **argv) {
  struct options o;
  if (argc == 5 && strcmp(argv[2], "--tag") == 0 && strcmp(argv[4], "--stdin-args") == 0)
    argv = args_from_stdin(argv[0], &argc);
  parse(argc, argv, &o);
  signal(SIGTERM, kill_sandbox);
  signal(SIGINT, kill_sandbox);
  signal(SIGHUP, kill_sandbox);
  if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) < 0) die("PR_SET_PDEATHSIG", NULL);
  if (o.ppid && getppid() != o.ppid) fail("the worker exited before the sandbox started", NULL);
  int log_fd = open(o.log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (log_fd < 0) die("open log", o.log);
  int out[2];
  if (pipe2(out, O_CLOEXEC) < 0) die("pipe", NULL);
  int ready[2] = {-1, -1}, gpid[2] = {-1, -1};
  struct handover h;
  if (o.fork_from) {
    if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(gpid, O_CLOEXEC) < 0) die("pipe", NULL);
    open_handover(&o, &h);
  }
  if (o.zygote) {
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) die("PR_SET_CHILD_SUBREAPER", NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = reap_children;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
  }
  int flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
  if (!o.zygote) flags |= CLONE_NEWPID;
  if (o.net_none) flags |= CLONE_NEWNET;
  /* Opened before anything changes: the pooled namespace is a file on the host's /run. */
  int netns_fd = -1;
  if (o.netns && (netns_fd = open(o.netns, O_RDONLY | O_CLOEXEC)) < 0) die("open netns", o.netns);
  if (unshare(flags) < 0) die("unshare", NULL);
  if (netns_fd >= 0) {
    if (setns(netns_fd, CLONE_NEWNET) < 0) die("join netns", o.netns);
    close(netns_fd);
  }
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old);
  pid_t pid = fork();
  if (pid < 0) die("fork init", NULL);
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(out[0]);
    close(log_fd);
    if (o.zygote) {
      signal(SIGCHLD, SIG_DFL);
      zygote_main(&o, out[1]);
    }
    if (o.fork_from) {
      close_handover(&o, &h);
      close(out[1]);
      close(ready[0]);
      close(gpid[1]);
      adopt_main(&o, ready[1], gpid[0]);
    }
    init_main(&o, out[1]);
  }
  init_pid = pid;
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (o.fork_from) {
    close(ready[1]);
    close(gpid[0]);
    char c;
    ssize_t n;
    do n = read(ready[0], &c, 1);
    while (n < 0 && errno == EINTR);
    close(ready[0]);
    if (n == 1) {
      int ns_pid = ask_zygote(&o, &h, pid, out[1]);
      if (write(gpid[1], &ns_pid, sizeof ns_pid) != (ssize_t)sizeof ns_pid) die("write", NULL);
    }
    close(gpid[1]);
    close_handover(&o, &h);
  }
  close(out[1]);
  pump(out[0], log_fd, o.log_max);
  int status;
  if (o.zygote) {
    /* The fork server is gone; forked guests orphaned here are reaped until none is left. */
    sigprocmask(SIG_BLOCK, &chld, NULL);
    for (;;) {
      pid_t p = waitpid(-1, &status, 0);
      if (p == pid) server_status = status;
      if (p < 0 && errno != EINTR) break;
    }
    return server_status < 0 ? EXIT_SETUP : status_code(server_status);
  }
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) die("waitpid", NULL);
  }
  return status_code(status);
}

static int umount_all(int argc, char **argv) {
  int rc = 0;
  for (int i = 2; i < argc; i++) {
    if (umount2(argv[i], MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
      fprintf(stderr, "ol-sock-helper: umount %s: %s\n", argv[i], strerror(errno));
      rc = 1;
    }
  }
  return rc;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "run") == 0) return run(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "umount") == 0) return umount_all(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "version") == 0) {
    puts(HELPER_VERSION);
    return 0;
  }
  fprintf(stderr, "usage: ol-sock-helper run [options] -- COMMAND... | umount PATH... | version\n");
  return 2;
}
