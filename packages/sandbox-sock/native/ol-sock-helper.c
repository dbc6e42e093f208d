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
 * Options:
 *   --root DIR      base root filesystem (bind-mounted read-only, nosuid, nodev)
 *   --code DIR      read-only at /handler        --scratch DIR   read-write at /host
 *   --tmp DIR       read-write at /tmp           --pkg NAME=DIR  read-only at /packages/NAME
 *   --log FILE      guest output                 --log-max N     bytes kept in FILE at most
 *   --cgroup FILE   a cgroup.procs file to join (repeatable)
 *   --net host|none --uid N --gid N --seccomp 0|1 --hostname NAME --ppid N
 *   --tag TAG       ignored; lets force cleanup find helpers of one worker in /proc
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
  int net_none, seccomp;
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
    else if (strcmp(a, "--net") == 0) {
      if (strcmp(v, "none") == 0) o->net_none = 1;
      else if (strcmp(v, "host") != 0) fail("--net must be host or none, got", v);
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
  p = under(o->root, "/proc");
  if (mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) die("mount proc on", p);
  free(p);
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

#define ALLOW BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
#define REFUSE(nr)                                      \
  BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1),      \
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM)

static void install_seccomp(void) {
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
      REFUSE(SYS_mount), REFUSE(SYS_umount2), REFUSE(SYS_unshare), REFUSE(SYS_setns),
      REFUSE(SYS_pivot_root), REFUSE(SYS_chroot), REFUSE(SYS_ptrace), REFUSE(SYS_bpf),
      REFUSE(SYS_keyctl), REFUSE(SYS_add_key), REFUSE(SYS_request_key), REFUSE(SYS_kexec_load),
      REFUSE(SYS_kexec_file_load), REFUSE(SYS_init_module), REFUSE(SYS_finit_module),
      REFUSE(SYS_delete_module), REFUSE(SYS_reboot), REFUSE(SYS_swapon), REFUSE(SYS_swapoff),
      REFUSE(SYS_acct), REFUSE(SYS_perf_event_open), REFUSE(SYS_process_vm_readv),
      REFUSE(SYS_process_vm_writev), REFUSE(SYS_open_by_handle_at), REFUSE(SYS_name_to_handle_at),
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
  struct sock_fprog prog = {(unsigned short)(sizeof filter / sizeof *filter), filter};
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
  if (o->seccomp) install_seccomp();
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

static volatile pid_t init_pid = 0;

static void kill_sandbox(int sig) {
  /* The worker went away (PR_SET_PDEATHSIG) or asked us to stop: the sandbox goes with it. */
  if (init_pid > 0) kill(init_pid, SIGKILL);
  _exit(128 + sig);
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

static int run(int argc, char **argv) {
  struct options o;
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
  int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
  if (o.net_none) flags |= CLONE_NEWNET;
  if (unshare(flags) < 0) die("unshare", NULL);
  pid_t pid = fork();
  if (pid < 0) die("fork init", NULL);
  if (pid == 0) {
    close(out[0]);
    close(log_fd);
    init_main(&o, out[1]);
  }
  init_pid = pid;
  close(out[1]);
  pump(out[0], log_fd, o.log_max);
  int status;
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
